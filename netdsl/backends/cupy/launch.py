"""Low-level CUDA launch layer: device tensors and the Quantize / Dequantize / DynamicQuantize kernels.

The kernels live in ``kernels/*.cu`` (shipped as ``netdsl/kernels`` in the wheel) and share the number
formats of ``kernels/formats.cuh``, the CUDA twin of :mod:`netdsl.dtypes`. Each ``.cu`` file is compiled
once per process by one cached loader (NVRTC through CuPy, cubins kept on disk), with every template
instantiation the launchers below use (:data:`KERNEL_NAMES`). CuPy is imported lazily: this module
imports without it.

Granularity arrives pre-normalised as a full-rank ``block``: ``scale`` has x's rank and shape
``ceil(x.shape[i] / block[i])``, and element ``x[i0, ..., in]`` uses ``scale[i0 // block0, ..., in // blockn]``.
Numerics are SEMANTICS.md's, bit for bit; storage on the device is described by :class:`DeviceTensor`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netdsl import dtypes

# --------------------------------------------------------------------------------------------------
# Device tensors


@dataclass(frozen=True)
class DeviceTensor:
    """A tensor on the GPU.

    ``data`` is 1-D raw storage: float32 / float16 as themselves, bfloat16 as uint16 bits, int8 / fp8 /
    e8m0 one uint8 byte each, int4 / fp4 packed two per byte (the flattened row-major tensor, element
    2k in the low nibble of byte k, the last byte's high nibble 0 when the count is odd).
    """

    dtype: dtypes.DType
    shape: tuple[int, ...]
    data: Any  # cupy.ndarray

    @property
    def size(self) -> int:
        return math.prod(self.shape)


_RAW_STORAGE = {
    "float32": np.float32,
    "float16": np.float16,
    "bfloat16": np.uint16,
    "int8": np.uint8,
    "fp8": np.uint8,
    "e8m0": np.uint8,
    "int4": np.uint8,
    "fp4": np.uint8,
}


def _storage_length(dtype: dtypes.DType, count: int) -> int:
    return (count + 1) // 2 if dtype.bits == 4 else count


@functools.cache
def _cupy() -> Any:
    import cupy

    return cupy


_AVAILABLE: tuple[bool, str] | None = None  # a positive answer, kept: Network.run asks on every call


def available() -> tuple[bool, str]:
    """(True, "") when CuPy is installed and sees a CUDA device, else (False, the reason). A positive
    answer is remembered for the process; a negative one is asked again next time."""
    global _AVAILABLE
    if _AVAILABLE is not None:
        return _AVAILABLE
    try:
        cupy = _cupy()
    except ImportError:
        return False, "CuPy not installed"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as error:
        return False, f"no CUDA device ({error})"
    if count == 0:
        return False, "no CUDA device"
    _AVAILABLE = (True, "")
    return _AVAILABLE


def empty(dtype: dtypes.DType, shape: tuple[int, ...]) -> DeviceTensor:
    """An uninitialised device tensor."""
    cupy = _cupy()
    shape = tuple(int(d) for d in shape)
    length = _storage_length(dtype, math.prod(shape))
    return DeviceTensor(dtype, shape, cupy.empty(length, dtype=_RAW_STORAGE[dtype.name]))


def upload(array: np.ndarray, dtype: dtypes.DType) -> DeviceTensor:
    """Copy a one-element-per-value ``dtype.storage`` array (ml_dtypes) to the device."""
    array = np.asarray(array)
    if array.dtype != dtype.storage:
        raise TypeError(f"upload: a {dtype} tensor needs {dtype.storage} storage, got {array.dtype}")
    if dtype.bits == 4:
        raw = dtypes.pack_nibbles(dtypes.to_codes(array, dtype))
    else:
        raw = np.ascontiguousarray(array).reshape(-1).view(_RAW_STORAGE[dtype.name])
    return DeviceTensor(dtype, tuple(array.shape), _cupy().asarray(raw))


def download(t: DeviceTensor) -> np.ndarray:
    """The tensor back on the host as a one-element-per-value ``dtype.storage`` array."""
    raw = _cupy().asnumpy(t.data)
    if t.dtype.bits == 4:
        return dtypes.from_codes(dtypes.unpack_nibbles(raw, t.size), t.dtype).reshape(t.shape)
    return raw.view(t.dtype.storage).reshape(t.shape)


# --------------------------------------------------------------------------------------------------
# Kernel names (the template instantiations) and the one cached loader

FLOAT_TYPES = tuple(t.name for t in dtypes.FLOAT_TYPES)
QUANTIZED_TYPES = tuple(t.name for t in dtypes.QUANTIZED_TYPES)
DEQUANTIZE_SCALE_TYPES = (*FLOAT_TYPES, "e8m0")

#: ScaleKind in kernels/common.cuh: the scale's element type is a run-time kernel argument
SCALE_KINDS = {"float32": 0, "float16": 1, "bfloat16": 2, "e8m0": 3}

# MapMode in kernels/common.cuh
PER_TENSOR, CHUNK, GENERAL = 0, 1, 2
_MAP_MODES = (PER_TENSOR, CHUNK, GENERAL)
_CHUNK = 16  # elements per chunk (one thread's unit of work)

#: (output_type, scale_type) -> the DynamicQuantize mode struct in dynamic_quantize.cu
DYNAMIC_MODES = {
    ("fp4", "fp8"): "NVFP4",
    ("fp8", "e8m0"): "MXFP8",
    ("fp8", "float32"): "FloatFP8",
    ("int8", "float32"): "FloatInt8",
}


def _cxx(type_name: str) -> str:
    return f"netdsl::type::{type_name}"


def _quantize_name(x: str, q: str, mode: int) -> str:
    return f"netdsl::quantize_kernel<{_cxx(x)}, {_cxx(q)}, {mode}>"


def _quantize_dequantize_name(x: str, q: str, out: str, mode: int) -> str:
    return f"netdsl::quantize_dequantize_kernel<{_cxx(x)}, {_cxx(q)}, {_cxx(out)}, {mode}>"


def _dequantize_name(q: str, out: str, mode: int) -> str:
    return f"netdsl::dequantize_kernel<{_cxx(q)}, {_cxx(out)}, {mode}>"


def _dequantize_double_name(q: str, out: str, mode: int) -> str:
    return f"netdsl::dequantize_double_kernel<{_cxx(q)}, {_cxx(out)}, {mode}>"


def _rows_name(x: str, mode_struct: str) -> str:
    return f"netdsl::dynamic_quantize_rows_kernel<{_cxx(x)}, netdsl::{mode_struct}>"


def _tile_name(x: str, mode_struct: str, rows: int, per_column: bool) -> str:
    column = "true" if per_column else "false"
    return f"netdsl::dynamic_quantize_tile_kernel<{_cxx(x)}, netdsl::{mode_struct}, {rows}, {column}>"


def _cta_name(x: str, mode_struct: str) -> str:
    return f"netdsl::dynamic_quantize_cta_kernel<{_cxx(x)}, netdsl::{mode_struct}>"


#: the DynamicQuantize modes whose blocks can be large enough for the one-block-per-CTA kernel
_CTA_MODES = ("FloatFP8", "FloatInt8")

#: the tile kernel's (rows per band, per-column) instantiations per DynamicQuantize mode: NVFP4 and
#: MXFP8 block one dimension (16 and 32 rows, a scale per column); float scales any block
_TILE_VARIANTS = {
    "NVFP4": ((16, True),),
    "MXFP8": ((32, True),),
    "FloatFP8": ((16, True), (16, False), (32, True), (32, False)),
    "FloatInt8": ((16, True), (16, False), (32, True), (32, False)),
}

#: CodeKind in kernels/dequantize.cu: the type of the scale codes in a fused Dequantize chain
CODE_KINDS = {"int8": 0, "int4": 1, "fp8": 2, "fp4": 3}


def _block_amax_name(x: str) -> str:
    return f"netdsl::block_amax_kernel<{_cxx(x)}>"


def _atomic_amax_name(x: str, mode: int) -> str:
    return f"netdsl::atomic_amax_kernel<{_cxx(x)}, {mode}>"


def _block_scales_name(mode_struct: str) -> str:
    return f"netdsl::block_scales_kernel<netdsl::{mode_struct}>"


#: kernel file -> every instantiation the launchers use (the CI compile test builds exactly these)
KERNEL_NAMES: dict[str, tuple[str, ...]] = {
    "quantize.cu": tuple(
        [_quantize_name(x, q, m) for x in FLOAT_TYPES for q in QUANTIZED_TYPES for m in _MAP_MODES]
        + [_quantize_dequantize_name(x, q, y, m)
           for x in FLOAT_TYPES for q in QUANTIZED_TYPES for y in FLOAT_TYPES for m in _MAP_MODES]
    ),
    "dequantize.cu": tuple(
        [_dequantize_name(q, y, m) for q in QUANTIZED_TYPES for y in FLOAT_TYPES for m in _MAP_MODES]
        + [_dequantize_double_name(q, y, m) for q in QUANTIZED_TYPES for y in FLOAT_TYPES for m in _MAP_MODES]
    ),
    "dynamic_quantize.cu": tuple(
        [_rows_name(x, mode) for x in FLOAT_TYPES for mode in DYNAMIC_MODES.values()]
        + [_tile_name(x, mode, rows, column) for x in FLOAT_TYPES for mode in DYNAMIC_MODES.values()
           for rows, column in _TILE_VARIANTS[mode]]
        + [_cta_name(x, mode) for x in FLOAT_TYPES for mode in _CTA_MODES]
        + [_block_amax_name(x) for x in FLOAT_TYPES]
        + [_atomic_amax_name(x, m) for x in FLOAT_TYPES for m in _MAP_MODES]
        + [_block_scales_name(mode) for mode in DYNAMIC_MODES.values()]
    ),
}

#: NVRTC (and nvcc) options: IEEE division, subnormals kept, no contraction of a*b+c into an FMA.
COMPILE_OPTIONS = ("-std=c++17", "--fmad=false", "--ftz=false", "--prec-div=true", "--prec-sqrt=true")


def _compile_options() -> tuple[str, ...]:
    """COMPILE_OPTIONS plus ``-D`` for each word of $NETDSL_CUDA_DEFINES (tuning knobs such as
    NETDSL_MIN_CTAS_PER_SM=3; see benchmarks/bench_gpu.py --defines)."""
    return COMPILE_OPTIONS + tuple(f"-D{word}" for word in os.environ.get("NETDSL_CUDA_DEFINES", "").split())


def kernels_dir() -> Path:
    """``netdsl/kernels`` in an installed wheel, else ``<repo>/kernels`` in a source checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "kernels", package.parent / "kernels"):
        if (candidate / "formats.cuh").is_file():
            return candidate
    raise FileNotFoundError(f"netdsl kernels not found beside {package}")


_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.MULTILINE)
_PRAGMA_ONCE = re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+once[ \t]*$", re.MULTILINE)


def kernel_source(file: str) -> str:
    """The text of ``kernels/<file>`` with its local headers inlined, each once.

    Inlining (rather than ``-I``) makes the key of the on-disk kernel cache (the source's hash) cover
    the headers too.
    """
    directory = kernels_dir()
    seen: set[str] = set()

    def expand(name: str) -> str:
        text = _PRAGMA_ONCE.sub("", (directory / name).read_text())

        def include(match: re.Match[str]) -> str:
            header = match.group(1)
            if header in seen:
                return ""
            seen.add(header)
            return expand(header)

        return _INCLUDE.sub(include, text)

    return expand(file)


@dataclass(frozen=True)
class _Module:
    module: Any  # cupy.cuda.function.Module
    mangled: dict[str, str]  # name expression -> lowered (mangled) name

    def function(self, name: str) -> Any:
        return self.module.get_function(self.mangled[name])


def _cache_dir() -> Path:
    configured = os.environ.get("NETDSL_KERNEL_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "netdsl" / "kernels"


#: kernels per NVRTC program: a file's instantiations compile in parts, which precompile() builds in
#: parallel processes (quantize.cu alone holds 144)
_PART_SIZE = 24


@functools.cache
def _parts(file: str) -> tuple[tuple[str, ...], ...]:
    names = KERNEL_NAMES[file]
    return tuple(names[i:i + _PART_SIZE] for i in range(0, len(names), _PART_SIZE))


@functools.cache
def _part_of(file: str) -> dict[str, int]:
    return {name: index for index, part in enumerate(_parts(file)) for name in part}


def _cache_paths(file: str, part: int, device: int) -> tuple[Path, Path]:
    """Where the cubin of kernels/<file>, part ``part``, for ``device`` and its name map are kept: keyed
    by source, options, instantiations, NVRTC version and architecture."""
    cupy = _cupy()
    from cupy.cuda import nvrtc

    arch = cupy.cuda.Device(device).compute_capability
    fingerprint = [kernel_source(file), *_compile_options(), *_parts(file)[part], arch, repr(nvrtc.getVersion()),
                   cupy.__version__]
    key = hashlib.sha256("\0".join(fingerprint).encode()).hexdigest()[:32]
    cubin_path = _cache_dir() / f"{file}-{part}-{key}.cubin"
    return cubin_path, cubin_path.with_suffix(".json")


@functools.cache
def _module(file: str, part: int, device: int) -> _Module:
    """kernels/<file> compiled by NVRTC for ``device`` with the names of part ``part`` of
    KERNEL_NAMES[file], once per process and device, the cubin kept on disk (_cache_paths).

    Not cupy.RawModule: CuPy appends ``-ftz=true`` to every RawModule/RawKernel compilation, which
    flushes float32 subnormals (e8m0's 2^-127, fp8 and fp4 decoding, tiny scales) and breaks the
    numerics. cupy.cuda.compiler.compile_using_nvrtc passes our options as they are.
    """
    from cupy.cuda import compiler, driver, function

    with _cupy().cuda.Device(device):
        cubin_path, names_path = _cache_paths(file, part, device)
        try:
            mangled = json.loads(names_path.read_text())
            module = function.Module()
            module.load(cubin_path.read_bytes())
        except (OSError, ValueError, driver.CUDADriverError):
            image, mangled = compiler.compile_using_nvrtc(kernel_source(file), _compile_options(),
                                                          name_expressions=_parts(file)[part], filename=file)
            image = image if isinstance(image, bytes) else image.encode()
            module = function.Module()
            module.load(image)
            _write_atomically(cubin_path, image)
            _write_atomically(names_path, json.dumps(mangled).encode())
    return _Module(module, mangled)


def precompile(device: int | None = None) -> int:
    """Build every kernel part missing from the disk cache, in parallel processes (one per part);
    returns how many were built. Runs before a test suite or a benchmark so that the first launch of a
    kernel does not pay for compiling its whole file."""
    import subprocess
    import sys

    device = _device() if device is None else device
    missing = [(file, part) for file in KERNEL_NAMES for part in range(len(_parts(file)))
               if not all(path.is_file() for path in _cache_paths(file, part, device))]
    code = "import sys; from netdsl.backends import cuda; cuda._module(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                     os.environ.get("PYTHONPATH", "")])))
    jobs = [subprocess.Popen([sys.executable, "-c", code, file, str(part), str(device)], env=env)
            for file, part in missing]
    for job in jobs:
        job.wait()
    return len(missing)


def _write_atomically(path: Path, data: bytes) -> None:
    """Best effort: a cache that cannot be written only costs a recompilation next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError:
        pass


_functions: dict[tuple[str, str, int], Any] = {}


_get_device: Callable[[], int] | None = None  # cupy.cuda.runtime.getDevice, bound on first use


def _device() -> int:
    """The current CUDA device's ordinal (cheaper than cupy.cuda.Device().id)."""
    global _get_device
    if _get_device is None:
        _get_device = _cupy().cuda.runtime.getDevice
    return int(_get_device())


def _kernel(file: str, name: str, device: int | None = None) -> Any:
    """The kernel function ``name`` of kernels/<file> on ``device`` (default: the current one), cached."""
    device = _device() if device is None else device
    key = (file, name, device)
    function = _functions.get(key)
    if function is None:
        function = _functions[key] = _module(file, _part_of(file)[name], device).function(name)
    return function


@functools.cache
def _multiprocessors(device: int) -> int:
    return int(_cupy().cuda.Device(device).attributes["MultiProcessorCount"])


_THREADS = 256  # kThreads in common.cuh
_BLOCK = (_THREADS,)
_CTAS_PER_SM = 8  # 2048 resident threads per SM on sm_90


def _tuning(name: str, default: int) -> int:
    """A kernel tuning macro's value as NETDSL_CUDA_DEFINES sets it for the kernels, else its default."""
    for word in os.environ.get("NETDSL_CUDA_DEFINES", "").split():
        key, _, value = word.partition("=")
        if key == name:
            return int(value)
    return default


_TILE_CTAS_PER_SM = _tuning("NETDSL_TILE_CTAS", 2)  # __launch_bounds__ of the tile kernel (2: up to 128 registers)
_TILE16_BF16_VEC = _tuning("NETDSL_TILE16_BF16_VEC", 4)


def _grid(work_items: int, device: int, ctas_per_sm: int = _CTAS_PER_SM) -> tuple[int]:
    """One thread per work item, at most a full machine's worth of CTAs (the kernels grid-stride)."""
    return (max(1, min(-(-work_items // _THREADS), _multiprocessors(device) * ctas_per_sm)),)


def _launch(file: str, name: str, work_items: int, args: tuple[Any, ...], ctas_per_sm: int = _CTAS_PER_SM) -> None:
    if work_items <= 0:
        return
    device = _device()
    _kernel(file, name, device)(_grid(work_items, device, ctas_per_sm), (_THREADS,), args)


# --------------------------------------------------------------------------------------------------
# Block geometry: collapsing dimensions, and the scale-index map the kernels read


def _fast_div(d: int) -> tuple[int, int, int]:
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


@dataclass(frozen=True)
class _ScaleIndexing:
    mode: int  # PER_TENSOR, CHUNK or GENERAL
    chunk_step: int  # CHUNK: 0 = one scale per chunk, 1 = 16 consecutive scales
    words: tuple[int, ...]  # ScaleMap in common.cuh
    dims: tuple[tuple[int, int], ...]


_MAX_DIMS = 8  # kMaxDims in common.cuh


@functools.cache
def _scale_indexing(shape: tuple[int, ...], block: tuple[int, ...]) -> _ScaleIndexing:
    dims = collapse(shape, block)
    if len(dims) > _MAX_DIMS:
        raise ValueError(f"more than {_MAX_DIMS} dimensions after collapsing: {shape} in blocks {block}")
    counts = [-(-d // b) for d, b in dims]
    strides = [math.prod(counts[i + 1 :]) for i in range(len(dims))]
    words = [len(dims)]
    for i in range(_MAX_DIMS):
        extent, blk, stride = (dims[i][0], dims[i][1], strides[i]) if i < len(dims) else (1, 1, 0)
        words += [*_fast_div(extent), *_fast_div(blk), stride]
    last_extent, last_block = dims[-1]
    if len(dims) == 1 and last_block == last_extent:
        mode, step = PER_TENSOR, 0
    elif last_extent % _CHUNK == 0 and last_block % _CHUNK == 0:
        mode, step = CHUNK, 0
    elif last_extent % _CHUNK == 0 and last_block == 1:
        mode, step = CHUNK, 1
    else:
        mode, step = GENERAL, 0
    return _ScaleIndexing(mode, step, tuple(words), tuple(dims))


_device_words_cache: dict[tuple[int, tuple[int, ...]], Any] = {}


def _device_words(words: tuple[int, ...]) -> Any:
    """A small uint32 table on the current device (cached: the same geometry is reused call after call)."""
    cupy = _cupy()
    key = (_device(), words)
    table = _device_words_cache.get(key)
    if table is None:
        table = cupy.asarray(np.array(words, dtype=np.uint32))
        _device_words_cache[key] = table
    return table


def _check_block(x: DeviceTensor, scale: DeviceTensor, block: tuple[int, ...]) -> tuple[int, ...]:
    block = tuple(int(b) for b in block)
    if len(block) != len(x.shape) or any(b < 1 for b in block):
        raise ValueError(f"block {block} does not fit a tensor of shape {x.shape}")
    expected = tuple(-(-d // b) if d else 0 for d, b in zip(x.shape, block))
    if tuple(scale.shape) != expected:
        raise ValueError(f"scale shape {scale.shape} != {expected} for shape {x.shape} in blocks {block}")
    return block


def _scale_kind(scale: DeviceTensor) -> np.uint32:
    return np.uint32(SCALE_KINDS[scale.dtype.name])


def _check_type(what: str, dtype: dtypes.DType, allowed: tuple[str, ...]) -> None:
    if dtype.name not in allowed:
        raise TypeError(f"{what} must be one of {', '.join(allowed)}, got {dtype}")


# --------------------------------------------------------------------------------------------------
# Prepared launches: everything about a call that its types, shapes and device fix (checks, kernel
# handle, grid, scale-index table, scalar arguments) is worked out once and kept, so that a repeated
# call costs a dictionary lookup, one output allocation and the launch (the executor's per-layer host
# overhead; benchmarks/bench_gpu.py measures it).


@dataclass(frozen=True)
class _Prepared:
    function: Any  # None when there is nothing to launch (an empty tensor)
    grid: tuple[int]
    out_dtype: dtypes.DType
    out_shape: tuple[int, ...]
    out_length: int  # storage elements
    static: tuple[Any, ...]  # the launcher's fixed arguments (scale kinds, index table, counts)

    @functools.cached_property
    def storage(self) -> np.dtype:
        return np.dtype(_RAW_STORAGE[self.out_dtype.name])

    @functools.cached_property
    def _empty(self) -> Callable[[], Any]:
        return functools.partial(_cupy().ndarray, (self.out_length,), self.storage)  # cupy.empty, one call less

    def run(self, head: tuple[Any, ...], tail: tuple[Any, ...]) -> DeviceTensor:
        data = self._empty()
        if self.function is not None:
            self.function(self.grid, _BLOCK, (*head, data, *tail))
        return DeviceTensor(self.out_dtype, self.out_shape, data)


_prepared: dict[tuple[Any, ...], Any] = {}


def _tuple(block: Any) -> tuple[int, ...]:
    return block if type(block) is tuple else tuple(block)
_PREPARED_LIMIT = 4096  # distinct (op, types, shapes, device) kept; the table starts again beyond


def _remember(key: tuple[Any, ...], value: Any) -> Any:
    if len(_prepared) >= _PREPARED_LIMIT:
        _prepared.clear()
    _prepared[key] = value
    return value


def _elementwise(file: str, name: Callable[[int], str], shape: tuple[int, ...], block: tuple[int, ...],
                 out_dtype: dtypes.DType, device: int, kinds: tuple[int, ...]) -> _Prepared:
    """An elementwise launch (quantize.cu / dequantize.cu driver): static = (*kinds, map, n, step)."""
    n = math.prod(shape)
    length = _storage_length(out_dtype, n)
    if n == 0:
        return _Prepared(None, (1,), out_dtype, shape, length, ())
    indexing = _scale_indexing(shape, block)
    static = (*(np.uint32(k) for k in kinds), _device_words(indexing.words), np.uint32(n),
              np.uint32(indexing.chunk_step))
    return _Prepared(_kernel(file, name(indexing.mode), device), _grid(-(-n // _CHUNK), device),
                     out_dtype, shape, length, static)


# --------------------------------------------------------------------------------------------------
# The ops


def quantize(x: DeviceTensor, scale: DeviceTensor, block: tuple[int, ...], to_type: dtypes.DType) -> DeviceTensor:
    """q = saturate(round_half_even(x / scale)) in ``to_type`` (int8, int4, fp8, fp4).

    x: float32/float16/bfloat16; scale: float32/float16/bfloat16, widened exactly; the division is
    IEEE float32 (SEMANTICS.md, "Quantize"). A zero scale gives +0 data (only DynamicQuantize's
    effective scales are ever 0).
    """
    device = _device()
    key = ("quantize", x.dtype.name, x.shape, scale.dtype.name, scale.shape, _tuple(block), to_type.name, device)
    prep = _prepared.get(key)
    if prep is None:
        _check_type("quantize input", x.dtype, FLOAT_TYPES)
        _check_type("quantize scale", scale.dtype, FLOAT_TYPES)
        _check_type("quantize to_type", to_type, QUANTIZED_TYPES)
        block = _check_block(x, scale, block)
        name = functools.partial(_quantize_name, x.dtype.name, to_type.name)
        prep = _remember(key, _elementwise("quantize.cu", name, x.shape, block, to_type, device,
                                           (SCALE_KINDS[scale.dtype.name],)))
    kind, words, n, step = prep.static or (None,) * 4
    return prep.run((x.data, scale.data, kind, words), (n, step))


def dequantize(q: DeviceTensor, scale: DeviceTensor, block: tuple[int, ...], to_type: dtypes.DType) -> DeviceTensor:
    """y = round_to(to_type, fl32(float32(q) * scale)) (SEMANTICS.md, "Dequantize").

    q: int8/int4/fp8/fp4; scale: float32/float16/bfloat16 or e8m0; to_type: float32/float16/bfloat16.
    """
    device = _device()
    key = ("dequantize", q.dtype.name, q.shape, scale.dtype.name, scale.shape, _tuple(block), to_type.name, device)
    prep = _prepared.get(key)
    if prep is None:
        _check_type("dequantize input", q.dtype, QUANTIZED_TYPES)
        _check_type("dequantize scale", scale.dtype, DEQUANTIZE_SCALE_TYPES)
        _check_type("dequantize to_type", to_type, FLOAT_TYPES)
        block = _check_block(q, scale, block)
        name = functools.partial(_dequantize_name, q.dtype.name, to_type.name)
        prep = _remember(key, _elementwise("dequantize.cu", name, q.shape, block, to_type, device,
                                           (SCALE_KINDS[scale.dtype.name],)))
    kind, words, n, step = prep.static or (None,) * 4
    return prep.run((q.data, scale.data, kind, words), (n, step))


def quantize_dequantize(
    x: DeviceTensor,
    scale: DeviceTensor,
    block: tuple[int, ...],
    quant_type: dtypes.DType,
    dequant_scale: DeviceTensor | None = None,
    to_type: dtypes.DType | None = None,
) -> DeviceTensor:
    """Dequantize(Quantize(x, scale, quant_type), dequant_scale, to_type) in one pass, q never stored.

    The same bits as the two ops run one after the other. ``dequant_scale`` (default: ``scale``) has
    the shape of ``scale`` (a Q -> DQ pair over the same block geometry) and any Dequantize scale type
    (float32/float16/bfloat16/e8m0); ``to_type`` defaults to x's type.
    """
    dequant_scale = scale if dequant_scale is None else dequant_scale
    to_type = x.dtype if to_type is None else to_type
    device = _device()
    key = ("quantize_dequantize", x.dtype.name, x.shape, scale.dtype.name, scale.shape, _tuple(block), quant_type.name,
           dequant_scale.dtype.name, dequant_scale.shape, to_type.name, device)
    prep = _prepared.get(key)
    if prep is None:
        _check_type("quantize_dequantize input", x.dtype, FLOAT_TYPES)
        _check_type("quantize_dequantize scale", scale.dtype, FLOAT_TYPES)
        _check_type("quantize_dequantize quant_type", quant_type, QUANTIZED_TYPES)
        _check_type("quantize_dequantize dequant_scale", dequant_scale.dtype, DEQUANTIZE_SCALE_TYPES)
        _check_type("quantize_dequantize to_type", to_type, FLOAT_TYPES)
        block = _check_block(x, scale, block)
        if tuple(dequant_scale.shape) != tuple(scale.shape):
            raise ValueError("quantize_dequantize: dequant_scale must have scale's shape")
        name = functools.partial(_quantize_dequantize_name, x.dtype.name, quant_type.name, to_type.name)
        prep = _remember(key, _elementwise("quantize.cu", name, x.shape, block, to_type, device,
                                           (SCALE_KINDS[scale.dtype.name], SCALE_KINDS[dequant_scale.dtype.name])))
    kind, dequant_kind, words, n, step = prep.static or (None,) * 5
    return prep.run((x.data, scale.data, kind, dequant_scale.data, dequant_kind, words), (n, step))


def dequantize_double(
    q: DeviceTensor,
    codes: DeviceTensor,
    codes_scale: DeviceTensor,
    block: tuple[int, ...],
    scale_type: dtypes.DType,
    to_type: dtypes.DType,
) -> DeviceTensor:
    """Dequantize(q, Dequantize(codes, codes_scale, scale_type), to_type) in one pass (the NVFP4 chain).

    ``codes`` (int8/int4/fp8/fp4) has the block-scale shape of q in ``block``; ``codes_scale`` is one
    element (per-tensor: the double-quantization scale, float32/float16/bfloat16/e8m0). Per block,
    S = round_to(scale_type, fl32(decode(code) * codes_scale)), exactly what the first Dequantize stores;
    y = round_to(to_type, fl32(float32(q) * S)). The intermediate is never materialised.
    """
    device = _device()
    key = ("dequantize_double", q.dtype.name, q.shape, codes.dtype.name, codes.shape, codes_scale.dtype.name,
           codes_scale.shape, _tuple(block), scale_type.name, to_type.name, device)
    prep = _prepared.get(key)
    if prep is None:
        _check_type("dequantize_double input", q.dtype, QUANTIZED_TYPES)
        _check_type("dequantize_double codes", codes.dtype, QUANTIZED_TYPES)
        _check_type("dequantize_double codes_scale", codes_scale.dtype, DEQUANTIZE_SCALE_TYPES)
        _check_type("dequantize_double scale_type", scale_type, FLOAT_TYPES)
        _check_type("dequantize_double to_type", to_type, FLOAT_TYPES)
        block = _check_block(q, codes, block)
        if codes_scale.size != 1:
            raise ValueError("dequantize_double: codes_scale must be per-tensor (one element)")
        name = functools.partial(_dequantize_double_name, q.dtype.name, to_type.name)
        kinds = (CODE_KINDS[codes.dtype.name], SCALE_KINDS[codes_scale.dtype.name], SCALE_KINDS[scale_type.name])
        prep = _remember(key, _elementwise("dequantize.cu", name, q.shape, block, to_type, device, kinds))
    code_kind, dqs_kind, sf_kind, words, n, step = prep.static or (None,) * 6
    return prep.run((q.data, codes.data, code_kind, codes_scale.data, dqs_kind, sf_kind, words), (n, step))


_MAX_ROW_BLOCK = 16 * 32  # the fused DynamicQuantize kernel's largest block: 32 lanes of 16 elements
_MAX_BLOCK_LOOP = 1024  # larger general blocks take the atomic amax pass
_MAX_TILE_ROWS = 32  # the tile kernel's longest column block


@dataclass(frozen=True)
class _DynamicPlan:
    """How one DynamicQuantize geometry runs: 'rows' (the fused kernel, blocks along the row), 'tile'
    (the fused kernel for blocks down the columns), 'cta' (one large block per CTA, fused) or 'general'
    (block amax, block scales, Quantize)."""

    path: str
    scale_shape: tuple[int, ...]
    grid: tuple[int]
    function: Any = None  # rows / tile / cta
    args: tuple[Any, ...] = ()  # rows / tile / cta: the arguments after (x, data, scale)
    general: tuple[Any, ...] = ()  # general: (amax kind, amax function, amax grid, amax static, nblocks)


def _tile_vec(in_type: dtypes.DType, kernel_rows: int) -> int:
    """Columns per thread of the tile kernel (TileShape in kernels/dynamic_quantize.cu)."""
    if kernel_rows == 16:
        return _TILE16_BF16_VEC if in_type.name == "bfloat16" else 4
    return 2


def _tile_geometry(dims: tuple[tuple[int, int], ...], mode: str, in_type: dtypes.DType) -> tuple[int, bool, int] | None:
    """(rows per band kernel, per-column, lanes_shift) when the tile kernel takes this geometry."""
    if len(dims) != 2:
        return None
    (rows, block_rows), (cols, block_cols) = dims
    if not 2 <= block_rows <= _MAX_TILE_ROWS:
        return None
    options = [r for r, _ in _TILE_VARIANTS[mode] if block_rows <= r]
    if not options:
        return None
    kernel_rows = min(options)
    vec = _tile_vec(in_type, kernel_rows)
    if cols % vec:
        return None
    if block_cols == 1 and (kernel_rows, True) in _TILE_VARIANTS[mode]:
        return kernel_rows, True, 0
    lanes = block_cols // vec
    if (block_cols % vec == 0 and lanes & (lanes - 1) == 0 and lanes <= 32 and cols % block_cols == 0
            and (kernel_rows, False) in _TILE_VARIANTS[mode]):
        return kernel_rows, False, lanes.bit_length() - 1
    return None


def _cta_geometry(dims: tuple[tuple[int, int], ...], mode: str, in_type: dtypes.DType) -> tuple[int, ...] | None:
    """(rows, cols, block_rows, block_cols, tpr_shift, group) when the block kernel takes this geometry
    (CtaShape in kernels/dynamic_quantize.cu): 16-byte vectors across a block row, 2^tpr_shift threads
    each, at most 64 elements per thread, and at least half the CTA busy."""
    if mode not in _CTA_MODES or len(dims) not in (1, 2):
        return None
    vec = 16 // in_type.storage.itemsize
    if len(dims) == 1:  # a 1-D block longer than a CTA's row of vectors folds into rows of _THREADS vectors
        (extent, blk), width = dims[0], _THREADS * vec
        dims = ((extent // width, blk // width), (width, width)) if blk >= width and extent % width == 0 \
            and blk % width == 0 else ((1, 1), (extent, blk))
    (rows, block_rows), (cols, block_cols) = dims
    if cols % vec or block_cols % vec:
        return None
    across = block_cols // vec
    if across & (across - 1) or across > _THREADS:
        return None
    down, passes = _THREADS // across, 64 // vec
    block_passes = -(-block_rows // down)
    if block_passes > passes or across * min(down, block_rows) < _THREADS // 2:
        return None
    # small blocks: a CTA takes several at once, stacked down the rows (each pass inside one block)
    group = min(passes // block_passes, -(-rows // block_rows)) if block_rows % down == 0 else 1
    return rows, cols, block_rows, block_cols, across.bit_length() - 1, group


_CTA_CTAS_PER_SM = 2  # CtaShape::kCtasPerSm


def _dynamic_plan(x: DeviceTensor, block: tuple[int, ...], mode: str, device: int) -> _DynamicPlan:
    scale_shape = tuple(-(-d // b) if d else 0 for d, b in zip(x.shape, block))
    n = x.size
    if n == 0:
        return _DynamicPlan("empty", scale_shape, (1,))
    indexing = _scale_indexing(x.shape, block)
    (extent, blk), *inner = indexing.dims[::-1]
    row_block = not inner and blk % _CHUNK == 0 and blk <= _MAX_ROW_BLOCK and extent % blk == 0
    if row_block and (blk // _CHUNK) & (blk // _CHUNK - 1) == 0:
        lanes_shift = (blk // _CHUNK).bit_length() - 1
        return _DynamicPlan("rows", scale_shape, _grid(-(-n // _CHUNK), device),
                            _kernel("dynamic_quantize.cu", _rows_name(x.dtype.name, mode), device),
                            (np.uint32(n), np.uint32(lanes_shift)))
    tile = _tile_geometry(indexing.dims, mode, x.dtype)
    if tile is not None and x.data.data.ptr % 16 == 0:
        kernel_rows, per_column, lanes_shift = tile
        (rows, block_rows), (cols, _) = indexing.dims
        items = -(-rows // block_rows) * (cols // _tile_vec(x.dtype, kernel_rows))
        tile_name = _tile_name(x.dtype.name, mode, kernel_rows, per_column)
        return _DynamicPlan("tile", scale_shape, _grid(items, device, _TILE_CTAS_PER_SM),
                            _kernel("dynamic_quantize.cu", tile_name, device),
                            (np.uint32(rows), np.uint32(cols), np.uint32(block_rows), np.uint32(lanes_shift)))
    nblocks = math.prod(scale_shape)
    cta = _cta_geometry(indexing.dims, mode, x.dtype)
    if cta is not None and x.data.data.ptr % 16 == 0:
        rows, cols, block_rows, block_cols, _, group = cta
        bands = -(-rows // block_rows)
        items = -(-bands // group) * -(-cols // block_cols)
        grid = _grid(items * _THREADS, device, _CTA_CTAS_PER_SM)
        function = _kernel("dynamic_quantize.cu", _cta_name(x.dtype.name, mode), device)
        return _DynamicPlan("cta", scale_shape, grid, function, tuple(np.uint32(v) for v in cta))
    dims = list(indexing.dims)
    block_volume = math.prod(b for _, b in dims)
    if len(dims) <= 4 and block_volume <= _MAX_BLOCK_LOOP:
        dims = [(1, 1)] * (4 - len(dims)) + dims
        words = [d for d, _ in dims] + [b for _, b in dims]
        for d, b in dims:
            words += _fast_div(-(-d // b))
        general = ("block", _kernel("dynamic_quantize.cu", _block_amax_name(x.dtype.name), device),
                   _grid(nblocks, device), (_device_words(tuple(words)), np.uint32(nblocks)), nblocks)
    else:
        map_mode = indexing.mode if indexing.chunk_step == 0 else GENERAL
        general = ("atomic", _kernel("dynamic_quantize.cu", _atomic_amax_name(x.dtype.name, map_mode), device),
                   _grid(-(-n // _CHUNK), device), (_device_words(indexing.words), np.uint32(n)), nblocks)
    return _DynamicPlan("general", scale_shape, _grid(nblocks, device),
                        _kernel("dynamic_quantize.cu", _block_scales_name(mode), device), (), general)


def dynamic_quantize(
    x: DeviceTensor,
    block: tuple[int, ...],
    output_type: dtypes.DType,
    scale_type: dtypes.DType,
    double_quant_scale: float | None,
) -> tuple[DeviceTensor, DeviceTensor]:
    """(data, scale) of DynamicQuantize (SEMANTICS.md): block amax (NaN ignored), the mode's scale, data.

    Modes by (output_type, scale_type): (fp4, fp8) NVFP4, needs ``double_quant_scale``; (fp8, e8m0)
    MXFP8, round-up exponent; (fp8 or int8, float32) float scale amax / 448 or amax / 127. Any block
    shape with partial edge blocks; the caller has checked the mode's block rules.
    """
    device = _device()
    block = tuple(block)
    key = ("dynamic_quantize", x.dtype.name, x.shape, block, output_type.name, scale_type.name,
           double_quant_scale is None, device, x.data.data.ptr % 16 == 0 if x.size else True)
    plan = _prepared.get(key)
    if plan is None:
        _check_type("dynamic_quantize input", x.dtype, FLOAT_TYPES)
        mode = DYNAMIC_MODES.get((output_type.name, scale_type.name))
        if mode is None:
            raise TypeError(f"dynamic_quantize: no mode with output {output_type} and scale {scale_type}")
        if (mode == "NVFP4") != (double_quant_scale is not None):
            raise ValueError("dynamic_quantize: double_quant_scale is required for NVFP4 and allowed for no other mode")
        block = tuple(int(b) for b in block)
        if len(block) != len(x.shape) or any(b < 1 for b in block):
            raise ValueError(f"block {block} does not fit a tensor of shape {x.shape}")
        plan = _remember(key, _dynamic_plan(x, block, mode, device))
    cupy = _cupy()
    nscales = math.prod(plan.scale_shape)
    scale = DeviceTensor(scale_type, plan.scale_shape, cupy.empty(nscales, dtype=_RAW_STORAGE[scale_type.name]))
    dqs = np.float32(1.0 if double_quant_scale is None else double_quant_scale)
    if plan.path != "general":
        data = DeviceTensor(output_type, x.shape, cupy.empty(_storage_length(output_type, x.size),
                                                             dtype=_RAW_STORAGE[output_type.name]))
        if plan.function is not None:
            plan.function(plan.grid, (_THREADS,), (x.data, data.data, scale.data, *plan.args, dqs))
        return data, scale
    amax_kind, amax_function, amax_grid, amax_static, nblocks = plan.general
    amax = cupy.empty(nblocks, dtype=np.float32) if amax_kind == "block" else cupy.zeros(nblocks, dtype=np.float32)
    amax_function(amax_grid, (_THREADS,), (x.data, amax_static[0], amax, amax_static[1]))
    effective = DeviceTensor(dtypes.FLOAT32, plan.scale_shape, cupy.empty(nblocks, dtype=np.float32))
    plan.function(plan.grid, (_THREADS,), (amax, scale.data, effective.data, np.uint32(nblocks), dqs))
    return quantize(x, effective, block, output_type), scale
