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
from netdsl.ir import Graph
from netdsl.ops import cast, dequantize, dynamic_quantize, elementwise, quantize, reduce, shuffle, unary
from netdsl.ops.dynamic_quantize import DynamicPlan
from netdsl.ops.quantize import ScalePlan

#: elements per piece: near-cache-sized, and long enough per NumPy call for the threads to run in parallel
#: (each call hands the GIL over twice; at 2^17 the hand-offs cost more than the cache saves)
PIECE_ELEMENTS = 1 << 19

Box = tuple[slice, ...]


class NumpyBackend(Backend):
    def run(self, graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        env: dict[str, Any] = dict(inputs)
        for value in graph.constants:
            env[value.name] = value.data
        for node in graph.nodes:
            results = self.impls[node.op](node.plan, [env[name] for name in node.inputs])
            env.update(zip(node.outputs, results))
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


def _scaled(reference: Callable[..., np.ndarray]) -> Callable[[ScalePlan, list[Any]], list[np.ndarray]]:
    """Quantize or Dequantize, piece by piece (per-tensor int8/int4 Quantize through the compiled loop
    where numba is installed)."""
    def run(plan: ScalePlan, args: list[Any]) -> list[np.ndarray]:
        x, scale = args[0], args[1]
        quantize.check_applied_scale(plan, scale)
        granularity = plan.granularity
        block, scale_shape = granularity.block, granularity.scale_shape
        scale = scale.reshape(scale_shape)
        out = np.empty(x.shape, plan.to_type.storage)

        per_tensor_quantize = reference is quantize.reference and scale.size == 1

        def work(box: Box) -> None:
            if per_tensor_quantize and compiled.quantize_per_tensor(x[box], scale, plan.to_type.name, out[box]):
                return
            reference(x[box], scale[_scale_box(box, block, scale_shape)], block, plan.to_type, out=out[box])

        _run_pieces(x.shape, block, tuple(c > 1 for c in scale_shape), work)
        return [out]
    return run


# the recipe layers: their references
for _op in (unary.UNARY, reduce.REDUCE, elementwise.ELEMENTWISE, cast.CAST, shuffle.SHUFFLE):
    BACKEND.impl(_op)(_op.evaluate)

BACKEND.impl(quantize.QUANTIZE)(_scaled(quantize.reference))
BACKEND.impl(dequantize.DEQUANTIZE)(_scaled(dequantize.reference))


@BACKEND.impl(dynamic_quantize.DYNAMIC_QUANTIZE)
def _dynamic_quantize(plan: DynamicPlan, args: list[Any]) -> list[np.ndarray]:
    x = args[0]
    dqs = dynamic_quantize.applied_double_quant_scale(plan, args[1] if len(args) > 1 else None)
    data = np.empty(x.shape, plan.output_type.storage)
    scale = np.empty(plan.scale_shape, plan.scale_type.storage)

    def work(box: Box) -> None:
        data[box], scale[_scale_box(box, plan.block, plan.scale_shape)] = dynamic_quantize.reference(
            x[box], plan.block, plan.output_type, plan.scale_type, dqs)

    _run_pieces(x.shape, plan.block, (True,) * x.ndim, work)
    return [data, scale]
