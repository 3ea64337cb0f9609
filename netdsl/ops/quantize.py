"""Quantize (TensorRT IQuantizeLayer): ``q = saturate(round_half_even(x / scale))``.

x is float32/float16/bfloat16 (widened exactly to float32); the division is a true IEEE float32
division; the rounding and saturation rules of the output type are :func:`netdsl.dtypes.encode`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netdsl import dtypes
from netdsl.diagnostics import OpError
from netdsl.dtypes import DType
from netdsl.ir import TensorType
from netdsl.ops.base import InferContext, register
from netdsl.ops.common import (
    FLOAT_TYPES,
    QUANTIZED_TYPES,
    ScaleResolution,
    check_scale_values,
    check_type,
    check_zero_point,
    names,
    require_constant,
    resolve_scale,
    scaled_op,
)
from netdsl.ops.granularity import expand


@dataclass(frozen=True)
class QuantizeAttrs:
    axis: int | None = None
    to_type: DType = dtypes.INT8
    block_shape: tuple[int, ...] | None = None


def infer(ctx: InferContext[QuantizeAttrs]) -> tuple[list[TensorType], ScaleResolution]:
    x, scale = ctx.operands["input"], ctx.operands["scale"]
    check_type(x, FLOAT_TYPES, "quantize's input")
    if x.type.rank == 0:
        raise OpError("quantize's input must not be a scalar", "input")
    check_type(scale, FLOAT_TYPES, "quantize's scale")
    require_constant(scale, "quantize's scale", ctx.values)
    applied_scale = check_scale_values(scale, ctx)
    to_type = ctx.attrs.to_type
    if to_type not in QUANTIZED_TYPES:
        raise OpError(f"to_type must be {names(QUANTIZED_TYPES)}, got {to_type.name}", "to_type")
    check_zero_point(ctx, to_type)
    granularity = resolve_scale(ctx, x)
    return [TensorType(to_type, x.type.shape)], ScaleResolution(granularity, to_type, applied_scale)


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


QUANTIZE = register(scaled_op("quantize", QuantizeAttrs, infer, reference))
