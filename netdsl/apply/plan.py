"""What ``netdsl apply`` will write, worked out and checked before a byte is written: which tensors the
recipe takes, their fused groups, every output shard's tensors (names, dtypes, shapes, in order), the
index and the configs."""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netdsl import __version__
from netdsl.apply.checkpoint import FLOAT_TAGS, Checkpoint
from netdsl.apply.formats import Format, Scheme, Stored, detect_scheme, get_format
from netdsl.apply.groups import fused_groups, module_of
from netdsl.apply.safetensors_io import CheckpointError, OutputTensor
from netdsl.diagnostics import Diagnostic, ModelError, UsageError
from netdsl.ir import TensorType
from netdsl.model import Network, Recipe, loads

#: the tensors a recipe takes unless --include says otherwise
DEFAULT_INCLUDE = ("*.weight",)
#: left unquantized unless --exclude is given (then only its globs count): embeddings, the output head and
#: MoE routers, which the loaders keep in high precision (ModelOpt's default configs disable them too)
DEFAULT_EXCLUDE = ("*embed_tokens.weight", "lm_head.weight", "*.mlp.gate.weight", "*router*")


@dataclass(frozen=True)
class Split:
    """How one recipe output of a fused group is divided among its members: ``rows`` (the output's
    leading extent per member), or None for a one-element output every member shares."""

    name: str
    tensor_type: TensorType
    rows: tuple[int, ...] | None


@dataclass
class Group:
    members: list[str]
    shapes: list[tuple[int, ...]]
    splits: list[Split] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    """One tensor of an output shard: copied from ``source`` byte for byte, or the ``stored`` form of
    recipe output ``output`` of group ``group``'s member ``member`` (or the member's input scale)."""

    tensor: OutputTensor
    source: str | None = None
    group: int = -1
    member: int = -1
    output: str = ""
    stored: Stored | None = None


@dataclass
class Plan:
    checkpoint: Checkpoint
    recipe_text: str
    recipe_file: str
    format: Format
    scheme: Scheme
    groups: list[Group]
    shards: dict[str, list[Entry]]
    weight_map: dict[str, str]
    ignore: list[str]
    input_scales: dict[str, float] | None
    settings: dict[str, Any]

    def recipe(self) -> Recipe:
        return recipe_network(self.recipe_text, self.recipe_file)

    def input_bytes(self, shard: str) -> int:
        return sum(t.nbytes for t in self.checkpoint.shards[shard].values())

    def units(self, shard: str) -> list[tuple[int, int, int]]:
        """``shard``'s entries as runs that come from one input tensor (a copied tensor, or one member's
        outputs): (first entry, end entry, the input tensor's bytes)."""
        tensors = self.checkpoint.shards[shard]
        runs: list[tuple[int, int, int]] = []
        previous = None
        for i, e in enumerate(self.shards[shard]):
            source = e.source or self.groups[e.group].members[e.member]
            if source == previous:
                first, _, nbytes = runs[-1]
                runs[-1] = (first, i + 1, nbytes)
            else:
                runs.append((i, i + 1, tensors[source].nbytes))
            previous = source
        return runs

    def default_task_bytes(self) -> int:
        """Dask's default bound on one task's input (docs/scale.md): 4 x the largest unit of work, a fused
        group (all its members) or a tensor copied unchanged."""
        infos = {name: info for tensors in self.checkpoint.shards.values() for name, info in tensors.items()}
        largest = max([sum(infos[m].nbytes for m in group.members) for group in self.groups] +
                      [info.nbytes for info in infos.values()])
        return 4 * largest

    def parts(self, shard: str, task_bytes: int | None) -> list[tuple[int, int]]:
        """``shard``'s entries cut into consecutive runs of at most ``task_bytes`` of input each (a run from
        one input tensor is never cut; None: never cut), as (first entry, end entry)."""
        units = self.units(shard)
        parts: list[tuple[int, int]] = []
        start, size = 0, 0
        for first, _, nbytes in units:
            if task_bytes is not None and size and size + nbytes > task_bytes:
                parts.append((start, first))
                start, size = first, 0
            size += nbytes
        parts.append((start, len(self.shards[shard])))
        return parts

    def part_input_bytes(self, shard: str, part: tuple[int, int]) -> int:
        return sum(nbytes for first, _, nbytes in self.units(shard) if part[0] <= first < part[1])


_RECIPES: dict[tuple[str, str], Recipe] = {}


def recipe_network(text: str, file: str) -> Recipe:
    """The recipe, parsed once per process (Dask workers get the text, not the object)."""
    key = (text, file)
    if key not in _RECIPES:
        recipe = loads(text, format="yaml" if file.endswith((".yaml", ".yml")) else "net",
                       base_dir=Path(file).parent, filename=file, recipe=True)
        assert isinstance(recipe, Recipe)
        _RECIPES[key] = recipe
    return _RECIPES[key]


def _selected(name: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in include) and not any(fnmatch.fnmatchcase(name, g) for g in exclude)


def _bind(recipe: Recipe, group: Group, shape: tuple[int, ...]) -> Network:
    try:
        return recipe.bind({recipe.graph.inputs[0].name: shape})
    except ModelError as error:
        what = f"tensor '{group.members[0]}'" if len(group.members) == 1 else \
            f"fused group {', '.join(repr(m) for m in group.members)} (stacked: {list(shape)})"
        raise ModelError([Diagnostic(d.loc, d.severity, f"{what}: {d.message}") for d in error.diagnostics]) from None
    except ValueError as error:
        raise UsageError(f"tensor '{group.members[0]}' {list(shape)}: {error}") from None


def _splits(group: Group, outputs: dict[str, TensorType]) -> list[Split]:
    rows = [shape[0] for shape in group.shapes]
    total = sum(rows)
    splits = []
    for name, tensor_type in outputs.items():
        shape = tensor_type.shape
        if len(group.members) == 1:
            splits.append(Split(name, tensor_type, (shape[0],) if shape else None))
        elif tensor_type.volume == 1:
            splits.append(Split(name, tensor_type, None))
        elif shape and shape[0] and total % shape[0] == 0 and all(r % (total // shape[0]) == 0 for r in rows):
            block = total // shape[0]
            splits.append(Split(name, tensor_type, tuple(r // block for r in rows)))
        else:
            raise UsageError(f"recipe output '{name}' {tensor_type} of fused group {', '.join(group.members)} "
                             f"can't be split back by rows {rows}")
    return splits


def _member_type(split: Split, member: int) -> TensorType:
    if split.rows is None:
        return split.tensor_type
    return TensorType(split.tensor_type.dtype, (split.rows[member], *split.tensor_type.shape[1:]))


def make_plan(recipe_path: Path, checkpoint: Checkpoint, format_name: str, include: list[str],
              exclude: list[str] | None, input_scales: dict[str, float] | None) -> Plan:
    """Check everything that can be checked before writing: UsageError, CheckpointError or ModelError."""
    fmt = get_format(format_name)
    try:
        recipe_text = recipe_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read recipe '{recipe_path}': {getattr(error, 'strerror', None) or error}") from None
    recipe = recipe_network(recipe_text, str(recipe_path))
    inputs = recipe.graph.inputs
    if len(inputs) != 1:
        raise UsageError(f"a recipe has one input (the weight); '{recipe_path}' has {len(inputs)}")
    declared = inputs[0].declared_type()
    includes = tuple(include) or DEFAULT_INCLUDE
    excludes = tuple(exclude) if exclude is not None else DEFAULT_EXCLUDE

    locations = checkpoint.locations
    infos = {name: checkpoint.shards[shard][name] for name, shard in locations.items()}
    chosen = [name for name, info in infos.items()
              if _selected(name, includes, excludes) and len(info.shape) == len(declared.dims)]
    for name in chosen:
        if FLOAT_TAGS.get(infos[name].dtype) != declared.dtype:
            raise UsageError(f"tensor '{name}' is {infos[name].dtype}; the recipe takes {declared.dtype.name} "
                             f"({declared}): exclude it, or use a recipe for its type")
    groups = [Group(members, [infos[m].shape for m in members]) for members in fused_groups(chosen)]
    scheme = None
    for group in groups:
        tails = {shape[1:] for shape in group.shapes}
        if len(tails) != 1:
            raise UsageError(f"fused group {', '.join(group.members)}: the weights' shapes "
                             f"{[list(s) for s in group.shapes]} differ beyond the first dimension")
        stacked = (sum(s[0] for s in group.shapes), *group.shapes[0][1:])
        bound = _bind(recipe, group, stacked)
        outputs = bound.outputs
        group_scheme = detect_scheme(outputs, stacked)
        scheme = scheme or group_scheme
        if group_scheme.kind != scheme.kind:
            raise UsageError(f"tensor '{group.members[0]}' gives a {group_scheme.kind} checkpoint tensor but "
                             f"earlier ones gave {scheme.kind}: one checkpoint holds one scheme")
        group.splits = _splits(group, outputs)
    if scheme is None:
        raise UsageError(f"no tensor of the checkpoint matches --include {' '.join(includes)} with rank "
                         f"{len(declared.dims)} (the recipe's {declared})")
    fmt.check(scheme, input_scales is not None)
    group_of = {m: (g, i) for g, group in enumerate(groups) for i, m in enumerate(group.members)}
    if input_scales is not None:
        modules = {module_of(m) for m in group_of}
        unknown = sorted(set(input_scales) - modules)
        if unknown:
            raise UsageError(f"--input-scales names '{unknown[0]}', which is not a layer the recipe quantizes")
        missing = sorted(modules - set(input_scales))
        if missing:
            raise UsageError(f"--input-scales has no amax for layer '{missing[0]}'")

    shards: dict[str, list[Entry]] = {}
    weight_map: dict[str, str] = {}
    for shard, tensors in checkpoint.shards.items():
        entries = []
        for name, info in tensors.items():
            place = group_of.get(name)
            if place is None:
                entries.append(Entry(OutputTensor(name, info.dtype, info.shape), source=name))
                continue
            g, i = place
            prefix = module_of(name)
            for split in groups[g].splits:
                for stored in fmt.stored(scheme, split.name, _member_type(split, i)):
                    entries.append(Entry(OutputTensor(f"{prefix}.{stored.suffix}", stored.tag, stored.shape),
                                         group=g, member=i, output=split.name, stored=stored))
            if input_scales is not None:
                stored = fmt.input_scale()
                entries.append(Entry(OutputTensor(f"{prefix}.{stored.suffix}", stored.tag, stored.shape), group=g,
                                     member=i, output="", stored=stored))
        names = [e.tensor.name for e in entries]
        for e in entries:
            if e.source is None and e.tensor.name in locations and e.tensor.name not in group_of:
                raise UsageError(f"the checkpoint already holds '{e.tensor.name}', which the recipe would write "
                                 f"for '{groups[e.group].members[e.member]}': is it quantized already?")
        if len(set(names)) != len(names):
            raise UsageError(f"shard '{shard}' would hold a tensor name twice")
        shards[shard] = entries
        weight_map.update({n: shard for n in names})
    if checkpoint.index is not None:  # keep the index's own order of names, replacements in place
        ordered: dict[str, str] = {}
        produced: dict[str, list[str]] = {}
        for entries in shards.values():
            for e in entries:
                source = e.source or groups[e.group].members[e.member]
                produced.setdefault(source, []).append(e.tensor.name)
        for name, shard in checkpoint.index["weight_map"].items():
            for new in produced.get(name, [name]):
                ordered[new] = shard
        weight_map = ordered
    ignore = sorted({module_of(name) for name, info in infos.items()
                     if name.endswith(".weight") and len(info.shape) >= 2 and name not in group_of})
    settings = {"netdsl": __version__, "recipe_sha256": hashlib.sha256(recipe_text.encode()).hexdigest(),
                "format": fmt.name, "include": list(includes), "exclude": list(excludes),
                "input_scales": input_scales, "checkpoint": {s: sorted((t.name, t.dtype, list(t.shape), t.begin, t.end)
                                                                    for t in ts.values())
                                                             for s, ts in checkpoint.shards.items()}}
    return Plan(checkpoint, recipe_text, str(recipe_path), fmt, scheme, groups, shards, weight_map, ignore,
                input_scales, json.loads(json.dumps(settings)))


def read_input_scales(path: Path) -> dict[str, float]:
    """The user's calibrated activation amax per layer: a JSON object ``{"LAYER": amax, ...}`` (LAYER as in
    ``LAYER.weight``), each amax a finite number > 0."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"cannot read --input-scales '{path}': no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"cannot read --input-scales '{path}': {error}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--input-scales '{path}' must hold a JSON object: {{\"LAYER\": amax, ...}}")
    scales = {}
    for layer, amax in data.items():
        if isinstance(amax, bool) or not isinstance(amax, (int, float)) or not 0 < amax < float("inf"):
            raise UsageError(f"--input-scales '{path}': layer '{layer}' has amax {amax!r}, not a finite number > 0")
        scales[layer] = float(amax)
    return scales


__all__ = ["CheckpointError", "Plan", "make_plan", "read_input_scales"]
