"""Unary (TensorRT IUnaryLayer, ``trt.UnaryOperation``): ``y = op(x)`` elementwise, same type and shape.

The operations a recipe needs to compute scales, both exact in every float type: ``abs`` (ABS) and
``neg`` (NEG). ``abs(NaN)`` is NaN, ``abs(-0)`` is +0, ``abs(-Inf)`` is +Inf; NaN results are canonical
(docs/semantics.md, "Recipe layers").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from netdsl import dtypes
from netdsl.diagnostics import OpError
from netdsl.dtypes import DType
from netdsl.ir import TensorType
from netdsl.ops.base import InferContext, OpDef, register
from netdsl.ops.common import FLOAT_TYPES, check_type

#: netdsl's spelling -> trt.UnaryOperation member
OPERATIONS = {"abs": "ABS", "neg": "NEG"}


@dataclass(frozen=True)
class UnaryAttrs:
    op: str | None = None


@dataclass(frozen=True)
class UnaryResolution:
    op: str
    dtype: DType

    def describe(self) -> str:
        return f"{self.op} (trt.UnaryOperation.{OPERATIONS[self.op]}), {self.dtype.name}"


class OperationAttrs(Protocol):
    """The attributes of a layer with TensorRT's ``op`` keyword."""

    @property
    def op(self) -> str | None: ...


def operation(ctx: InferContext[OperationAttrs], operations: dict[str, str], layer: str) -> str:
    """The ``op`` keyword: one of ``operations`` (netdsl's lower-case spelling of TensorRT's enum)."""
    op: str | None = ctx.attrs.op
    if op is None:
        raise OpError(f"{layer} needs op=, one of {', '.join(operations)}", None)
    if op not in operations:
        raise OpError(f"{layer} has no operation '{op}'; it takes {', '.join(operations)}", "op")
    return op


def infer(ctx: InferContext[UnaryAttrs]) -> tuple[list[TensorType], UnaryResolution]:
    x = ctx.operands["input"]
    check_type(x, FLOAT_TYPES, "unary's input")
    op = operation(ctx, OPERATIONS, "unary")
    return [x.type], UnaryResolution(op, x.type.dtype)


def reference(x: np.ndarray, op: str, dtype: DType) -> np.ndarray:
    """``op`` on ``x`` (``dtype`` storage): both only change the sign bit, so they work on the bits of
    the stored type (no float32 copy); NaN results are then made canonical."""
    array = np.asarray(x, dtype=dtype.storage)
    unsigned = np.dtype(f"u{array.itemsize}")
    sign = unsigned.type(1 << (8 * array.itemsize - 1))
    bits = array.view(unsigned)
    result = bits & ~sign if op == "abs" else bits ^ sign
    infinity = np.asarray(np.inf, dtype.storage).view(unsigned)
    nan = (result & ~sign) > infinity  # exponent all ones, mantissa not zero
    if nan.any():
        result[nan] = dtypes.encode(np.full(1, np.nan, np.float32), dtype).view(unsigned)[0]
    stored: np.ndarray = result.view(dtype.storage)
    return stored


def evaluate(resolution: UnaryResolution, args: list[np.ndarray]) -> list[np.ndarray]:
    return [reference(args[0], resolution.op, resolution.dtype)]


UNARY = register(OpDef(
    name="unary",
    attrs=UnaryAttrs,
    attr_kinds={"op": "word"},
    inputs=("input",),
    required_inputs=1,
    outputs=("output",),
    infer=infer,
    evaluate=evaluate,
))
