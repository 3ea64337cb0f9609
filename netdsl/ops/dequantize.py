"""Dequantize (TensorRT IDequantizeLayer): ``y = round_to(to_type, fl32(float32(q) * scale))``.

The product is rounded to float32, then rounded again to float16/bfloat16: the double rounding a
float32 multiply followed by a cast does, which is what TensorRT computes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from netdsl import dtypes
from netdsl.diagnostics import OpError
from netdsl.dtypes import DType
from netdsl.ir import TensorType, Value
from netdsl.ops.base import InferContext, register
from netdsl.ops.common import (
    FLOAT_TYPES,
    QUANTIZED_TYPES,
    ScaleResolution,
    check_scale_values,
    check_type,
    check_zero_point,
    is_constant_rooted,
    names,
    provenance,
    resolve_scale,
    scaled_op,
)
from netdsl.ops.dynamic_quantize import DYNAMIC_QUANTIZE
from netdsl.ops.granularity import expand

SCALE_TYPES = FLOAT_TYPES + (dtypes.E8M0,)


@dataclass(frozen=True)
class DequantizeAttrs:
    axis: int | None = None
    to_type: DType = dtypes.FLOAT32
    block_shape: tuple[int, ...] | None = None


def dynamic_scale_source(value: Value, values: Mapping[str, Value]) -> bool:
    """A DynamicQuantize scale output, directly or through a Dequantize of one (the NVFP4 pattern)."""
    producer = value.producer
    if producer is None:
        return False
    if producer.op is DYNAMIC_QUANTIZE:
        return producer.outputs.index(value.name) == 1
    if producer.op is DEQUANTIZE:
        return dynamic_scale_source(values[producer.inputs[0]], values)
    return False


def infer(ctx: InferContext[DequantizeAttrs]) -> tuple[list[TensorType], ScaleResolution]:
    q, scale = ctx.operands["input"], ctx.operands["scale"]
    check_type(q, QUANTIZED_TYPES, "dequantize's input")
    if q.type.rank == 0:
        raise OpError("dequantize's input must not be a scalar", "input")
    check_type(scale, SCALE_TYPES, "dequantize's scale")
    applied_scale = None
    if is_constant_rooted(scale.value, ctx.values):
        applied_scale = check_scale_values(scale, ctx)
    elif not dynamic_scale_source(scale.value, ctx.values):
        raise OpError(f"dequantize's scale must be a constant or come from a dynamic_quantize scale output "
                      f"(directly or through a dequantize of it), or be computed only from constants; "
                      f"'{scale.value.name}' is {provenance(scale.value)}", "scale")
    to_type = ctx.attrs.to_type
    if to_type not in FLOAT_TYPES:
        raise OpError(f"to_type must be {names(FLOAT_TYPES)}, got {to_type.name}", "to_type")
    check_zero_point(ctx, q.type.dtype)
    granularity = resolve_scale(ctx, q)
    return [TensorType(to_type, q.type.shape)], ScaleResolution(granularity, to_type, applied_scale)


def reference(q: np.ndarray, scale: np.ndarray, block: tuple[int, ...], to_type: DType,
              out: np.ndarray | None = None) -> np.ndarray:
    """Dequantize ``q`` (int8/int4/fp8/fp4 storage) with a normalised block ``scale`` (float or e8m0); into
    ``out`` (``to_type`` storage, ``q``'s shape) when given."""
    q32 = dtypes.work_buffer("values", q.size, np.float32).reshape(q.shape)
    np.copyto(q32, q, casting="unsafe")  # widening: every stored value is a float32
    scale32 = expand(np.asarray(scale, dtype=np.float32), block, q32.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        np.multiply(q32, scale32, out=q32)
    return dtypes.encode(q32, to_type, out=out, overwrite=True)


DEQUANTIZE = register(scaled_op("dequantize", DequantizeAttrs, infer, reference))
