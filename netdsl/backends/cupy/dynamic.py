"""DynamicQuantize on the GPU: which kernels run a geometry (its launch), chosen once per geometry.

Four paths, fastest first: 'rows' (the fused kernel, blocks of 16 * 2^k consecutive elements), 'tile'
(the fused kernel for blocks down the columns), 'cta' (one large block per CTA, fused) and 'general'
(an amax pass, the block scales, then Quantize with the effective scales: any block, partial edge
blocks). kernels/dynamic_quantize.cu describes the kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from netdsl import dtypes
from netdsl.backends.cupy import abi, device, geometry
from netdsl.backends.cupy.loader import kernel

_FILE = "dynamic_quantize.cu"


@dataclass(frozen=True)
class AmaxPass:
    """The general path's first kernel: block amax by 'block' (one thread per block: small blocks,
    into an uninitialised buffer) or 'atomic' (a grid-stride pass with atomicMax: large blocks, into a
    zeroed one); ``words`` (a device table) and ``count`` are its arguments after x."""

    kind: str
    function: Any
    grid: tuple[int]
    words: Any
    count: np.uint32


@dataclass(frozen=True)
class DynamicLaunch:
    """How one DynamicQuantize geometry runs: ``path`` 'empty', 'rows', 'tile', 'cta' or 'general'.

    rows / tile / cta: ``function`` on ``grid`` with ``args`` after (x, data, scale). general: ``amax``,
    then ``function`` (block_scales_kernel) on ``grid``, then Quantize."""

    path: str
    scale_shape: tuple[int, ...]
    grid: tuple[int]
    function: Any = None
    args: tuple[Any, ...] = ()
    amax: AmaxPass | None = None


def tile_vec(in_type: dtypes.DType, kernel_rows: int) -> int:
    """Columns per thread of the tile kernel (TileShape in kernels/dynamic_quantize.cu)."""
    if kernel_rows == 16:
        return abi.TILE16_BF16_VEC if in_type == dtypes.BFLOAT16 else 4
    return 2


def tile_geometry(dims: tuple[tuple[int, int], ...], mode: str, in_type: dtypes.DType) -> tuple[int, bool, int] | None:
    """(rows per band kernel, per-column, lanes_shift) when the tile kernel takes this geometry."""
    if len(dims) != 2:
        return None
    (rows, block_rows), (cols, block_cols) = dims
    if not 2 <= block_rows <= abi.MAX_TILE_ROWS:
        return None
    options = [r for r, _ in abi.TILE_VARIANTS[mode] if block_rows <= r]
    if not options:
        return None
    kernel_rows = min(options)
    vec = tile_vec(in_type, kernel_rows)
    if cols % vec:
        return None
    if block_cols == 1 and (kernel_rows, True) in abi.TILE_VARIANTS[mode]:
        return kernel_rows, True, 0
    lanes = block_cols // vec
    if (block_cols % vec == 0 and lanes & (lanes - 1) == 0 and lanes <= 32 and cols % block_cols == 0
            and (kernel_rows, False) in abi.TILE_VARIANTS[mode]):
        return kernel_rows, False, lanes.bit_length() - 1
    return None


@dataclass(frozen=True)
class CtaGeometry:
    """The CTA kernel's view of a geometry (CtaShape in kernels/dynamic_quantize.cu): x as ``rows`` x
    ``cols`` in blocks of ``block_rows`` x ``block_cols``, 2^``tpr_shift`` threads across a block row,
    ``group`` blocks stacked down the rows per CTA."""

    rows: int
    cols: int
    block_rows: int
    block_cols: int
    tpr_shift: int
    group: int

    def args(self) -> tuple[np.uint32, ...]:
        """The kernel's arguments after (x, data, scale), in its order."""
        return tuple(np.uint32(v) for v in (self.rows, self.cols, self.block_rows, self.block_cols,
                                            self.tpr_shift, self.group))


def cta_passes(in_type: dtypes.DType) -> int:
    """Rows of 16-byte vectors per thread in the CTA kernel (CtaShape::kPasses in kernels/dynamic_quantize.cu)."""
    return 16 if in_type.bits == 32 else abi.CTA16_PASSES


def cta_geometry(dims: tuple[tuple[int, int], ...], mode: str, in_type: dtypes.DType) -> CtaGeometry | None:
    """The CTA kernel's geometry when it takes these dims: 16-byte vectors across a block row,
    2^tpr_shift threads each, at most 64 elements per thread, and at least half the CTA busy."""
    if mode not in abi.CTA_MODES or len(dims) not in (1, 2):
        return None
    vec = 16 // in_type.storage.itemsize
    if len(dims) == 1:  # a 1-D block longer than a CTA's row of vectors folds into rows of THREADS vectors
        (extent, blk), width = dims[0], abi.THREADS * vec
        dims = ((extent // width, blk // width), (width, width)) if blk >= width and extent % width == 0 \
            and blk % width == 0 else ((1, 1), (extent, blk))
    (rows, block_rows), (cols, block_cols) = dims
    if cols % vec or block_cols % vec:
        return None
    across = block_cols // vec
    if across & (across - 1) or across > abi.THREADS:
        return None
    down, passes = abi.THREADS // across, cta_passes(in_type)
    block_passes = -(-block_rows // down)
    if block_passes > passes or across * min(down, block_rows) < abi.THREADS // 2:
        return None
    # small blocks: a CTA takes several at once, stacked down the rows (each pass inside one block)
    group = min(passes // block_passes, -(-rows // block_rows)) if block_rows % down == 0 else 1
    return CtaGeometry(rows, cols, block_rows, block_cols, across.bit_length() - 1, group)


def cta_ctas_per_sm(dims: tuple[tuple[int, int], ...], in_type: dtypes.DType) -> int:
    """CTAs per SM in the CTA kernel's grid for blocks of collapsed ``dims``: the kernel's bound
    (abi.CTA16_CTAS_PER_SM, 3) for 16-bit input where each block is one row of x (1-D after collapsing,
    or one row high), at most 2 otherwise. Such blocks stack several to a CTA item, each with its own
    reduction, barrier share and reciprocal, and a third CTA per SM keeps loads in flight across them;
    for taller blocks (one per item) it only adds contention. The H100, int8 float scales from bfloat16
    with the packed block amax (benchmarks/results-kgap.md), % of the traffic-matched ceiling at 2 / 3
    CTAs per SM: 1x4096 88.5 / 96.4, 128x128 95.6 / 92.4. float32 input is bounded at 2 (it spills at 3)."""
    if in_type.bits == 16 and (len(dims) == 1 or dims[0][1] == 1):
        return abi.CTA16_CTAS_PER_SM
    return min(2, abi.CTA16_CTAS_PER_SM if in_type.bits == 16 else abi.CTA32_CTAS_PER_SM)


def block_geometry_words(dims: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
    """BlockGeometry (kernels/dynamic_quantize.cu) of collapsed ``dims``, padded in front with extent-1
    dims: the extents, the blocks, and a FastDiv of each scale extent."""
    padded = [(1, 1)] * (abi.BLOCK_GEOMETRY_DIMS - len(dims)) + list(dims)
    words = [d for d, _ in padded] + [b for _, b in padded]
    for d, b in padded:
        words += geometry.fast_div(-(-d // b))
    return tuple(words)


def choose(x: device.DeviceTensor, block: tuple[int, ...], mode: str, on_device: int) -> DynamicLaunch:
    """The launch of DynamicQuantize mode ``mode`` (an abi.DYNAMIC_MODES struct) for ``x`` in ``block``."""
    scale_shape = geometry.scale_shape(x.shape, block)
    n = x.size
    if n == 0:
        return DynamicLaunch("empty", scale_shape, (1,))
    indexing = geometry.scale_indexing(x.shape, block)
    (extent, blk), *inner = indexing.dims[::-1]
    row_block = not inner and blk % abi.CHUNK == 0 and blk <= abi.MAX_ROW_BLOCK and extent % blk == 0
    if row_block and (blk // abi.CHUNK) & (blk // abi.CHUNK - 1) == 0:
        lanes_shift = (blk // abi.CHUNK).bit_length() - 1
        return DynamicLaunch("rows", scale_shape, geometry.grid(-(-n // abi.CHUNK), on_device),
                             kernel(_FILE, abi.rows_name(x.dtype.name, mode), on_device),
                             (np.uint32(n), np.uint32(lanes_shift)))
    tile = tile_geometry(indexing.dims, mode, x.dtype)
    if tile is not None and x.data.data.ptr % 16 == 0:
        kernel_rows, per_column, lanes_shift = tile
        (rows, block_rows), (cols, _) = indexing.dims
        items = -(-rows // block_rows) * (cols // tile_vec(x.dtype, kernel_rows))
        name = abi.tile_name(x.dtype.name, mode, kernel_rows, per_column)
        return DynamicLaunch("tile", scale_shape, geometry.grid(items, on_device, abi.TILE_CTAS_PER_SM),
                             kernel(_FILE, name, on_device),
                             (np.uint32(rows), np.uint32(cols), np.uint32(block_rows), np.uint32(lanes_shift)))
    nblocks = math.prod(scale_shape)
    cta = cta_geometry(indexing.dims, mode, x.dtype)
    if cta is not None and x.data.data.ptr % 16 == 0:
        bands = -(-cta.rows // cta.block_rows)
        items = -(-bands // cta.group) * -(-cta.cols // cta.block_cols)
        grid = geometry.grid(items * abi.THREADS, on_device, cta_ctas_per_sm(indexing.dims, x.dtype))
        return DynamicLaunch("cta", scale_shape, grid, kernel(_FILE, abi.cta_name(x.dtype.name, mode), on_device),
                             cta.args())
    block_volume = math.prod(b for _, b in indexing.dims)
    if len(indexing.dims) <= abi.BLOCK_GEOMETRY_DIMS and block_volume <= abi.MAX_BLOCK_LOOP:
        amax = AmaxPass("block", kernel(_FILE, abi.block_amax_name(x.dtype.name), on_device),
                        geometry.grid(nblocks, on_device), device.words(block_geometry_words(indexing.dims)),
                        np.uint32(nblocks))
    else:
        map_mode = indexing.mode if indexing.chunk_step == 0 else abi.GENERAL
        amax = AmaxPass("atomic", kernel(_FILE, abi.atomic_amax_name(x.dtype.name, map_mode), on_device),
                        geometry.grid(-(-n // abi.CHUNK), on_device), device.words(indexing.words), np.uint32(n))
    return DynamicLaunch("general", scale_shape, geometry.grid(nblocks, on_device),
                         kernel(_FILE, abi.block_scales_name(mode), on_device), amax=amax)
