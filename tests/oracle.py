"""An independent reference for netdsl's numerics, written from docs/semantics.md only.

Deliberately simple and slow: one element at a time, in plain Python floats (float64, which holds every
float32, float16, bfloat16, int8, int4, fp8, fp4 and e8m0 value exactly), with the float32 operations
done by NumPy's float32 scalars (IEEE float32 division and multiplication, subnormals kept). It does not
import netdsl and does not use ml_dtypes at all: every rounding rule is written out by hand
(``tests/test_oracle.py`` cross-checks these encoders against ml_dtypes with explicit clamping).

Every function returns the *decoded values* as a float64 NumPy array:

- ``quantize(x, scale, to_type, axis, block_shape)``: ``saturate(round_half_even(x / scale))``;
- ``dequantize(q, scale, to_type, axis, block_shape)``: ``round_to(to_type, fl32(q * scale))``;
- ``dynamic_quantize(x, dqs, axis, block_size, block_shape, output_type, scale_type)``: ``(data, scale)``
  for NVFP4 (fp4 + fp8 scale), MXFP8 (fp8 + e8m0 scale) and float-scale (fp8/int8 + float32 scale).

Inputs ``x``/``scale``/``q`` are any array-likes holding values of their declared type (float32, float16,
bfloat16 values are widened to float32 exactly; pass them as float32 or float64 holding such values).
"""

from __future__ import annotations

import bisect
import itertools
import math

import numpy as np

# --------------------------------------------------------------------------------------------------
# float32 arithmetic


def f32(value: float) -> float:
    """``value`` rounded to float32 (nearest even; overflow to +-Inf), returned as a Python float."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def f32_div(a: float, b: float) -> float:
    """IEEE float32 division of two float32 values (correctly rounded, subnormals kept)."""
    with np.errstate(all="ignore"):
        return float(np.float32(a) / np.float32(b))


def f32_mul(a: float, b: float) -> float:
    """IEEE float32 product of two float32 values."""
    with np.errstate(all="ignore"):
        return float(np.float32(a) * np.float32(b))


# --------------------------------------------------------------------------------------------------
# the number formats: the value grids, built from the bit layouts


def _fp8_e4m3_magnitude(code: int) -> float:
    """E4M3 (bias 7): code = eeee mmm; exponent 0 is subnormal (m * 2^-9)."""
    exponent, mantissa = code >> 3, code & 7
    if exponent == 0:
        return mantissa * 2.0**-9
    return (1 + mantissa / 8) * 2.0 ** (exponent - 7)


def _fp4_e2m1_magnitude(code: int) -> float:
    """E2M1 (bias 1): code = ee m; exponent 0 is subnormal (m * 0.5)."""
    exponent, mantissa = code >> 1, code & 1
    if exponent == 0:
        return mantissa * 0.5
    return (1 + mantissa / 2) * 2.0 ** (exponent - 1)


#: non-negative finite magnitudes in code order (fp8: codes 0x00..0x7E; 0x7F is NaN)
FP8_GRID = [_fp8_e4m3_magnitude(code) for code in range(0x7F)]
FP4_GRID = [_fp4_e2m1_magnitude(code) for code in range(8)]
FP8_MAX = FP8_GRID[-1]  # 448
FP4_MAX = FP4_GRID[-1]  # 6
assert FP8_MAX == 448.0 and FP4_MAX == 6.0 and FP8_GRID[1] == 2.0**-9
assert FP4_GRID == [0, 0.5, 1, 1.5, 2, 3, 4, 6]


def _round_to_grid(magnitude: float, grid: list[float]) -> float:
    """Nearest grid value to ``magnitude`` (>= 0, not NaN), ties to the even code; saturates."""
    if magnitude >= grid[-1]:
        return grid[-1]
    index = bisect.bisect_right(grid, magnitude) - 1  # grid[index] <= magnitude < grid[index + 1]
    lower, upper = grid[index], grid[index + 1]
    midpoint = (lower + upper) / 2  # exact: the grids are short dyadic numbers
    if magnitude < midpoint:
        return lower
    if magnitude > midpoint:
        return upper
    return lower if index % 2 == 0 else upper  # the even code's mantissa LSB is 0


def encode_fp8(value: float) -> float:
    """fp8 E4M3fn: NaN stays NaN; +-Inf and overflow saturate to +-448; RNE; the sign of zero kept."""
    if math.isnan(value):
        return math.nan
    return math.copysign(_round_to_grid(abs(value), FP8_GRID), value)


def encode_fp4(value: float) -> float:
    """fp4 E2M1: NaN gives +6 (ONNX's float4 rule); +-Inf and overflow saturate to +-6; RNE; sign of zero kept."""
    if math.isnan(value):
        return FP4_MAX
    return math.copysign(_round_to_grid(abs(value), FP4_GRID), value)


def _encode_int(value: float, low: int, high: int) -> float:
    if math.isnan(value):
        return 0.0
    clamped = min(max(value, low), high)
    return float(round(clamped))  # Python's round() of a float is exact round-half-to-even


def encode_int8(value: float) -> float:
    """int8: NaN gives 0; clamp to [-128, 127] (Inf included); round half to even."""
    return _encode_int(value, -128, 127)


def encode_int4(value: float) -> float:
    """int4: NaN gives 0; clamp to [-8, 7]; round half to even."""
    return _encode_int(value, -8, 7)


def encode_float16(value: float) -> float:
    """float32 -> float16, round to nearest even (NumPy's conversion), overflow to +-Inf."""
    with np.errstate(over="ignore"):
        return float(np.float16(np.float32(value)))


def encode_bfloat16(value: float) -> float:
    """float32 -> bfloat16 by hand on the float32 bits: add 0x7FFF + the kept LSB, drop 16 bits (RNE)."""
    if math.isnan(value):
        return math.nan
    bits = int(np.array(value, dtype=np.float32).view(np.uint32))
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return float(np.array(bits, dtype=np.uint32).view(np.float32))


ENCODERS = {
    "int8": encode_int8,
    "int4": encode_int4,
    "fp8": encode_fp8,
    "fp4": encode_fp4,
    "float32": f32,
    "float16": encode_float16,
    "bfloat16": encode_bfloat16,
}


def mx_exponent(amax: float) -> int:
    """MXFP8's e8m0 block exponent: with q = fl32(amax / 448), the smallest e with q <= 2^e (round up,
    "RCEIL"), clamped to [-127, 127]; q = 0 gives -127, Inf gives 127."""
    q = f32_div(amax, 448.0)
    if q == 0:
        return -127
    if math.isinf(q):
        return 127
    mantissa, exponent = math.frexp(q)  # q = mantissa * 2^exponent, mantissa in [0.5, 1)
    e = exponent - 1 if mantissa == 0.5 else exponent
    return min(max(e, -127), 127)


# --------------------------------------------------------------------------------------------------
# granularity: which scale element an element of x uses


def _as_values(array) -> np.ndarray:
    """float64 array of the (exact) values; float16/bfloat16/float32 inputs widen exactly."""
    return np.asarray(array, dtype=np.float64)


def scale_lookup(x_shape: tuple[int, ...], scale: np.ndarray, axis: int | None,
                 block_shape: list[int] | None):
    """A function: index of x -> the scale value it uses (docs/semantics.md, Quantize "Granularity").

    - one-element scale: per-tensor (``axis`` ignored);
    - 1-D scale of length > 1 (on a 1-D x: of x's length): per-channel along ``axis``;
    - scale of x's rank: blocks, ``block_shape`` (-1 = the whole extent) or, without it, inferred from the
      one dimension where the shapes differ (that extent divides evenly); ``scale.shape[i] ==
      ceil(x.shape[i] / B[i])`` and element ``x[i0, .., in]`` uses ``scale[i0 // B0, .., in // Bn]``.
    """
    rank = len(x_shape)
    if scale.size == 1:
        value = float(scale.reshape(-1)[0])
        return lambda index: value
    if scale.ndim == 1 and (rank > 1 or scale.shape[0] == x_shape[0]):
        assert axis is not None, "a per-channel scale needs axis"
        axis = axis % rank
        assert scale.shape[0] == x_shape[axis], (scale.shape, x_shape, axis)
        return lambda index: float(scale[index[axis]])
    assert scale.ndim == rank, "a block scale has the rank of x"
    if block_shape is not None:
        blocks = [x_shape[i] if b == -1 else b for i, b in enumerate(block_shape)]
    else:
        blocks = [x_shape[i] // scale.shape[i] for i in range(rank)]
        assert all(blocks[i] * scale.shape[i] == x_shape[i] for i in range(rank)), "uneven inferred blocks"
    assert all(scale.shape[i] == -(-x_shape[i] // blocks[i]) for i in range(rank)), (scale.shape, blocks)
    return lambda index: float(scale[tuple(i // b for i, b in zip(index, blocks))])


# --------------------------------------------------------------------------------------------------
# the layers


def quantize(x, scale, to_type: str = "int8", axis: int | None = None,
             block_shape: list[int] | None = None) -> np.ndarray:
    """Quantize: q = saturate(round_half_even(fl32(x / scale))) in ``to_type`` (int8, int4, fp8, fp4)."""
    x, scale = _as_values(x), _as_values(scale)
    scale_at = scale_lookup(x.shape, scale, axis, block_shape)
    encode = ENCODERS[to_type]
    out = np.empty(x.shape)
    for index in np.ndindex(x.shape):
        out[index] = encode(f32_div(x[index], scale_at(index)))
    return out


def dequantize(q, scale, to_type: str = "float32", axis: int | None = None,
               block_shape: list[int] | None = None) -> np.ndarray:
    """Dequantize: y = round_to(to_type, fl32(q * scale)) (float32, float16, bfloat16): two roundings."""
    q, scale = _as_values(q), _as_values(scale)
    scale_at = scale_lookup(q.shape, scale, axis, block_shape)
    encode = ENCODERS[to_type]
    out = np.empty(q.shape)
    for index in np.ndindex(q.shape):
        out[index] = encode(f32_mul(q[index], scale_at(index)))
    return out


def _dynamic_blocks(shape: tuple[int, ...], axis: int | None, block_size: int | None,
                    block_shape: list[int] | None) -> list[int]:
    if block_shape is not None:
        return [shape[i] if b == -1 else b for i, b in enumerate(block_shape)]
    axis = axis % len(shape)
    assert axis >= len(shape) - 2 and shape[axis] % block_size == 0
    return [block_size if i == axis else 1 for i in range(len(shape))]


def dynamic_quantize(x, dqs=None, axis: int | None = None, block_size: int | None = None,
                     block_shape: list[int] | None = None, output_type: str = "fp4",
                     scale_type: str = "fp8") -> tuple[np.ndarray, np.ndarray]:
    """DynamicQuantize: per block, amax = max |x| ignoring NaN (all-NaN: 0), then

    - NVFP4 (fp4, fp8): s = fp8(fl32(fl32(amax / 6) / dqs)); data = fp4(x / fl32(s * dqs)), +0 where that is 0;
    - MXFP8 (fp8, e8m0): s = 2^mx_exponent(amax); data = fp8(x / s);
    - float scale (fp8 or int8, float32): s = fl32(amax / 448 or 127); data = type(x / s), +0 where s is 0.
    """
    x = _as_values(x)
    blocks = _dynamic_blocks(x.shape, axis, block_size, block_shape)
    scale_shape = tuple(-(-n // b) for n, b in zip(x.shape, blocks))
    data, scale = np.empty(x.shape), np.empty(scale_shape)
    mode = (output_type, scale_type)
    if mode == ("fp4", "fp8"):
        assert dqs is not None, "NVFP4 needs a double quantization scale"
        dqs = float(_as_values(dqs).reshape(-1)[0])
    else:
        assert dqs is None, f"{mode} takes no double quantization scale"
    encode = ENCODERS[output_type]
    for block in np.ndindex(scale_shape):
        region = tuple(slice(k * b, min((k + 1) * b, n)) for k, b, n in zip(block, blocks, x.shape))
        indices = list(itertools.product(*(range(r.start, r.stop) for r in region)))
        amax = 0.0
        for index in indices:
            if not math.isnan(x[index]):
                amax = max(amax, abs(x[index]))
        if mode == ("fp4", "fp8"):
            s = encode_fp8(f32_div(f32_div(amax, 6.0), dqs))
            effective = f32_mul(s, dqs)
        elif mode == ("fp8", "e8m0"):
            s = effective = 2.0 ** mx_exponent(amax)
        elif scale_type == "float32" and output_type in ("fp8", "int8"):
            s = effective = f32_div(amax, 448.0 if output_type == "fp8" else 127.0)
        else:
            raise ValueError(f"unsupported dynamic_quantize mode {mode}")
        scale[block] = s
        for index in indices:
            data[index] = 0.0 if effective == 0 else encode(f32_div(x[index], effective))
    return data, scale
