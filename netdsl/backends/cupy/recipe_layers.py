"""The recipe layers on the GPU (unary, reduce, elementwise, cast, shuffle) through netdsl's own kernels,
``kernels/recipe.cu``, compiled by the loader with IEEE float32 (no flush of subnormals, true division,
no contraction): the bits of the NumPy backend (docs/semantics.md, "Recipe layers").

The host side here is plain Python (it imports without CuPy): the collapsed layouts the kernels index
with (:func:`reduce_layout`, :func:`binary_words`), the split of a reduction into parts, and the launches.
A ``unary -> reduce`` pair that the fusion pass joins (an amax) is one reduce launch with the sign
operation folded into its loads (:func:`unary_reduce`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from netdsl import dtypes
from netdsl.backends.cupy import abi, device, geometry
from netdsl.backends.cupy.device import DeviceTensor
from netdsl.backends.cupy.executor import BACKEND
from netdsl.backends.cupy.fusion import Step
from netdsl.backends.cupy.loader import kernel
from netdsl.ops.cast import CAST, CastResolution
from netdsl.ops.elementwise import ELEMENTWISE, ElementwiseResolution
from netdsl.ops.reduce import REDUCE, ReduceResolution
from netdsl.ops.shuffle import SHUFFLE, ShuffleResolution
from netdsl.ops.unary import UNARY, UnaryResolution

FILE = "recipe.cu"

# --------------------------------------------------------------------------------------------------
# Layouts (plain Python)


def _strided(dims: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(extent, stride) dims as ScaleMap dims with block 1 (a strided offset); none: one dim of extent 1."""
    return [(extent, 1, stride) for extent, stride in dims] or [(1, 1, 0)]


@dataclass(frozen=True)
class ReduceLayout:
    """A reduction over ``axes`` of a tensor of ``shape``, its dimensions collapsed (extents of 1 dropped,
    neighbours of the same kind merged): ``outputs`` results of ``count`` elements each; element ``u`` of
    output ``o`` at ``kept(o) + reduced(u)``, the two strided maps of ``words`` (ScaleMaps, kept first).
    ``contiguous``: each output's elements are the run of ``count`` at ``o * count``; ``inner_reduced``:
    the innermost collapsed dimension is reduced (neighbouring elements belong to one output)."""

    outputs: int
    count: int
    words: tuple[int, ...]
    contiguous: bool
    inner_reduced: bool


@functools.cache
def reduce_layout(shape: tuple[int, ...], axes: tuple[int, ...]) -> ReduceLayout:
    """The layout of a reduction of a non-empty tensor (of at most MAX_DIMS dimensions, TensorRT's limit,
    which the checker keeps)."""
    merged: list[list[Any]] = []  # [extent, reduced]
    for axis, extent in enumerate(shape):
        if extent != 1:
            if merged and merged[-1][1] == (axis in axes):
                merged[-1][0] *= extent
            else:
                merged.append([extent, axis in axes])
    strides = [math.prod(extent for extent, _ in merged[i + 1:]) for i in range(len(merged))]
    kept = [(extent, stride) for (extent, reduced), stride in zip(merged, strides) if not reduced]
    summed = [(extent, stride) for (extent, reduced), stride in zip(merged, strides) if reduced]
    return ReduceLayout(math.prod(e for e, _ in kept), math.prod(e for e, _ in summed),
                        geometry.map_words(_strided(kept)) + geometry.map_words(_strided(summed)),
                        contiguous=len(summed) <= 1 and (not merged or bool(merged[-1][1])),
                        inner_reduced=not merged or bool(merged[-1][1]))


@functools.cache
def binary_words(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The two strided maps (ScaleMaps, a's then b's) from an output element of elementwise(a, b) to its
    elements of a and b, over the output's collapsed dimensions (an input's stride is 0 where it
    broadcasts). The output must not be empty."""
    merged: list[list[Any]] = []  # [extent, (a broadcasts, b broadcasts)]
    for da, db in zip(a_shape, b_shape):
        extent = max(da, db)
        if extent != 1:
            flags = (da == 1, db == 1)
            if merged and merged[-1][1] == flags:
                merged[-1][0] *= extent
            else:
                merged.append([extent, flags])
    words: tuple[int, ...] = ()
    for side in (0, 1):
        dims: list[tuple[int, int]] = []
        stride = 1
        for extent, flags in reversed(merged):
            dims.insert(0, (extent, 0 if flags[side] else stride))
            stride *= 1 if flags[side] else extent
        words += geometry.map_words(_strided(dims))
    return words


#: units (elements or 16-element chunks) each thread of a reduction takes at least, before the set is
#: split over more threads or launches
MIN_UNITS = 8


def reduce_plan(layout: ReduceLayout, threads: int) -> tuple[bool, int, int, int]:
    """(chunked, units, group, splits) of a reduction on a machine that keeps ``threads`` busy: chunks of
    16 elements where each output's set is contiguous and a whole number of them; a group of threads
    per output (a power of two, up to a CTA) where neighbouring elements share an output, else one; the
    set in ``splits`` parts (stored, then reduced by a second launch) when the outputs alone are too few
    to fill the machine -- at most THREADS * MIN_UNITS, which one CTA per output then reduces."""
    chunked = layout.contiguous and layout.count % abi.CHUNK == 0
    units = layout.count // abi.CHUNK if chunked else layout.count
    group = min(abi.THREADS, 1 << (-(-units // MIN_UNITS) - 1).bit_length()) if layout.inner_reduced else 1
    splits = max(1, min(-(-threads // (layout.outputs * group)), units // (group * MIN_UNITS),
                        abi.THREADS * MIN_UNITS))
    return chunked, units, group, splits


# --------------------------------------------------------------------------------------------------
# Launches


def _kernel(name: str) -> Any:
    return kernel(FILE, name)


def _empty(dtype: dtypes.DType, count: int) -> Any:
    return device.import_cupy().ndarray((count,), dtype.device_storage)


def unary_cast(x: DeviceTensor, to_type: dtypes.DType, sign: int) -> DeviceTensor:
    """to_type(sign(x)) elementwise: unary abs / neg, and cast."""
    out = _empty(to_type, x.size)
    if x.size:
        _kernel(abi.map_name(x.dtype.name, to_type.name, sign))(
            geometry.grid(-(-x.size // abi.CHUNK), device.current()), abi.BLOCK, (x.data, out, np.uint32(x.size)))
    return DeviceTensor(to_type, x.shape, out)


def binary(a: DeviceTensor, b: DeviceTensor, op: str) -> DeviceTensor:
    """a op b (ops/elementwise.py's operations) with TensorRT's broadcast, in a's type."""
    shape = tuple(max(da, db) if min(da, db) else 0 for da, db in zip(a.shape, b.shape))
    n = math.prod(shape)
    out = _empty(a.dtype, n)
    if n == 0:
        return DeviceTensor(a.dtype, shape, out)
    words = binary_words(a.shape, b.shape)
    _kernel(abi.binary_name(a.dtype.name, abi.BINARY_OPS[op]))(geometry.grid(-(-n // 2), device.current()), abi.BLOCK,
                                                               (a.data, b.data, device.words(words), out, np.uint32(n)))
    return DeviceTensor(a.dtype, shape, out)


def _sign_masks(dtype: dtypes.DType, sign: int) -> tuple[np.uint32, np.uint32]:
    """(and_mask, xor_mask) that make a value's storage bits those of abs or neg of it (16-bit types: both
    halves of a word)."""
    bit = 0x80000000 if dtype.bits == 32 else 0x80008000
    and_mask, xor_mask = {abi.SIGN_KEEP: (0xFFFFFFFF, 0), abi.SIGN_ABS: (0xFFFFFFFF ^ bit, 0),
                          abi.SIGN_NEG: (0xFFFFFFFF, bit)}[sign]
    return np.uint32(and_mask), np.uint32(xor_mask)


def reduce(x: DeviceTensor, op: str, axes: tuple[int, ...], out_shape: tuple[int, ...],
           sign: int = abi.SIGN_KEEP) -> DeviceTensor:
    """The max or min of sign(x) over ``axes`` (sign: abi.SIGN_KEEP, or a unary layer's abs / neg folded
    in), shaped ``out_shape``."""
    if x.size == 0:  # a kept extent of 0 (the op refuses a reduced one): nothing to reduce
        return DeviceTensor(x.dtype, out_shape, _empty(x.dtype, 0))
    layout = reduce_layout(x.shape, axes)
    on_device = device.current()
    threads = device.multiprocessors(on_device) * abi.MIN_CTAS_PER_SM * abi.THREADS
    chunked, units, group, splits = reduce_plan(layout, threads)
    out = _empty(x.dtype, layout.outputs * splits)
    _kernel(abi.reduce_name(x.dtype.name, op == "min"))(
        geometry.grid(layout.outputs * splits * group, on_device), abi.BLOCK,
        (x.data, device.words(layout.words), out, np.uint32(layout.outputs), np.uint32(units), np.uint32(splits),
         np.uint32(group.bit_length() - 1), np.uint32(chunked), *_sign_masks(x.dtype, sign)))
    if splits > 1:  # the parts, [outputs, splits]: reduced again
        return reduce(DeviceTensor(x.dtype, (layout.outputs, splits), out), op, (1,), out_shape)
    return DeviceTensor(x.dtype, out_shape, out)


def _reduce_shape(resolution: ReduceResolution, shape: tuple[int, ...]) -> tuple[int, ...]:
    if resolution.keep_dims:
        return tuple(1 if i in resolution.axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in resolution.axes)


def unary_reduce(step: Step, args: list[Any]) -> DeviceTensor:
    """A fused ``unary -> reduce`` step (fusion.UNARY_REDUCE): one reduction of abs / neg of its input."""
    unary_node, reduce_node = step.nodes
    unary_resolution, resolution = unary_node.resolution, reduce_node.resolution
    assert isinstance(unary_resolution, UnaryResolution) and isinstance(resolution, ReduceResolution)
    x = args[0]
    return reduce(x, resolution.op, resolution.axes, _reduce_shape(resolution, x.shape),
                  abi.UNARY_SIGNS[unary_resolution.op])


@BACKEND.impl(UNARY)
def _unary(resolution: UnaryResolution, args: list[Any]) -> list[Any]:
    return [unary_cast(args[0], resolution.dtype, abi.UNARY_SIGNS[resolution.op])]


@BACKEND.impl(REDUCE)
def _reduce(resolution: ReduceResolution, args: list[Any]) -> list[Any]:
    x = args[0]
    return [reduce(x, resolution.op, resolution.axes, _reduce_shape(resolution, x.shape))]


@BACKEND.impl(ELEMENTWISE)
def _elementwise(resolution: ElementwiseResolution, args: list[Any]) -> list[Any]:
    return [binary(args[0], args[1], resolution.op)]


@BACKEND.impl(CAST)
def _cast(resolution: CastResolution, args: list[Any]) -> list[Any]:
    return [unary_cast(args[0], resolution.to_type, abi.SIGN_KEEP)]


@BACKEND.impl(SHUFFLE)
def _shuffle(resolution: ShuffleResolution, args: list[Any]) -> list[Any]:
    return [DeviceTensor(args[0].dtype, resolution.shape, args[0].data)]  # flat row-major storage: a new shape
