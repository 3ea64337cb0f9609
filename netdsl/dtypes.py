"""The number formats: names, storage types, and exact encode/decode rules.

Every rule of docs/semantics.md "Number formats" lives here, vectorised in NumPy. The CUDA twin is
``kernels/formats.cuh``. ``ml_dtypes`` supplies the storage types only: its casts into the narrow types
do not follow our rules (fp8 overflow -> NaN, int4 wraps, fp4 NaN -> -0, e8m0 rounds to nearest), so
every encode here builds the codes itself from the float32 bits.

Notes: fp8/fp4 encode of 2^24 float32 values: ~16 ms vs ~115 ms for ``np.clip(x / s, -448, 448)
.astype(ml_dtypes.float8_e4m3fn)`` (~7x; NumPy 2.4, ml_dtypes 0.6, one AMD EPYC core).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DType:
    """One netdsl data type, with every fact about it that some part of netdsl needs.

    name: canonical netdsl name (``float32``, ``float16``, ``bfloat16``, ``int8``, ``int4``, ``fp8``,
    ``fp4``, ``e8m0``); storage_name: the NumPy or ml_dtypes type of one-element-per-value arrays
    (:attr:`storage` is its dtype, ml_dtypes imported on first use); bits: storage bits per value on the GPU
    (4 for int4/fp4); trt_name: TensorRT's DataType name
    (``kFLOAT``, ``kHALF``, ``kBF16``, ``kINT8``, ``kINT4``, ``kFP8``, ``kFP4``, ``kE8M0``);
    save_dtype: the standard NumPy dtype ``--save`` writes its values in (exactly);
    device_storage: the element type of its raw storage on the GPU (4-bit types: a byte holds two);
    int_range: the (least, greatest) value of an integer type, None for the others;
    has_nan: whether it has a NaN;
    scale_kind: its ScaleKind in kernels/common.cuh where a kernel takes it as a scale, else None;
    code_kind: its CodeKind in kernels/dequantize.cu where a fused Dequantize chain takes it as scale
    codes, else None.
    """

    name: str
    storage_name: str
    bits: int
    trt_name: str
    save_dtype: np.dtype
    device_storage: np.dtype
    int_range: tuple[int, int] | None = None
    has_nan: bool = False
    scale_kind: int | None = None
    code_kind: int | None = None

    @property
    def storage(self) -> np.dtype:
        """The dtype of one-element-per-value arrays of this type (ml_dtypes' for the low-precision ones)."""
        return storage_dtype(self.storage_name)

    @property
    def is_float(self) -> bool:
        """float32 / float16 / bfloat16: the types of real-valued activations and scales."""
        return self in FLOAT_TYPES

    @property
    def is_integer(self) -> bool:
        """int8 / int4."""
        return self.int_range is not None

    @property
    def is_quantized(self) -> bool:
        """int8 / int4 / fp8 / fp4 (e8m0 is a scale type, not a quantized data type)."""
        return self in QUANTIZED_TYPES

    def __str__(self) -> str:
        return self.name


@functools.cache
def storage_dtype(name: str) -> np.dtype:
    """The NumPy dtype called ``name``: NumPy's own types (``float32``, ``uint8``, ``bool_``), else the
    ml_dtypes type of that name (``bfloat16``, ``float8_e4m3fn``, ...), ml_dtypes imported on first use: its
    import costs half a second in version 0.7.0 (4 ms in 0.6.0; pyproject.toml, benchmarks/results-cli.md),
    which ``netdsl check`` of a float32/int8 model never pays."""
    numpy_type = getattr(np, name, None)
    if isinstance(numpy_type, type) and issubclass(numpy_type, np.generic):
        return np.dtype(numpy_type)
    import ml_dtypes

    return np.dtype(getattr(ml_dtypes, name))


_F32, _F16, _U16, _I8, _U8 = (np.dtype(t) for t in (np.float32, np.float16, np.uint16, np.int8, np.uint8))

FLOAT32 = DType("float32", "float32", 32, "kFLOAT", save_dtype=_F32, device_storage=_F32, has_nan=True,
                scale_kind=0)
FLOAT16 = DType("float16", "float16", 16, "kHALF", save_dtype=_F16, device_storage=_F16, has_nan=True, scale_kind=1)
BFLOAT16 = DType("bfloat16", "bfloat16", 16, "kBF16", save_dtype=_F32, device_storage=_U16, has_nan=True,
                 scale_kind=2)
INT8 = DType("int8", "int8", 8, "kINT8", save_dtype=_I8, device_storage=_U8, int_range=(-128, 127), code_kind=0)
INT4 = DType("int4", "int4", 4, "kINT4", save_dtype=_I8, device_storage=_U8, int_range=(-8, 7), code_kind=1)
FP8 = DType("fp8", "float8_e4m3fn", 8, "kFP8", save_dtype=_F32, device_storage=_U8, has_nan=True, code_kind=2)
FP4 = DType("fp4", "float4_e2m1fn", 4, "kFP4", save_dtype=_F32, device_storage=_U8, code_kind=3)
E8M0 = DType("e8m0", "float8_e8m0fnu", 8, "kE8M0", save_dtype=_F32, device_storage=_U8, has_nan=True, scale_kind=3)

#: the real-valued types of activations and scales, and the quantized data types (e8m0 is a scale type only)
FLOAT_TYPES = (FLOAT32, FLOAT16, BFLOAT16)
QUANTIZED_TYPES = (INT8, INT4, FP8, FP4)

#: canonical name -> DType
DTYPES: dict[str, DType] = {
    dtype.name: dtype for dtype in (FLOAT32, FLOAT16, BFLOAT16, INT8, INT4, FP8, FP4, E8M0)
}
#: alias -> canonical name: ml_dtypes' names, and the short names of PyTorch, ModelOpt and the papers
#: (docs/language.md, "Types")
ALIASES: dict[str, str] = {
    "float8_e4m3fn": "fp8",
    "float4_e2m1fn": "fp4",
    "float8_e8m0fnu": "e8m0",
    "half": "float16",
    "fp16": "float16",
    "bf16": "bfloat16",
    "fp32": "float32",
    "e4m3": "fp8",
    "e2m1": "fp4",
}


def lookup(name: str) -> DType:
    """The DType for a canonical name or alias; KeyError otherwise."""
    try:
        return DTYPES[ALIASES.get(name, name)]
    except KeyError:
        raise KeyError(f"unknown data type {name!r}; known: {', '.join(sorted(DTYPES))}") from None


_U32 = np.uint32
_SIGN = 0x80000000
_ABS = 0x7FFFFFFF
_INF_BITS = 0x7F800000
_NAN32 = 0x7FC00000


#: the largest buffer :func:`work_buffer` keeps per thread for reuse (elements); larger ones are allocated each time
SCRATCH_LIMIT = 1 << 20

_scratch = threading.local()


def work_buffer(name: str, size: int, dtype: type | np.dtype) -> np.ndarray:
    """A 1-D ``dtype`` buffer of ``size`` elements, contents undefined, reused by the calling thread.

    Buffers up to :data:`SCRATCH_LIMIT` elements are kept per thread and per ``name``: a hot loop over
    cache-sized pieces then neither allocates nor page-faults. A caller must not hold one across a call
    that may ask for the same ``name``.
    """
    if size > SCRATCH_LIMIT:
        return np.empty(size, dtype)
    buffers: dict[tuple[str, np.dtype], np.ndarray] | None = getattr(_scratch, "buffers", None)
    if buffers is None:
        buffers = _scratch.buffers = {}
    key = (name, np.dtype(dtype))
    buffer = buffers.get(key)
    if buffer is None or buffer.size < size:
        buffer = buffers[key] = np.empty(max(size, 1 << 16), dtype)
    return buffer[:size]


def _flat_float32(values: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Contiguous 1-D float32 copy or view of ``values``, and their shape."""
    x = np.asarray(values, dtype=np.float32)
    return np.ascontiguousarray(x.reshape(-1)), x.shape


@dataclass(frozen=True)
class _Minifloat:
    """A small float format without Inf: saturating, NaN -> ``nan_code`` (unsigned)."""

    mantissa_bits: int
    min_exponent: int  # unbiased exponent of the smallest normal
    max_bits: int  # float32 bits of the largest finite value
    sign_shift: int  # float32 sign bit >> sign_shift is the format's sign bit
    nan_code: int


_FP8_FORMAT = _Minifloat(3, -6, 0x43E00000, 24, 0x7F)  # E4M3FN: max 448, NaN 0x7F
_FP4_FORMAT = _Minifloat(1, 0, 0x40C00000, 28, 0x07)  # E2M1: max 6, NaN -> +6 (ONNX)

#: elements per block of the fp8/fp4/int encoders: buffers that stay near the cache, and loops long enough that
#: the NumPy backend's threads run in parallel (at 2^16 the GIL hand-offs serialise them)
_BLOCK = 1 << 19


_BOUNDS: dict[tuple[int, int], np.ndarray] = {}


def _bound(value: int, dtype: type) -> np.ndarray:
    """A shared read-only array of _BLOCK copies of ``value``: NumPy's minimum/maximum against a scalar
    miss the SIMD loop (6x slower) where an array operand takes it."""
    key = (value, np.dtype(dtype).num)
    array = _BOUNDS.get(key)
    if array is None:
        array = np.full(_BLOCK, value, dtype)
        array.flags.writeable = False
        _BOUNDS[key] = array
    return array


def _encode_minifloat(x: np.ndarray, fmt: _Minifloat, owned: bool, out: np.ndarray | None) -> np.ndarray:
    """uint8 codes of 1-D float32 ``x``: saturate, then RNE, all in float32 bit arithmetic.

    With y = min(|x|, max) and G = max(exponent(y), min normal exponent), one float32 addition
    y + M rounds y to the format's spacing at exponent G, 2**(G - mantissa_bits), ties to even, because
    M = 2**(G + 23 - mantissa_bits) has exactly that spacing. M's mantissa also carries
    (G - min normal exponent) << mantissa_bits, an even offset that leaves the tie parity alone and
    makes the low byte of the sum the format's code: normals and subnormals alike.
    ``owned``: ``x`` may be overwritten; ``out``: 1-D uint8 array to fill.
    """
    flat = x.view(_U32)
    codes = np.empty(flat.size, np.uint8) if out is None else out
    g0 = 127 + fmt.min_exponent
    magic_scale = _U32((1 << 23) + (1 << fmt.mantissa_bits))
    magic_bias = _U32(((23 - fmt.mantissa_bits) << 23) - (g0 << fmt.mantissa_bits))
    sign_mask = np.uint8(_SIGN >> fmt.sign_shift)
    max_bits, min_exponent = _bound(fmt.max_bits, _U32), _bound(g0, _U32)
    for start in range(0, flat.size, _BLOCK):
        bits, codes_out = flat[start : start + _BLOCK], codes[start : start + _BLOCK]
        n = bits.size
        magic, nan, sign = work_buffer("magic", n, _U32), work_buffer("nan", n, bool), work_buffer("sign", n, np.uint8)
        magnitude = bits if owned else work_buffer("magnitude", n, _U32)
        np.right_shift(bits, fmt.sign_shift, out=sign, casting="unsafe")  # before magnitude may overwrite bits
        np.bitwise_and(sign, sign_mask, out=sign)
        np.bitwise_and(bits, _ABS, out=magnitude)
        np.greater(magnitude, _INF_BITS, out=nan)
        np.minimum(magnitude, max_bits[:n], out=magnitude)  # saturate (Inf too) before rounding
        np.right_shift(magnitude, 23, out=magic)
        np.maximum(magic, min_exponent[:n], out=magic)
        np.multiply(magic, magic_scale, out=magic)
        np.add(magic, magic_bias, out=magic)
        np.add(magnitude.view(np.float32), magic.view(np.float32), out=magic.view(np.float32))
        np.copyto(codes_out, magic, casting="unsafe")
        np.bitwise_or(codes_out, sign, out=codes_out)
        np.copyto(codes_out, fmt.nan_code, where=nan)
    return codes


#: 1.5 * 2**23: adding it to a float32 in [-2**22, 2**22] rounds to an integer (ties to even), and the low
#: byte of the sum's bits is that integer's two's complement
_ROUND_MAGIC = np.float32(12582912.0)


def _encode_integer(x: np.ndarray, dtype: DType, owned: bool, out: np.ndarray | None) -> np.ndarray:
    """int8 values of 1-D float32 ``x`` clamped to ``dtype``'s range: clamp, RNE, NaN -> 0; in L2-sized
    blocks, float32 bit arithmetic. ``owned``: ``x`` may be overwritten; ``out``: 1-D int8 array to fill."""
    assert dtype.int_range is not None
    low, high = dtype.int_range
    out = np.empty(x.size, np.int8) if out is None else out
    for start in range(0, x.size, _BLOCK):
        chunk = x[start : start + _BLOCK]
        n = chunk.size
        clamped = chunk if owned else work_buffer("clamped", n, np.float32)
        np.clip(chunk, low, high, out=clamped)  # one SIMD pass; NaN propagates
        has_nan = bool(np.isnan(clamped.max())) if n else False
        np.add(clamped, _ROUND_MAGIC, out=clamped)  # NaN stays NaN
        # uint32 -> uint8 keeps the low byte (an unsigned cast is modular)
        np.copyto(out[start : start + n].view(np.uint8), clamped.view(np.uint32), casting="unsafe")
        if has_nan:
            out[start : start + n][np.isnan(clamped)] = 0
    return out


def _encode_int4(x: np.ndarray, owned: bool, out: np.ndarray | None) -> np.ndarray:
    values = _encode_integer(x, INT4, owned, None if out is None else out.view(np.int8))
    codes = values.view(np.uint8)
    np.bitwise_and(codes, 0x0F, out=codes)  # int4 storage holds the two's complement nibble
    return codes.view(INT4.storage)


def _encode_float16(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        out = x.astype(np.float16)
    out.view(np.uint16)[np.isnan(x)] = 0x7E00
    return out


def _encode_bfloat16(x: np.ndarray) -> np.ndarray:
    bits = x.view(_U32)
    # RNE on the top 16 bits; a carry out of the mantissa bumps the exponent (up to Inf), as IEEE wants.
    rounded = (bits >> 16) & 1
    rounded += bits
    rounded += 0x7FFF
    out = (rounded >> 16).astype(np.uint16)
    out[(bits & _ABS) > _INF_BITS] = 0x7FC0
    return out.view(BFLOAT16.storage)


def _encode_float32(x: np.ndarray) -> np.ndarray:
    out = x.copy()
    out.view(_U32)[np.isnan(x)] = _NAN32
    return out


def _encode_e8m0(x: np.ndarray) -> np.ndarray:
    bits = x.view(_U32)
    exponent = bits >> 23  # sign bit included: negatives fail the range test below
    exact_power = ((bits & 0x7FFFFF) == 0) & (exponent >= 1) & (exponent <= 254)
    valid = exact_power | (bits == 0x00400000) | np.isnan(x)
    if not valid.all():
        bad = float(x[~valid][0])
        raise ValueError(f"e8m0 holds only powers of two in [2**-127, 2**127] (and NaN), not {bad!r}")
    return (exponent & 0xFF).astype(np.uint8).view(E8M0.storage)


def _whole(encoder: Callable[[np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    def encode_into(x: np.ndarray, owned: bool, out: np.ndarray | None) -> np.ndarray:
        result = encoder(x)
        if out is None:
            return result
        out[...] = result
        return out
    return encode_into


#: type -> encoder(flat float32 x, owned: x may be overwritten, out: flat storage array to fill or None)
_ENCODERS: dict[DType, Callable[[np.ndarray, bool, np.ndarray | None], np.ndarray]] = {
    FLOAT32: _whole(_encode_float32),
    FLOAT16: _whole(_encode_float16),
    BFLOAT16: _whole(_encode_bfloat16),
    INT8: lambda x, owned, out: _encode_integer(x, INT8, owned, out),
    INT4: _encode_int4,
    FP8: lambda x, owned, out: _encode_minifloat(
        x, _FP8_FORMAT, owned, None if out is None else out.view(np.uint8)).view(FP8.storage),
    FP4: lambda x, owned, out: _encode_minifloat(
        x, _FP4_FORMAT, owned, None if out is None else out.view(np.uint8)).view(FP4.storage),
    E8M0: _whole(_encode_e8m0),
}


def encode(values: np.ndarray, dtype: DType, out: np.ndarray | None = None, overwrite: bool = False) -> np.ndarray:
    """Round float32 ``values`` to ``dtype`` by netdsl's rules; returns an array of ``dtype.storage``.

    RNE everywhere; int8/int4 saturate, NaN -> 0; fp8 saturates to +-448 (Inf too), NaN -> NaN;
    fp4 saturates to +-6, NaN -> +6; -0 is kept for fp8/fp4. float16/bfloat16: IEEE RNE cast
    (overflow -> Inf), NaN canonical; float32: identity (NaN canonical 0x7FC00000).
    e8m0: only for values that are exact powers of two in range (ValueError otherwise) -- the
    MXFP8 exponent rule is :func:`e8m0_round_up`.

    ``out``: an array of ``dtype.storage`` and ``values``' shape to write the result into (and return);
    ``overwrite``: ``values`` is a scratch float32 array the encoder may destroy (saves a buffer).
    """
    x, shape = _flat_float32(values)
    owned = overwrite or not np.may_share_memory(x, values)
    if out is None:
        return _ENCODERS[dtype](x, owned, None).reshape(shape)
    if out.shape != shape or out.dtype != dtype.storage:
        raise ValueError(f"out must be {dtype.storage}{list(shape)}, got {out.dtype}{list(out.shape)}")
    if out.flags.c_contiguous:
        _ENCODERS[dtype](x, owned, out.reshape(-1))
    else:
        out[...] = _ENCODERS[dtype](x, owned, None).reshape(shape)
    return out


def _check_storage(values: np.ndarray, dtype: DType) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype != dtype.storage:
        raise TypeError(f"expected {dtype} storage ({dtype.storage}), got {array.dtype}")
    return array


def decode(values: np.ndarray, dtype: DType) -> np.ndarray:
    """Exact float32 values of a ``dtype.storage`` array (e8m0 0xFF -> NaN)."""
    # Widening: every value of every storage type is a float32 (e8m0 0 is the subnormal 2**-127).
    return _check_storage(values, dtype).astype(np.float32)


def e8m0_round_up(q: np.ndarray) -> np.ndarray:
    """MXFP8 scale: for float32 q >= 0, the smallest e with q <= 2**e, clamped to [-127, 127];
    q = 0 -> -127, Inf -> 127. Returns float8_e8m0fnu storage."""
    x, shape = _flat_float32(q)
    bits = x.view(_U32)
    if np.any((bits > _SIGN) & (bits <= 0xFF800000)):
        raise ValueError("e8m0_round_up needs q >= 0")
    magnitude = bits & _ABS
    # Adding 0x7FFFFF carries into the exponent exactly when the mantissa is nonzero: a ceiling.
    code = (magnitude + 0x7FFFFF) >> 23
    code[magnitude <= 0x00400000] = 0  # q <= 2**-127 (a float32 subnormal): the smallest scale
    np.minimum(code, 254, out=code)
    code[magnitude > _INF_BITS] = 0xFF
    return code.astype(np.uint8).view(E8M0.storage).reshape(shape)


def representable(values: np.ndarray, dtype: DType) -> np.ndarray:
    """Boolean mask: which float64 ``values`` ``dtype`` holds exactly (NaN counts only where the
    type has NaN: float types, fp8, e8m0)."""
    exact = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        x = exact.astype(np.float32)
    if dtype == E8M0:
        stored = e8m0_round_up(np.abs(x))
    else:
        stored = encode(x, dtype)
    mask = decode(stored, dtype).astype(np.float64) == exact
    if dtype.has_nan:
        mask |= np.isnan(exact)
    return mask


def to_codes(values: np.ndarray, dtype: DType) -> np.ndarray:
    """Raw codes of a quantized-type storage array as uint8, one per element, same shape
    (int4 as two's complement in the low nibble; fp4 as its 4-bit code)."""
    if dtype.bits > 8:
        raise ValueError(f"{dtype} has no 8-bit codes")
    codes = _check_storage(values, dtype).view(np.uint8)
    return codes & 0x0F if dtype.bits == 4 else codes.copy()


def from_codes(codes: np.ndarray, dtype: DType) -> np.ndarray:
    """Inverse of :func:`to_codes`."""
    if dtype.bits > 8:
        raise ValueError(f"{dtype} has no 8-bit codes")
    array = np.asarray(codes)
    if array.dtype != np.uint8:
        raise TypeError(f"codes must be uint8, got {array.dtype}")
    if dtype.bits == 4 and np.any(array > 0x0F):
        raise ValueError(f"{dtype} codes are 0..15")
    return array.copy().view(dtype.storage)


def pack_nibbles(codes: np.ndarray) -> np.ndarray:
    """ONNX 4-bit layout: flatten row-major, element 2k in the low nibble of byte k, 2k+1 in the
    high nibble, the last byte's high nibble 0 when the count is odd. Returns 1-D uint8."""
    flat = np.asarray(codes).reshape(-1)
    if flat.dtype != np.uint8:
        raise TypeError(f"codes must be uint8, got {flat.dtype}")
    if np.any(flat > 0x0F):
        raise ValueError("4-bit codes are 0..15")
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.uint8)])
    return flat[0::2] | (flat[1::2] << 4)


def unpack_nibbles(packed: np.ndarray, count: int) -> np.ndarray:
    """Inverse of :func:`pack_nibbles`: 1-D uint8 codes, ``count`` of them."""
    data = np.asarray(packed)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise TypeError(f"packed must be 1-D uint8, got {data.ndim}-D {data.dtype}")
    if count < 0 or data.size != (count + 1) // 2:
        raise ValueError(f"{count} codes take {(max(count, 0) + 1) // 2} bytes, got {data.size}")
    codes = np.empty(2 * data.size, np.uint8)
    codes[0::2] = data & 0x0F
    codes[1::2] = data >> 4
    return codes[:count]
