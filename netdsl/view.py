"""What netdsl shows of a checked graph and of a run's outputs (docs/cli.md): where each tensor comes from,
constants in brief, each layer's granularity, the JSON forms of ``check --json`` and ``run --json``, and
output summaries computed piece by piece, without a copy of the whole output.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from netdsl import dtypes
from netdsl.check import CheckedGraph, CheckedNode, print_graph
from netdsl.ir import attr_items
from netdsl.ops.common import ScaleResolution
from netdsl.ops.dynamic_quantize import DynamicResolution

#: where a tensor's values come from (``check -v``, ``check --json``, ``netdsl graph``)
INPUT, CONSTANT, FOLDED, DYNAMIC_SCALE, COMPUTED = "input", "constant", "folded", "dynamic scale", "computed"

#: how many values a brief shows (constants in ``check -v``; ``run`` prints arrays up to PRINT_LIMIT whole)
BRIEF_VALUES = 4
#: arrays with at most this many elements are printed (and put in JSON) whole; larger ones as a summary
PRINT_LIMIT = 256
#: elements per piece when a summary reads a large array (a few MiB of temporaries at most)
SUMMARY_PIECE = 1 << 20
#: arrays of at least this many elements a core are summarized by a thread per core
PARALLEL_SUMMARY = 1 << 24


def provenance(graph: CheckedGraph) -> dict[str, str]:
    """Tensor name -> where its values come from: ``input``; ``constant``; ``folded`` (a layer output
    whose inputs are all constants or folded: TensorRT computes it at build time); ``dynamic scale``
    (the scale output of dynamic_quantize, or a layer output computed from such scales and constants);
    ``computed`` (depends on a network input's data)."""
    kinds: dict[str, str] = {}
    for value in graph.values.values():
        if value.kind == "input":
            kinds[value.name] = INPUT
        elif value.kind == "const":
            kinds[value.name] = CONSTANT
    for node in graph.nodes:
        sources = {kinds.get(name, COMPUTED) for name in node.inputs}
        for slot, name in zip(node.op.outputs, node.outputs):
            if sources <= {CONSTANT, FOLDED}:
                kinds[name] = FOLDED
            elif node.op.name == "dynamic_quantize" and slot == "scale":
                kinds[name] = DYNAMIC_SCALE
            elif DYNAMIC_SCALE in sources and sources <= {CONSTANT, FOLDED, DYNAMIC_SCALE}:
                kinds[name] = DYNAMIC_SCALE
            else:
                kinds[name] = COMPUTED
    return kinds


# --------------------------------------------------------------------------------------------------
# Summaries of arrays, exact and without whole-array copies


@dataclass(frozen=True)
class Summary:
    """An array's statistics over its decoded values: ``count`` elements, ``nan``/``inf`` counts,
    ``min``/``max``/``mean`` of the finite ones (None when there are none; the mean is accumulated in
    float64)."""

    count: int
    nan: int
    inf: int
    min: float | None
    max: float | None
    mean: float | None

    def describe(self, integral: bool = False) -> str:
        if self.min is None or self.max is None:
            stats = "no finite values"
        else:
            low, high = (int(self.min), int(self.max)) if integral else (_short(self.min), _short(self.max))
            stats = f"min {low} max {high} mean {self.mean:.6g}"
        return f"{self.count} values: {stats}; nan {self.nan}, inf {self.inf}"

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "min": self.min, "max": self.max, "mean": self.mean,
                "nan": self.nan, "inf": self.inf}


def _short(value: float) -> str:
    return str(np.float32(value))  # the shortest text that reads back as the same float32


def summarize(array: np.ndarray, dtype: dtypes.DType) -> Summary:
    """Statistics of a ``dtype.storage`` array, read in place in one pass of :data:`SUMMARY_PIECE`-element
    pieces (each piece's statistics while it is in the cache; a few MiB of temporaries at most), by a thread
    per core for a large array: int8 by its minimum, maximum and exact integer sum, the other formats of
    one byte or less by counting codes, float32/float16/bfloat16 over their decoded values."""
    flat = np.asarray(array).reshape(-1)  # a view for the C-contiguous arrays the backends return
    if flat.size == 0:
        return Summary(0, 0, 0, None, None, None)
    if dtype.name != "int8" and dtype.bits <= 8:
        return _summarize_codes(flat, dtype)
    partials = _in_parts(flat, _int8_part if dtype.name == "int8" else lambda part: _float_part(part, dtype))
    nan, inf, count = sum(p[0] for p in partials), sum(p[1] for p in partials), sum(p[2] for p in partials)
    if not count:
        return Summary(flat.size, nan, inf, None, None, None)
    return Summary(flat.size, nan, inf, min(p[3] for p in partials), max(p[4] for p in partials),
                   sum(p[5] for p in partials) / count)

_T = TypeVar("_T")
#: one part's statistics: nan count, inf count, finite count, finite min, finite max, finite sum
_Partial = tuple[int, int, int, float, float, float]


def _in_parts(flat: np.ndarray, summarize_part: Callable[[np.ndarray], _T]) -> list[_T]:
    """``summarize_part`` of ``flat`` whole, or of one part a core when it is large (NumPy's reductions
    release the GIL)."""
    workers = min(os.cpu_count() or 1, flat.size // PARALLEL_SUMMARY)
    if workers < 2:
        return [summarize_part(flat)]
    step = -(-flat.size // workers // SUMMARY_PIECE) * SUMMARY_PIECE
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="netdsl-summary") as pool:
        return list(pool.map(summarize_part, [flat[begin:begin + step] for begin in range(0, flat.size, step)]))


def _pieces(part: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, part.size, SUMMARY_PIECE):
        yield part[start:start + SUMMARY_PIECE]


def _int8_part(part: np.ndarray) -> _Partial:
    """int8: min, max and the exact sum (rows of 256 values summed in int16, which can't overflow)."""
    low, high, total = 127, -128, 0
    for piece in _pieces(part):
        rows = piece.size // 256 * 256
        low, high = min(low, int(piece.min())), max(high, int(piece.max()))
        total += int(np.add.reduce(piece[:rows].reshape(-1, 256), axis=1, dtype=np.int16).sum(dtype=np.int64))
        total += int(piece[rows:].sum(dtype=np.int64))
    return 0, 0, part.size, float(low), float(high), float(total)


def _float_part(part: np.ndarray, dtype: dtypes.DType) -> _Partial:
    """float32, float16, bfloat16 (decoded to float32 a piece at a time): statistics of the finite values,
    with no temporaries for a float32 piece whose values are all finite."""
    nan = inf = count = 0
    low, high, total = math.inf, -math.inf, 0.0
    for piece in _pieces(part):
        values = piece if piece.dtype == np.float32 else dtypes.decode(piece, dtype)
        piece_total = float(np.sum(values, dtype=np.float64))  # float32 values can't overflow a float64 sum
        if not math.isfinite(piece_total):  # a NaN or an infinity among the values
            finite_mask = np.isfinite(values)
            nan += int(np.isnan(values).sum())
            inf += values.size - int(finite_mask.sum())
            values = values[finite_mask]
            piece_total = float(np.sum(values, dtype=np.float64))
        if values.size:
            count += values.size
            low, high = min(low, float(values.min())), max(high, float(values.max()))
            total += piece_total
    return nan, inf - nan, count, low, high, total


def _summarize_codes(flat: np.ndarray, dtype: dtypes.DType) -> Summary:
    """One-byte storage: count each code piece by piece, then read the statistics off the 256 codes."""
    counts = np.sum(_in_parts(flat.view(np.uint8), _count_codes), axis=0)
    every = np.arange(256, dtype=np.uint8)
    if dtype.bits == 4:  # a 4-bit value lives in the byte's low nibble (ml_dtypes' layout)
        every &= 0x0F
    table = dtypes.decode(every.view(dtype.storage), dtype).astype(np.float64)
    present = counts > 0
    nan = int(counts[present & np.isnan(table)].sum())
    inf = int(counts[present & np.isinf(table)].sum())
    finite = present & np.isfinite(table)
    if not finite.any():
        return Summary(flat.size, nan, inf, None, None, None)
    values = table[finite]
    mean = float(np.dot(values, counts[finite])) / int(counts[finite].sum())
    return Summary(flat.size, nan, inf, float(values.min()), float(values.max()), mean)


def _count_codes(codes: np.ndarray) -> np.ndarray:
    counts = np.zeros(256, np.int64)
    for piece in _pieces(codes):
        counts += np.bincount(piece, minlength=256)
    return counts


def plain_values(array: np.ndarray, dtype: dtypes.DType) -> np.ndarray:
    """A small array's values for printing: int8/int4 as int64, every other type as its exact float32."""
    if dtype.name in ("int8", "int4"):
        return np.asarray(array).astype(np.int64)
    return dtypes.decode(np.asarray(array), dtype)


def _json_number(value: float | int) -> float | int | str:
    """JSON has no NaN or infinities: they are written as the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def values_json(array: np.ndarray, dtype: dtypes.DType) -> list[Any] | float | int | str:
    """A small array's values as nested JSON lists, a scalar's as one number (NaN and infinities as
    strings)."""
    values = plain_values(array, dtype)
    flat = [_json_number(v) for v in values.reshape(-1).tolist()]
    return np.array(flat, dtype=object).reshape(values.shape).tolist() if values.ndim else flat[0]


def summary_json(summary: Summary) -> dict[str, Any]:
    return {key: (_json_number(value) if value is not None else None) for key, value in summary.as_dict().items()}


# --------------------------------------------------------------------------------------------------
# Constants in brief, layers' granularity, the checked graph as JSON


def constant_brief(array: np.ndarray, dtype: dtypes.DType) -> str:
    """The first few values of a constant, then (when there are more) its count, min and max."""
    values = plain_values(np.asarray(array).reshape(-1)[:BRIEF_VALUES], dtype)
    shown = ", ".join(_format_value(v, dtype) for v in values.tolist())
    size = int(np.asarray(array).size)
    if size <= BRIEF_VALUES:
        return f"[{shown}]"
    summary = summarize(array, dtype)
    integral = dtype.name in ("int8", "int4")
    low = "-" if summary.min is None else (int(summary.min) if integral else _short(summary.min))
    high = "-" if summary.max is None else (int(summary.max) if integral else _short(summary.max))
    return f"[{shown}, ...] ({size} values, min {low}, max {high})"


def _format_value(value: float | int, dtype: dtypes.DType) -> str:
    return str(value) if isinstance(value, int) else _short(value)


def granularity(node: CheckedNode) -> dict[str, Any]:
    """A checked layer's granularity: ``kind`` (per-tensor, per-channel, block, or the dynamic mode),
    ``axis`` where per-channel, ``block`` (the block shape, every axis), and ``text`` as ``check -v`` says it."""
    resolution = node.resolution
    if isinstance(resolution, ScaleResolution):
        found = resolution.granularity
        return {"kind": found.kind, "axis": found.axis, "block": list(found.block), "text": resolution.describe()}
    if not isinstance(resolution, DynamicResolution):  # a recipe layer (docs/semantics.md, "Recipe layers")
        return {"kind": node.op.name, "axis": None, "block": None, "text": resolution.describe()}
    mode = resolution.mode  # DynamicQuantize's mode: its name, or an object with one
    return {"kind": getattr(mode, "name", mode), "axis": None, "block": list(resolution.block),
            "text": resolution.describe()}


def _attr_json(value: Any) -> Any:
    if isinstance(value, dtypes.DType):
        return value.name
    return list(value) if isinstance(value, tuple) else value


def graph_json(graph: CheckedGraph) -> dict[str, Any]:
    """The checked graph for scripts (``netdsl check --json``)."""
    kinds = provenance(graph)
    tensors = []
    for value in graph.values.values():
        if value.type is None:
            continue
        entry: dict[str, Any] = {"name": value.name, "type": value.type.dtype.name, "shape": list(value.type.shape),
                                 "provenance": kinds[value.name]}
        if value.data is not None:
            if value.data.size <= PRINT_LIMIT:
                entry["values"] = values_json(value.data, value.type.dtype)
            else:
                entry["summary"] = summary_json(summarize(value.data, value.type.dtype))
        if value.source is not None:
            entry["load"] = {"path": value.source.path, "key": value.source.key}
        tensors.append(entry)
    layers = [{"op": node.op.name, "inputs": list(node.inputs), "outputs": list(node.outputs),
               "attrs": {key: _attr_json(value) for key, value in attr_items(node.attrs)},
               "granularity": granularity(node), "line": node.loc.line} for node in graph.nodes]
    return {"network": graph.name, "file": graph.file, "inputs": [v.name for v in graph.inputs],
            "outputs": list(graph.outputs), "tensors": tensors, "layers": layers}


def describe(graph: CheckedGraph) -> str:
    """``netdsl check -v``: the checked graph (netdsl.ir.print_graph) with each constant's values in brief
    and each layer output's provenance first on its layer's comment line (``# folded; per-tensor, to
    float16``; ``# data computed, scale dynamic scale; NVFP4: ...`` where its outputs differ)."""
    kinds = provenance(graph)
    notes = {value.name: constant_brief(value.data, value.type.dtype) for value in graph.constants
             if value.data is not None and value.type is not None}
    for node in graph.nodes:
        found = [kinds[name] for name in node.outputs]
        notes[node.outputs[0]] = found[0] if len(set(found)) == 1 else \
            ", ".join(f"{name} {kind}" for name, kind in zip(node.outputs, found))
    return print_graph(graph, notes=notes)
