"""The kernels' ABI as the host sees it: every constant, enum and template instantiation of ``kernels/*.cu``
that the launchers rely on. Plain Python (no CuPy).

Each constant names its C++ twin; ``tests/test_kernel_abi.py`` reads the ``.cu``/``.cuh`` files and checks
that the two agree, so a change on one side that the other misses fails on any machine, GPU or not.
"""

from __future__ import annotations

from netdsl import dtypes, settings

#: the element types of the kernels' template parameters (the tag structs of netdsl::type); the scale
#: and code kinds (the ScaleKind and CodeKind enums) are DType.scale_kind and DType.code_kind
FLOAT_TYPES = tuple(t.name for t in dtypes.FLOAT_TYPES)
QUANTIZED_TYPES = tuple(t.name for t in dtypes.QUANTIZED_TYPES)

#: kThreads in common.cuh: threads per CTA for every kernel
THREADS = 256
#: the block argument of every launch
BLOCK = (THREADS,)
#: kMaxDims in common.cuh: the most (extent, block) dims a ScaleMap holds
MAX_DIMS = 8
#: kScaleMapWords in common.cuh: ScaleMap's uint32 words (rank, then per dim extent and block FastDivs
#: of 3 words each and the scale stride)
SCALE_MAP_WORDS = 1 + MAX_DIMS * (3 + 3 + 1)
#: dims of BlockGeometry in dynamic_quantize.cu (DynamicQuantize takes rank 2..4)
BLOCK_GEOMETRY_DIMS = 4
#: kBlockGeometryWords in dynamic_quantize.cu: extents, blocks, and a FastDiv per dim
BLOCK_GEOMETRY_WORDS = BLOCK_GEOMETRY_DIMS * (1 + 1 + 3)
#: elements per chunk, one thread's unit of work (Chunk<T> in formats.cuh: pack16/unpack16)
CHUNK = 16

#: MapMode in common.cuh: how an elementwise kernel finds an element's scale
PER_TENSOR, CHUNKED, GENERAL = 0, 1, 2
MAP_MODES = (PER_TENSOR, CHUNKED, GENERAL)

#: (output_type, scale_type) -> the DynamicQuantize mode struct of dynamic_quantize.cu: the modes of
#: ops/dynamic_quantize.py's MODES, the float-scale mode with one struct per data type
DYNAMIC_MODES: dict[tuple[str, str], str] = {
    ("fp4", "fp8"): "NVFP4",
    ("fp8", "e8m0"): "MXFP8",
    ("fp8", "float32"): "FloatFP8",
    ("int8", "float32"): "FloatInt8",
}
#: the DynamicQuantize modes whose blocks can be large enough for the one-block-per-CTA kernel
CTA_MODES = ("FloatFP8", "FloatInt8")
#: the tile kernel's (rows per band, per-column) instantiations per DynamicQuantize mode: NVFP4 and
#: MXFP8 block one dimension (16 and 32 rows, a scale per column); float scales any block
TILE_VARIANTS: dict[str, tuple[tuple[int, bool], ...]] = {
    "NVFP4": ((16, True),),
    "MXFP8": ((32, True),),
    "FloatFP8": ((16, True), (16, False), (32, True), (32, False)),
    "FloatInt8": ((16, True), (16, False), (32, True), (32, False)),
}
#: the tile kernel's longest column block (its largest kRows)
MAX_TILE_ROWS = 32
#: the rows kernel's largest block: 32 lanes of one chunk each
MAX_ROW_BLOCK = CHUNK * 32
#: larger general blocks take the atomic amax pass (block_amax_kernel loops over a block per thread)
MAX_BLOCK_LOOP = 1024
#: resident CTAs per SM the grids are sized for: 2048 resident threads per SM on sm_90
CTAS_PER_SM = 8

#: SignMode in recipe.cu: what map_kernel (unary, cast) and reduce_kernel's masks do to each value's sign
SIGN_KEEP, SIGN_ABS, SIGN_NEG = 0, 1, 2
#: unary's operations (ops/unary.py) -> SignMode
UNARY_SIGNS = {"abs": SIGN_ABS, "neg": SIGN_NEG}
#: BinaryOp in recipe.cu: elementwise's operations (ops/elementwise.py) -> binary_kernel's op
BINARY_OPS = {"sum": 0, "sub": 1, "prod": 2, "div": 3, "max": 4, "min": 5}

#: NVRTC (and nvcc) options: IEEE division, subnormals kept, no contraction of a*b+c into an FMA.
COMPILE_OPTIONS = ("-std=c++17", "--fmad=false", "--ftz=false", "--prec-div=true", "--prec-sqrt=true")

#: the kernels' tuning macros and their defaults (the ``#ifndef`` blocks of the .cu/.cuh files)
TUNING_DEFAULTS = {"NETDSL_MIN_CTAS_PER_SM": 4, "NETDSL_TILE16_BF16_VEC": 4, "NETDSL_TILE_PREFETCH": 1,
                   "NETDSL_TILE_CTAS": 2, "NETDSL_AHEAD": 1, "NETDSL_SCALE_AHEAD": 1, "NETDSL_STORE_CS": 1,
                   "NETDSL_CHUNK_MAP": 2, "NETDSL_CTA16_PASSES": 8, "NETDSL_CTA_CTAS": 3, "NETDSL_CTA_PACKED_MAX": 1,
                   "NETDSL_CTA_SHARED_RCP": 0}


def compile_options() -> tuple[str, ...]:
    """COMPILE_OPTIONS plus ``-D`` for each word of $NETDSL_CUDA_DEFINES (e.g. NETDSL_MIN_CTAS_PER_SM=3; see
    benchmarks/bench_gpu.py --defines)."""
    return COMPILE_OPTIONS + tuple(f"-D{word}" for word in settings.cuda_defines())


def tuning(name: str) -> int:
    """A kernel tuning macro's value as $NETDSL_CUDA_DEFINES sets it for the kernels, else its default."""
    value = settings.cuda_define(name)
    return TUNING_DEFAULTS[name] if value is None else value


#: resident CTAs per SM that every kernel's __launch_bounds__ guarantees (kMinCtasPerSm in common.cuh): a
#: reduction splits its work for that many per SM
MIN_CTAS_PER_SM = tuning("NETDSL_MIN_CTAS_PER_SM")
#: __launch_bounds__ of the tile kernel (2: up to 128 registers); read once, as the kernels are compiled
TILE_CTAS_PER_SM = tuning("NETDSL_TILE_CTAS")
#: the tile kernel's bfloat16 columns per thread in 16-row bands (TileShape::kVec)
TILE16_BF16_VEC = tuning("NETDSL_TILE16_BF16_VEC")
#: the CTA kernel's rows per thread for 16-bit inputs (CtaShape::kPasses; float32: 16)
CTA16_PASSES = tuning("NETDSL_CTA16_PASSES")
#: CtaShape::kCtasPerSm in dynamic_quantize.cu, the CTA kernel's __launch_bounds__ (the most CTAs per SM its
#: grid may have): 16-bit inputs NETDSL_CTA_CTAS, float32 2 (dynamic.cta_ctas_per_sm picks the grid's)
CTA16_CTAS_PER_SM = tuning("NETDSL_CTA_CTAS")
CTA32_CTAS_PER_SM = 2


# --------------------------------------------------------------------------------------------------
# Kernel names: the template instantiations, as NVRTC name expressions


def _cxx(type_name: str) -> str:
    return f"netdsl::type::{type_name}"


def quantize_name(x: str, q: str, mode: int) -> str:
    return f"netdsl::quantize_kernel<{_cxx(x)}, {_cxx(q)}, {mode}>"


def quantize_dequantize_name(x: str, q: str, out: str, mode: int) -> str:
    return f"netdsl::quantize_dequantize_kernel<{_cxx(x)}, {_cxx(q)}, {_cxx(out)}, {mode}>"


def dequantize_name(q: str, out: str, mode: int) -> str:
    return f"netdsl::dequantize_kernel<{_cxx(q)}, {_cxx(out)}, {mode}>"


def dequantize_double_name(q: str, out: str, mode: int) -> str:
    return f"netdsl::dequantize_double_kernel<{_cxx(q)}, {_cxx(out)}, {mode}>"


def rows_name(x: str, mode_struct: str) -> str:
    return f"netdsl::dynamic_quantize_rows_kernel<{_cxx(x)}, netdsl::{mode_struct}>"


def tile_name(x: str, mode_struct: str, rows: int, per_column: bool) -> str:
    column = "true" if per_column else "false"
    return f"netdsl::dynamic_quantize_tile_kernel<{_cxx(x)}, netdsl::{mode_struct}, {rows}, {column}>"


def cta_name(x: str, mode_struct: str) -> str:
    return f"netdsl::dynamic_quantize_cta_kernel<{_cxx(x)}, netdsl::{mode_struct}>"


def block_amax_name(x: str) -> str:
    return f"netdsl::block_amax_kernel<{_cxx(x)}>"


def atomic_amax_name(x: str, mode: int) -> str:
    return f"netdsl::atomic_amax_kernel<{_cxx(x)}, {mode}>"


def block_scales_name(mode_struct: str) -> str:
    return f"netdsl::block_scales_kernel<netdsl::{mode_struct}>"


def map_name(x: str, out: str, sign: int) -> str:
    return f"netdsl::map_kernel<{_cxx(x)}, {_cxx(out)}, {sign}>"


def binary_name(x: str, op: int) -> str:
    return f"netdsl::binary_kernel<{_cxx(x)}, {op}>"


def reduce_name(x: str, minimum: bool) -> str:
    return f"netdsl::reduce_kernel<{_cxx(x)}, {'true' if minimum else 'false'}>"


_STRUCTS = tuple(DYNAMIC_MODES.values())

#: kernel file -> every instantiation the launchers use (the CI compile test builds exactly these)
KERNEL_NAMES: dict[str, tuple[str, ...]] = {
    "quantize.cu": tuple(
        [quantize_name(x, q, m) for x in FLOAT_TYPES for q in QUANTIZED_TYPES for m in MAP_MODES]
        + [quantize_dequantize_name(x, q, y, m)
           for x in FLOAT_TYPES for q in QUANTIZED_TYPES for y in FLOAT_TYPES for m in MAP_MODES]
    ),
    "dequantize.cu": tuple(
        [dequantize_name(q, y, m) for q in QUANTIZED_TYPES for y in FLOAT_TYPES for m in MAP_MODES]
        + [dequantize_double_name(q, y, m) for q in QUANTIZED_TYPES for y in FLOAT_TYPES for m in MAP_MODES]
    ),
    "dynamic_quantize.cu": tuple(
        [rows_name(x, mode) for x in FLOAT_TYPES for mode in _STRUCTS]
        + [tile_name(x, mode, rows, column) for x in FLOAT_TYPES for mode in _STRUCTS
           for rows, column in TILE_VARIANTS[mode]]
        + [cta_name(x, mode) for x in FLOAT_TYPES for mode in CTA_MODES]
        + [block_amax_name(x) for x in FLOAT_TYPES]
        + [atomic_amax_name(x, m) for x in FLOAT_TYPES for m in MAP_MODES]
        + [block_scales_name(mode) for mode in _STRUCTS]
    ),
    "recipe.cu": tuple(
        [map_name(x, x, sign) for x in FLOAT_TYPES for sign in UNARY_SIGNS.values()]
        + [map_name(x, y, SIGN_KEEP) for x in FLOAT_TYPES for y in FLOAT_TYPES]
        + [binary_name(x, op) for x in FLOAT_TYPES for op in BINARY_OPS.values()]
        + [reduce_name(x, minimum) for x in FLOAT_TYPES for minimum in (False, True)]
    ),
}
