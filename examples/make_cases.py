"""Regenerate the examples' conformance cases (``NAME.case.yaml`` and the ``.npy`` files beside them).

    python3 examples/make_cases.py              # rewrite every case file; data files only when missing
    python3 examples/make_cases.py --new-data   # also redraw the random weights and inputs

Where the expected values come from (never from netdsl's own code):

- the TensorRT operator docs' examples: the inputs and the printed outputs, copied verbatim below
  (printed to two decimals, so those cases carry ``atol: 0.01``);
- observed TensorRT runs listed in docs/semantics.md "Checked examples": the values given there, exactly;
  the rows docs/semantics.md doesn't list come from the oracle, which must agree with every listed value;
- everything else: the independent oracle ``tests/oracle.py`` (written from docs/semantics.md alone).

Random data is drawn with fixed seeds; because the data files are committed and only redrawn with
``--new-data``, rerunning this script reproduces the committed case files exactly.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import oracle  # noqa: E402  (tests/oracle.py: independent of netdsl)

#: arrays with more elements than this go to an .npy file beside the case
INLINE_LIMIT = 64
#: where the case files are written (``--out``; the examples folder unless given)
OUT = HERE

# --------------------------------------------------------------------------------------------------
# Independent truth, copied from the sources

#: TensorRT docs, Quantize, example "Quantize": input (the doc nests it 3 deep; the declared shape is
#: (1, 1, 3, 3)) and the printed expected output
DOC_QUANTIZE_INPUT = [[[[0.56, 0.89, 1.4], [-0.56, 0.39, 6.0], [0.67, 0.11, -3.6]]]]
DOC_QUANTIZE_OUTPUT = [[[[0.56, 0.89, 1], [-0.56, 0.39, 1.0], [0.67, 0.11, -1.0]]]]
DOC_QUANTIZE_SCALE = 1 / 127

#: TensorRT docs, Quantize, example "Block Quantization" (the doc prints the (4, 8) output nested 3 deep)
DOC_BLOCK_WEIGHTS = [
    [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0],
    [1.1, 1.2, 2.1, 2.2, 3.1, 3.2, 4.1, 4.2],
    [4.0, 4.0, 5.0, 5.0, 6.0, 6.0, 7.0, 7.0],
    [4.1, 4.2, 5.1, 5.2, 6.1, 6.2, 7.1, 7.2],
]
DOC_BLOCK_SCALE = [[1, 1, 2, 2, 3, 3, 4, 4], [4, 4, 5, 5, 6, 6, 7, 7]]
DOC_BLOCK_INPUT1 = [[2, 2, 2, 2, 2, 2, 2, 2]]
DOC_BLOCK_OUTPUT = [
    [1, 1, 2, 2, 3, 3, 4, 4],
    [1, 1, 2, 2, 3, 3, 4, 4],
    [4, 4, 5, 5, 6, 6, 7, 7],
    [4, 4, 5, 5, 6, 6, 7, 7],
]

#: TensorRT docs, DynamicQuantize, example "DynamicQuantize" (NVFP4, dqs = 1)
DOC_DYNQ_INPUT = [
    [0.0, 0.3, 0.6, 1.0, 1.3, 1.6, 1.9, 2.3, 2.6, 2.9, 3.2, 3.5, 3.9, 4.2, 4.5, 4.8,
     5.2, 5.5, 5.8, 6.1, 6.5, 6.8, 7.1, 7.4, 7.7, 8.1, 8.4, 8.7, 9., 9.4, 9.7, 10.0],
    [3.0, 3.3, 3.6, 4.0, 3.3, 3.6, 3.9, 3.3, 2.6, 2.9, 3.2, 3.5, 3.9, 4.2, 4.5, 4.8,
     -5.2, -5.5, -5.8, -6.1, -5.5, -5.8, 5.1, 5.4, 5.7, 5.1, 5.4, 5.7, 6., 6.4, 4.7, 6.0],
]
DOC_DYNQ_OUTPUT = [
    [0.00, 0.41, 0.41, 0.81, 1.22, 1.62, 1.62, 2.44, 2.44, 3.25, 3.25, 3.25, 3.25, 4.87, 4.87, 4.87,
     4.87, 4.87, 6.50, 6.50, 6.50, 6.50, 6.50, 6.50, 6.50, 6.50, 9.75, 9.75, 9.75, 9.75, 9.75, 9.75],
    [3.25, 3.25, 3.25, 3.25, 3.25, 3.25, 3.25, 3.25, 2.44, 3.25, 3.25, 3.25, 3.25, 4.87, 4.87, 4.87,
     -4.50, -4.5, -6.75, -6.75, -4.5, -6.75, 4.5, 4.5, 6.75, 4.5, 4.5, 6.75, 6.75, 6.75, 4.5, 6.75],
]

#: TensorRT docs, DynamicQuantize, example "2D Block DynamicQuantize": the same 64 numbers as 8x8
DOC_DYNQ_2D_INPUT = np.array(DOC_DYNQ_INPUT).reshape(8, 8).tolist()
DOC_DYNQ_2D_OUTPUT = [
    [0., 0.3, 0.6, 1.01, 1.26, 1.68, 1.96, 2.32],
    [2.7, 3., 3.3, 3.36, 4.03, 4.36, 4.64, 4.64],
    [5.4, 5.4, 6., 6.04, 6.71, 6.71, 7.14, 7.14],
    [7.8, 8.4, 8.4, 8.73, 8.73, 9.4, 10., 10.],
    [2.9, 3.31, 3.73, 4.11, 3.2, 3.66, 3.86, 3.21],
    [2.69, 2.9, 3.11, 3.43, 4.11, 4.11, 4.29, 4.71],
    [-5.39, -5.39, -5.8, -5.94, -5.49, -5.94, 5.14, 5.57],
    [5.8, 4.97, 5.39, 5.49, 5.94, 6.4, 4.71, 6.],
]


def trt_rows_input() -> np.ndarray:
    """docs/semantics.md: x = arange(48).reshape(3, 16) / 24 - 1, float32 arithmetic throughout."""
    return np.arange(48, dtype=np.float32).reshape(3, 16) / np.float32(24) - np.float32(1)


def trt_2d_input() -> np.ndarray:
    """docs/semantics.md: x = arange(64).reshape(8, 8) / 32 - 1, float32 arithmetic."""
    return np.arange(64, dtype=np.float32).reshape(8, 8) / np.float32(32) - np.float32(1)


#: observed TensorRT values (docs/semantics.md "Checked examples"), exact
TRT_FP8_ROWS_SCALE = (np.array([[1], [0.3333333], [0.9583334]], np.float32) / np.float32(448)).tolist()
TRT_FP8_ROWS_DATA_ROW0 = [-448, -416, -416, -384, -384, -352, -320, -320,
                          -288, -288, -256, -240, -224, -208, -192, -160]
TRT_NVFP4_ROWS_SCALE = [[0.171875], [0.0546875], [0.15625]]
TRT_NVFP4_ROWS_DATA_ROW1 = [-6, -6, -4, -4, -3, -2, -1.5, -1, 0, 1, 1.5, 2, 3, 4, 4, 6]
TRT_2D_SCALE = (np.array([[1, 0.875], [0.84375, 0.96875]], np.float32) / np.float32(448)).tolist()
TRT_2D_DATA_ROW7 = [384, 416, 416, 448, 416, 416, 448, 448]

# --------------------------------------------------------------------------------------------------
# Data files (random, fixed seeds; drawn only when missing or with --new-data)


def bf16(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 (nearest even), kept in float32."""
    return np.vectorize(oracle.encode_bfloat16)(np.asarray(values, np.float32)).astype(np.float32)


def draw_int4_weights() -> np.ndarray:
    return (np.random.default_rng(2024).standard_normal((64, 256)) * 0.02).astype(np.float32)


def int4_scales(weight: np.ndarray) -> np.ndarray:
    """amax / 7 per block of 128 along axis 1, in float32."""
    amax = np.abs(weight).reshape(64, 2, 128).max(axis=2)
    return (amax.astype(np.float32) / np.float32(7)).astype(np.float32)


def draw_int8_weights() -> np.ndarray:
    rng = np.random.default_rng(88)
    row_std = 0.01 * 2.0 ** (np.arange(16) / 4)  # output channels of different magnitudes
    return (rng.standard_normal((16, 32)) * row_std[:, None]).astype(np.float32)


def int8_scales(weight: np.ndarray) -> np.ndarray:
    """amax / 127 per output channel (row), in float32."""
    return (np.abs(weight).max(axis=1).astype(np.float32) / np.float32(127)).astype(np.float32)


def draw_fp8_per_tensor_input() -> np.ndarray:
    """float16[4, 64]: rows 0-2 normal * 1.5 (some beyond the calibrated amax 3.5, which saturate); row
    3 holds the special values and the rounding ties (scale 2^-7, so x / scale = 128 x exactly)."""
    x = (np.random.default_rng(8).standard_normal((4, 64)) * 1.5).astype(np.float16).astype(np.float32)
    s = 2.0**-7
    specials = [
        math.nan, math.inf, -math.inf, -0.0, 0.0, 65504.0, -65504.0,
        3.5, -3.5, 3.625, 3.4375, 3.375, -3.375,  # 448, -448, saturate (464), 440 -> 448, tie 432 -> 448
        1.0625 * s, 1.1875 * s, -1.0625 * s,      # ties: 1.0625 -> 1 (even), 1.1875 -> 1.25, -1.0625 -> -1
        2.0**-10 * s, -(2.0**-10) * s,            # half the smallest fp8 subnormal: tie to +0 / -0
        1.5 * 2.0**-9 * s, 2.0**-11 * s,          # 1.5 subnormal steps: tie to 2; a quarter step: 0
        2.0**-9 * s, -(2.0**-9) * s,              # the smallest subnormal exactly
    ]
    x[3, : len(specials)] = specials
    assert np.array_equal(x.astype(np.float16).astype(np.float32), x, equal_nan=True)
    return x


def draw_nvfp4_bf16_input() -> np.ndarray:
    """bfloat16[8, 64] (kept in float32): rows of different magnitudes; row 7 holds the special blocks."""
    rng = np.random.default_rng(4)
    row_scale = np.array([1.0, 0.5, 2.0, 4.0, 0.1, 6.0, 1.0, 1.0])
    x = rng.standard_normal((8, 64)) * row_scale[:, None]
    x[7, 0:16] = 0.0
    x[7, 5] = -0.0                                   # amax 0: scale 0, data +0 (also for -0)
    x[7, 16:32] = rng.uniform(-1e-5, 1e-5, 16)       # fp8(amax / 6 / dqs) underflows to 0: data +0
    x[7, 32:48] = rng.standard_normal(16)
    x[7, 33], x[7, 34], x[7, 35] = 30.0, math.nan, -0.0  # scale saturates to 448; NaN -> fp4 +6; -0 kept
    x[7, 48:64] = rng.standard_normal(16)
    x[7, 50] = math.inf                              # Inf amax: scale 448; Inf -> fp4 6
    return bf16(x)


def draw_mxfp8_input() -> np.ndarray:
    """float32[4, 64]: blocks of 32 along the last axis; rows 2 and 3 hold the edge blocks."""
    rng = np.random.default_rng(32)
    x = rng.standard_normal((4, 64))
    x[1] *= 1e-3
    x[1, 40] = math.inf                              # Inf amax: e = 127; finite data -> +-0, Inf -> 448
    x[2, 0:32] *= 100
    x[2, 7] = -1.9 * 2**8                            # amax mantissa 1.9 in (1.75, 2): RCEIL 2^1, floor 2^0
    x[2, 32:64] = rng.uniform(-40, 40, 32)
    x[2, 40] = 56.0                                  # amax / 448 = 2^-3 exactly: e = -3, 56 -> 448
    x[3, 0:32] = 0.0                                 # all +0: e = -127 (scale 2^-127), data +0
    x[3, 32:64] = rng.uniform(-1e-38, 1e-38, 32)     # amax / 448 is subnormal: e clamps to -127
    x[3, 33], x[3, 34] = -0.0, math.nan
    return x.astype(np.float32)


def draw_nvfp4_weight() -> np.ndarray:
    """A float16 [8, 64] weight (kept in float32) with rows of different magnitudes; block 3 of row 7 is
    all zero (ModelOpt writes block scale 1.0 there)."""
    rng = np.random.default_rng(416)
    w = rng.standard_normal((8, 64)) * (0.02 * 2.0 ** np.arange(8))[:, None]
    w[7, 48:64] = 0.0
    return w.astype(np.float16).astype(np.float32)


def modelopt_nvfp4_export(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three constants ModelOpt's NVFP4 ONNX export writes for a weight (modelopt/torch/quantization/
    qtensor/nvfp4_tensor.py, computed here with the oracle's float32 steps): gs = fl32(amax / 2688);
    block scale sf = fp8(block_amax / fl32(6 * gs)) (one division; 1.0 for an all-zero block);
    w_fp4 = fp4(w / fl32(sf * gs)). Returns (w_fp4 values, sf values, gs), all float32. (Checked once
    against ModelOpt 0.47's NVFP4QTensor.get_weights_scaling_factor / quantize on the CPU: the same gs, block
    scales and fp4 codes for this weight.)"""
    gs = oracle.f32_div(float(np.abs(w).max()), 2688.0)
    six_gs = oracle.f32_mul(6.0, gs)
    blocks = np.abs(w).reshape(8, 4, 16).max(axis=2)
    sf = np.vectorize(lambda a: 1.0 if a == 0 else oracle.encode_fp8(oracle.f32_div(a, six_gs)))(blocks)
    effective = np.repeat(np.vectorize(lambda s: oracle.f32_mul(s, gs))(sf), 16, axis=1)
    w_fp4 = np.vectorize(lambda x, e: oracle.encode_fp4(oracle.f32_div(x, e)))(w, effective)
    return f32(w_fp4), f32(sf), f32([gs])


def draw_mxfp4_weight() -> np.ndarray:
    """A bfloat16 [8, 64] weight (kept in float32) with rows of different magnitudes."""
    rng = np.random.default_rng(432)
    return bf16(rng.standard_normal((8, 64)) * (0.05 * 2.0 ** np.arange(8))[:, None])


def mxfp4_export(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MXFP4 weights as the OCP MX spec defines them: per block of 32, scale 2^(floor(log2 amax) - 2)
    (2 = the largest fp4 exponent), data fp4(w / scale). Returns (w_fp4 values, scale values), float32."""
    amax = np.abs(w).reshape(8, 2, 32).max(axis=2)
    scale = np.exp2(np.floor(np.log2(amax)) - 2)
    w_fp4 = np.vectorize(lambda x, s: oracle.encode_fp4(oracle.f32_div(x, s)))(w, np.repeat(scale, 32, axis=1))
    return f32(w_fp4), f32(scale)


DATA_FILES = {
    "int4_weight_only.weights.npy": draw_int4_weights,
    "int8_per_channel.weights.npy": draw_int8_weights,
    "fp8_per_tensor.x.npy": draw_fp8_per_tensor_input,
    "nvfp4_bf16.x.npy": draw_nvfp4_bf16_input,
    "mxfp8.x.npy": draw_mxfp8_input,
}


def data_file(name: str, new: bool) -> np.ndarray:
    if new:
        np.save(OUT / name, DATA_FILES[name]())
        return np.load(OUT / name)
    if not (HERE / name).exists():
        np.save(HERE / name, DATA_FILES[name]())
    return np.load(HERE / name)


# --------------------------------------------------------------------------------------------------
# Writing case files


def yaml_number(value: float) -> str:
    """A YAML 1.1 float a strict reader gets exactly: repr's shortest round-trip digits with a '.'
    and a signed exponent, or .nan / .inf / -.inf."""
    value = float(value)
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    if exponent:
        exponent = ("+" + exponent) if exponent[0] not in "+-" else exponent
        return f"{mantissa}e{exponent}"
    return mantissa


def yaml_list(array: np.ndarray, indent: str) -> str:
    """Flow-style nested list; the rows of the innermost dimension one per line."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 0:
        return yaml_number(array)
    if array.ndim == 1:
        return "[" + ", ".join(yaml_number(v) for v in array) + "]"
    inner = indent + "  "
    rows = [yaml_list(sub, inner) for sub in array]
    return "[\n" + ",\n".join(inner + row for row in rows) + "\n" + indent + "]"


def array_entry(name: str, stem: str, array: np.ndarray, indent: str, npy_dtype=np.float32) -> str:
    """A nested list inline, or ``{load: FILE.npy}`` for a large array (written here)."""
    array = np.asarray(array, dtype=np.float64)
    if array.size <= INLINE_LIMIT:
        return yaml_list(array, indent)
    file = f"{stem}.{name}.npy"
    stored = array.astype(npy_dtype)
    assert np.array_equal(stored.astype(np.float64), array, equal_nan=True), f"{file}: not exact in {npy_dtype}"
    np.save(OUT / file, stored)
    return f"{{load: {file}}}"


def write_case(name: str, comment: str, source: str, inputs: dict, expected: dict) -> None:
    """``inputs``: name -> array or an existing data file name; ``expected``: name -> (array, atol) or
    (array, atol, dtype of its .npy file when large: float32 unless given, int8 for integer codes)."""
    lines = [f"# {line}" if line else "#" for line in comment.strip().splitlines()]
    lines.append("# Generated by examples/make_cases.py; the format is described in examples/README.md.")
    lines.append('source: "' + source.replace("\\", "\\\\").replace('"', '\\"') + '"')
    lines.append("inputs:" if inputs else "inputs: {}")
    for input_name, value in inputs.items():
        entry = f"{{load: {value}}}" if isinstance(value, str) else array_entry(f"in.{input_name}", name,
                                                                                 value, "  ")
        lines.append(f"  {input_name}: {entry}")
    lines.append("expected:")
    for output_name, (value, atol, *npy_dtype) in expected.items():
        entry = array_entry(f"out.{output_name}", name, value, "    ", *npy_dtype)
        lines.append(f"  {output_name}:")
        lines.append(f"    values: {entry}")
        if atol is not None:
            lines.append(f"    atol: {yaml_number(atol)}")
    (OUT / f"{name}.case.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def same(a, b) -> bool:
    """Equal values, NaN where NaN, and the same sign of zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True) and \
        np.array_equal(np.signbit(a), np.signbit(b))


def f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# The cases


DOC_ATOL = 0.01


def case_quantize() -> None:
    x, scale = f32(DOC_QUANTIZE_INPUT), f32([DOC_QUANTIZE_SCALE])
    exact = oracle.dequantize(oracle.quantize(x, scale, axis=3), scale, axis=3)
    assert np.abs(exact - np.array(DOC_QUANTIZE_OUTPUT)).max() <= DOC_ATOL
    write_case(
        "quantize",
        "TensorRT operator docs, Quantize, example \"Quantize\": the doc's input and its printed output\n"
        "(two decimals; the exact values are q * fl32(1/127): 71/127 = 0.5590551, ..., 127 * fl32(1/127)\n"
        "= 1.0 where 1.4 and 6.0 saturate, -128 * fl32(1/127) = -1.0078740 where -3.6 saturates).\n"
        "The doc nests both arrays 3 deep; the network's shape is (1, 1, 3, 3).",
        "TensorRT operator docs, Quantize, example 'Quantize' (printed to two decimals)",
        {"input1": np.array(DOC_QUANTIZE_INPUT)},  # as printed; the harness rounds to float32
        {"out": (np.array(DOC_QUANTIZE_OUTPUT), DOC_ATOL)},
    )


def case_block_quantization() -> None:
    weights, scale = f32(DOC_BLOCK_WEIGHTS), f32(DOC_BLOCK_SCALE)
    exact = oracle.dequantize(oracle.quantize(weights, scale, "int4"), scale)
    assert np.abs(exact - np.array(DOC_BLOCK_OUTPUT)).max() <= DOC_ATOL
    write_case(
        "block_quantization",
        "TensorRT operator docs, Quantize, example \"Block Quantization\": the doc's input (unused by the\n"
        "network) and its printed output, which the doc nests as (1, 4, 8); the output is (4, 8).\n"
        "Every code is 1, so the exact output equals the printed integers.",
        "TensorRT operator docs, Quantize, example 'Block Quantization'",
        {"input1": np.array(DOC_BLOCK_INPUT1)},
        {"out": (np.array(DOC_BLOCK_OUTPUT), DOC_ATOL)},
    )


def case_dynamic_quantize() -> None:
    x, dqs = f32(DOC_DYNQ_INPUT), f32([1])
    data, scale = oracle.dynamic_quantize(x, dqs, axis=1, block_size=16, output_type="fp4", scale_type="fp8")
    exact = oracle.dequantize(data, oracle.dequantize(scale, dqs))
    assert np.abs(exact - np.array(DOC_DYNQ_OUTPUT)).max() <= DOC_ATOL
    write_case(
        "dynamic_quantize",
        "TensorRT operator docs, DynamicQuantize, example \"DynamicQuantize\" (NVFP4): the doc's input\n"
        "and its printed output (two decimals; e.g. 4.87 is 4.875 = 6 * 0.8125, 2.44 is 2.4375).",
        "TensorRT operator docs, DynamicQuantize, example 'DynamicQuantize' (printed to two decimals)",
        {"input": np.array(DOC_DYNQ_INPUT)},
        {"data_dq": (np.array(DOC_DYNQ_OUTPUT), DOC_ATOL)},
    )


def case_dynamic_quantize_2d() -> None:
    x = f32(DOC_DYNQ_2D_INPUT)
    data, scale = oracle.dynamic_quantize(x, block_shape=[4, 3], output_type="fp8", scale_type="float32")
    exact = oracle.dequantize(data, scale, block_shape=[4, 3])
    assert np.abs(exact - np.array(DOC_DYNQ_2D_OUTPUT)).max() <= DOC_ATOL
    write_case(
        "dynamic_quantize_2d",
        "TensorRT operator docs, DynamicQuantize, example \"2D Block DynamicQuantize\": the doc's input\n"
        "(64 numbers reshaped to 8x8) and its printed output (two decimals).",
        "TensorRT operator docs, DynamicQuantize, example '2D Block DynamicQuantize' (printed to two decimals)",
        {"input": np.array(DOC_DYNQ_2D_INPUT)},
        {"data_dq": (np.array(DOC_DYNQ_2D_OUTPUT), DOC_ATOL)},
    )


def case_trt_dq_fp8_rows() -> None:
    x = trt_rows_input()
    data, scale = oracle.dynamic_quantize(x, axis=1, block_size=16, output_type="fp8", scale_type="float32")
    assert same(scale, TRT_FP8_ROWS_SCALE) and same(data[0], TRT_FP8_ROWS_DATA_ROW0)
    data[0] = TRT_FP8_ROWS_DATA_ROW0
    write_case(
        "trt_dq_fp8_rows",
        "Observed TensorRT run (docs/semantics.md, Checked examples): x = arange(48).reshape(3, 16) / 24 - 1\n"
        "in float32; DynamicQuantize axis 1, block 16, fp8 + float32 scale.\n"
        "TensorRT's values: scale (all rows) and data row 0. Data rows 1 and 2: tests/oracle.py.",
        "observed TensorRT run (docs/semantics.md Checked examples): scale and data row 0 exact; "
        "data rows 1-2 from the independent oracle tests/oracle.py",
        {"x": x},
        {"data": (data, None), "scale": (f32(TRT_FP8_ROWS_SCALE), None)},
    )


def case_trt_nvfp4_rows() -> None:
    x = trt_rows_input()
    data, scale = oracle.dynamic_quantize(x, f32(1), axis=1, block_size=16, output_type="fp4", scale_type="fp8")
    assert same(scale, TRT_NVFP4_ROWS_SCALE) and same(data[1], TRT_NVFP4_ROWS_DATA_ROW1)
    data[1] = TRT_NVFP4_ROWS_DATA_ROW1
    write_case(
        "trt_nvfp4_rows",
        "Observed TensorRT run (docs/semantics.md, Checked examples): x = arange(48).reshape(3, 16) / 24 - 1\n"
        "in float32; NVFP4 DynamicQuantize axis 1, block 16, dqs = 1.\n"
        "TensorRT's values: scale (all rows) and data row 1. Data rows 0 and 2: tests/oracle.py.",
        "observed TensorRT run (docs/semantics.md Checked examples): scale and data row 1 exact; "
        "data rows 0 and 2 from the independent oracle tests/oracle.py",
        {"x": x},
        {"data": (data, None), "scale": (np.array(TRT_NVFP4_ROWS_SCALE), None)},
    )


def case_trt_dq_2d() -> None:
    x = trt_2d_input()
    data, scale = oracle.dynamic_quantize(x, block_shape=[4, 4], output_type="fp8", scale_type="float32")
    assert same(scale, TRT_2D_SCALE) and same(data[7], TRT_2D_DATA_ROW7)
    data[7] = TRT_2D_DATA_ROW7
    write_case(
        "trt_dq_2d",
        "Observed TensorRT run (docs/semantics.md, Checked examples): x = arange(64).reshape(8, 8) / 32 - 1\n"
        "in float32; DynamicQuantize block_shape [4, 4], fp8 + float32 scale.\n"
        "TensorRT's values: scale and data row 7. Data rows 0-6: tests/oracle.py.",
        "observed TensorRT run (docs/semantics.md Checked examples): scale and data row 7 exact; "
        "data rows 0-6 from the independent oracle tests/oracle.py",
        {"x": x},
        {"data": (data, None), "scale": (f32(TRT_2D_SCALE), None)},
    )


ORACLE_SOURCE = "independent oracle tests/oracle.py (written from docs/semantics.md), via examples/make_cases.py"


def case_int4_weight_only(new: bool) -> None:
    weight = data_file("int4_weight_only.weights.npy", new)
    scale = int4_scales(weight)
    np.savez(OUT / "int4_weight_only.scales.npz", scale=scale)
    q = oracle.quantize(weight, scale, "int4", block_shape=[1, 128])
    dq = oracle.dequantize(q, scale, block_shape=[1, 128])
    write_case(
        "int4_weight_only",
        "INT4 weight-only block quantization (block 128 along axis 1) of the committed random weight;\n"
        "expected int4 codes and dequantized weights from the oracle. No network inputs.",
        ORACLE_SOURCE, {},
        {"weight_q": (q, None, np.int8), "weight_dq": (dq, None)},
    )


def case_nvfp4_weights(new: bool) -> None:
    w_fp4, sf, gs = modelopt_nvfp4_export(draw_nvfp4_weight())
    np.savez(OUT / "nvfp4_weights.npz", w_fp4=w_fp4, sf_fp8=sf, gs=gs)
    scale = oracle.dequantize(sf, gs, "float16")
    y = oracle.dequantize(w_fp4, scale, "float16", block_shape=[1, 16])
    write_case(
        "nvfp4_weights",
        "NVFP4 weights as ModelOpt exports them: the fp4 weight, its fp8 block scales and the float32\n"
        "global scale (computed as ModelOpt does, examples/make_cases.py); the block scales dequantized to\n"
        "float16 (folded: all three are constants), then the weight. Expected: the oracle.",
        ORACLE_SOURCE, {},
        {"scale": (scale, None), "y": (y, None)},
    )


def case_mxfp4_weights(new: bool) -> None:
    w_fp4, scale = mxfp4_export(draw_mxfp4_weight())
    np.savez(OUT / "mxfp4_weights.npz", w_fp4=w_fp4, scale=scale)
    y = oracle.dequantize(w_fp4, scale, "bfloat16", block_shape=[1, 32])
    write_case(
        "mxfp4_weights",
        "MXFP4 weights: fp4 data with e8m0 scales, blocks of 32 along the last axis (OCP MX: scale\n"
        "2^(floor(log2 amax) - 2)), dequantized to bfloat16. Expected: the oracle.",
        ORACLE_SOURCE, {},
        {"y": (y, None)},
    )


def literal_scales(model: Path) -> np.ndarray:
    """The 16 numbers of ``scale``'s literal in int8_per_channel.net / .yaml, read as float32."""
    text = model.read_text(encoding="utf-8")
    match = re.search(r"scale\s*(?::\s*float32\[16\]\s*=\s*|:\s*\{type:[^,]*,\s*value:\s*)\[([^\]]*)\]", text)
    assert match, f"{model.name}: no scale literal"
    return f32([float(number) for number in match.group(1).split(",")])


def case_int8_per_channel(new: bool) -> None:
    weight = data_file("int8_per_channel.weights.npy", new)
    scale = int8_scales(weight)
    for model in (HERE / "int8_per_channel.net", HERE / "int8_per_channel.yaml"):
        if not model.exists() or not np.array_equal(literal_scales(model), scale):
            print(f"{model.name}: write the scale literal as\n  [" +
                  ", ".join(str(np.float32(s)) for s in scale) + "]", file=sys.stderr)
            raise SystemExit(1)
    q = oracle.quantize(weight, scale, "int8", axis=0)
    dq = oracle.dequantize(q, scale, axis=0)
    write_case(
        "int8_per_channel",
        "Per-channel INT8 weights (axis 0, scale = amax / 127 per row); expected codes and dequantized\n"
        "weights from the oracle. No network inputs.",
        ORACLE_SOURCE, {},
        {"weight_q": (q, None, np.int8), "weight_dq": (dq, None)},
    )


def case_fp8_per_tensor(new: bool) -> None:
    x = data_file("fp8_per_tensor.x.npy", new)
    scale = f32(3.5 / 448)
    q = oracle.quantize(x, scale, "fp8")
    dq = oracle.dequantize(q, scale, "float16")
    write_case(
        "fp8_per_tensor",
        "FP8 per-tensor Q/DQ of a float16 activation; input rows 0-2 random, row 3 special values\n"
        "(NaN, +-Inf, +-0, +-65504, saturation, rounding ties, fp8 subnormals). Expected: the oracle.",
        ORACLE_SOURCE, {"x": "fp8_per_tensor.x.npy"},
        {"x_fp8": (q, None), "x_dq": (dq, None)},
    )


def case_nvfp4_bf16(new: bool) -> None:
    x = data_file("nvfp4_bf16.x.npy", new)
    dqs = f32(20 / (448 * 6))
    data, scale = oracle.dynamic_quantize(x, dqs, axis=1, block_size=16, output_type="fp4", scale_type="fp8")
    scale_bf16 = oracle.dequantize(scale, dqs, "bfloat16")
    dq = oracle.dequantize(data, scale_bf16, "bfloat16")
    write_case(
        "nvfp4_bf16",
        "NVFP4 of a bfloat16 activation with dqs = fl32(20 / 2688); input rows 0-6 random, row 7 special\n"
        "blocks (all zero, underflowing scale, saturating scale with NaN and -0, Inf). Expected: the oracle.",
        ORACLE_SOURCE, {"x": "nvfp4_bf16.x.npy"},
        {"x_fp4": (data, None), "x_scale": (scale, None), "x_dq": (dq, None)},
    )


def case_mxfp8(new: bool) -> None:
    x = data_file("mxfp8.x.npy", new)
    data, scale = oracle.dynamic_quantize(x, axis=-1, block_size=32, output_type="fp8", scale_type="e8m0")
    dq = oracle.dequantize(data, scale)
    write_case(
        "mxfp8",
        "MXFP8 of a float32 activation (blocks of 32 on the last axis, e8m0 scale rounded up); input\n"
        "rows random (row 1 * 1e-3), with edge blocks: Inf (row 1), amax mantissa in (1.75, 2) and\n"
        "amax / 448 a power of two (row 2), all +0 and a subnormal amax / 448 with -0 and NaN (row 3).\n"
        "Expected: the oracle.",
        ORACLE_SOURCE, {"x": "mxfp8.x.npy"},
        {"x_fp8": (data, None), "x_scale": (scale, None), "x_dq": (dq, None)},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-data", action="store_true", help="redraw the random weights and inputs")
    parser.add_argument("--out", type=Path, default=HERE,
                        help="write the case files here instead (tests compare them with the committed ones)")
    args = parser.parse_args(argv)
    global OUT
    OUT = args.out.resolve()
    OUT.mkdir(parents=True, exist_ok=True)
    for fixed in (case_quantize, case_block_quantization, case_dynamic_quantize, case_dynamic_quantize_2d,
                  case_trt_dq_fp8_rows, case_trt_nvfp4_rows, case_trt_dq_2d):
        fixed()
    for drawn in (case_int4_weight_only, case_int8_per_channel, case_fp8_per_tensor, case_nvfp4_bf16,
                  case_mxfp8, case_nvfp4_weights, case_mxfp4_weights):
        drawn(args.new_data)
    print(f"wrote {len(list(OUT.glob('*.case.yaml')))} case files in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
