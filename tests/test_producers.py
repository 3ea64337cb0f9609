"""The producer-difference classifier (netdsl/producers.py; docs/semantics.md, "How other quantizers differ,
and what compare says").

Each test takes a measured example of one class (input, TensorRT's code, the peer's code: the codes as
the differential run against ModelOpt / torchao recorded them), checks that netdsl gives TensorRT's code,
hands the peer's code to ``compare`` as the reference, and checks that the report names the class with
the count it explains. Where the example gives an input and not both codes, the reference is computed here
from the peer's documented rule in a few lines of NumPy."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

import netdsl
from netdsl.compare import compare_outputs

F32 = np.float32


def hexf(text: str) -> F32:
    return F32(float.fromhex(text))


def run(model: str, x: np.ndarray) -> tuple[netdsl.Network, dict[str, np.ndarray]]:
    net = netdsl.loads(model)
    return net, net.run({"x": x}, backend="numpy")


def codes(array: np.ndarray) -> np.ndarray:
    """Raw codes of an output (4-bit ones in the low nibble)."""
    raw = np.asarray(array).view(np.uint8)
    return raw & 0x0F if np.asarray(array).dtype.name in ("int4", "float4_e2m1fn") else raw


def causes(net, got, reference, x, name) -> tuple[dict[str, tuple[int, int]], int | None, int]:
    report = compare_outputs(reference, got, net.outputs, network=net, inputs={"x": x})
    output = {o.name: o for o in report.outputs}[name]
    return {c.key: (c.explains, c.of) for c in output.causes}, output.unexplained, output.mismatches


MXFP8 = """input x : float32[1, 32]
data, scale = dynamic_quantize(x, axis=1, block_size=32, output_type=fp8, scale_type=e8m0)
output data, scale
"""


def nvfp4(dqs: str) -> str:
    return f"""input x : float32[1, 16]
const dqs : float32[] = {dqs}
data, scale = dynamic_quantize(x, dqs, axis=1, block_size=16, output_type=fp4, scale_type=fp8)
output data, scale
"""


def block(first: float, rest: float = 0.0, size: int = 32, second: float | None = None) -> np.ndarray:
    x = np.full((1, size), rest, F32)
    x[0, 0] = first
    if second is not None:
        x[0, 1] = second
    return x


# --------------------------------------------------------------------------------------------------
# MXFP8 scales (e8m0 codes)


@pytest.mark.parametrize("x,trt,peer,key", [
    # NaN in amax: block [NaN, 1, ..., 448]: 0x7F / 0xFF
    (np.concatenate([[np.nan], np.ones(30), [448]]).astype(F32).reshape(1, 32), 0x7F, 0xFF, "nan-amax"),
    # FLOOR: amax 2.95093305e-05: 0x68 / 0x67
    (block(2.95093305e-05), 0x68, 0x67, "floor-e8m0"),
    # float log2: amax 0x1.c00002p-12: 0x6C / 0x6B
    (block(hexf("0x1.c00002p-12")), 0x6C, 0x6B, "float-log2"),
    # Inf amax (torchao FLOOR): block [Inf, 3e38, ...]: 0xFE / 0xF7
    (block(np.inf, 3e38), 0xFE, 0xF7, "inf-amax"),
])
def test_mxfp8_scale_classes(x, trt, peer, key):
    net, got = run(MXFP8, x)
    assert codes(got["scale"]).tolist() == [[trt]]
    found, unexplained, mismatches = causes(net, got, {"scale": np.array([[peer]], np.uint8)}, x, "scale")
    assert mismatches == 1 and found[key] == (1, 1) and unexplained == 0


def test_e8m0_smallest_scale_rceil_data():
    # x = 448 * 2^-127: scale 2^-127 (code 0x00); TensorRT's data 448 (0x7E); torchao RCEIL multiplies by 1.0: 0x00
    x = block(448 * 2.0**-127)
    net, got = run(MXFP8, x)
    assert codes(got["scale"]).tolist() == [[0x00]] and codes(got["data"])[0, 0] == 0x7E
    reference = codes(got["data"]).copy()  # every other element is +0 on both sides
    reference[0, 0] = 0x00
    found, unexplained, _ = causes(net, got, {"data": reference}, x, "data")
    assert found["e8m0-2^-127-rceil"] == (1, 1) and unexplained == 0


def test_e8m0_smallest_scale_floor_data():
    # torchao FLOOR divides by 2^-126 there: 448 * 2^-127 / 2^-126 = 224 (0x76: 1.75 * 2^7)
    x = block(448 * 2.0**-127)
    net, got = run(MXFP8, x)
    reference = np.zeros((1, 32), np.uint8)
    reference[0, 0] = 0x76
    found, _, _ = causes(net, got, {"data": reference}, x, "data")
    assert found["e8m0-2^-127-floor"] == (1, 1)


# --------------------------------------------------------------------------------------------------
# NVFP4 scales (fp8 codes) and data (fp4 codes)


@pytest.mark.parametrize("dqs,x,trt,peer,key", [
    # all -0 block: 0x00 / 0x08 (torchao) and 0x38 (ModelOpt's 1.0)
    ("1", block(-0.0, -0.0, 16), 0x00, 0x08, "zero-block-scale-2^-6"),
    ("1", block(-0.0, -0.0, 16), 0x00, 0x38, "zero-block-scale-1"),
    # scale underflow: dqs 2^-8, amax 0x1.8p-16: 0x00 / 0x01
    ("0x1p-8", block(hexf("0x1.8p-16"), size=16), 0x00, 0x01, "scale-underflow"),
    # one division: dqs 7.3/2688, amax 0x1.1ba83cp-6: 0x39 / 0x38
    ("7.3 / 2688", block(hexf("0x1.1ba83cp-6"), size=16), 0x39, 0x38, "one-division"),
    # 2^-6 clamp: dqs 2^-8, amax 0x1.8p-15: 0x01 / 0x08
    ("0x1p-8", block(hexf("0x1.8p-15"), size=16), 0x01, 0x08, "scale-clamp-2^-6"),
])
def test_nvfp4_scale_classes(dqs, x, trt, peer, key):
    net, got = run(nvfp4(dqs), x)
    assert codes(got["scale"]).tolist() == [[trt]]
    found, unexplained, mismatches = causes(net, got, {"scale": np.array([[peer]], np.uint8)}, x, "scale")
    assert mismatches == 1 and found[key] == (1, 1) and unexplained == 0


def test_nvfp4_classes_do_not_explain_each_other():
    # the underflow example (0x00 / 0x01) is not the 2^-6 clamp (which would give 0x08) nor a zero block
    x = block(hexf("0x1.8p-15") / 2, size=16)
    net, got = run(nvfp4("0x1p-8"), x)
    found, _, _ = causes(net, got, {"scale": np.array([[0x01]], np.uint8)}, x, "scale")
    assert set(found) == {"scale-underflow"}


def test_nvfp4_minus_zero_data():
    # x = [-0, 6, 0, ...], dqs 1: amax 6, scale 1 (0x38); TensorRT's data [0x8 (-0), 0x7 (6), 0, ...];
    # ModelOpt quantizes -0 to +0: [0x0, 0x7, 0, ...]
    x = block(-0.0, 0.0, 16, second=6.0)
    net, got = run(nvfp4("1"), x)
    assert codes(got["scale"]).tolist() == [[0x38]] and codes(got["data"])[0, :3].tolist() == [0x8, 0x7, 0x0]
    reference = np.zeros((1, 16), np.uint8)
    reference[0, 1] = 0x7
    found, unexplained, mismatches = causes(net, got, {"data": reference}, x, "data")
    assert mismatches == 1 and found["minus-zero"] == (1, 1) and unexplained == 0


def test_nvfp4_zero_block_torchao_keeps_minus_zero_data():
    # all -0 block: TensorRT's data is +0 (effective scale 0); torchao's scale 2^-6 keeps -0 (0x8)
    x = block(-0.0, -0.0, 16)
    net, got = run(nvfp4("1"), x)
    assert codes(got["data"]).tolist() == [[0] * 16]
    found, _, mismatches = causes(net, got, {"data": np.full((1, 16), 0x8, np.uint8)}, x, "data")
    assert mismatches == 16 and found["zero-block-scale-2^-6"] == (16, 16)


# --------------------------------------------------------------------------------------------------
# static Quantize and Dequantize


def test_reciprocal_int8_bf16():
    # INT8, bf16 x -0.0184326172, s 0.000290277443: x / s = -63.5 -> -64 (ties to even); x * fl32(1/s) is
    # just above -63.5 -> -63
    model = """input x : bfloat16[1]
const s : float32[] = 0.000290277443
q = quantize(x, s)
output q
"""
    x = np.array([-0.0184326172], F32)
    net, got = run(model, x)
    assert got["q"].tolist() == [-64]
    found, unexplained, _ = causes(net, got, {"q": np.array([-63], np.int8)}, x, "q")
    assert found["reciprocal"] == (1, 1) and unexplained == 0


def test_bf16_division_fp8():
    # ModelOpt FP8QTensor: bf16 x 1.9967556e-06 / float32 s 1.053725e-07 computed in bf16: 0x59 / 0x5A
    model = """input x : bfloat16[1]
const s : float32[] = 1.053725e-07
q = quantize(x, s, to_type=fp8)
output q
"""
    x = np.array([1.9967556e-06], F32)
    assert F32(x[0].astype(ml_dtypes.bfloat16)) == x[0]  # a bfloat16 value
    net, got = run(model, x)
    assert codes(got["q"]).tolist() == [0x59]
    found, unexplained, _ = causes(net, got, {"q": np.array([0x5A], np.uint8)}, x, "q")
    assert found["bf16-division"] == (1, 1) and unexplained == 0


def test_fake_quant_reciprocal():
    # ModelOpt scaled_e4m3: y = fp8(x * r) / r with r = fl32(fl32(1 / amax) * 448), amax = s * 448
    model = """input x : float32[1]
const s : float32[] = 8.7408167e-05
q = quantize(x, s, to_type=fp8)
y = dequantize(q, s)
output y
"""
    x = np.array([0.00164656504], F32)
    s = F32(8.7408167e-05)
    amax = F32(s * F32(448))
    r = F32(F32(F32(1) / amax) * F32(448))
    peer = np.array([F32(F32(np.clip(x[0] * r, -448, 448)).astype(ml_dtypes.float8_e4m3fn)) / r], F32)
    net, got = run(model, x)
    assert got["y"][0] != peer[0]  # one ulp apart
    found, unexplained, _ = causes(net, got, {"y": peer}, x, "y")
    assert found["fake-quant-reciprocal"] == (1, 1) and unexplained == 0


def test_zero_int4_block():
    # ModelOpt INT4QTensor: an all-zero block gives code -8 (0 * Inf = NaN -> 0 -> -8)
    model = """input x : float32[2, 4]
const s : float32[1, 2] = [[0.5, 0.25]]
q = quantize(x, s, to_type=int4, block_shape=[2, 2])
output q
"""
    x = np.array([[0, 0, 1, -1], [0, 0, 0.5, 0.25]], F32)
    net, got = run(model, x)
    assert got["q"].astype(np.int8).tolist() == [[0, 0, 4, -4], [0, 0, 2, 1]]
    reference = np.array([[-8, -8, 4, -4], [-8, -8, 2, 1]], np.int8)
    found, unexplained, mismatches = causes(net, got, {"q": reference}, x, "q")
    assert mismatches == 4 and found["zero-int4-block"] == (4, 4) and unexplained == 0


def test_nan_bits():
    # every fp8 peer keeps a NaN's sign: -NaN -> 0xFF (TensorRT 0x7F), and through a DQ to bf16 0xFFFF
    model = """input x : float32[2]
const s : float32[] = 1
q = quantize(x, s, to_type=fp8)
y = dequantize(q, s, to_type=bfloat16)
output q, y
"""
    x = np.array([-np.nan, 1.0], F32)
    net, got = run(model, x)
    assert codes(got["q"]).tolist() == [0x7F, 0x38]
    reference = {"q": np.array([0xFF, 0x38], np.uint8), "y": np.array([0xFFFF, 0x3F80], np.uint16)}
    report = compare_outputs(reference, got, net.outputs, codes=True, network=net, inputs={"x": x})
    assert report.passed  # NaN equals NaN
    for output in report.outputs:
        assert output.nan_sign_differences == 1
        assert [(c.key, c.explains, c.of) for c in output.causes] == [("nan-bits", 1, 1)]
        assert "NaN bits (every fp8 peer): explains 1 of 1 NaNs whose sign differs" in output.format()


def test_unexplained_and_partial_counts():
    # two mismatches: one FLOOR (block 0), one that no rule gives (block 1's scale two steps off)
    model = """input x : float32[2, 32]
data, scale = dynamic_quantize(x, axis=1, block_size=32, output_type=fp8, scale_type=e8m0)
output scale
"""
    x = np.zeros((2, 32), F32)
    x[0, 0], x[1, 0] = 2.95093305e-05, 1.0
    net, got = run(model, x)
    assert codes(got["scale"]).tolist() == [[0x68], [0x77]]  # 1 / 448 rounds up to 2^-8
    found, unexplained, mismatches = causes(net, got, {"scale": np.array([[0x67], [0x79]], np.uint8)}, x, "scale")
    assert mismatches == 2 and found == {"floor-e8m0": (1, 2)} and unexplained == 1
    text = compare_outputs({"scale": np.array([[0x67], [0x79]], np.uint8)}, got, net.outputs, network=net,
                           inputs={"x": x}).format()
    assert "why: FLOOR e8m0 (torchao FLOOR, OCP spec, microxcaling): explains 1 of 2 mismatches" in text
    assert "why: 1 of 2 match no known producer difference" in text


def test_scale_output_shows_the_block_amax():
    x = block(2.95093305e-05)
    net, got = run(MXFP8, x)
    report = compare_outputs({"scale": np.array([[0x67]], np.uint8)}, got, net.outputs, network=net, inputs={"x": x})
    assert report.outputs[0].first[0].behind == {"amax": float(F32(2.95093305e-05))}


def test_cli_names_the_class(tmp_path, capsys):
    from netdsl.cli import main

    (tmp_path / "m.net").write_text(nvfp4("7.3 / 2688"))
    x = block(hexf("0x1.1ba83cp-6"), size=16)
    np.savez(tmp_path / "in.npz", x=x)
    np.savez(tmp_path / "ref.npz", scale=np.array([[0x38]], np.uint8))
    code = main([str(a) for a in ("compare", tmp_path / "m.net", "--inputs", tmp_path / "in.npz", "--load-outputs",
                                  tmp_path / "ref.npz", "--json", tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert code == 1 and "why: one division (ModelOpt NVFP4): explains 1 of 1 mismatches" in out
    scale = json.loads((tmp_path / "r.json").read_text())["outputs"][0]
    assert scale["causes"] == [{"class": "one-division", "title": "one division", "who": "ModelOpt NVFP4",
                                "explains": 1, "of": 1, "what": "mismatches"}]
    assert scale["unexplained"] == 0
