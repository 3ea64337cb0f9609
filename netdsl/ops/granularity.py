"""How a scale tensor maps onto the tensor it scales: per-tensor, per-channel, or (N-D) block.

Every granularity is normalised to one form that every backend uses: a scale of the input's rank,
``scale_shape[i] == ceil(shape[i] / block[i])``, where element ``x[i0, ..., in]`` uses
``scale[i0 // block0, ..., in // blockn]`` (partial edge blocks allowed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netdsl.diagnostics import OpError


@dataclass(frozen=True)
class Granularity:
    kind: str  # "per-tensor" | "per-channel" | "block"
    block: tuple[int, ...]
    scale_shape: tuple[int, ...]
    axis: int | None = None

    def describe(self) -> str:
        if self.kind == "per-tensor":
            return "per-tensor"
        if self.kind == "per-channel":
            return f"per-channel on axis {self.axis}"
        return f"block [{', '.join(map(str, self.block))}]"


def normalize_axis(axis: int, rank: int, where: str = "axis") -> int:
    """``axis`` (negative counts from the end) as 0..rank-1; OpError when out of range."""
    if not -rank <= axis < rank:
        raise OpError(f"axis {axis} is out of range for a rank-{rank} input (allowed {-rank}..{rank - 1})", where)
    return axis % rank


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def resolve_block_shape(block_shape: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """``block_shape`` with -1 replaced by the whole extent; entries must be > 0 or -1."""
    if len(block_shape) != len(shape):
        raise OpError(f"block_shape has {len(block_shape)} entries but the input has rank {len(shape)}",
                      "block_shape")
    for entry in block_shape:
        if entry != -1 and entry <= 0:
            raise OpError(f"block_shape entries must be > 0 or -1 (the whole extent), got {entry}", "block_shape")
    return tuple(max(extent, 1) if b == -1 else b for b, extent in zip(block_shape, shape))


def clamp_block(block: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """``block`` with every entry past its axis's extent cut to the extent (at least 1): the same blocks
    and scale shape, but nothing is ever sized by a block larger than the tensor (a block of 2^31-1 rows
    over 3 rows would pad the tensor to 2^31-1 rows)."""
    return tuple(min(b, max(extent, 1)) for b, extent in zip(block, shape))


def resolve(shape: tuple[int, ...], scale_shape: tuple[int, ...], axis: int | None,
            block_shape: tuple[int, ...] | None) -> Granularity:
    """The granularity a scale of ``scale_shape`` gives an input of ``shape`` (docs/semantics.md)."""
    rank = len(shape)
    scale_size = int(np.prod(scale_shape, dtype=object)) if scale_shape else 1
    if axis is not None:
        axis = normalize_axis(axis, rank)
    if scale_size == 1 and block_shape is None:
        return Granularity("per-tensor", tuple(max(d, 1) for d in shape), (1,) * rank)
    if len(scale_shape) == 1 and (rank > 1 or (block_shape is None and scale_shape[0] == shape[0])):
        if block_shape is not None:
            raise OpError(f"block_shape needs a scale of the input's rank {rank}; this scale has rank 1",
                          "block_shape")
        if axis is None:
            raise OpError("a per-channel scale (1-D, more than one element) needs 'axis'", "scale")
        if scale_shape[0] != shape[axis]:
            raise OpError(f"per-channel scale has {scale_shape[0]} elements but the input has "
                          f"{shape[axis]} along axis {axis}", "scale")
        block = tuple(1 if i == axis else max(d, 1) for i, d in enumerate(shape))
        return Granularity("per-channel", block, tuple(d if i == axis else 1 for i, d in enumerate(shape)), axis)
    if len(scale_shape) != rank:
        raise OpError(f"scale of shape {list(scale_shape)} fits no granularity for an input of shape "
                      f"{list(shape)}: use one element (per-tensor), a 1-D scale (per-channel), or the "
                      f"input's rank (block)", "scale")
    if block_shape is not None:
        block = resolve_block_shape(block_shape, shape)
        expected = tuple(ceil_div(d, b) for d, b in zip(shape, block))
        if tuple(scale_shape) != expected:
            raise OpError(f"scale shape {list(scale_shape)} does not match the input shape {list(shape)} in "
                          f"blocks of {list(block)}: expected {list(expected)}", "scale")
        return Granularity("block", clamp_block(block, shape), tuple(scale_shape))
    differing = [i for i in range(rank) if scale_shape[i] != shape[i]]
    last_two = set(range(max(rank - 2, 0), rank))
    if len(differing) != 1 or differing[0] not in last_two:
        raise OpError(f"block scale shape {list(scale_shape)} must differ from the input shape {list(shape)} "
                      f"in exactly one of the last two dimensions (or give block_shape)", "scale")
    (i,) = differing
    if shape[i] == 0:  # 0 % n == 0, but there is no block size: n blocks of nothing
        raise OpError(f"input extent 0 on axis {i} has no blocks; the scale has {scale_shape[i]} there", "scale")
    if scale_shape[i] == 0 or shape[i] % scale_shape[i]:
        raise OpError(f"input extent {shape[i]} on axis {i} is not divisible by the scale's {scale_shape[i]} "
                      f"(give block_shape for partial blocks)", "scale")
    block = tuple(shape[j] // scale_shape[j] if j == i else 1 for j in range(rank))
    return Granularity("block", block, tuple(scale_shape))


def expand(scale: np.ndarray, block: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """The per-element view of a normalised block scale: ``out[i] = scale[i // block]``, broadcast
    (not copied) along every axis a single block covers."""
    for axis, (b, extent) in enumerate(zip(block, shape)):
        if scale.shape[axis] > 1 and b > 1:
            scale = np.repeat(scale, b, axis=axis)[(slice(None),) * axis + (slice(0, extent),)]
    return np.broadcast_to(scale, shape)


def block_view(x: np.ndarray, block: tuple[int, ...], fill: float) -> np.ndarray:
    """``x`` padded to whole blocks with ``fill`` and reshaped to (S0, B0, S1, B1, ...)."""
    pads = [(0, ceil_div(d, b) * b - d) for d, b in zip(x.shape, block)]
    if any(p for _, p in pads):
        x = np.pad(x, pads, constant_values=fill)
    split = []
    for d, b in zip(x.shape, block):
        split += [d // b, b]
    return x.reshape(split)
