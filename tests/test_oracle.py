"""The independent oracle (tests/oracle.py) checked against what is known without netdsl:

- its hand-written encoders against ml_dtypes' casts with the clamping and NaN rules applied explicitly
  (two independent constructions of the same rounding), on every code, every midpoint and its neighbours;
- docs/semantics.md's checked examples (observed TensorRT runs), exactly;
- the TensorRT operator docs' four examples, to their printed two decimals (atol 0.01), and the two
  alternatives docs/semantics.md rules out (round-up NVFP4 scale, merged edge block) must miss them;
- the special-value rules of docs/semantics.md's tables, value by value;
- examples/make_cases.py regenerates the committed case files exactly.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import oracle
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import make_cases as truth  # noqa: E402  (the doc's and docs/semantics.md's values, copied verbatim)

DOC_ATOL = 0.01


def same(got, want) -> bool:
    """Equal values, NaN where NaN, and the same sign of zero."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return got.shape == want.shape and np.array_equal(got, want, equal_nan=True) and \
        np.array_equal(np.signbit(got[~np.isnan(got)]), np.signbit(want[~np.isnan(want)]))


def f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# the encoders, against ml_dtypes with explicit clamping


def probe_values(grid: list[float]) -> np.ndarray:
    """float32 values around every grid point and midpoint (both signs), beyond the ends, and random."""
    points = []
    for lower, upper in zip(grid, grid[1:]):
        points += [lower, (lower + upper) / 2]
    points += [grid[-1], grid[-1] * 1.01, grid[-1] * 1.1, grid[-1] * 4, 1e30]
    points = f32(points)
    around = [points, np.nextafter(points, np.float32(np.inf)), np.nextafter(points, np.float32(-np.inf))]
    rng = np.random.default_rng(0)
    randoms = f32(rng.uniform(0, grid[-1] * 1.2, 20000))
    tiny = f32(rng.uniform(0, grid[1] * 4, 5000))
    values = np.concatenate(around + [randoms, tiny, f32([0.0, np.inf, 2.0**-149])])
    return np.concatenate([values, -values])


def reference_cast(values: np.ndarray, low: float, high: float, dtype) -> np.ndarray:
    return np.clip(values, low, high).astype(dtype).astype(np.float64)


def test_fp8_encoder_matches_ml_dtypes_with_clamping():
    values = probe_values(oracle.FP8_GRID)
    ours = np.array([oracle.encode_fp8(v) for v in values.astype(np.float64)])
    assert same(ours, reference_cast(values, -448, 448, ml_dtypes.float8_e4m3fn))
    assert math.isnan(oracle.encode_fp8(math.nan))


def test_fp4_encoder_matches_ml_dtypes_with_clamping():
    values = probe_values(oracle.FP4_GRID)
    ours = np.array([oracle.encode_fp4(v) for v in values.astype(np.float64)])
    assert same(ours, reference_cast(values, -6, 6, ml_dtypes.float4_e2m1fn))
    assert oracle.encode_fp4(math.nan) == 6.0  # ONNX's float4 rule (ml_dtypes would give -0)


def test_every_fp8_and_fp4_code_decodes_as_ml_dtypes_does():
    fp8 = np.arange(0x7F, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float64)
    assert oracle.FP8_GRID == fp8.tolist()
    fp4 = np.array([ml_dtypes.float4_e2m1fn(v) for v in oracle.FP4_GRID], dtype=np.float64)
    assert oracle.FP4_GRID == fp4.tolist()


@pytest.mark.parametrize("encode, low, high", [(oracle.encode_int8, -128, 127), (oracle.encode_int4, -8, 7)])
def test_int_encoders_round_half_even_after_clamping(encode, low, high):
    halves = np.arange(2 * low - 6, 2 * high + 7) / 2  # every half-integer around the range
    values = np.concatenate([halves, np.nextafter(halves, np.inf), np.nextafter(halves, -np.inf),
                             [np.inf, -np.inf, 1e30, -1e30]]).astype(np.float32).astype(np.float64)
    ours = np.array([encode(v) for v in values])
    assert np.array_equal(ours, np.rint(np.clip(values, low, high)))
    assert encode(math.nan) == 0.0 and encode(2.5) == 2.0 and encode(-2.5) == -2.0 and encode(3.5) == 4.0


def test_bfloat16_and_float16_round_to_nearest_even():
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2**32, 50000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    ours = np.array([oracle.encode_bfloat16(v) for v in values.astype(np.float64)])
    assert same(ours, values.astype(ml_dtypes.bfloat16).astype(np.float64))
    assert oracle.encode_bfloat16(1 + 2.0**-8) == 1.0 and oracle.encode_bfloat16(1 + 3 * 2.0**-8) == 1 + 2.0**-6
    assert oracle.encode_float16(1 + 2.0**-11) == 1.0 and oracle.encode_float16(70000.0) == math.inf


def test_mx_exponent_is_the_smallest_power_of_two_not_below_amax_over_448():
    def brute(amax: float) -> int:
        q = oracle.f32_div(amax, 448.0)
        e = -127
        while e < 127 and q > 2.0**e:
            e += 1
        return e

    amaxes = [0.0, 2.0**-149, 1e-40, 1e-38, 448.0 * 2.0**-127, 448.0 * 2.0**-126, 1.0, 448.0, 449.0,
              56.0, 1.9 * 2**8, 1.75 * 2**8, 2.0**100, 3e38, float(np.finfo(np.float32).max)]
    with np.errstate(over="ignore"):
        amaxes += [float(np.nextafter(np.float32(a), np.float32(np.inf))) for a in amaxes]
    for amax in amaxes:
        assert oracle.mx_exponent(amax) == brute(amax), amax
    assert oracle.mx_exponent(math.inf) == 127 and oracle.mx_exponent(0.0) == -127
    assert oracle.mx_exponent(448.0) == 0 and oracle.mx_exponent(449.0) == 1 and oracle.mx_exponent(56.0) == -3
    assert oracle.mx_exponent(1.9 * 2**8) == 1  # round up; the OCP floor rule would give 0 (and saturate)


# --------------------------------------------------------------------------------------------------
# docs/semantics.md "Checked examples" (observed TensorRT runs): exact


def test_trt_fp8_rows():
    data, scale = oracle.dynamic_quantize(truth.trt_rows_input(), axis=1, block_size=16,
                                          output_type="fp8", scale_type="float32")
    assert same(scale, f32([[1], [0.3333333], [0.9583334]]) / np.float32(448))
    assert same(data[0], [-448, -416, -416, -384, -384, -352, -320, -320,
                          -288, -288, -256, -240, -224, -208, -192, -160])


def test_trt_nvfp4_rows():
    data, scale = oracle.dynamic_quantize(truth.trt_rows_input(), f32(1), axis=1, block_size=16,
                                          output_type="fp4", scale_type="fp8")
    assert same(scale, [[0.171875], [0.0546875], [0.15625]])
    assert same(data[1], [-6, -6, -4, -4, -3, -2, -1.5, -1, 0, 1, 1.5, 2, 3, 4, 4, 6])


def test_trt_2d():
    data, scale = oracle.dynamic_quantize(truth.trt_2d_input(), block_shape=[4, 4],
                                          output_type="fp8", scale_type="float32")
    assert same(scale, f32([[1 / 448, 0.875 / 448], [0.84375 / 448, 0.96875 / 448]]))
    assert same(data[7], [384, 416, 416, 448, 416, 416, 448, 448])


def test_nvfp4_scale_rounds_to_nearest_even():
    assert oracle.encode_fp8(0.1597) == 0.15625  # docs/semantics.md: TensorRT 10.16 on sm90


def test_make_cases_truth_is_semantics_md():
    """The constants make_cases.py writes into the trt_* cases are the ones above."""
    assert same(truth.TRT_FP8_ROWS_SCALE, f32([[1], [0.3333333], [0.9583334]]) / np.float32(448))
    assert same(truth.TRT_NVFP4_ROWS_SCALE, [[0.171875], [0.0546875], [0.15625]])
    assert same(truth.TRT_2D_SCALE, f32([[1 / 448, 0.875 / 448], [0.84375 / 448, 0.96875 / 448]]))


# --------------------------------------------------------------------------------------------------
# the TensorRT operator docs' examples: two printed decimals


def close(got, printed) -> bool:
    return np.asarray(got).shape == np.asarray(printed).shape and \
        float(np.abs(np.asarray(got) - np.asarray(printed)).max()) <= DOC_ATOL


def test_doc_quantize():
    x, scale = f32(truth.DOC_QUANTIZE_INPUT), f32([1 / 127])
    q = oracle.quantize(x, scale, axis=3)
    assert same(q, [[[[71, 113, 127], [-71, 50, 127], [85, 14, -128]]]])
    out = oracle.dequantize(q, scale, axis=3)
    assert close(out, truth.DOC_QUANTIZE_OUTPUT)
    # the printed 1.0 / -1.0 are saturated codes: 127 * fl32(1/127) and -128 * fl32(1/127)
    assert out[0, 0, 0, 2] == oracle.f32_mul(127, float(np.float32(1 / 127))) == 1.0
    assert out[0, 0, 2, 2] == oracle.f32_mul(-128, float(np.float32(1 / 127)))
    assert abs(out[0, 0, 2, 2] - -1.0) == pytest.approx(1 / 127, rel=1e-6)


def test_doc_block_quantization():
    weights, scale = f32(truth.DOC_BLOCK_WEIGHTS), f32(truth.DOC_BLOCK_SCALE)
    q = oracle.quantize(weights, scale, "int4")
    assert same(q, np.ones((4, 8)))
    out = oracle.dequantize(q, scale)
    assert close(out, truth.DOC_BLOCK_OUTPUT) and same(out, truth.DOC_BLOCK_OUTPUT)


def nvfp4_doc(x, fp8_scale=oracle.encode_fp8):
    """The doc's NVFP4 network, with a pluggable rounding of the block scale (dqs = 1)."""
    out = np.empty(x.shape)
    for row in range(x.shape[0]):
        for start in range(0, x.shape[1], 16):
            block = x[row, start:start + 16].astype(np.float64)
            s = fp8_scale(oracle.f32_div(float(np.abs(block).max()), 6.0))
            for j, value in enumerate(block):
                out[row, start + j] = oracle.f32_mul(oracle.encode_fp4(oracle.f32_div(value, s)), s)
    return out


def test_doc_dynamic_quantize_nvfp4():
    x, dqs = f32(truth.DOC_DYNQ_INPUT), f32([1])
    data, scale = oracle.dynamic_quantize(x, dqs, axis=1, block_size=16, output_type="fp4", scale_type="fp8")
    assert same(scale, [[0.8125, 1.625], [0.8125, 1.125]])
    out = oracle.dequantize(data, oracle.dequantize(scale, dqs))
    assert close(out, truth.DOC_DYNQ_OUTPUT)
    assert same(nvfp4_doc(x), out)


def test_doc_nvfp4_rules_out_a_round_up_scale():
    """docs/semantics.md: a round-up fp8 block scale misses the printed values by 2.75."""
    def round_up(value):
        return min((g for g in oracle.FP8_GRID if g >= value), default=448.0)

    miss = np.abs(nvfp4_doc(f32(truth.DOC_DYNQ_INPUT), round_up) - np.array(truth.DOC_DYNQ_OUTPUT)).max()
    assert miss == pytest.approx(2.75)


def fp8_blocks_doc(x, column_blocks):
    """The doc's 2-D example with the given column blocks (rows in blocks of 4), fp8 + float32 scale."""
    out = np.empty(x.shape)
    for row0 in (0, 4):
        for col0, col1 in column_blocks:
            block = x[row0:row0 + 4, col0:col1].astype(np.float64)
            s = oracle.f32_div(float(np.abs(block).max()), 448.0)
            for (i, j), value in np.ndenumerate(block):
                out[row0 + i, col0 + j] = oracle.f32_mul(oracle.encode_fp8(oracle.f32_div(value, s)), s)
    return out


def test_doc_dynamic_quantize_2d_partial_edge_blocks():
    x = f32(truth.DOC_DYNQ_2D_INPUT)
    data, scale = oracle.dynamic_quantize(x, block_shape=[4, 3], output_type="fp8", scale_type="float32")
    assert scale.shape == (2, 3)
    out = oracle.dequantize(data, scale, block_shape=[4, 3])
    assert close(out, truth.DOC_DYNQ_2D_OUTPUT)
    assert same(fp8_blocks_doc(x, [(0, 3), (3, 6), (6, 8)]), out)
    # docs/semantics.md: merging the partial edge block into its neighbour misses by 0.56
    merged = np.abs(fp8_blocks_doc(x, [(0, 3), (3, 8)]) - np.array(truth.DOC_DYNQ_2D_OUTPUT)).max()
    assert merged == pytest.approx(0.5557, abs=1e-4)


# --------------------------------------------------------------------------------------------------
# granularity and the special-value rules, by hand


def test_per_channel_uses_the_axis():
    x = f32([[1, 2, 3], [4, 5, 6]])
    assert same(oracle.quantize(x, f32([1, 2]), axis=0), [[1, 2, 3], [2, 2, 3]])      # 2.5 -> 2
    assert same(oracle.quantize(x, f32([1, 2, 4]), axis=1), [[1, 1, 1], [4, 2, 2]])   # 0.75 -> 1, 1.5 -> 2
    assert same(oracle.quantize(x, f32([1, 2, 4]), axis=-1), oracle.quantize(x, f32([1, 2, 4]), axis=1))


def test_partial_edge_block():
    x = f32([[1, 2, 3, 4, 5, 6, 7, 8]])
    q = oracle.quantize(x, f32([[1, 2, 4]]), "int8", block_shape=[1, 3])  # blocks [0:3], [3:6], [6:8]
    assert same(q, [[1, 2, 3, 2, 2, 3, 2, 2]])
    assert same(oracle.dequantize(q, f32([[1, 2, 4]]), block_shape=[1, 3]), [[1, 2, 3, 4, 4, 6, 8, 8]])
    data, scale = oracle.dynamic_quantize(x, block_shape=[-1, 3], output_type="int8", scale_type="float32")
    assert same(scale, f32([[3 / 127, 6 / 127, 8 / 127]]))


def test_quantize_special_values():
    x = f32([math.nan, math.inf, -math.inf, -0.0, 1e-30, -1e-30])
    one = f32([1.0])
    assert same(oracle.quantize(x, one, "int8"), [0, 127, -128, 0, 0, 0])
    assert same(oracle.quantize(x, one, "int4"), [0, 7, -8, 0, 0, 0])
    assert same(oracle.quantize(x, one, "fp8"), [math.nan, 448, -448, -0.0, 0.0, -0.0])
    assert same(oracle.quantize(x, one, "fp4"), [6, 6, -6, -0.0, 0.0, -0.0])


def test_dequantize_double_rounding_and_overflow():
    assert same(oracle.dequantize(f32([448]), f32([1e36])), [math.inf])
    assert same(oracle.dequantize(f32([-0.0]), f32([3.0])), [-0.0])
    # fl32(q * s) first, then bfloat16: 3 * fl32(1/3) rounds to 1.0 in float32
    assert same(oracle.dequantize(f32([3]), f32([1 / 3]), "bfloat16"), [1.0])
    assert same(oracle.dequantize(f32([1]), f32([2.0**-149]), "float32"), [2.0**-149])  # subnormal kept


def test_dynamic_quantize_zero_and_nan_blocks():
    x = f32([[0.0, -0.0, 0.0, -0.0], [math.nan, math.nan, math.nan, math.nan], [-1e-30, 2e-30, 0, 0]])
    data, scale = oracle.dynamic_quantize(x, f32(1), axis=1, block_size=4, output_type="fp4", scale_type="fp8")
    assert same(scale, [[0], [0], [0]])  # all-NaN amax is 0; 1e-30/6 underflows fp8
    assert same(data, np.zeros((3, 4)))  # effective scale 0: +0, even for -0 and NaN
    data, scale = oracle.dynamic_quantize(x[:2], block_shape=[1, 4], output_type="fp8", scale_type="float32")
    assert same(scale, [[0], [0]]) and same(data, np.zeros((2, 4)))
    data, scale = oracle.dynamic_quantize(f32([[0.0] * 32]), axis=1, block_size=32,
                                          output_type="fp8", scale_type="e8m0")
    assert same(scale, [[2.0**-127]]) and same(data, np.zeros((1, 32)))


def test_dynamic_quantize_inf_rules():
    x = f32([[math.inf, 1.0, -2.0, -math.inf]])
    data, scale = oracle.dynamic_quantize(x, f32(1), axis=1, block_size=4, output_type="fp4", scale_type="fp8")
    assert same(scale, [[448]]) and same(data, [[6, 0.0, -0.0, -6]])  # 1 / 448 rounds to 0 in fp4
    data, scale = oracle.dynamic_quantize(x, block_shape=[1, 4], output_type="fp8", scale_type="float32")
    assert same(scale, [[math.inf]]) and same(data, [[math.nan, 0.0, -0.0, math.nan]])
    data, scale = oracle.dynamic_quantize(x, block_shape=[1, 4], output_type="int8", scale_type="float32")
    assert same(data, [[0, 0, 0, 0]])
    x32 = f32([[math.inf] + [1.0] * 31])
    data, scale = oracle.dynamic_quantize(x32, axis=1, block_size=32, output_type="fp8", scale_type="e8m0")
    assert same(scale, [[2.0**127]]) and data[0, 0] == 448 and same(data[0, 1:], np.zeros(31))


def test_nvfp4_double_quant_scale_divides_left_to_right():
    dqs = float(np.float32(20 / 2688))
    x = f32([[1.0] * 15 + [10.0]])
    data, scale = oracle.dynamic_quantize(x, f32(dqs), axis=1, block_size=16, output_type="fp4", scale_type="fp8")
    expected_scale = oracle.encode_fp8(oracle.f32_div(oracle.f32_div(10.0, 6.0), dqs))
    assert scale[0, 0] == expected_scale
    effective = oracle.f32_mul(expected_scale, dqs)
    assert data[0, 15] == oracle.encode_fp4(oracle.f32_div(10.0, effective))


# --------------------------------------------------------------------------------------------------
# the committed case files are what make_cases.py writes


def test_make_cases_reproduces_the_committed_cases(tmp_path):
    try:
        assert truth.main(["--out", str(tmp_path)]) == 0
    finally:
        truth.OUT = truth.HERE
    written = sorted(path.name for path in tmp_path.iterdir())
    assert any(name.endswith(".case.yaml") for name in written)
    for name in written:
        committed = ROOT / "examples" / name
        assert committed.exists(), f"examples/{name} is not committed (rerun examples/make_cases.py)"
        if name.endswith(".npy"):
            assert same(np.load(committed), np.load(tmp_path / name)), name
            assert np.load(committed).dtype == np.load(tmp_path / name).dtype, name
        elif name.endswith(".npz"):
            with np.load(committed) as old, np.load(tmp_path / name) as new:
                assert old.files == new.files and all(same(old[k], new[k]) for k in old.files), name
        else:
            assert committed.read_text() == (tmp_path / name).read_text(), \
                f"examples/{name} differs from what make_cases.py writes (rerun it)"
