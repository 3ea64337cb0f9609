"""Every special value, for every op and type, on every backend: the rows of docs/special-values.md.

The expectations are written by hand from docs/semantics.md, as codes and bit patterns:
int8/int4 as their integer values, fp8/fp4/e8m0 as their raw codes, float32/float16/bfloat16 as their bits.
Nothing here is computed by netdsl. Each test runs on numpy and, where a GPU is present, cupy.

Code reminders (docs/semantics.md "Number formats"): fp8 E4M3 = s eeee mmm, bias 7: 1.0 = 0x38, 3.0 = 0x44,
8 = 0x50, 0.125 = 0x20, 256 = 0x78, 448 = 0x7E, -0 = 0x80, NaN = 0x7F, smallest subnormal 2^-9 = 0x01. fp4 E2M1
= s ee m: 0, 0.5, 1, 1.5, 2, 3, 4, 6 = 0x0..0x7, negatives | 0x8. e8m0: 2^k = k + 127 (2^-127 = 0x00,
1 = 0x7F, 2^127 = 0xFE).
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

import netdsl
from netdsl import ModelError
from tests.conftest import backends

NAN, INF = math.nan, math.inf
NEG_NAN = float(np.array(0xFFC00000, np.uint32).view(np.float32))
F32_MAX = 3.4028234663852886e38


def codes(array: np.ndarray) -> list[int]:
    """int8/int4: values; fp8/fp4/e8m0: codes; float32/float16/bfloat16: bit patterns."""
    array = np.asarray(array)
    if array.dtype in (np.int8, ml_dtypes.int4):
        return array.astype(int).reshape(-1).tolist()
    if array.dtype == ml_dtypes.float4_e2m1fn:
        return (array.view(np.uint8) & 0x0F).reshape(-1).tolist()
    unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32}[array.dtype.itemsize]
    return array.view(unsigned).reshape(-1).tolist()


def literal(values: list[float]) -> str:
    return "[" + ", ".join("nan" if math.isnan(v) else float(v).hex() for v in values) + "]"


def run(text: str, inputs: dict[str, np.ndarray], backend: str) -> dict[str, np.ndarray]:
    return netdsl.loads(text).run(inputs, backend=backend)


# --------------------------------------------------------------------------------------------------
# Quantize: q = saturate(round_half_even(x / scale)); per-tensor scale


#: row -> (scale, {to_type: (x values, expected)}); x is float32 unless a row is run for float16/bfloat16 too
QUANTIZE = {
    # NaN: integers 0; fp8 the canonical NaN whatever the sign; fp4 +6 (ONNX's float4 rule)
    "NaN": (1.0, {t: ([NAN, NEG_NAN], e) for t, e in
                  {"int8": [0, 0], "int4": [0, 0], "fp8": [0x7F, 0x7F], "fp4": [0x7, 0x7]}.items()}),
    "+Inf": (1.0, {t: ([INF], e) for t, e in {"int8": [127], "int4": [7], "fp8": [0x7E], "fp4": [0x7]}.items()}),
    "-Inf": (1.0, {t: ([-INF], e) for t, e in {"int8": [-128], "int4": [-8], "fp8": [0xFE], "fp4": [0xF]}.items()}),
    # -0, a negative that rounds to zero (2^-11 < 2^-10, half fp8's smallest subnormal), -0.25 (fp4: a tie -> 0)
    "-0": (1.0, {"int8": ([-0.0, -(2**-11), -0.25], [0, 0, 0]), "int4": ([-0.0, -(2**-11), -0.25], [0, 0, 0]),
                 "fp8": ([-0.0, -(2**-11), -0.25], [0x80, 0x80, 0xA8]),
                 "fp4": ([-0.0, -(2**-11), -0.25], [0x8, 0x8, 0x8])}),
    # float32 subnormal inputs, scale 1: all below every type's smallest step
    "subnormal input": (1.0, {t: ([2**-149, -(2**-149), 2**-127], e) for t, e in
                              {"int8": [0, 0, 0], "int4": [0, 0, 0], "fp8": [0x00, 0x80, 0x00],
                               "fp4": [0x0, 0x8, 0x0]}.items()}),
    # scale 2^-140 (a float32 subnormal, kept): x/s = 3, 2^-9, -8, and 1/2^-140 = 2^140 overflows float32 to +Inf
    "subnormal scale": (2**-140, {t: ([3 * 2**-140, 2**-149, -(2**-137), 1.0], e) for t, e in
                                  {"int8": [3, 0, -8, 127], "int4": [3, 0, -8, 7], "fp8": [0x44, 0x01, 0xD0, 0x7E],
                                   "fp4": [0x5, 0x0, 0xF, 0x7]}.items()}),
    # clamp, then round: 127.5 -> 127, -128.5 -> -128, 464 (past 448) -> 448; fp8 127.5 -> 128 (0x70)
    "saturation": (1.0, {t: ([1e6, -1e6, 127.5, -128.5, 464.0, F32_MAX], e) for t, e in
                         {"int8": [127, -128, 127, -128, 127, 127], "int4": [7, -8, 7, -8, 7, 7],
                          "fp8": [0x7E, 0xFE, 0x70, 0xF0, 0x7E, 0x7E],
                          "fp4": [0x7, 0xF, 0x7, 0xF, 0x7, 0x7]}.items()}),
    # exact ties go to the even code
    "ties": (1.0, {"int8": ([0.5, 1.5, 2.5, -0.5, -2.5, 126.5], [0, 2, 2, 0, -2, 126]),
                   "int4": ([0.5, 1.5, 2.5, -0.5, -2.5, 6.5], [0, 2, 2, 0, -2, 6]),
                   "fp8": ([17.0, 432.0, -(2**-10), 3 * 2**-10], [0x58, 0x7E, 0x80, 0x02]),
                   "fp4": ([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -5.0], [0x0, 0x2, 0x2, 0x4, 0x4, 0x6, 0x6, 0xE])}),
}
HALF_ROWS = ("NaN", "+Inf", "-Inf", "-0")  # rows whose inputs float16 and bfloat16 hold exactly


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("row,to_type,x_type", [
    (row, to_type, x_type) for row in QUANTIZE for to_type in ("int8", "int4", "fp8", "fp4")
    for x_type in ("float32", "float16", "bfloat16") if x_type == "float32" or row in HALF_ROWS])
def test_quantize(row: str, to_type: str, x_type: str, backend: str) -> None:
    scale, cases = QUANTIZE[row]
    x, expected = cases[to_type]
    storage = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}[x_type]
    text = (f"input x : {x_type}[{len(x)}]\nconst s : float32[] = {literal([scale])[1:-1]}\n"
            f"q = quantize(x, s, to_type={to_type})\noutput q\n")
    values = np.array(x, np.float32).astype(storage)
    assert codes(run(text, {"x": values}, backend)["q"]) == expected


@pytest.mark.parametrize("scale", ["nan", "0", "-0.5", "-inf", "inf", "float16[] = 70000"])
@pytest.mark.parametrize("op,data_type", [("quantize", "float32"), ("dequantize", "int8")])
def test_scale_nan_inf_zero_negative_is_a_model_error(op: str, data_type: str, scale: str) -> None:
    """A constant scale is finite and > 0 after rounding to its type (70000 is +Inf in float16)."""
    scale = scale if ":" in scale or "=" in scale else f"float32[] = {scale}"
    text = f"input x : {data_type}[2]\nconst s : {scale}\nq = {op}(x, s)\noutput q\n"
    with pytest.raises(ModelError, match="every scale value must be finite and > 0"):
        netdsl.loads(text)


# --------------------------------------------------------------------------------------------------
# Dequantize: y = round_to(to_type, fl32(q * scale)); per-tensor scale

F32, F16, BF16 = "float32", "float16", "bfloat16"

#: row -> (scale, {from_type: (q as codes, {to_type: expected bits})}); q codes: ints for int8/int4, raw
#: codes for fp8/fp4
DEQUANTIZE = {
    # only fp8 has NaN codes: any NaN out is canonical (the sign of 0xFF is dropped)
    "NaN": (1.0, {"fp8": ([0x7F, 0xFF], {F32: [0x7FC00000] * 2, F16: [0x7E00] * 2, BF16: [0x7FC0] * 2})}),
    # no type holds Inf: the largest codes times 2^126 overflow float32
    "+Inf": (2.0**126, {t: (q, {F32: [0x7F800000], F16: [0x7C00], BF16: [0x7F80]})
                        for t, q in {"int8": [127], "int4": [7], "fp8": [0x7E], "fp4": [0x7]}.items()}),
    "-Inf": (2.0**126, {t: (q, {F32: [0xFF800000], F16: [0xFC00], BF16: [0xFF80]})
                        for t, q in {"int8": [-128], "int4": [-8], "fp8": [0xFE], "fp4": [0xF]}.items()}),
    # -0 codes stay -0; integers have none; with scale 2^-149 a negative product that underflows keeps its sign
    # (fp8 -2^-9 * 2^-149 and fp4 -0.5 * 2^-149 = -2^-150, a tie, round to -0; int -1 gives -2^-149 in float32)
    "-0": (2.0**-149, {
        "int8": ([0, -1], {F32: [0x00000000, 0x80000001], F16: [0x0000, 0x8000], BF16: [0x0000, 0x8000]}),
        "int4": ([0, -1], {F32: [0x00000000, 0x80000001], F16: [0x0000, 0x8000], BF16: [0x0000, 0x8000]}),
        "fp8": ([0x80, 0x81], {F32: [0x80000000] * 2, F16: [0x8000] * 2, BF16: [0x8000] * 2}),
        "fp4": ([0x8, 0x9], {F32: [0x80000000] * 2, F16: [0x8000] * 2, BF16: [0x8000] * 2})}),
    # 3 * 2^-130 is a float32 subnormal (3 << 19 = 0x180000), kept; bfloat16 keeps it (0x0018), float16 has 0
    "subnormal output": (2.0**-130, {t: (q, {F32: [0x00180000], F16: [0x0000], BF16: [0x0018]})
                                     for t, q in {"int8": [3], "int4": [3], "fp8": [0x44], "fp4": [0x5]}.items()}),
    # scale 2^-140 (subnormal): products are subnormal float32 (m << 9 ulps), rounded again to bfloat16:
    # 127 -> 0xFE00 rounds up to 0x0001; 448 -> 0x38000 is a tie, to even 0x0004; 7 and 6 round to 0
    "subnormal scale": (2.0**-140, {
        "int8": ([127], {F32: [0x0000FE00], F16: [0x0000], BF16: [0x0001]}),
        "int4": ([7], {F32: [0x00000E00], F16: [0x0000], BF16: [0x0000]}),
        "fp8": ([0x7E], {F32: [0x00038000], F16: [0x0000], BF16: [0x0004]}),
        "fp4": ([0x7], {F32: [0x00000C00], F16: [0x0000], BF16: [0x0000]})}),
    # the smallest e8m0 scale, 2^-127 (code 0x00), is a float32 subnormal: 1 * 2^-127 = 0x00400000
    "e8m0 scale 2^-127": ("e8m0", {t: (q, {F32: [0x00400000], F16: [0x0000], BF16: [0x0040]})
                                   for t, q in {"int8": [1], "int4": [1], "fp8": [0x38], "fp4": [0x2]}.items()}),
    # scale 2^14: every extreme fits float32 and bfloat16 exactly but overflows float16 to +-Inf
    "overflow": (2.0**14, {
        "int8": ([127, -128], {F32: [0x49FE0000, 0xCA000000], F16: [0x7C00, 0xFC00], BF16: [0x49FE, 0xCA00]}),
        "int4": ([7, -8], {F32: [0x47E00000, 0xC8000000], F16: [0x7C00, 0xFC00], BF16: [0x47E0, 0xC800]}),
        "fp8": ([0x7E, 0xFE], {F32: [0x4AE00000, 0xCAE00000], F16: [0x7C00, 0xFC00], BF16: [0x4AE0, 0xCAE0]}),
        "fp4": ([0x7, 0xF], {F32: [0x47C00000, 0xC7C00000], F16: [0x7C00, 0xFC00], BF16: [0x47C0, 0xC7C0]})}),
}


def quantized_input(from_type: str, q: list[int]) -> np.ndarray:
    if from_type == "int8":
        return np.array(q, np.int8)
    if from_type == "int4":
        return np.array(q, np.int8).astype(ml_dtypes.int4)
    return np.array(q, np.uint8).view(ml_dtypes.float8_e4m3fn if from_type == "fp8" else ml_dtypes.float4_e2m1fn)


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("row,from_type,to_type", [
    (row, from_type, to_type) for row, (_, cases) in DEQUANTIZE.items() for from_type in cases
    for to_type in (F32, F16, BF16)])
def test_dequantize(row: str, from_type: str, to_type: str, backend: str) -> None:
    scale, cases = DEQUANTIZE[row]
    q, expected = cases[from_type]
    if scale == "e8m0":
        scale_line = "const s : e8m0[] = 0x1p-127"
    else:
        scale_line = f"const s : float32[] = {literal([scale])[1:-1]}"
    text = f"input q : {from_type}[{len(q)}]\n{scale_line}\ny = dequantize(q, s, to_type={to_type})\noutput y\n"
    assert codes(run(text, {"q": quantized_input(from_type, q)}, backend)["y"]) == expected[to_type]


# --------------------------------------------------------------------------------------------------
# DynamicQuantize: one block along the last axis of a [1, B] input (the listed values, then zeros)

MODES = {  # mode -> (output_type, scale_type, block size)
    "NVFP4": ("fp4", "fp8", 16),
    "MXFP8": ("fp8", "e8m0", 32),
    "float-scale fp8": ("fp8", "float32", 4),
    "float-scale int8": ("int8", "float32", 4),
}

#: row -> {mode: (x values, expected scale code/bits, expected data for the listed values; the zeros that
#: fill the block give +0 codes)}; NVFP4 uses dqs = 1 unless the row gives (x, dqs)
DYNAMIC = {
    # amax ignores NaN; the NaN element is encoded by its type's rule
    "NaN element": {"NVFP4": ([NAN, 6.0, 3.0], 0x38, [0x7, 0x7, 0x5]),
                    "MXFP8": ([NAN, 448.0, 3.0], 0x7F, [0x7F, 0x7E, 0x44]),
                    "float-scale fp8": ([NAN, 448.0, 3.0], 0x3F800000, [0x7F, 0x7E, 0x44]),
                    "float-scale int8": ([NAN, 127.0, 3.0], 0x3F800000, [0, 127, 3])},
    # amax = Inf: NVFP4's fp8 scale saturates to 448, MXFP8's exponent to 127, the float scale is Inf
    "+Inf element": {"NVFP4": ([INF, 6.0, -1.0], 0x7E, [0x7, 0x0, 0x8]),
                     "MXFP8": ([INF, 448.0, -1.0], 0xFE, [0x7E, 0x00, 0x80]),
                     "float-scale fp8": ([INF, 448.0, -1.0], 0x7F800000, [0x7F, 0x00, 0x80]),
                     "float-scale int8": ([INF, 127.0, -1.0], 0x7F800000, [0, 0, 0])},
    "-Inf element": {"NVFP4": ([-INF, 6.0, 1.0], 0x7E, [0xF, 0x0, 0x0]),
                     "MXFP8": ([-INF, 448.0, 1.0], 0xFE, [0xFE, 0x00, 0x00]),
                     "float-scale fp8": ([-INF, 448.0, 1.0], 0x7F800000, [0x7F, 0x00, 0x00]),
                     "float-scale int8": ([-INF, 127.0, 1.0], 0x7F800000, [0, 0, 0])},
    "-0": {"NVFP4": ([-0.0, 6.0], 0x38, [0x8, 0x7]),
           "MXFP8": ([-0.0, 448.0], 0x7F, [0x80, 0x7E]),
           "float-scale fp8": ([-0.0, 448.0], 0x3F800000, [0x80, 0x7E]),
           "float-scale int8": ([-0.0, 127.0], 0x3F800000, [0, 127])},
    # NVFP4 with dqs = 2^-140: s = fp8(6*2^-140 / 6 / 2^-140) = 1, effective scale 2^-140 (subnormal, kept).
    # MXFP8: q = fl32(2^-130 / 448) is a nonzero subnormal <= 2^-127, so the scale is 2^-127 (0x00).
    # float scale: fl32(2^-130 / 448) = 1170 * 2^-149 (0x492) and fl32(2^-130 / 127) = 4128 * 2^-149
    # (0x1020); 2^19 / 1170 = 448.1 saturates to 448, 2^18 / 1170 = 224.05 -> 224 (0x76), 2^18 / 4128 = 63.5039
    "subnormal input and scale": {
        "NVFP4": (([6 * 2**-140, 3 * 2**-140, -(2**-149)], 2**-140), 0x38, [0x7, 0x5, 0x8]),
        "MXFP8": ([2**-130, -(2**-131), 2**-149], 0x00, [0x20, 0x98, 0x00]),
        "float-scale fp8": ([2**-130, -(2**-131), 2**-149], 0x00000492, [0x7E, 0xF6, 0x00]),
        "float-scale int8": ([2**-130, -(2**-131), 2**-149], 0x00001020, [127, -64, 0])},
    # NVFP4: 1e38 / 6 saturates the fp8 scale to 448, the data to +-6. MXFP8: q = max / 448 lies in (2^119,
    # 2^120], scale 2^120 (0xF7), max / 2^120 = 255.99998 -> 256 (0x78): round-up never saturates the block
    # maximum. float fp8: max / 448 = 2396745 * 2^98 exactly (0x7B124924), data exactly +-448. int8: -amax
    # gives -127, never -128
    "saturation": {"NVFP4": ([1e38, -1e38, 1e37], 0x7E, [0x7, 0xF, 0x7]),
                   "MXFP8": ([F32_MAX, -1.0], 0xF7, [0x78, 0x80]),
                   "float-scale fp8": ([F32_MAX, -F32_MAX, 1.0], 0x7B124924, [0x7E, 0xFE, 0x00]),
                   "float-scale int8": ([254.0, -254.0, 1.0], 0x40000000, [127, -127, 0])},
    # amax = 0: the effective scale is 0 (NVFP4, float scale) and the data +0, -0 included; MXFP8's scale is
    # 2^-127, never 0, so its data keeps -0
    "amax = 0 block": {"NVFP4": ([0.0, -0.0], 0x00, [0x0, 0x0]),
                       "MXFP8": ([0.0, -0.0], 0x00, [0x00, 0x80]),
                       "float-scale fp8": ([0.0, -0.0], 0x00000000, [0x00, 0x00]),
                       "float-scale int8": ([0.0, -0.0], 0x00000000, [0, 0])},
    # every element NaN: amax = 0, as above; NVFP4 and float scales write +0 for the NaNs, MXFP8 keeps NaN
    "all-NaN block": {"NVFP4": ([NAN] * 16, 0x00, [0x0] * 16),
                      "MXFP8": ([NAN] * 32, 0x00, [0x7F] * 32),
                      "float-scale fp8": ([NAN, NEG_NAN, NAN, NAN], 0x00000000, [0x00] * 4),
                      "float-scale int8": ([NAN, NEG_NAN, NAN, NAN], 0x00000000, [0] * 4)},
    # NVFP4: 1e-6 / 6 is below half of fp8's 2^-9, so s = 0 and the data +0 (the negative too); the float
    # scales underflow the same way (2^-149 / 448 and / 127 round to 0); MXFP8 can't: 2^-127 at least
    "scale underflow": {"NVFP4": ([1e-6, -1e-6], 0x00, [0x0, 0x0]),
                        "MXFP8": ([2**-149, -(2**-149)], 0x00, [0x00, 0x80]),
                        "float-scale fp8": ([2**-149, -(2**-149)], 0x00000000, [0x00, 0x00]),
                        "float-scale int8": ([2**-149, -(2**-149)], 0x00000000, [0, 0])},
    # Inf in a float-scale block: scale Inf, finite elements +-0, +-Inf / Inf = NaN (fp8 0x7F, int8 0)
    "Inf in a float-scale block": {"float-scale fp8": ([INF, -INF, 5.0, -5.0], 0x7F800000, [0x7F, 0x7F, 0x00, 0x80]),
                                   "float-scale int8": ([INF, -INF, 5.0, -5.0], 0x7F800000, [0, 0, 0, 0])},
}


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("row,mode", [(row, mode) for row, cases in DYNAMIC.items() for mode in cases])
def test_dynamic_quantize(row: str, mode: str, backend: str) -> None:
    output_type, scale_type, block = MODES[mode]
    listed, expected_scale, expected_data = DYNAMIC[row][mode]
    dqs = 1.0
    if isinstance(listed, tuple):
        listed, dqs = listed
    x = np.zeros((1, block), np.float32)
    x[0, : len(listed)] = listed
    dqs_line, dqs_arg = (f"const dqs : float32[] = {float(dqs).hex()}\n", "dqs, ") if mode == "NVFP4" else ("", "")
    text = (f"input x : float32[1, {block}]\n{dqs_line}d, s = dynamic_quantize(x, {dqs_arg}axis=1, "
            f"block_size={block}, output_type={output_type}, scale_type={scale_type})\noutput d, s\n")
    outputs = run(text, {"x": x}, backend)
    assert codes(outputs["s"]) == [expected_scale]
    zero = 0  # +0 in every type's codes
    assert codes(outputs["d"]) == expected_data + [zero] * (block - len(listed))


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("output_type", ["fp8", "int8"])
@pytest.mark.parametrize("to_type", [F32, F16, BF16])
def test_dequantize_by_an_inf_dynamic_scale(output_type: str, to_type: str, backend: str) -> None:
    """The one way a Dequantize scale is +Inf (a constant one is a model error): a float-scale
    DynamicQuantize scale output of a block holding Inf. Its data codes are all 0 or NaN (the "Inf in a
    float-scale block" row), so every element is 0 * Inf or NaN * Inf: the canonical NaN."""
    text = (f"input x : float32[1, 4]\nd, s = dynamic_quantize(x, axis=1, block_size=4, output_type={output_type}, "
            f"scale_type=float32)\ny = dequantize(d, s, to_type={to_type})\noutput y\n")
    x = np.array([[INF, -INF, 5.0, -5.0]], np.float32)
    nan = {F32: 0x7FC00000, F16: 0x7E00, BF16: 0x7FC0}[to_type]
    assert codes(run(text, {"x": x}, backend)["y"]) == [nan] * 4
