"""The rules Quantize and Dequantize share (and DynamicQuantize where it applies): type checks, where a
scale may come from, scale values, zero points, and the scale's granularity.

Each raises :class:`~netdsl.diagnostics.OpError` naming the slot or keyword that is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from netdsl import dtypes
from netdsl.diagnostics import OpError
from netdsl.dtypes import DType
from netdsl.ir import TensorType, Value
from netdsl.ops.base import InferContext, OpDef, Operand
from netdsl.ops.granularity import Granularity, resolve

FLOAT_TYPES, QUANTIZED_TYPES = dtypes.FLOAT_TYPES, dtypes.QUANTIZED_TYPES


class ScaleAttrs(Protocol):
    """The attributes Quantize and Dequantize share."""

    @property
    def axis(self) -> int | None: ...

    @property
    def block_shape(self) -> tuple[int, ...] | None: ...


@dataclass(frozen=True)
class ScaleResolution:
    """What the checker resolved for a Quantize or Dequantize layer: how its scale maps onto the data,
    and the output type."""

    granularity: Granularity
    to_type: DType

    def describe(self) -> str:
        return f"{self.granularity.describe()}, to {self.to_type.name}"


def names(types: Iterable[DType]) -> str:
    return ", ".join(t.name for t in types)


def check_type(operand: Operand, allowed: tuple[DType, ...], what: str) -> None:
    if operand.type.dtype not in allowed:
        raise OpError(f"{what} must be {names(allowed)}; '{operand.value.name}' is {operand.type.dtype.name}",
                      operand.slot)


def require_constant(operand: Operand, what: str, values: Mapping[str, Value]) -> None:
    """``operand`` must be constant-rooted (docs/semantics.md, "Build-time constants")."""
    if not is_constant_rooted(operand.value, values):
        raise OpError(f"{what} must be a constant or computed only from constants (a build-time tensor); "
                      f"'{operand.value.name}' is {provenance(operand.value)}", operand.slot)


def provenance(value: Value) -> str:
    """Where a tensor that is not constant-rooted comes from, for a message."""
    if value.kind == "input":
        return "a network input"
    return "computed by a layer from a network input"


def is_constant_rooted(value: Value, values: Mapping[str, Value]) -> bool:
    """A constant, or computed only from constants (TensorRT folds it at build time: weights and their
    scales). A walk, not a recursion: a chain of thousands of layers is a valid network."""
    pending, seen = [value], set[str]()
    while pending:
        current = pending.pop()
        if current.kind == "const" or current.name in seen:
            continue
        if current.producer is None:
            return False
        seen.add(current.name)
        pending.extend(values[name] for name in current.producer.inputs)
    return True


def constant_data(value: Value, ctx: InferContext[object]) -> np.ndarray:
    """The values (storage form) of a constant-rooted tensor: a constant's data, or a layer output folded
    by running its layers with their NumPy references: exactly the bits a run gives, as TensorRT's
    build-time folding does (the checker does the folding and keeps the values on the tensor's
    ``folded``)."""
    if value.kind == "const":
        assert value.data is not None
        return value.data
    return ctx.fold(value)


def check_scale_values(scale: Operand, ctx: InferContext[object], slot: str = "scale") -> None:
    """Every value of a constant-rooted scale (a folded scale's values too) must be finite and > 0 after
    rounding to its type (NaN, +-Inf, zero and negative values are rejected: a finite value that
    overflowed the type on rounding too)."""
    decoded = dtypes.decode(constant_data(scale.value, ctx), scale.type.dtype)
    good = np.isfinite(decoded) & (decoded > 0)
    if not np.all(good):
        bad = decoded[~good].flat[0]
        rounded = f" ({scale.value.overflow} rounded to {scale.type.dtype.name})" \
            if np.isinf(bad) and scale.value.overflow is not None else ""
        folded = " (folded: the value its layers compute from constants)" if scale.value.kind != "const" else ""
        raise OpError(f"every {slot} value must be finite and > 0; '{scale.value.name}' holds {bad}{rounded}"
                      f"{folded}", slot)


def check_zero_point(ctx: InferContext[object], quantized_type: DType) -> None:
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
    if np.any(dtypes.decode(constant_data(zero_point.value, ctx), zp.dtype) != 0):
        raise OpError("the zero point must be all zeros (TensorRT supports only symmetric quantization)",
                      "zero_point")


def resolve_scale(ctx: InferContext[ScaleAttrs], data: Operand) -> Granularity:
    attrs = ctx.attrs
    scale = ctx.operands["scale"]
    granularity = resolve(data.type.shape, scale.type.shape, attrs.axis, attrs.block_shape)
    if granularity.kind == "per-channel" and not is_constant_rooted(data.value, ctx.values):
        ctx.warn("TensorRT accepts a per-channel scale only on constant-rooted tensors (weights); "
                 f"'{data.value.name}' is not", "scale")
    return granularity


A = TypeVar("A", bound=ScaleAttrs)


def scaled_op(name: str, attrs: type[A], infer: Callable[[InferContext[A]], tuple[list[TensorType], ScaleResolution]],
              reference: Callable[..., np.ndarray]) -> OpDef[A, ScaleResolution]:
    """Quantize or Dequantize: the two share their keywords (axis, to_type, block_shape), their tensors
    (input, scale, optional zero_point) and their evaluation: ``reference`` on the normalised block scale."""
    def evaluate(resolution: ScaleResolution, args: list[Any]) -> list[Any]:
        data, scale = args[0], args[1]
        granularity = resolution.granularity
        return [reference(data, scale.reshape(granularity.scale_shape), granularity.block, resolution.to_type)]

    return OpDef(name=name, attrs=attrs, attr_kinds={"axis": "int", "to_type": "dtype", "block_shape": "shape"},
                 inputs=("input", "scale", "zero_point"), required_inputs=2, outputs=("output",), infer=infer,
                 evaluate=evaluate)
