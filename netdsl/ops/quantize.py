"""Quantize (TensorRT IQuantizeLayer): ``q = saturate(round_half_even(x / scale))``.

x is float32/float16/bfloat16 (widened exactly to float32); the division is a true IEEE float32
division; the rounding and saturation rules of the output type are :func:`netdsl.dtypes.encode`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from netdsl import dtypes
from netdsl.diagnostics import OpError, WeightValueError
from netdsl.dtypes import DType
from netdsl.ir import TensorType, Value
from netdsl.ops import (
    InferContext,
    OpDef,
    Operand,
    constant_data,
    is_constant_rooted,
    register,
    require_constant,
)
from netdsl.ops.granularity import Granularity, expand, resolve

FLOAT_TYPES, QUANTIZED_TYPES = dtypes.FLOAT_TYPES, dtypes.QUANTIZED_TYPES


@dataclass(frozen=True)
class QuantizeAttrs:
    axis: int | None = None
    to_type: DType = dtypes.INT8
    block_shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ScalePlan:
    """What the checker resolved for a Quantize or Dequantize layer."""

    granularity: Granularity
    to_type: DType
    #: the scale tensor's name where its values are computed from a recipe's weight: checked when applied
    applied_scale: str | None = None

    def describe(self) -> str:
        checked = f", scale '{self.applied_scale}' checked when applied" if self.applied_scale else ""
        return f"{self.granularity.describe()}, to {self.to_type.name}{checked}"


def names(types) -> str:
    return ", ".join(t.name for t in types)


def check_type(operand: Operand, allowed, what: str) -> None:
    if operand.type.dtype not in allowed:
        raise OpError(f"{what} must be {names(allowed)}; '{operand.value.name}' is {operand.type.dtype.name}",
                      operand.slot)


def scale_values_error(decoded: np.ndarray, name: str, slot: str = "scale") -> str | None:
    """Why float32 scale values are not valid (each must be finite and > 0), or None."""
    good = np.isfinite(decoded) & (decoded > 0)
    if np.all(good):
        return None
    return f"every {slot} value must be finite and > 0; '{name}' holds {decoded[~good].flat[0]}"


def check_scale_values(scale: Operand, values: dict[str, Value], slot: str = "scale") -> str | None:
    """Every value of a constant-rooted scale (a folded scale's values too) must be finite and > 0 after
    rounding to its type (NaN, +-Inf, zero and negative values are rejected: a finite value that
    overflowed the type on rounding too). A scale computed from a recipe's weight has no values yet: its
    name is returned, and :func:`check_applied_scale` checks it when the recipe is applied."""
    data = constant_data(scale.value, values)
    if data is None:
        return scale.value.name
    decoded = dtypes.decode(data, scale.type.dtype)
    message = scale_values_error(decoded, scale.value.name, slot)
    if message:
        bad = decoded[~(np.isfinite(decoded) & (decoded > 0))].flat[0]
        rounded = f" ({scale.value.overflow} rounded to {scale.type.dtype.name})" \
            if np.isinf(bad) and scale.value.overflow is not None else ""
        folded = " (folded: the value its layers compute from constants)" if scale.value.kind != "const" else ""
        raise OpError(f"{message}{rounded}{folded}", slot)
    return None


def check_applied_scale(plan: ScalePlan, scale: np.ndarray) -> None:
    """The values of a scale computed from a recipe's weight (a host storage array), checked as a
    constant's are: WeightValueError when one is not finite and > 0."""
    if plan.applied_scale is not None:
        message = scale_values_error(np.asarray(scale, dtype=np.float32), plan.applied_scale)
        if message:
            raise WeightValueError(message)


def check_zero_point(ctx: InferContext, quantized_type: DType) -> None:
    zero_point = ctx.operands.get("zero_point")
    if zero_point is None:
        return
    require_constant(zero_point, "the zero point", ctx.values)
    scale = ctx.operands["scale"].type
    check_type(zero_point, (quantized_type, dtypes.FLOAT32), "the zero point")
    zp = zero_point.type
    if zp.shape != scale.shape and not (zp.volume == 1 and scale.volume == 1):
        raise OpError(f"the zero point must have the scale's shape {list(scale.shape)}, got {list(zp.shape)}",
                      "zero_point")
    data = constant_data(zero_point.value, ctx.values)
    if data is None:
        raise OpError("the zero point must not be computed from the weight", "zero_point")
    if np.any(dtypes.decode(data, zp.dtype) != 0):
        raise OpError("the zero point must be all zeros (TensorRT supports only symmetric quantization)",
                      "zero_point")


def resolve_scale(ctx: InferContext, data: Operand) -> Granularity:
    attrs = ctx.attrs
    scale = ctx.operands["scale"]
    granularity = resolve(data.type.shape, scale.type.shape, attrs.axis, attrs.block_shape)
    if granularity.kind == "per-channel" and not is_constant_rooted(data.value, ctx.values):
        ctx.warn("TensorRT accepts a per-channel scale only on constant-rooted tensors (weights); "
                 f"'{data.value.name}' is not", "scale")
    return granularity


def infer(ctx: InferContext) -> tuple[list[TensorType], ScalePlan]:
    x, scale = ctx.operands["input"], ctx.operands["scale"]
    check_type(x, FLOAT_TYPES, "quantize's input")
    if x.type.rank == 0:
        raise OpError("quantize's input must not be a scalar", "input")
    check_type(scale, FLOAT_TYPES, "quantize's scale")
    require_constant(scale, "quantize's scale", ctx.values)
    applied_scale = check_scale_values(scale, ctx.values)
    to_type = ctx.attrs.to_type
    if to_type not in QUANTIZED_TYPES:
        raise OpError(f"to_type must be {names(QUANTIZED_TYPES)}, got {to_type.name}", "to_type")
    check_zero_point(ctx, to_type)
    granularity = resolve_scale(ctx, x)
    return [TensorType(to_type, x.type.shape)], ScalePlan(granularity, to_type, applied_scale)


def reference(x: np.ndarray, scale: np.ndarray, block: tuple[int, ...], to_type: DType,
              out: np.ndarray | None = None) -> np.ndarray:
    """Quantize ``x`` (float32/float16/bfloat16 storage) with a normalised block ``scale``; into ``out``
    (``to_type`` storage, ``x``'s shape) when given."""
    x32 = np.asarray(x, dtype=np.float32)
    scale32 = np.asarray(scale, dtype=np.float32)
    quotient = dtypes.work_buffer("quotient", x32.size, np.float32).reshape(x32.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if normal_powers_of_two(scale32):
            # x / 2**k and x * 2**-k round the same real number, and 2**-k is exact: the same bits, without
            # the divider (the slowest unit, shared between hyperthreads)
            np.multiply(x32, expand(np.float32(1) / scale32, block, x32.shape), out=quotient)
        else:
            np.divide(x32, expand(scale32, block, x32.shape), out=quotient)
    return dtypes.encode(quotient, to_type, out=out, overwrite=True)


def normal_powers_of_two(scale: np.ndarray) -> bool:
    """Whether every float32 in ``scale`` is 2**k with -126 <= k <= 127, so that 1 / scale is exact."""
    bits = scale.view(np.uint32)
    if scale.size == 1:
        word = int(bits.reshape(-1)[0])
        return (word & 0x7FFFFF) == 0 and 0 < (word >> 23) & 0xFF < 0xFF
    exponent = (bits >> 23) & 0xFF
    return bool(np.all((bits & 0x7FFFFF) == 0) and np.all((exponent > 0) & (exponent < 0xFF)))


def scaled_evaluate(reference: Callable[..., np.ndarray]) -> Callable[[ScalePlan, list[Any]], list[np.ndarray]]:
    """A Quantize or Dequantize layer's evaluation: ``reference`` on the normalised block scale."""
    def evaluate(plan: ScalePlan, args: list[Any]) -> list[np.ndarray]:
        data, scale = args[0], args[1]
        check_applied_scale(plan, scale)
        granularity = plan.granularity
        return [reference(data, scale.reshape(granularity.scale_shape), granularity.block, plan.to_type)]
    return evaluate


evaluate = scaled_evaluate(reference)


QUANTIZE = register(OpDef(
    name="quantize",
    attrs=QuantizeAttrs,
    attr_kinds={"axis": "int", "to_type": "dtype", "block_shape": "shape"},
    inputs=("input", "scale", "zero_point"),
    required_inputs=2,
    outputs=("output",),
    infer=infer,
    evaluate=evaluate,
))
