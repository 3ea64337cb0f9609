"""Conformance cases: ``NAME.case.yaml`` files, the inputs to run a model on and the outputs it must give
(the format: examples/README.md; running them: docs/compare.md).

A case belongs to the model beside it with the same stem: ``NAME.net``, else ``NAME.yaml``, else
``NAME.onnx``. Expected values are the outputs' exact values (integers for int8/int4, the numbers fp8,
fp4 and e8m0 codes encode); without ``atol`` an output must match bit for bit, with it
``|got - expected| <= atol``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.ir import TensorType

#: the model files a case may belong to, in the order they are looked for
MODEL_SUFFIXES = (".net", ".yaml", ".onnx")
CASE_SUFFIX = ".case.yaml"


class CaseError(ValueError):
    """A case file that can't be read or doesn't fit the format (the message names the file)."""


@dataclass
class Case:
    path: Path
    source: str
    inputs: dict[str, np.ndarray]  # float64 values
    expected: dict[str, np.ndarray]  # float64 values
    atol: dict[str, float]  # the outputs that have one

    @property
    def name(self) -> str:
        return case_name(self.path)


def case_name(path: Path) -> str:
    return path.name[: -len(CASE_SUFFIX)] if path.name.endswith(CASE_SUFFIX) else path.stem


def model_path(path: str | Path) -> Path:
    """The model a case file belongs to; CaseError when there is none beside it."""
    path = Path(path)
    name = case_name(path)
    for suffix in MODEL_SUFFIXES:
        candidate = path.with_name(name + suffix)
        if candidate.is_file():
            return candidate
    raise CaseError(f"{path}: no model beside it ({', '.join(name + s for s in MODEL_SUFFIXES)})")


def _numbers(node: Any) -> Any:
    """Nested lists with numeric strings (PyYAML reads ``1e-3`` as a string) as floats."""
    if isinstance(node, list):
        return [_numbers(item) for item in node]
    if isinstance(node, str):
        try:
            return float(node)
        except ValueError:
            return node
    return node


def _array(node: Any, base: Path, where: str, tensor_type: TensorType | None) -> np.ndarray:
    """A nested list of numbers, or ``{load: FILE.npy}`` relative to the case file read as ``tensor_type``
    (its values as the file gives them: netdsl.files), as float64."""
    if isinstance(node, dict):
        if set(node) != {"load"} or not isinstance(node["load"], str):
            raise CaseError(f"{where}: an array is a nested list or {{load: FILE.npy}}, got keys {sorted(node)}")
        if tensor_type is None:
            raise CaseError(f"{where}: the model has no such tensor")
        from netdsl import files

        try:
            return np.asarray(files.read_array(base / node["load"], tensor_type), dtype=np.float64)
        except (files.FileError, ValueError) as error:  # unreadable, or it doesn't fit the tensor's type
            raise CaseError(f"{where}: '{node['load']}' {error}") from None
    try:
        array = np.asarray(_numbers(node), dtype=np.float64)
    except (TypeError, ValueError):
        raise CaseError(f"{where}: not an array of numbers") from None
    return array


def _mapping(node: Any, where: str) -> dict:
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise CaseError(f"{where}: expected a mapping")
    return node


def load_case(path: str | Path, network: Any) -> Case:
    """Read a case file of ``network`` (its ``{load: FILE}`` arrays are read as the network's tensors);
    CaseError for anything that doesn't fit the format."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CaseError(f"cannot read case '{path}': {error.strerror or error}") from None
    except (UnicodeDecodeError, yaml.YAMLError) as error:
        raise CaseError(f"{path}: not a YAML case file ({str(error).splitlines()[0]})") from None
    raw = _mapping(raw, str(path))
    unknown = sorted(set(raw) - {"source", "inputs", "expected"})
    if unknown:
        raise CaseError(f"{path}: unknown key(s) {', '.join(map(str, unknown))} (a case has source, inputs, expected)")
    if not isinstance(raw.get("source"), str) or not raw["source"]:
        raise CaseError(f"{path}: 'source' must say where the expected values come from")
    inputs = {str(name): _array(node, path.parent, f"{path}: input '{name}'", network.inputs.get(name))
              for name, node in _mapping(raw.get("inputs"), f"{path}: inputs").items()}
    expected, atol = {}, {}
    for name, entry in _mapping(raw.get("expected"), f"{path}: expected").items():
        where = f"{path}: expected '{name}'"
        entry = _mapping(entry, where)
        if "values" not in entry or set(entry) - {"values", "atol"}:
            raise CaseError(f"{where}: takes 'values' and an optional 'atol', got {sorted(entry)}")
        expected[str(name)] = _array(entry["values"], path.parent, where, network.outputs.get(name))
        if entry.get("atol") is not None:
            try:
                atol[str(name)] = float(_numbers(entry["atol"]))
            except (TypeError, ValueError):
                raise CaseError(f"{where}: atol must be a number, got {entry['atol']!r}") from None
            if not atol[str(name)] >= 0:
                raise CaseError(f"{where}: atol must be >= 0, got {entry['atol']!r}")
    if not expected:
        raise CaseError(f"{path}: checks no output ('expected' is empty)")
    return Case(path, raw["source"], inputs, expected, atol)


def feed(values: dict[str, np.ndarray], network: Any) -> dict[str, np.ndarray]:
    """A case's input ``values`` as arrays the network takes: int8 for int8/int4 inputs, float32 otherwise
    (exact for every value of the narrow types; float32 inputs rounded to nearest even, as TensorRT's
    examples round their float64 NumPy arrays)."""
    arrays = {}
    for name, value in values.items():
        tensor_type = network.inputs.get(name)
        integer = tensor_type is not None and tensor_type.dtype.is_integer
        arrays[name] = value.astype(np.int8 if integer else np.float32)
    return arrays


def find_cases(paths: list[str]) -> list[Path]:
    """Every ``*.case.yaml`` named or found (recursively) in the folders named, sorted per argument;
    CaseError for a path that is neither."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(path.rglob(f"*{CASE_SUFFIX}"))
        elif path.is_file() and path.name.endswith(CASE_SUFFIX):
            found.append(path)
        elif path.exists():
            raise CaseError(f"'{name}' is not a case file (NAME{CASE_SUFFIX}) or a folder")
        else:
            raise CaseError(f"'{name}': no such file or folder")
    return found
