"""DynamicQuantize (TensorRT IDynamicQuantizeLayer): block scales computed from the data itself.

``amax`` = max |x| over a block, ignoring NaN (IEEE maxNum; an all-NaN block has amax 0). Modes:

- NVFP4 (fp4 data, fp8 scale, double-quant scale required): ``s = fp8(amax / 6 / dqs)`` (two float32
  divisions, left to right, saturating); ``data = fp4(x / fl32(s * dqs))``.
- MXFP8 (fp8 data, e8m0 scale): ``s = 2^e``, the smallest e with ``fl32(amax / 448) <= 2^e`` (round
  up, as cuDNN, TensorRT-LLM, ModelOpt and TransformerEngine do), clamped to [-127, 127];
  ``data = fp8(x / s)``.
- float scale (fp8 or int8 data, float32 scale): ``s = amax / 448`` or ``amax / 127``; ``data = T(x / s)``.

Where the effective scale is 0, the data is +0 (TensorRT-LLM's kernels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from netdsl import dtypes
from netdsl.diagnostics import OpError, WeightValueError
from netdsl.dtypes import DType
from netdsl.ir import TensorType
from netdsl.ops.base import InferContext, OpDef, register
from netdsl.ops.common import (
    FLOAT_TYPES,
    check_scale_values,
    check_type,
    constant_data,
    require_constant,
    scale_values_error,
)
from netdsl.ops.granularity import block_view, ceil_div, clamp_block, expand, normalize_axis, resolve_block_shape


@dataclass(frozen=True)
class DynamicMode:
    """One dynamic quantization mode: its ``name``, the block size it requires (None: any block),
    whether it takes a double-quantization scale (required then, and refused by every other mode), and
    for a float scale the ``bound`` it divides the block amax by (the data type's largest value)."""

    name: str
    block_size: int | None
    double_quant_scale: bool
    bound: float | None = None


NVFP4 = DynamicMode("NVFP4", 16, True)
MXFP8 = DynamicMode("MXFP8", 32, False)
FLOAT_SCALE_FP8 = DynamicMode("float-scale", None, False, 448.0)
FLOAT_SCALE_INT8 = DynamicMode("float-scale", None, False, 127.0)

#: (output_type, scale_type) -> the mode
MODES: dict[tuple[DType, DType], DynamicMode] = {
    (dtypes.FP4, dtypes.FP8): NVFP4,
    (dtypes.FP8, dtypes.E8M0): MXFP8,
    (dtypes.FP8, dtypes.FLOAT32): FLOAT_SCALE_FP8,
    (dtypes.INT8, dtypes.FLOAT32): FLOAT_SCALE_INT8,
}


@dataclass(frozen=True)
class DynamicQuantizeAttrs:
    axis: int | None = None
    block_size: int | None = None
    block_shape: tuple[int, ...] | None = None
    output_type: DType = dtypes.FP4
    scale_type: DType = dtypes.FP8


@dataclass(frozen=True)
class DynamicResolution:
    """What the checker resolved for a DynamicQuantize layer: the mode, the full-rank block, the scale's
    shape, the two output types and the double-quantization scale's value."""

    mode: str  # the DynamicMode's name
    block: tuple[int, ...]
    scale_shape: tuple[int, ...]
    output_type: DType
    scale_type: DType
    double_quant_scale: float | None
    #: the double_quant_scale tensor's name where it is computed from a recipe's weight (its value is known,
    #: and checked, when the recipe is applied: :func:`applied_double_quant_scale`)
    applied_double_quant_scale: str | None = None

    def describe(self) -> str:
        dqs = f", double_quant_scale {self.double_quant_scale!r}" if self.double_quant_scale is not None else ""
        if self.applied_double_quant_scale is not None:
            dqs = f", double_quant_scale '{self.applied_double_quant_scale}' computed when applied"
        return f"{self.mode}: block [{', '.join(map(str, self.block))}], data {self.output_type.name}, " \
               f"scale {self.scale_type.name}{dqs}"


def _block(ctx: InferContext[DynamicQuantizeAttrs], shape: tuple[int, ...]) -> tuple[int, ...]:
    attrs = ctx.attrs
    rank = len(shape)
    one_d = attrs.axis is not None or attrs.block_size is not None
    if one_d and attrs.block_shape is not None:
        raise OpError("give either axis and block_size (1-D blocks) or block_shape (N-D blocks), not both",
                      "block_shape")
    if attrs.block_shape is not None:
        if rank not in (2, 3, 4):
            raise OpError(f"dynamic_quantize with block_shape takes a rank 2, 3 or 4 input, got rank {rank}",
                          "input")
        return resolve_block_shape(attrs.block_shape, shape)
    if attrs.axis is None or attrs.block_size is None:
        missing = "axis" if attrs.axis is None else "block_size"
        raise OpError(f"dynamic_quantize needs axis and block_size (1-D blocks) or block_shape (N-D); "
                      f"'{missing}' is missing", None)
    if rank not in (2, 3):
        raise OpError(f"dynamic_quantize with axis/block_size takes a rank 2 or 3 input, got rank {rank}", "input")
    axis = normalize_axis(attrs.axis, rank)
    if axis < rank - 2:
        raise OpError(f"axis must be the last or second-to-last dimension, got {attrs.axis}", "axis")
    if attrs.block_size <= 0:
        raise OpError(f"block_size must be > 0, got {attrs.block_size}", "block_size")
    if shape[axis] % attrs.block_size:
        raise OpError(f"the extent {shape[axis]} of axis {axis} is not divisible by block_size {attrs.block_size}",
                      "block_size")
    return tuple(attrs.block_size if i == axis else 1 for i in range(rank))


def infer(ctx: InferContext[DynamicQuantizeAttrs]) -> tuple[list[TensorType], DynamicResolution]:
    x = ctx.operands["input"]
    check_type(x, FLOAT_TYPES, "dynamic_quantize's input")
    attrs = ctx.attrs
    pair = (attrs.output_type, attrs.scale_type)
    if pair not in MODES:
        valid = "; ".join(f"{o.name}+{s.name} ({m.name})" for (o, s), m in MODES.items())
        raise OpError(f"output_type {attrs.output_type.name} with scale_type {attrs.scale_type.name} is not a "
                      f"dynamic quantization mode; valid: {valid}", "output_type")
    mode = MODES[pair]
    required_size, needs_dqs = mode.block_size, mode.double_quant_scale
    shape = x.type.shape
    block = _block(ctx, shape)
    if required_size is not None:
        blocked = [i for i, b in enumerate(block) if b != 1]
        where = "block_shape" if attrs.block_shape is not None else "block_size"
        if len(blocked) > 1:
            raise OpError(f"{mode.name} blocks one dimension only; block [{', '.join(map(str, block))}] blocks "
                          f"{len(blocked)} (TensorRT: \"double_quant_scale must have scalar block_size\")", where)
        if not blocked or block[blocked[0]] != required_size or blocked[0] < len(shape) - 2:
            raise OpError(f"{mode.name} needs blocks of {required_size} along the last or second-to-last axis, "
                          f"got block [{', '.join(map(str, block))}]", where)
    dqs = ctx.operands.get("double_quant_scale")
    dqs_value, applied_dqs = None, None
    if needs_dqs and dqs is None:
        raise OpError(f"{mode.name} needs a double_quant_scale input (a one-element constant > 0)", None)
    if not needs_dqs and dqs is not None:
        raise OpError(f"{mode.name} takes no double_quant_scale", "double_quant_scale")
    if dqs is not None:
        require_constant(dqs, "double_quant_scale", ctx.values)
        check_type(dqs, FLOAT_TYPES, "double_quant_scale")
        if dqs.type.volume != 1:
            raise OpError(f"double_quant_scale must hold one element, got shape {list(dqs.type.shape)}",
                          "double_quant_scale")
        applied_dqs = check_scale_values(dqs, ctx, "double_quant_scale")
        data = constant_data(dqs.value, ctx)
        if data is not None:
            dqs_value = float(dtypes.decode(data, dqs.type.dtype).reshape(()))
    block = clamp_block(block, shape)  # after the mode's rules, which read the block as written
    scale_shape = tuple(ceil_div(d, b) for d, b in zip(shape, block))
    resolution = DynamicResolution(mode.name, block, scale_shape, attrs.output_type, attrs.scale_type, dqs_value,
                                   applied_dqs)
    return [TensorType(attrs.output_type, shape), TensorType(attrs.scale_type, scale_shape)], resolution


def applied_double_quant_scale(resolution: DynamicResolution, dqs: np.ndarray | None) -> float | None:
    """The double_quant_scale a layer runs with: the checked constant, or (computed from a recipe's weight)
    the host array ``dqs``, checked now as a constant's is (WeightValueError unless finite and > 0)."""
    if resolution.applied_double_quant_scale is None or dqs is None:
        return resolution.double_quant_scale
    value = np.asarray(dqs, dtype=np.float32).reshape(())
    message = scale_values_error(value, resolution.applied_double_quant_scale, "double_quant_scale")
    if message:
        raise WeightValueError(message)
    return float(value)


def block_amax(x32: np.ndarray, block: tuple[int, ...]) -> np.ndarray:
    """max |x| per block, NaN ignored (an all-NaN block gives 0); shape ceil(x.shape / block)."""
    magnitude = np.abs(x32)
    magnitude[np.isnan(magnitude)] = 0
    view = block_view(magnitude, block, 0.0)
    amax: np.ndarray = view.max(axis=tuple(range(1, view.ndim, 2)), initial=np.float32(0))
    return amax


def reference(x: np.ndarray, block: tuple[int, ...], output_type: DType, scale_type: DType,
              double_quant_scale: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic block quantization of ``x`` (float32/float16/bfloat16 storage): (data, scale)."""
    x32 = np.asarray(x, dtype=np.float32)
    amax = block_amax(x32, block)
    mode = MODES[(output_type, scale_type)]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if mode is NVFP4:
            dqs = np.float32(double_quant_scale)
            scale = dtypes.encode(amax / np.float32(6) / dqs, dtypes.FP8)
            effective = dtypes.decode(scale, dtypes.FP8) * dqs
        elif mode is MXFP8:
            scale = dtypes.e8m0_round_up(amax / np.float32(448))
            effective = dtypes.decode(scale, dtypes.E8M0)
        else:
            assert mode.bound is not None
            effective = scale = (amax / np.float32(mode.bound)).astype(np.float32)
        per_element = expand(effective, block, x32.shape)
        quotient = x32 / per_element
    quotient[per_element == 0] = 0
    return dtypes.encode(quotient, output_type), scale


def evaluate(resolution: DynamicResolution, args: list[Any]) -> list[Any]:
    x = args[0]
    dqs = applied_double_quant_scale(resolution, args[1] if len(args) > 1 else None)
    return list(reference(x, resolution.block, resolution.output_type, resolution.scale_type, dqs))


DYNAMIC_QUANTIZE = register(OpDef(
    name="dynamic_quantize",
    attrs=DynamicQuantizeAttrs,
    attr_kinds={"axis": "int", "block_size": "int", "block_shape": "shape", "output_type": "dtype",
                "scale_type": "dtype"},
    inputs=("input", "double_quant_scale"),
    required_inputs=1,
    outputs=("data", "scale"),
    infer=infer,
    evaluate=evaluate,
))
