"""Shuffle (TensorRT IShuffleLayer), the reshape part: ``y = reshape(x, reshape_dims)``.

``reshape_dims`` follows TensorRT's rules with ``zero_is_placeholder`` (its default): 0 copies the input's
extent in that position, one -1 is inferred from the volume. The elements keep their row-major order and
bits. A recipe uses it to view a weight as blocks (``[N, K] -> [N, K / 128, 128]``) before a reduction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netdsl.diagnostics import OpError
from netdsl.ir import TensorType
from netdsl.ops.base import InferContext, OpDef, register


@dataclass(frozen=True)
class ShuffleAttrs:
    reshape_dims: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ShuffleResolution:
    shape: tuple[int, ...]

    def describe(self) -> str:
        return f"reshape to [{', '.join(map(str, self.shape))}]"


def infer(ctx: InferContext[ShuffleAttrs]) -> tuple[list[TensorType], ShuffleResolution]:
    x = ctx.operands["input"]
    dims = ctx.attrs.reshape_dims
    if dims is None:
        raise OpError("shuffle needs reshape_dims=[...]", None)
    shape = list(dims)
    for i, d in enumerate(dims):
        if d == 0:
            if i >= x.type.rank:
                raise OpError(f"reshape_dims entry {i} is 0 (copy the input's extent) but the input has rank "
                              f"{x.type.rank}", "reshape_dims")
            shape[i] = x.type.shape[i]
        elif d < -1:
            raise OpError(f"reshape_dims entries are >= 0 or -1, got {d}", "reshape_dims")
    inferred = [i for i, d in enumerate(shape) if d == -1]
    if len(inferred) > 1:
        raise OpError("reshape_dims may hold one -1 (the inferred extent)", "reshape_dims")
    known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
    if inferred:
        if known == 0 or x.type.volume % known:
            raise OpError(f"{x.type} can't be reshaped to {list(dims)}: {x.type.volume} elements are not a "
                          f"multiple of {known}", "reshape_dims")
        shape[inferred[0]] = x.type.volume // known
    elif known != x.type.volume:
        raise OpError(f"{x.type} can't be reshaped to {list(dims)}: {x.type.volume} elements, not {known}",
                      "reshape_dims")
    return [TensorType(x.type.dtype, tuple(shape))], ShuffleResolution(tuple(shape))


def evaluate(resolution: ShuffleResolution, args: list[np.ndarray]) -> list[np.ndarray]:
    return [np.reshape(args[0], resolution.shape)]


SHUFFLE = register(OpDef(
    name="shuffle",
    attrs=ShuffleAttrs,
    attr_kinds={"reshape_dims": "shape"},
    inputs=("input",),
    required_inputs=1,
    outputs=("output",),
    infer=infer,
    evaluate=evaluate,
))
