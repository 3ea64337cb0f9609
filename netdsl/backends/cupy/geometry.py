"""Block geometry on the host: collapsing a tensor's dimensions, the scale-index map the kernels read
(ScaleMap in kernels/common.cuh), and grid sizes.

Granularity arrives pre-normalised as a full-rank ``block``: ``scale`` has x's rank and shape
``ceil(x.shape[i] / block[i])``, and element ``x[i0, ..., in]`` uses
``scale[i0 // block0, ..., in // blockn]`` (docs/semantics.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from netdsl.backends.cupy import abi, device


def fast_div(d: int) -> tuple[int, int, int]:
    """(d, mul, shr) with n // d == (n * mul >> 32) >> shr for 0 <= n < 2**31 (FastDiv in common.cuh)."""
    if d == 1:
        return (1, 0, 0)
    log = (d - 1).bit_length()  # ceil(log2(d))
    return (d, ((1 << (31 + log)) + d - 1) // d, log - 1)


def collapse(shape: tuple[int, ...], block: tuple[int, ...]) -> list[tuple[int, int]]:
    """The fewest (extent, block) dims, innermost last, that index x's block scales as (shape, block) does.

    Dims of extent 1 drop out; an inner dim blocked whole merges into its outer neighbour (block
    grows by the inner extent), and an unblocked outer dim merges into an inner one whose block
    divides its extent. Scale flat indices stay row-major, so they are unchanged.
    """
    dims = [(d, min(b, d)) for d, b in zip(shape, block) if d != 1] or [(1, 1)]
    merged = [dims[-1]]
    for extent, blk in reversed(dims[:-1]):
        inner_extent, inner_block = merged[0]
        if inner_block == inner_extent:
            merged[0] = (extent * inner_extent, blk * inner_extent)
        elif blk == 1 and inner_extent % inner_block == 0:
            merged[0] = (extent * inner_extent, inner_block)
        else:
            merged.insert(0, (extent, blk))
    return merged


def scale_shape(shape: tuple[int, ...], block: tuple[int, ...]) -> tuple[int, ...]:
    """ceil(shape / block) per axis (0 for an empty axis)."""
    return tuple(-(-d // b) if d else 0 for d, b in zip(shape, block))


@dataclass(frozen=True)
class ScaleIndexing:
    """How the elementwise kernels find each element's scale: the map mode (abi.MapMode), and for
    CHUNKED the step (0: one scale per chunk, 1: 16 consecutive scales); the ScaleMap words; the
    collapsed dims."""

    mode: int
    chunk_step: int
    words: tuple[int, ...]
    dims: tuple[tuple[int, int], ...]


def map_words(dims: list[tuple[int, int, int]]) -> tuple[int, ...]:
    """The words of a ScaleMap (common.cuh) over ``dims``, (extent, block, stride) each, innermost last, at
    most MAX_DIMS: scale_index(map, e) is the sum over dims of (coordinate // block) * stride, the
    coordinates those of e in the extents. With block 1 it is a strided offset (kernels/recipe.cu)."""
    assert 1 <= len(dims) <= abi.MAX_DIMS, dims
    words = [len(dims)]
    for extent, blk, stride in [*dims, *[(1, 1, 0)] * (abi.MAX_DIMS - len(dims))]:
        words += [*fast_div(extent), *fast_div(blk), stride]
    return tuple(words)


@functools.cache
def scale_indexing(shape: tuple[int, ...], block: tuple[int, ...]) -> ScaleIndexing:
    dims = collapse(shape, block)
    if len(dims) > abi.MAX_DIMS:
        raise ValueError(f"more than {abi.MAX_DIMS} dimensions after collapsing: {shape} in blocks {block}")
    counts = [-(-d // b) for d, b in dims]
    words = map_words([(d, b, math.prod(counts[i + 1:])) for i, (d, b) in enumerate(dims)])
    last_extent, last_block = dims[-1]
    if len(dims) == 1 and last_block == last_extent:
        mode, step = abi.PER_TENSOR, 0
    elif last_extent % abi.CHUNK == 0 and last_block % abi.CHUNK == 0:
        mode, step = abi.CHUNKED, 0
    elif last_extent % abi.CHUNK == 0 and last_block == 1:
        mode, step = abi.CHUNKED, 1
    else:
        mode, step = abi.GENERAL, 0
    return ScaleIndexing(mode, step, words, tuple(dims))


def grid(work_items: int, on_device: int, ctas_per_sm: int = abi.CTAS_PER_SM) -> tuple[int]:
    """One thread per work item, at most a full machine's worth of CTAs (the kernels grid-stride)."""
    return (max(1, min(-(-work_items // abi.THREADS), device.multiprocessors(on_device) * ctas_per_sm)),)
