"""The NumPy executor: runs each layer's reference implementation in graph order.

Large tensors are processed in cache-sized pieces, on a thread per core (NumPy releases the GIL
inside its loops). A piece is a box of whole blocks, so every piece computes exactly what the
reference computes on the whole tensor: the bits do not depend on the chunking.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import numpy as np

from netdsl.backends import Backend
from netdsl.backends.numpy import compiled
from netdsl.check import CheckedGraph
from netdsl.ir import Node
from netdsl.ops import cast, dequantize, dynamic_quantize, elementwise, quantize, reduce, shuffle, unary
from netdsl.ops.base import OpDef
from netdsl.ops.common import ScaleResolution, check_applied_scale
from netdsl.ops.dynamic_quantize import DynamicResolution

#: elements per piece: near-cache-sized, and long enough per NumPy call for the threads to run in parallel
#: (each call hands the GIL over twice; at 2^17 the hand-offs cost more than the cache saves)
PIECE_ELEMENTS = 1 << 19

Box = tuple[slice, ...]


class NumpyBackend(Backend):
    def execute(self, graph: CheckedGraph, inputs: dict[str, np.ndarray],
                on_node: Callable[[Node], None] | None = None) -> dict[str, np.ndarray]:
        env: dict[str, Any] = dict(inputs)
        for value in graph.constants:
            env[value.name] = value.data
        for node in graph.nodes:
            results = self.impls[node.op](node.resolution, [env[name] for name in node.inputs])
            env.update(zip(node.outputs, results))
            if on_node is not None:
                on_node(node)
        return {name: env[name] for name in graph.outputs}


BACKEND = NumpyBackend("numpy")


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="netdsl")


def pieces(shape: tuple[int, ...], block: tuple[int, ...], aligned: tuple[bool, ...],
           target: int = PIECE_ELEMENTS) -> Iterator[Box]:
    """Boxes tiling ``shape``, each about ``target`` elements or one aligned unit, whose edges fall on
    block boundaries on every axis where ``aligned`` says the blocks matter."""
    rank = len(shape)
    unit = [b if a else 1 for b, a in zip(block, aligned)]
    inner, axis = 1, rank
    while axis > 0 and inner * shape[axis - 1] <= target:
        axis -= 1
        inner *= shape[axis]
    if axis == 0 or 0 in shape:
        yield tuple(slice(0, d) for d in shape)
        return
    split = axis - 1  # split along this axis; earlier axes go one aligned unit at a time
    step = max(unit[split], target // inner // unit[split] * unit[split])
    ranges = [range(0, shape[i], unit[i]) for i in range(split)] + [range(0, shape[split], step)]
    steps = unit[:split] + [step]
    for starts in itertools.product(*ranges):
        box = tuple(slice(s, min(s + n, shape[i])) for i, (s, n) in enumerate(zip(starts, steps)))
        yield box + tuple(slice(0, d) for d in shape[split + 1:])


def _scale_box(box: Box, block: tuple[int, ...], scale_shape: tuple[int, ...]) -> Box:
    return tuple(slice(0, 1) if extent == 1 else slice(part.start // b, -(-part.stop // b))
                 for part, b, extent in zip(box, block, scale_shape))


def _run_pieces(shape: tuple[int, ...], block: tuple[int, ...], aligned: tuple[bool, ...],
                work: Callable[[Box], None]) -> None:
    boxes = list(pieces(shape, block, aligned))
    workers = min(len(boxes), os.cpu_count() or 1)
    if workers == 1:
        for box in boxes:
            work(box)
        return

    def share(k: int) -> None:  # one task per thread: a future per piece costs more than a piece's work
        for box in boxes[k::workers]:
            work(box)

    for _ in _pool().map(share, range(workers)):
        pass


def _scaled(op: OpDef[Any, ScaleResolution],
            reference: Callable[..., np.ndarray]) -> Callable[[ScaleResolution, list[Any]], list[np.ndarray]]:
    """Quantize or Dequantize (``op``, whose NumPy reference is ``reference``), piece by piece (per-tensor
    int8/int4 Quantize through the compiled loop where numba is installed)."""
    def run(resolution: ScaleResolution, args: list[Any]) -> list[np.ndarray]:
        x, scale = args[0], args[1]
        check_applied_scale(resolution, scale)
        granularity = resolution.granularity
        block, scale_shape = granularity.block, granularity.scale_shape
        scale = scale.reshape(scale_shape)
        out = np.empty(x.shape, resolution.to_type.storage)

        per_tensor_quantize = op is quantize.QUANTIZE and scale.size == 1

        def work(box: Box) -> None:
            if per_tensor_quantize and compiled.quantize_per_tensor(x[box], scale, resolution.to_type, out[box]):
                return
            reference(x[box], scale[_scale_box(box, block, scale_shape)], block, resolution.to_type, out=out[box])

        _run_pieces(x.shape, block, tuple(c > 1 for c in scale_shape), work)
        return [out]
    return run


for _op, _reference in ((quantize.QUANTIZE, quantize.reference), (dequantize.DEQUANTIZE, dequantize.reference)):
    BACKEND.impl(_op)(_scaled(_op, _reference))

# the recipe layers (docs/semantics.md, "Recipe layers"): their references, on the whole tensor
for _recipe_op in (unary.UNARY, reduce.REDUCE, elementwise.ELEMENTWISE, cast.CAST, shuffle.SHUFFLE):
    BACKEND.impl(_recipe_op)(_recipe_op.evaluate)


@BACKEND.impl(dynamic_quantize.DYNAMIC_QUANTIZE)
def _dynamic_quantize(resolution: DynamicResolution, args: list[Any]) -> list[np.ndarray]:
    x = args[0]
    dqs = dynamic_quantize.applied_double_quant_scale(resolution, args[1] if len(args) > 1 else None)
    data = np.empty(x.shape, resolution.output_type.storage)
    scale = np.empty(resolution.scale_shape, resolution.scale_type.storage)

    def work(box: Box) -> None:
        data[box], scale[_scale_box(box, resolution.block, resolution.scale_shape)] = dynamic_quantize.reference(
            x[box], resolution.block, resolution.output_type, resolution.scale_type, dqs)

    _run_pieces(x.shape, resolution.block, (True,) * x.ndim, work)
    return [data, scale]
