"""Cast (TensorRT ICastLayer): ``y = to_type(x)`` between float32, float16 and bfloat16.

Widening is exact; narrowing rounds to nearest even, overflow gives +-Inf, NaN stays NaN (canonical).
A recipe widens a bfloat16 amax to float32 before dividing, as ModelOpt's ``amax.float()`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netdsl import dtypes
from netdsl.diagnostics import OpError
from netdsl.dtypes import DType
from netdsl.ir import TensorType
from netdsl.ops.base import InferContext, OpDef, register
from netdsl.ops.common import FLOAT_TYPES, check_type, names


@dataclass(frozen=True)
class CastAttrs:
    to_type: DType | None = None


@dataclass(frozen=True)
class CastResolution:
    from_type: DType
    to_type: DType

    def describe(self) -> str:
        return f"{self.from_type.name} to {self.to_type.name}"


def infer(ctx: InferContext[CastAttrs]) -> tuple[list[TensorType], CastResolution]:
    x = ctx.operands["input"]
    check_type(x, FLOAT_TYPES, "cast's input")
    to_type = ctx.attrs.to_type
    if to_type is None:
        raise OpError(f"cast needs to_type=, one of {names(FLOAT_TYPES)}", None)
    if to_type not in FLOAT_TYPES:
        raise OpError(f"cast's to_type must be {names(FLOAT_TYPES)}, got {to_type.name}", "to_type")
    return [TensorType(to_type, x.type.shape)], CastResolution(x.type.dtype, to_type)


def evaluate(resolution: CastResolution, args: list[np.ndarray]) -> list[np.ndarray]:
    return [dtypes.encode(dtypes.decode(np.asarray(args[0]), resolution.from_type), resolution.to_type)]


CAST = register(OpDef(
    name="cast",
    attrs=CastAttrs,
    attr_kinds={"to_type": "dtype"},
    inputs=("input",),
    required_inputs=1,
    outputs=("output",),
    infer=infer,
    evaluate=evaluate,
))
