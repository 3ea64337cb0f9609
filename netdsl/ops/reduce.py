"""Reduce (TensorRT IReduceLayer, ``trt.ReduceOperation``): the max or min of ``x`` over ``axes``.

``reduce(x, op=max, axes=[0, 1], keep_dims=false)``: ``axes`` lists the reduced dimensions (TensorRT
takes them as a bit mask; -rank..rank-1 here), ``keep_dims`` keeps them as extents of 1. The result
has the input's type; max and min are exact, so every order of evaluation gives the same bits.
IEEE 754-2019 ``maximum``/``minimum``: a NaN anywhere in a reduced set makes the result NaN (canonical),
and +0 is larger than -0 (docs/semantics.md, "Recipe layers"). Sum, product and average are not offered:
TensorRT does not fix their order of accumulation, so they have no bit-exact definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from netdsl import dtypes
from netdsl.diagnostics import OpError
from netdsl.dtypes import DType
from netdsl.ir import TensorType
from netdsl.ops.base import InferContext, OpDef, register
from netdsl.ops.common import FLOAT_TYPES, check_type
from netdsl.ops.granularity import normalize_axis
from netdsl.ops.unary import operation

#: netdsl's spelling -> trt.ReduceOperation member
OPERATIONS = {"max": "MAX", "min": "MIN"}


@dataclass(frozen=True)
class ReduceAttrs:
    op: str | None = None
    axes: tuple[int, ...] | None = None
    keep_dims: bool = False


@dataclass(frozen=True)
class ReduceResolution:
    op: str
    axes: tuple[int, ...]
    keep_dims: bool
    dtype: DType

    def describe(self) -> str:
        kept = ", keep_dims" if self.keep_dims else ""
        return f"{self.op} (trt.ReduceOperation.{OPERATIONS[self.op]}) over axes " \
               f"[{', '.join(map(str, self.axes))}]{kept}, {self.dtype.name}"


def infer(ctx: InferContext[ReduceAttrs]) -> tuple[list[TensorType], ReduceResolution]:
    x = ctx.operands["input"]
    check_type(x, FLOAT_TYPES, "reduce's input")
    op = operation(ctx, OPERATIONS, "reduce")
    attrs = ctx.attrs
    if attrs.axes is None:
        raise OpError("reduce needs axes=[...], the dimensions to reduce", None)
    shape = x.type.shape
    if not attrs.axes:
        raise OpError("axes must name at least one dimension", "axes")
    axes = tuple(normalize_axis(a, len(shape), "axes") for a in attrs.axes)
    if len(set(axes)) != len(axes):
        raise OpError(f"axes names a dimension twice: {list(attrs.axes)}", "axes")
    empty = [a for a in axes if shape[a] == 0]
    if empty:
        raise OpError(f"dimension {empty[0]} has extent 0: the {op} of no values is not defined", "axes")
    axes = tuple(sorted(axes))
    if attrs.keep_dims:
        out_shape = tuple(1 if i in axes else d for i, d in enumerate(shape))
    else:
        out_shape = tuple(d for i, d in enumerate(shape) if i not in axes)
    return [TensorType(x.type.dtype, out_shape)], ReduceResolution(op, axes, attrs.keep_dims, x.type.dtype)


def compute(x32: Any, op: str, axes: tuple[int, ...], keep_dims: bool, xp: Any = np) -> Any:
    """The max or min of float32 ``x32`` over ``axes``, NaN propagating, +0 > -0; ``xp`` is NumPy or CuPy
    (the GPU backend runs this same code on device arrays)."""
    result = (xp.max if op == "max" else xp.min)(x32, axis=axes, keepdims=keep_dims)
    zero = result == 0
    if bool(zero.any()):  # the sign of a zero max/min would depend on the order the zeros are met in
        winner_negative = op == "min"  # max: +0 when a +0 is there, else -0; min: -0 when a -0 is there
        present = xp.any((x32 == 0) & (xp.signbit(x32) == winner_negative), axis=axes, keepdims=keep_dims)
        winner, other = (xp.float32(-0.0), xp.float32(0.0)) if winner_negative else \
            (xp.float32(0.0), xp.float32(-0.0))
        result = xp.where(zero, xp.where(present, winner, other), result).astype(xp.float32)
    return result


#: elements widened to float32 at a time: a reduction over a whole weight holds a slice's float32 copy,
#: not the tensor's
CHUNK_ELEMENTS = 1 << 22


def reference(x: np.ndarray, op: str, axes: tuple[int, ...], keep_dims: bool, dtype: DType) -> np.ndarray:
    """:func:`compute` on ``x`` (``dtype`` storage), stored as ``dtype`` (exact: the result is an element).
    A large ``x`` is widened a slice of its first axis at a time; max and min (NaN and signed zeros
    included) are associative, so reducing the slices' results gives the same bits."""
    array = np.asarray(x)
    rows = array.shape[0] if array.ndim else 1
    step = max(1, CHUNK_ELEMENTS // max(array.size // max(rows, 1), 1))
    if array.ndim == 0 or rows <= step:
        result = compute(dtypes.decode(array, dtype), op, axes, keep_dims)
    else:
        parts = [compute(dtypes.decode(array[start:start + step], dtype), op, axes, True)
                 for start in range(0, rows, step)]
        stacked = np.concatenate(parts, axis=0)
        result = compute(stacked, op, (0,), True) if 0 in axes else stacked
        if not keep_dims:
            result = result.reshape([d for i, d in enumerate(result.shape) if i not in axes])
    return dtypes.encode(np.asarray(result, dtype=np.float32), dtype)


def evaluate(resolution: ReduceResolution, args: list[np.ndarray]) -> list[np.ndarray]:
    return [reference(args[0], resolution.op, resolution.axes, resolution.keep_dims, resolution.dtype)]


REDUCE = register(OpDef(
    name="reduce",
    attrs=ReduceAttrs,
    attr_kinds={"op": "word", "axes": "shape", "keep_dims": "bool"},
    inputs=("input",),
    required_inputs=1,
    outputs=("output",),
    infer=infer,
    evaluate=evaluate,
))
