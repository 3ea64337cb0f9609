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
from netdsl.diagnostics import OpError, WeightValueError
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
    #: the scale tensor's name where its values are computed from a recipe's weight: checked when applied
    applied_scale: str | None = None

    def describe(self) -> str:
        checked = f", scale '{self.applied_scale}' checked when applied" if self.applied_scale else ""
        return f"{self.granularity.describe()}, to {self.to_type.name}{checked}"


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
    """A constant or a recipe's weight, or computed only from those (TensorRT folds it at build time:
    weights and their scales). A walk, not a recursion: a chain of thousands of layers is a valid network."""
    pending, seen = [value], set[str]()
    while pending:
        current = pending.pop()
        if current.kind == "const" or current.weight or current.name in seen:
            continue
        if current.producer is None:
            return False
        seen.add(current.name)
        pending.extend(values[name] for name in current.producer.inputs)
    return True


def from_weight(value: Value, values: Mapping[str, Value]) -> bool:
    """Whether ``value`` is a recipe's weight or computed from one (its values arrive when the recipe is
    applied, docs/checkpoints.md)."""
    pending, seen = [value], set[str]()
    while pending:
        current = pending.pop()
        if current.weight:
            return True
        if current.name in seen or current.producer is None:
            continue
        seen.add(current.name)
        pending.extend(values[name] for name in current.producer.inputs)
    return False


def constant_data(value: Value, ctx: InferContext[object]) -> np.ndarray | None:
    """The values (storage form) of a constant-rooted tensor: a constant's data, or a layer output folded
    by running its layers with their NumPy references: exactly the bits a run gives, as TensorRT's
    build-time folding does (the checker does the folding and keeps the values on the tensor's
    ``folded``). None for a tensor computed from a recipe's weight: its values exist when it is applied."""
    if value.kind == "const":
        assert value.data is not None
        return value.data
    if from_weight(value, ctx.values):
        return None
    return ctx.fold(value)


def scale_values_error(decoded: np.ndarray, name: str, slot: str = "scale") -> str | None:
    """Why float32 scale values are not valid (each must be finite and > 0), or None."""
    good = np.isfinite(decoded) & (decoded > 0)
    if np.all(good):
        return None
    return f"every {slot} value must be finite and > 0; '{name}' holds {decoded[~good].flat[0]}"


def check_scale_values(scale: Operand, ctx: InferContext[object], slot: str = "scale") -> str | None:
    """Every value of a constant-rooted scale (a folded scale's values too) must be finite and > 0 after
    rounding to its type (NaN, +-Inf, zero and negative values are rejected: a finite value that
    overflowed the type on rounding too). A scale computed from a recipe's weight has no values yet: its
    name is returned, and :func:`check_applied_scale` checks it when the recipe is applied."""
    data = constant_data(scale.value, ctx)
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


def check_applied_scale(resolution: ScaleResolution, scale: np.ndarray) -> None:
    """The values of a scale computed from a recipe's weight (a host storage array), checked as a
    constant's are: WeightValueError when one is not finite and > 0."""
    if resolution.applied_scale is not None:
        message = scale_values_error(np.asarray(scale, dtype=np.float32), resolution.applied_scale)
        if message:
            raise WeightValueError(message)


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
    data = constant_data(zero_point.value, ctx)
    if data is None:
        raise OpError("the zero point must not be computed from the weight", "zero_point")
    if np.any(dtypes.decode(data, zp.dtype) != 0):
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
        check_applied_scale(resolution, scale)
        granularity = resolution.granularity
        return [reference(data, scale.reshape(granularity.scale_shape), granularity.block, resolution.to_type)]

    return OpDef(name=name, attrs=attrs, attr_kinds={"axis": "int", "to_type": "dtype", "block_shape": "shape"},
                 inputs=("input", "scale", "zero_point"), required_inputs=2, outputs=("output",), infer=infer,
                 evaluate=evaluate)
