"""ElementWise (TensorRT IElementWiseLayer, ``trt.ElementWiseOperation``): ``y = a op b``.

Operations: ``sum`` (SUM), ``sub`` (SUB), ``prod`` (PROD), ``div`` (DIV), ``max`` (MAX), ``min`` (MIN).
Both inputs have the same float type and the same rank; each dimension matches or is 1 in one of them
(TensorRT's broadcast rule: no implicit rank padding). The result has their type: computed as one IEEE
float32 operation rounded to nearest even (a true division, not a multiply by a reciprocal), then
rounded to float16/bfloat16, which for a single + - * / gives the correctly rounded result of that
type. max/min are IEEE 754-2019 ``maximum``/``minimum``: NaN propagates, +0 > -0. NaN results are
canonical (docs/semantics.md, "Recipe layers").
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
from netdsl.ops.unary import operation

#: netdsl's spelling -> trt.ElementWiseOperation member
OPERATIONS = {"sum": "SUM", "sub": "SUB", "prod": "PROD", "div": "DIV", "max": "MAX", "min": "MIN"}


@dataclass(frozen=True)
class ElementwiseAttrs:
    op: str | None = None


@dataclass(frozen=True)
class ElementwiseResolution:
    op: str
    dtype: DType

    def describe(self) -> str:
        return f"{self.op} (trt.ElementWiseOperation.{OPERATIONS[self.op]}), {self.dtype.name}"


def infer(ctx: InferContext[ElementwiseAttrs]) -> tuple[list[TensorType], ElementwiseResolution]:
    a, b = ctx.operands["input1"], ctx.operands["input2"]
    check_type(a, FLOAT_TYPES, "elementwise's first input")
    check_type(b, FLOAT_TYPES, "elementwise's second input")
    op = operation(ctx, OPERATIONS, "elementwise")
    if a.type.dtype != b.type.dtype:
        raise OpError(f"elementwise's inputs must have the same type; '{a.value.name}' is {a.type.dtype.name}, "
                      f"'{b.value.name}' is {b.type.dtype.name} (cast one)", "input2")
    if a.type.rank != b.type.rank:
        raise OpError(f"elementwise's inputs must have the same rank (TensorRT broadcasts only extents of 1); "
                      f"'{a.value.name}' is {a.type}, '{b.value.name}' is {b.type}", "input2")
    shape = []
    for axis, (da, db) in enumerate(zip(a.type.shape, b.type.shape)):
        if da != db and 1 not in (da, db):
            raise OpError(f"'{a.value.name}' {a.type} and '{b.value.name}' {b.type} differ in dimension {axis} "
                          f"({da} vs {db}); an extent may differ only where one of them is 1", "input2")
        shape.append(db if da == 1 else da)
    return [TensorType(a.type.dtype, tuple(shape))], ElementwiseResolution(op, a.type.dtype)


def compute(a32: Any, b32: Any, op: str, xp: Any = np) -> Any:
    """``a32 op b32`` on float32 arrays (broadcast as TensorRT does) by the rules above; ``xp`` is NumPy or
    CuPy (the GPU backend runs this same code on device arrays)."""
    if op not in ("max", "min"):
        function = {"sum": xp.add, "sub": xp.subtract, "prod": xp.multiply, "div": xp.divide}[op]
        return function(a32, b32, dtype=xp.float32)
    result = (xp.maximum if op == "max" else xp.minimum)(a32, b32)
    both_zero = (a32 == 0) & (b32 == 0)
    if not bool(both_zero.any()):
        return result
    # IEEE maximum/minimum of two zeros: max is -0 only when both are, min is -0 when either is
    a_negative, b_negative = xp.signbit(a32), xp.signbit(b32)
    negative = (a_negative & b_negative) if op == "max" else (a_negative | b_negative)
    return xp.where(both_zero, xp.where(negative, xp.float32(-0.0), xp.float32(0.0)), result)


def reference(a: np.ndarray, b: np.ndarray, op: str, dtype: DType) -> np.ndarray:
    """:func:`compute` on ``a`` and ``b`` (``dtype`` storage), rounded to ``dtype``."""
    with np.errstate(all="ignore"):
        result = compute(dtypes.decode(np.asarray(a), dtype), dtypes.decode(np.asarray(b), dtype), op)
        return dtypes.encode(np.asarray(result, dtype=np.float32), dtype)


def evaluate(resolution: ElementwiseResolution, args: list[np.ndarray]) -> list[np.ndarray]:
    return [reference(args[0], args[1], resolution.op, resolution.dtype)]


ELEMENTWISE = register(OpDef(
    name="elementwise",
    attrs=ElementwiseAttrs,
    attr_kinds={"op": "word"},
    inputs=("input1", "input2"),
    required_inputs=2,
    outputs=("output",),
    infer=infer,
    evaluate=evaluate,
))
