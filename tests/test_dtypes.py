"""netdsl.dtypes against independent truth: value tables built from each format's definition, and
reference roundings computed in float64 / Python (nearest value, ties to the even code)."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netdsl.dtypes import (
    ALIASES,
    BFLOAT16,
    DTYPES,
    E8M0,
    FLOAT16,
    FLOAT32,
    FP4,
    FP8,
    INT4,
    INT8,
    decode,
    e8m0_round_up,
    encode,
    from_codes,
    lookup,
    pack_nibbles,
    representable,
    to_codes,
    unpack_nibbles,
)

NAN = float("nan")


# ---------------------------------------------------------------------------------------------------
# Independent truth: every code's value, from the format definitions
# ---------------------------------------------------------------------------------------------------


def minifloat_value(code: int, exponent_bits: int, mantissa_bits: int, bias: int) -> float:
    """sign * 2**(e - bias) * (1 + m / 2**M), or sign * 2**(1 - bias) * m / 2**M for e = 0."""
    sign = -1.0 if code >> (exponent_bits + mantissa_bits) & 1 else 1.0
    exponent = (code >> mantissa_bits) & ((1 << exponent_bits) - 1)
    mantissa = code & ((1 << mantissa_bits) - 1)
    if exponent == 0:
        return sign * math.ldexp(mantissa / (1 << mantissa_bits), 1 - bias)
    return sign * math.ldexp(1 + mantissa / (1 << mantissa_bits), exponent - bias)


FP8_VALUES = np.array([NAN if c & 0x7F == 0x7F else minifloat_value(c, 4, 3, 7) for c in range(256)])
FP4_VALUES = np.array([minifloat_value(c, 2, 1, 1) for c in range(16)])
INT8_VALUES = np.array([c - 256 if c >= 128 else c for c in range(256)], dtype=np.float64)
INT4_VALUES = np.array([c - 16 if c >= 8 else c for c in range(16)], dtype=np.float64)
E8M0_VALUES = np.array([math.ldexp(1.0, k - 127) for k in range(255)] + [NAN])

VALUE_TABLES = {FP8: FP8_VALUES, FP4: FP4_VALUES, INT8: INT8_VALUES, INT4: INT4_VALUES, E8M0: E8M0_VALUES}


def test_value_tables_match_the_published_formats():
    assert FP8_VALUES[0x7E] == 448 and FP8_VALUES[0x01] == 2.0**-9 and FP8_VALUES[0x08] == 2.0**-6
    assert FP8_VALUES[0x38] == 1 and math.copysign(1, FP8_VALUES[0x80]) == -1
    assert np.isnan(FP8_VALUES[[0x7F, 0xFF]]).all() and np.isfinite(FP8_VALUES).sum() == 254
    assert list(FP4_VALUES[:8]) == [0, 0.5, 1, 1.5, 2, 3, 4, 6]
    assert list(FP4_VALUES[9:]) == [-0.5, -1, -1.5, -2, -3, -4, -6]
    assert math.copysign(1, FP4_VALUES[8]) == -1
    assert E8M0_VALUES[127] == 1 and E8M0_VALUES[0] == 2.0**-127 and E8M0_VALUES[254] == 2.0**127


def assert_same_floats(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal values, NaN where NaN, and the same sign on zeros."""
    actual64, expected64 = as_float64(actual), as_float64(expected)
    assert actual64.shape == expected64.shape
    np.testing.assert_array_equal(actual64, expected64)
    finite = ~np.isnan(expected64)
    np.testing.assert_array_equal(np.signbit(actual64[finite]), np.signbit(expected64[finite]))


def as_float64(x) -> np.ndarray:
    """Exact widening; quiet about signalling NaNs."""
    with np.errstate(invalid="ignore"):
        return np.asarray(x).astype(np.float64)


def f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def bits_to_f32(bits) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint64).astype(np.uint32).view(np.float32)


def codes_of(values: np.ndarray, dtype) -> np.ndarray:
    return np.asarray(values).view(np.uint8) & (0x0F if dtype.bits == 4 else 0xFF)


# ---------------------------------------------------------------------------------------------------
# Reference roundings (float64 distances, ties to the even code)
# ---------------------------------------------------------------------------------------------------

MINIFLOATS = {
    # dtype: (positive values in code order, sign code, NaN code)
    FP8: (FP8_VALUES[:0x7F], 0x80, 0x7F),
    FP4: (FP4_VALUES[:8], 0x08, 0x07),
}


def nearest_code(magnitudes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the nearest of ascending ``values`` (index = code); ties to the even index."""
    upper = np.minimum(np.searchsorted(values, magnitudes), len(values) - 1)
    lower = np.maximum(upper - 1, 0)
    below, above = magnitudes - values[lower], values[upper] - magnitudes
    tie = np.where(upper % 2 == 0, upper, lower)
    return np.where(above < below, upper, np.where(below < above, lower, tie))


def reference_minifloat(x: np.ndarray, dtype) -> np.ndarray:
    values, sign_code, nan_code = MINIFLOATS[dtype]
    assert np.all(np.diff(values) > 0)
    x64 = as_float64(np.asarray(x, dtype=np.float32))
    magnitude = np.minimum(np.nan_to_num(np.abs(x64), nan=0.0, posinf=np.inf), values[-1])  # saturate
    codes = nearest_code(magnitude, values)
    codes = np.where(np.signbit(x64), codes | sign_code, codes)
    return np.where(np.isnan(x64), nan_code, codes).astype(np.uint8)


def reference_integer(x: np.ndarray, low: int, high: int) -> np.ndarray:
    """Python's round() is round-half-even on floats."""
    return np.array([0 if math.isnan(v) else round(min(max(v, low), high)) for v in x.tolist()])


def reference_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """Nearest of the two bfloat16 neighbours by float64 distance; ties to even; past the max -> Inf."""
    bits = x.view(np.uint32)
    toward_zero = bits & np.uint32(0xFFFF0000)
    away = toward_zero + np.uint32(0x10000)
    x64 = as_float64(x)
    low = as_float64(toward_zero.view(np.float32))
    # the neighbour past the largest finite bfloat16 is 2**128 (it encodes as Inf)
    high = np.where((away & 0x7FFFFFFF) == 0x7F800000, np.copysign(2.0**128, x64), away.view(np.float32))
    with np.errstate(invalid="ignore"):
        d_low, d_high = np.abs(x64 - low), np.abs(high - x64)
    even = np.where((toward_zero >> 16) % 2 == 0, toward_zero, away)
    chosen = np.where(d_low < d_high, toward_zero, np.where(d_high < d_low, away, even))
    chosen = np.where(np.isnan(x), 0x7FC00000, chosen)
    return (chosen >> 16).astype(np.uint16)


def reference_e8m0_round_up(q: float) -> int:
    """Code of 2**e, e the smallest integer with q <= 2**e, clamped to [-127, 127]."""
    if math.isnan(q):
        return 0xFF
    if q == 0:
        return 0
    if math.isinf(q):
        return 254
    mantissa, exponent = math.frexp(q)  # q = mantissa * 2**exponent, mantissa in [0.5, 1)
    e = exponent - 1 if mantissa == 0.5 else exponent
    return min(max(e, -127), 127) + 127


def random_float32(count: int, seed: int) -> np.ndarray:
    """Uniform over all 2**32 bit patterns: every exponent, NaNs, Infs, subnormals."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2**32, count, dtype=np.uint64).astype(np.uint32).view(np.float32)


# zeros, subnormals, the smallest normal, the largest finite, Infs, NaNs (quiet and signalling)
SPECIAL_HEX = """00000000 80000000 00000001 80000001 007FFFFF 807FFFFF 00800000 7F7FFFFF FF7FFFFF
                 7F800000 FF800000 7F800001 FF800001 7FC00000 FFC00000 7FFFFFFF FFFFFFFF 7FA00000"""
SPECIAL_BITS = [int(word, 16) for word in SPECIAL_HEX.split()]


# ---------------------------------------------------------------------------------------------------
# Names and types
# ---------------------------------------------------------------------------------------------------


def test_table_of_types():
    expected = {
        "float32": (np.float32, 32, "kFLOAT"),
        "float16": (np.float16, 16, "kHALF"),
        "bfloat16": (ml_dtypes.bfloat16, 16, "kBF16"),
        "int8": (np.int8, 8, "kINT8"),
        "int4": (ml_dtypes.int4, 4, "kINT4"),
        "fp8": (ml_dtypes.float8_e4m3fn, 8, "kFP8"),
        "fp4": (ml_dtypes.float4_e2m1fn, 4, "kFP4"),
        "e8m0": (ml_dtypes.float8_e8m0fnu, 8, "kE8M0"),
    }
    assert set(DTYPES) == set(expected)
    for name, (storage, bits, trt_name) in expected.items():
        dtype = DTYPES[name]
        actual = (dtype.name, dtype.storage, dtype.bits, dtype.trt_name)
        assert actual == (name, np.dtype(storage), bits, trt_name)
        assert str(dtype) == name and lookup(name) is dtype
    assert {d.name for d in DTYPES.values() if d.is_float} == {"float32", "float16", "bfloat16"}
    assert {d.name for d in DTYPES.values() if d.is_quantized} == {"int8", "int4", "fp8", "fp4"}


def test_aliases():
    assert ALIASES == {
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
    assert lookup("float8_e4m3fn") is FP8 and lookup("half") is FLOAT16
    assert lookup("e4m3") is FP8 and lookup("bf16").name == "bfloat16" and lookup("e2m1").name == "fp4"
    assert lookup("float4_e2m1fn") is FP4 and lookup("float8_e8m0fnu") is E8M0
    with pytest.raises(KeyError):
        lookup("float64")


# ---------------------------------------------------------------------------------------------------
# decode: every code
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [FP8, FP4, INT8, INT4, E8M0], ids=str)
def test_decode_every_code(dtype):
    codes = np.arange(1 << dtype.bits, dtype=np.uint8)
    decoded = decode(from_codes(codes, dtype), dtype)
    assert decoded.dtype == np.float32
    assert_same_floats(decoded, VALUE_TABLES[dtype])


def test_decode_keeps_float32_subnormal_of_e8m0_zero_code():
    assert decode(from_codes(np.array([0], np.uint8), E8M0), E8M0).view(np.uint32)[0] == 0x00400000


def test_decode_float_types_widen_exactly():
    with np.errstate(over="ignore"):
        x16 = random_float32(4096, 1).astype(np.float16)
    assert_same_floats(decode(x16, FLOAT16), x16.astype(np.float64))
    x = random_float32(4096, 1)
    assert_same_floats(decode(x, FLOAT32), x)


def test_decode_rejects_other_storage():
    with pytest.raises(TypeError):
        decode(np.zeros(3, np.uint8), FP8)


# ---------------------------------------------------------------------------------------------------
# encode fp8 / fp4
# ---------------------------------------------------------------------------------------------------

MINIFLOAT_TYPES = pytest.mark.parametrize("dtype", [FP8, FP4], ids=str)


@MINIFLOAT_TYPES
def test_minifloat_every_value_round_trips(dtype):
    table = VALUE_TABLES[dtype]
    codes = np.flatnonzero(~np.isnan(table))
    encoded = encode(table[codes].astype(np.float32), dtype)
    assert encoded.dtype == dtype.storage
    np.testing.assert_array_equal(codes_of(encoded, dtype), codes)


@MINIFLOAT_TYPES
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_minifloat_midpoints_and_their_neighbours(dtype, sign):
    values, sign_code, _ = MINIFLOATS[dtype]
    lower_codes = np.arange(len(values) - 1)
    midpoints = ((values[:-1] + values[1:]) / 2).astype(np.float32)
    assert np.array_equal(midpoints.astype(np.float64), (values[:-1] + values[1:]) / 2)  # exact
    sign_bits = sign_code if sign < 0 else 0
    even = np.where(lower_codes % 2 == 0, lower_codes, lower_codes + 1)
    signed = np.float32(sign) * midpoints
    np.testing.assert_array_equal(codes_of(encode(signed, dtype), dtype), even | sign_bits)
    above = np.nextafter(midpoints, np.float32(np.inf)) * np.float32(sign)
    below = np.nextafter(midpoints, np.float32(0)) * np.float32(sign)
    np.testing.assert_array_equal(codes_of(encode(above, dtype), dtype), (lower_codes + 1) | sign_bits)
    np.testing.assert_array_equal(codes_of(encode(below, dtype), dtype), lower_codes | sign_bits)


@MINIFLOAT_TYPES
def test_minifloat_saturates(dtype):
    values, sign_code, _ = MINIFLOATS[dtype]
    largest, gap = values[-1], values[-1] - values[-2]
    max_code = len(values) - 1
    big = f32(
        np.nextafter(np.float32(largest), np.float32(np.inf)),
        largest + gap / 2,
        largest + gap,
        2 * largest,
        1e30,
        np.finfo(np.float32).max,
        np.inf,
    )
    np.testing.assert_array_equal(codes_of(encode(big, dtype), dtype), np.full(big.size, max_code))
    np.testing.assert_array_equal(
        codes_of(encode(-big, dtype), dtype), np.full(big.size, max_code | sign_code)
    )


@MINIFLOAT_TYPES
def test_minifloat_nan_is_one_unsigned_code(dtype):
    nans = bits_to_f32([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFFFFFFF])
    np.testing.assert_array_equal(codes_of(encode(nans, dtype), dtype), MINIFLOATS[dtype][2])


def test_fp8_nan_stays_nan_and_fp4_nan_is_plus_six():
    assert np.isnan(decode(encode(f32(NAN), FP8), FP8)).all()
    assert decode(encode(f32(-NAN), FP4), FP4)[0] == 6


@MINIFLOAT_TYPES
def test_minifloat_underflow_keeps_the_sign(dtype):
    values, sign_code, _ = MINIFLOATS[dtype]
    smallest = values[1]
    tiny = f32(smallest / 2, smallest / 4, smallest / 2**10, 2.0**-126, 2.0**-149, 0.0)
    np.testing.assert_array_equal(codes_of(encode(tiny, dtype), dtype), 0)
    np.testing.assert_array_equal(codes_of(encode(-tiny, dtype), dtype), sign_code)
    float32_subnormals = bits_to_f32([0x00000001, 0x00400000, 0x007FFFFF])
    np.testing.assert_array_equal(codes_of(encode(float32_subnormals, dtype), dtype), 0)
    np.testing.assert_array_equal(codes_of(encode(-float32_subnormals, dtype), dtype), sign_code)
    just_above_half = np.nextafter(np.float32(smallest / 2), np.float32(1))
    assert codes_of(encode(just_above_half, dtype), dtype) == 1


def test_fp8_subnormals():
    subnormals = f32(*(m * 2.0**-9 for m in range(8)))
    np.testing.assert_array_equal(codes_of(encode(subnormals, FP8), FP8), np.arange(8))
    assert codes_of(encode(f32(2.0**-6), FP8), FP8)[0] == 0x08  # smallest normal
    assert codes_of(encode(f32(7.5 * 2.0**-9), FP8), FP8)[0] == 0x08  # tie: 7 is odd, rounds up to 2**-6
    assert codes_of(encode(f32(6.5 * 2.0**-9), FP8), FP8)[0] == 0x06


def test_fp8_checked_examples():
    x = np.arange(16, dtype=np.float32) / np.float32(24) - np.float32(1)
    data = decode(encode(x / (np.float32(1) / np.float32(448)), FP8), FP8)
    row_0 = "-448 -416 -416 -384 -384 -352 -320 -320 -288 -288 -256 -240 -224 -208 -192 -160"  # docs/semantics.md
    expected = [float(word) for word in row_0.split()]
    np.testing.assert_array_equal(data, expected)


@MINIFLOAT_TYPES
def test_minifloat_every_high_half(dtype):
    """Every sign/exponent/top-7-mantissa pattern, with low halves that test the sticky bits."""
    high = np.arange(1 << 16, dtype=np.uint32) << 16
    x = np.concatenate([(high | low).view(np.float32) for low in (0, 1, 0x7FFF, 0x8000, 0xFFFF)])
    np.testing.assert_array_equal(codes_of(encode(x, dtype), dtype), reference_minifloat(x, dtype))


@MINIFLOAT_TYPES
def test_minifloat_random_bit_patterns(dtype):
    x = np.concatenate([random_float32(1 << 18, 2), bits_to_f32(SPECIAL_BITS)])
    np.testing.assert_array_equal(codes_of(encode(x, dtype), dtype), reference_minifloat(x, dtype))


@MINIFLOAT_TYPES
def test_minifloat_random_in_range(dtype):
    largest = MINIFLOATS[dtype][0][-1]
    rng = np.random.default_rng(3)
    x = (rng.uniform(-1.2, 1.2, 1 << 16) * largest).astype(np.float32)
    x *= np.float32(2.0) ** rng.integers(-14, 1, x.size).astype(np.float32)
    np.testing.assert_array_equal(codes_of(encode(x, dtype), dtype), reference_minifloat(x, dtype))


@MINIFLOAT_TYPES
@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.floats(width=32), min_size=1, max_size=64))
def test_minifloat_property(dtype, values):
    x = np.array(values, dtype=np.float32)
    np.testing.assert_array_equal(codes_of(encode(x, dtype), dtype), reference_minifloat(x, dtype))


@pytest.mark.parametrize("dtype", [FP8, FP4, INT8, INT4, FLOAT16, BFLOAT16, FLOAT32], ids=str)
def test_encode_shapes_layouts_and_narrow_inputs(dtype):
    def assert_same_encoding(a, b):
        encoded_a, encoded_b = encode(a, dtype), encode(b, dtype)
        assert encoded_a.dtype == encoded_b.dtype == dtype.storage
        assert encoded_a.shape == encoded_b.shape == np.shape(a)
        assert encoded_a.tobytes() == encoded_b.tobytes()

    x = random_float32(3 * (1 << 16) + 6, 4)  # several encode blocks and a partial one
    assert encode(x.reshape(6, -1), dtype).tobytes() == encode(x, dtype).tobytes()
    assert_same_encoding(x[::3], x[::3].copy())
    fortran = np.asfortranarray(x[:600].reshape(20, 30))
    assert_same_encoding(fortran, np.ascontiguousarray(fortran))
    assert_same_encoding(np.float32(1.5), f32(1.5).reshape(()))
    assert encode(np.zeros((0, 3), np.float32), dtype).shape == (0, 3)
    for narrow in (np.float16, ml_dtypes.bfloat16):
        with np.errstate(over="ignore", invalid="ignore"):
            y = x.astype(narrow)
        assert_same_encoding(y, y.astype(np.float32))


# ---------------------------------------------------------------------------------------------------
# encode int8 / int4
# ---------------------------------------------------------------------------------------------------

INTEGER_TYPES = pytest.mark.parametrize(
    "dtype, low, high", [(INT8, -128, 127), (INT4, -8, 7)], ids=["int8", "int4"]
)


def integer_values(encoded: np.ndarray) -> np.ndarray:
    return encoded.astype(np.int64)


@INTEGER_TYPES
def test_integer_every_value_round_trips(dtype, low, high):
    values = np.arange(low, high + 1)
    encoded = encode(values.astype(np.float32), dtype)
    assert encoded.dtype == dtype.storage
    np.testing.assert_array_equal(integer_values(encoded), values)


@INTEGER_TYPES
def test_integer_midpoints_and_their_neighbours(dtype, low, high):
    lower = np.arange(low, high)
    midpoints = (lower + 0.5).astype(np.float32)
    even = np.where(lower % 2 == 0, lower, lower + 1)
    np.testing.assert_array_equal(integer_values(encode(midpoints, dtype)), even)
    np.testing.assert_array_equal(
        integer_values(encode(np.nextafter(midpoints, np.float32(np.inf)), dtype)), lower + 1
    )
    np.testing.assert_array_equal(
        integer_values(encode(np.nextafter(midpoints, np.float32(-np.inf)), dtype)), lower
    )


@INTEGER_TYPES
def test_integer_saturation_nan_and_zeros(dtype, low, high):
    above = f32(high + 0.5, high + 1, 1e30, np.inf)
    below = f32(low - 0.5, low - 1, -1e30, -np.inf)
    zero = f32(NAN, -NAN, -0.0, -0.4, 0.4, 2.0**-149)
    np.testing.assert_array_equal(integer_values(encode(above, dtype)), high)
    np.testing.assert_array_equal(integer_values(encode(below, dtype)), low)
    np.testing.assert_array_equal(integer_values(encode(zero, dtype)), 0)


@INTEGER_TYPES
def test_integer_random_bit_patterns(dtype, low, high):
    rng = np.random.default_rng(5)
    x = np.concatenate(
        [
            random_float32(1 << 12, 6),
            bits_to_f32(SPECIAL_BITS),
            rng.uniform(2 * low, 2 * high, 1 << 12).astype(np.float32),
        ]
    )
    np.testing.assert_array_equal(integer_values(encode(x, dtype)), reference_integer(x, low, high))


@INTEGER_TYPES
@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(width=32), min_size=1, max_size=32))
def test_integer_property(dtype, low, high, values):
    x = np.array(values, dtype=np.float32)
    np.testing.assert_array_equal(integer_values(encode(x, dtype)), reference_integer(x, low, high))


def test_int4_codes_are_twos_complement_nibbles():
    encoded = encode(f32(-8, -1, 0, 7), INT4)
    np.testing.assert_array_equal(to_codes(encoded, INT4), [0x8, 0xF, 0x0, 0x7])


# ---------------------------------------------------------------------------------------------------
# encode float16 / bfloat16 / float32
# ---------------------------------------------------------------------------------------------------


def float_test_inputs() -> np.ndarray:
    high = np.arange(1 << 16, dtype=np.uint32) << 16
    structured = np.concatenate(
        [(high | low).view(np.float32) for low in (0, 1, 0x1000, 0x7FFF, 0x8000, 0xFFFF)]
    )
    return np.concatenate([structured, random_float32(1 << 18, 7), bits_to_f32(SPECIAL_BITS)])


def test_float16_matches_a_direct_float64_rounding():
    x = float_test_inputs()
    with np.errstate(over="ignore"):
        expected = as_float64(x).astype(np.float16).view(np.uint16).copy()  # float32 -> float64 exact
    expected[np.isnan(x)] = 0x7E00
    np.testing.assert_array_equal(encode(x, FLOAT16).view(np.uint16), expected)


def test_float16_boundaries():
    cases = [
        (65504, 0x7BFF),
        (65519.996, 0x7BFF),
        (65520, 0x7C00),  # tie with 65536: the even side overflows to Inf
        (1e6, 0x7C00),
        (-65520, 0xFC00),
        (2.0**-24, 0x0001),
        (2.0**-25, 0x0000),  # tie: to the even 0
        (np.nextafter(np.float32(2.0**-25), np.float32(1)), 0x0001),
        (3 * 2.0**-25, 0x0002),
        (2.0**-149, 0x0000),
        (-0.0, 0x8000),
    ]
    x, expected = f32(*(value for value, _ in cases)), [bits for _, bits in cases]
    np.testing.assert_array_equal(encode(x, FLOAT16).view(np.uint16), expected)


def test_bfloat16_matches_nearest_even_reference():
    x = float_test_inputs()
    np.testing.assert_array_equal(encode(x, BFLOAT16).view(np.uint16), reference_bfloat16_bits(x))
    finite = x[np.isfinite(x)]
    np.testing.assert_array_equal(
        encode(finite, BFLOAT16).view(np.uint16), finite.astype(ml_dtypes.bfloat16).view(np.uint16)
    )


def test_bfloat16_boundaries():
    cases = [
        (0x7F7F0000, 0x7F7F),  # the largest finite bfloat16
        (0x7F7F0001, 0x7F7F),
        (0x7F7F7FFF, 0x7F7F),
        (0x7F7F8000, 0x7F80),  # tie: the even side is Inf
        (0x7F7FFFFF, 0x7F80),
        (0x3F808000, 0x3F80),  # 1 + 2**-8: tie, to the even 1
        (0x3F818000, 0x3F82),  # 1 + 3 * 2**-8: tie, to the even 1 + 2**-6
        (0x00008000, 0x0000),  # subnormal tie
        (0x00018000, 0x0002),
        (0x80000000, 0x8000),
    ]
    x, expected = bits_to_f32([bits for bits, _ in cases]), [bits for _, bits in cases]
    np.testing.assert_array_equal(encode(x, BFLOAT16).view(np.uint16), expected)


@pytest.mark.parametrize(
    "dtype, bits", [(FLOAT32, 0x7FC00000), (FLOAT16, 0x7E00), (BFLOAT16, 0x7FC0)], ids=str
)
def test_float_nan_is_canonical(dtype, bits):
    nans = bits_to_f32([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFFFFFFF, 0x7FA00000])
    encoded = encode(nans, dtype)
    assert encoded.dtype == dtype.storage
    np.testing.assert_array_equal(encoded.view(np.uint32 if dtype is FLOAT32 else np.uint16), bits)


def test_float32_is_identity_but_nan():
    x = float_test_inputs()
    expected = x.view(np.uint32).copy()
    expected[np.isnan(x)] = 0x7FC00000
    np.testing.assert_array_equal(encode(x, FLOAT32).view(np.uint32), expected)


# ---------------------------------------------------------------------------------------------------
# e8m0
# ---------------------------------------------------------------------------------------------------


def test_e8m0_encode_every_power_of_two():
    powers = E8M0_VALUES[:255].astype(np.float32)
    assert powers[0] == 2.0**-127  # a float32 subnormal, kept
    np.testing.assert_array_equal(to_codes(encode(powers, E8M0), E8M0), np.arange(255))
    assert to_codes(encode(f32(NAN), E8M0), E8M0)[0] == 0xFF


@pytest.mark.parametrize("bad", [3.0, 0.0, -0.0, -1.0, 1.5, np.inf, 2.0**-128, 2.0**-149, 2.0**-126 * 1.5])
def test_e8m0_encode_rejects_non_powers(bad):
    with pytest.raises(ValueError):
        encode(f32(1.0, bad), E8M0)


def test_e8m0_round_up_cases():
    up, down = np.float32(np.inf), np.float32(0)
    cases = [
        (0.0, 0),
        (-0.0, 0),
        (2.0**-149, 0),
        (2.0**-128, 0),
        (2.0**-127, 0),  # a float32 subnormal
        (np.nextafter(np.float32(2.0**-127), up), 1),
        (np.nextafter(np.float32(2.0**-126), down), 1),
        (2.0**-126, 1),
        (np.nextafter(np.float32(2.0**-126), up), 2),
        (1.0, 127),
        (np.nextafter(np.float32(1.0), up), 128),
        (1.5, 128),
        (1.75, 128),
        (np.nextafter(np.float32(2.0), down), 128),
        (2.0, 128),
        (np.nextafter(np.float32(2.0), up), 129),
        (448.0, 136),
        (1 / 448.0, 119),
        (2.0**127, 254),
        (np.nextafter(np.float32(2.0**127), up), 254),
        (np.finfo(np.float32).max, 254),
        (np.inf, 254),
        (NAN, 255),
    ]
    q, expected = f32(*(value for value, _ in cases)), [code for _, code in cases]
    encoded = e8m0_round_up(q)
    assert encoded.dtype == E8M0.storage
    np.testing.assert_array_equal(to_codes(encoded, E8M0), expected)
    np.testing.assert_array_equal(expected, [reference_e8m0_round_up(v) for v in as_float64(q)])


def test_e8m0_round_up_random():
    q = np.abs(np.concatenate([random_float32(1 << 14, 8), bits_to_f32(SPECIAL_BITS)]))
    expected = [reference_e8m0_round_up(v) for v in as_float64(q).tolist()]
    np.testing.assert_array_equal(to_codes(e8m0_round_up(q), E8M0), expected)
    finite = q[np.isfinite(q)]
    assert np.all(decode(e8m0_round_up(finite), E8M0).astype(np.float64) >= np.minimum(finite, 2.0**127))


@settings(max_examples=200, deadline=None)
@given(q=st.floats(min_value=0, width=32))
def test_e8m0_round_up_property(q):
    assert to_codes(e8m0_round_up(f32(q)), E8M0)[0] == reference_e8m0_round_up(q)


def test_e8m0_round_up_rejects_negatives():
    with pytest.raises(ValueError):
        e8m0_round_up(f32(1.0, -2.0))


def test_e8m0_round_up_keeps_shape():
    assert e8m0_round_up(np.ones((2, 3), np.float32)).shape == (2, 3)
    assert e8m0_round_up(np.float32(3)).shape == ()


# ---------------------------------------------------------------------------------------------------
# representable
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [FP8, FP4, INT8, INT4, E8M0], ids=str)
def test_representable_every_value_and_nothing_between(dtype):
    table = VALUE_TABLES[dtype]
    finite = np.unique(table[~np.isnan(table)])
    assert representable(finite, dtype).all()
    between = (finite[:-1] + finite[1:]) / 2
    assert not representable(between, dtype).any()
    assert not representable(np.nextafter(finite, np.inf), dtype).any()
    outside = [finite[-1] * 2, finite[0] * 2 if finite[0] < 0 else finite[0] / 2, np.inf, -np.inf, 1e300]
    assert not representable(outside, dtype).any()
    assert representable([NAN], dtype)[0] == (dtype in (FP8, E8M0))


def test_representable_special_cases():
    def check(dtype, held, not_held):
        assert representable(held, dtype).all() and not representable(not_held, dtype).any()

    check(E8M0, [2.0**-127, 1.0, 2.0**127, NAN], [0.0, -0.0, 2.0**-128, -1.0, 3.0, np.inf])
    for dtype in (FLOAT32, FLOAT16, BFLOAT16):
        check(dtype, [NAN, np.inf, -np.inf, 1.0, -0.0], [1 + 2.0**-30, 1e300])
    check(FLOAT32, [2.0**-149, 1 + 2.0**-23], [2.0**-150, 1 + 2.0**-24])
    check(FLOAT16, [65504, 2.0**-24, 1 + 2.0**-10], [65520, 2.0**-25, 1 + 2.0**-11])
    check(BFLOAT16, [2.0**-133, 1 + 2.0**-7, 3.3895313892515355e38], [2.0**-134, 1 + 2.0**-8, 3.4e38])
    assert representable(np.zeros((2, 3)), FP8).shape == (2, 3)


# ---------------------------------------------------------------------------------------------------
# codes and nibbles
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [FP8, FP4, INT8, INT4, E8M0], ids=str)
def test_codes_round_trip(dtype):
    codes = np.arange(1 << dtype.bits, dtype=np.uint8).reshape(-1, 2)
    stored = from_codes(codes, dtype)
    assert stored.dtype == dtype.storage and stored.shape == codes.shape
    out = to_codes(stored, dtype)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, codes)


@pytest.mark.parametrize("dtype", [FP4, INT4], ids=str)
def test_four_bit_codes_are_checked(dtype):
    with pytest.raises(ValueError):
        from_codes(np.array([16], np.uint8), dtype)


def test_codes_only_for_narrow_types():
    with pytest.raises(ValueError):
        to_codes(np.zeros(2, np.float32), FLOAT32)
    with pytest.raises(ValueError):
        from_codes(np.zeros(2, np.uint8), BFLOAT16)
    with pytest.raises(TypeError):
        to_codes(np.zeros(2, np.uint8), FP8)


def test_pack_nibbles_layout():
    np.testing.assert_array_equal(pack_nibbles(np.array([1, 2, 3], np.uint8)), [0x21, 0x03])
    np.testing.assert_array_equal(pack_nibbles(np.array([[1, 2], [3, 4]], np.uint8)), [0x21, 0x43])
    np.testing.assert_array_equal(pack_nibbles(np.array([0xF], np.uint8)), [0x0F])
    empty = pack_nibbles(np.zeros(0, np.uint8))
    assert empty.dtype == np.uint8 and empty.size == 0
    np.testing.assert_array_equal(unpack_nibbles(np.array([0x21, 0x03], np.uint8), 3), [1, 2, 3])
    with pytest.raises(ValueError):
        pack_nibbles(np.array([16], np.uint8))
    with pytest.raises(ValueError):
        unpack_nibbles(np.array([0x21, 0x03], np.uint8), 5)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.integers(0, 15), max_size=41))
def test_nibbles_round_trip(values):
    codes = np.array(values, dtype=np.uint8)
    packed = pack_nibbles(codes)
    assert packed.dtype == np.uint8 and packed.shape == ((len(values) + 1) // 2,)
    for k, value in enumerate(values):
        assert (packed[k // 2] >> (4 * (k % 2))) & 0xF == value
    if len(values) % 2:
        assert packed[-1] >> 4 == 0
    np.testing.assert_array_equal(unpack_nibbles(packed, len(values)), codes)


def test_fp4_pipeline_to_packed_bytes():
    x = f32(-6, -0.0, 0.5, 1.5, 3, 7, NAN)
    packed = pack_nibbles(to_codes(encode(x, FP4), FP4))
    np.testing.assert_array_equal(packed, [0x8F, 0x31, 0x75, 0x07])
    restored = decode(from_codes(unpack_nibbles(packed, x.size), FP4), FP4)
    assert_same_floats(restored, [-6, -0.0, 0.5, 1.5, 3, 6, 6])


# --- the per-type facts on DType, by enumerating every value of each narrow type ----------------------------


def _every_value(dtype) -> np.ndarray:
    """Every value of ``dtype`` as its storage array: all codes of the 4- and 8-bit types, all 2^16
    patterns of the 16-bit ones, and float32's specials plus 2^16 spread bit patterns."""
    if dtype.bits <= 8:
        return np.arange(1 << dtype.bits, dtype=np.uint8).view(dtype.storage) if dtype.bits == 8 \
            else from_codes(np.arange(16, dtype=np.uint8), dtype)
    if dtype.bits == 16:
        return np.arange(1 << 16, dtype=np.uint16).view(dtype.storage)
    return (np.arange(1 << 16, dtype=np.uint32) * 65537).view(np.float32)


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=lambda t: t.name)
def test_save_dtype_holds_every_value_exactly(dtype) -> None:
    values = decode(_every_value(dtype), dtype).astype(np.float64)
    saved = values.astype(dtype.save_dtype)
    back = saved.astype(np.float64)
    assert np.array_equal(back, values, equal_nan=True)
    assert np.array_equal(np.signbit(back), np.signbit(values))
    assert dtype.save_dtype.kind in "fi" and dtype.save_dtype.isbuiltin  # a standard NumPy type


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=lambda t: t.name)
def test_value_facts(dtype) -> None:
    values = decode(_every_value(dtype), dtype)
    assert dtype.has_nan == bool(np.isnan(values).any())
    integral = bool(np.all(values == np.round(values)))
    if dtype.int_range is not None:
        assert integral and dtype.int_range == (int(values.min()), int(values.max()))
        assert dtype.is_integer and dtype.is_quantized
    else:
        assert not dtype.is_integer
    # raw device storage: one element per value, or a byte per two 4-bit values
    assert dtype.device_storage.itemsize * 8 == max(dtype.bits, 8) and dtype.device_storage.kind in "fu"
