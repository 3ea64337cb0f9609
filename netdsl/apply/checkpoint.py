"""A safetensors checkpoint as ``netdsl apply`` reads it: one ``.safetensors`` file, or a folder of shards
with ``model.safetensors.index.json`` (Hugging Face's layout), checked before anything is written."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netdsl import dtypes
from netdsl.apply.safetensors_io import CheckpointError, TensorInfo, read_header

INDEX_NAME = "model.safetensors.index.json"
#: safetensors tag -> the netdsl type of a recipe input that takes it
FLOAT_TAGS = {"F32": dtypes.FLOAT32, "F16": dtypes.FLOAT16, "BF16": dtypes.BFLOAT16}


@dataclass
class Checkpoint:
    """Shards (file name -> tensors in offset order), each shard's ``__metadata__``, the index's own JSON
    (None for a single file) and the other files of the folder (copied unchanged)."""

    root: Path
    shards: dict[str, dict[str, TensorInfo]]
    metadata: dict[str, dict[str, str] | None]
    index: dict[str, Any] | None
    other_files: list[str]
    _handles: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:  # sent to Dask workers without open files
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    @property
    def locations(self) -> dict[str, str]:
        """Tensor name -> the shard holding it."""
        return {name: shard for shard, tensors in self.shards.items() for name in tensors}

    @property
    def size(self) -> int:
        return sum(t.nbytes for tensors in self.shards.values() for t in tensors.values())

    def close(self) -> None:
        """Close the shards ``read`` opened."""
        self._handles.clear()

    def read(self, shard: str, name: str) -> np.ndarray:
        """A tensor's values through safetensors' memory-mapped ``safe_open`` (only this tensor is read)."""
        from safetensors import safe_open

        handle = self._handles.get(shard)
        if handle is None:
            handle = self._handles[shard] = safe_open(str(self.root / shard), framework="numpy")
        return handle.get_tensor(name)


def open_checkpoint(path: Path) -> Checkpoint:
    """The checkpoint at ``path``; CheckpointError (one line naming the file and tensor) when it is not
    complete: a shard the index names is missing, or doesn't hold a tensor the index puts there."""
    if path.is_file():
        tensors, file_metadata = read_header(path)
        others = ["config.json"] if (path.parent / "config.json").is_file() else []
        return Checkpoint(path.parent, {path.name: tensors}, {path.name: file_metadata}, None, others)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint '{path}': no such file or folder")
    index_path = path / INDEX_NAME
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            weight_map = index["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            raise CheckpointError(f"'{index_path}' is not a safetensors index (a JSON object with a "
                                  f"'weight_map')") from None
        shard_names = sorted(set(weight_map.values()))
        for shard in shard_names:
            if not isinstance(shard, str) or Path(shard).name != shard or not (path / shard).is_file():
                tensor = next(name for name, s in weight_map.items() if s == shard)
                raise CheckpointError(f"shard '{shard}' (holding tensor '{tensor}', says the index) is missing "
                                      f"from '{path}'")
    else:
        index = None
        candidates = sorted(p.name for p in path.glob("*.safetensors"))
        if len(candidates) != 1:
            raise CheckpointError(f"'{path}' has {len(candidates)} .safetensors files and no {INDEX_NAME}: "
                                  f"give the file, or a folder of shards with its index")
        shard_names = candidates
        weight_map = {}
    shards: dict[str, dict[str, TensorInfo]] = {}
    metadata: dict[str, dict[str, str] | None] = {}
    for shard in shard_names:
        shards[shard], metadata[shard] = read_header(path / shard)
    for name, shard in weight_map.items():
        if name not in shards[shard]:
            raise CheckpointError(f"the index puts tensor '{name}' in '{shard}', which doesn't hold it")
    skip = set(shard_names) | {INDEX_NAME}
    others = sorted(p.name for p in path.iterdir() if p.name not in skip and not p.name.startswith("."))
    return Checkpoint(path, shards, metadata, index, others)
