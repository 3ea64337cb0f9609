"""Constant-rooted scales (docs/semantics.md, "Build-time constants"): a scale, zero point or
double_quant_scale computed only from constants is accepted (TensorRT folds it at build time), its
folded values are checked like a constant's, and every other provenance stays a located error.

Expected folded values come from tests/oracle.py (independent of netdsl), never from netdsl itself.
"""

from __future__ import annotations

import numpy as np
import oracle
import pytest

import netdsl
from netdsl import ModelError
from netdsl.cli import main as cli_main

#: ModelOpt's NVFP4 weight pattern: DQ(w_fp4, DQ(sf_fp8, gs, to_type=float16), block 16 along the last axis)
NVFP4_WEIGHT = """\
const w  : fp4[2, 32] = [[6, -6, 0.5, 1, 1.5, 2, 3, 4, 0, -0.5, -1, -1.5, -2, -3, -4, 6,
                          1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
                         [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                          -6, 6, -6, 6, -6, 6, -6, 6, -6, 6, -6, 6, -6, 6, -6, 3]]
const sf : fp8[2, 2] = [[448, 0.015625], [0.001953125, 26]]
const gs : float32[] = {gs}
scale = dequantize(sf, gs, to_type=float16)
y = dequantize(w, scale, to_type=float16, block_shape=[1, 16])
output y
"""


def errors(text: str) -> list[str]:
    with pytest.raises(ModelError) as info:
        netdsl.loads(text, filename="m.net")
    return [str(d) for d in info.value.diagnostics if d.severity == "error"]


def test_nvfp4_weight_pattern_checks_and_folds_exactly() -> None:
    net = netdsl.loads(NVFP4_WEIGHT.format(gs="0.0123"), filename="m.net")
    folded = net.graph.values["scale"].folded  # computed at check time, for the scale-value rule
    assert folded is not None and folded.dtype == np.float16
    sf = np.array([[448, 0.015625], [0.001953125, 26]], np.float32)
    expected = oracle.dequantize(sf, np.float32(0.0123), "float16")
    assert np.array_equal(folded.astype(np.float64), expected)
    # folding never changes a bit: the run computes the same values
    out = net.run({}, backend="numpy")["y"]
    w = np.array(net.graph.values["w"].data, np.float64)
    assert np.array_equal(out.astype(np.float64), oracle.dequantize(w, expected, "float16", block_shape=[1, 16]))


def test_folded_scale_values_are_checked() -> None:
    # 0.001953125 * 2^-20 underflows float16 to 0: the folded scale holds 0, which no scale may hold
    found = errors(NVFP4_WEIGHT.format(gs="0x1p-20"))
    assert found == ["m.net:8:19: error: every scale value must be finite and > 0; 'scale' holds 0.0 "
                     "(folded: the value its layers compute from constants)"]


def test_quantize_takes_a_folded_scale() -> None:
    text = ("input x : float32[2, 4]\nconst c : fp8[1] = [2]\nconst g : float32[] = 0.25\n"
            "s = dequantize(c, g)\nq = quantize(x, s, to_type=fp8)\noutput q\n")
    net = netdsl.loads(text)
    x = np.array([[1, -1, 0.3, 7], [0, 100, -300, 0.01]], np.float32)
    assert np.array_equal(np.asarray(net.run({"x": x}, backend="numpy")["q"], np.float64),
                          oracle.quantize(x, np.float32(0.5), "fp8"))


def test_folded_zero_point_and_double_quant_scale() -> None:
    text = ("input x : float32[2, 32]\nconst zeros : float32[1] = [0]\nconst one : float32[] = 1\n"
            "zp = quantize(zeros, one)\nq = quantize(x, one, zp)\n"
            "const dqs_fp8 : fp8[1] = [0.5]\ndqs = dequantize(dqs_fp8, one)\n"
            "d, s = dynamic_quantize(x, dqs, axis=1, block_size=16, output_type=fp4, scale_type=fp8)\noutput q, d\n")
    netdsl.loads(text)
    nonzero = text.replace("const zeros : float32[1] = [0]", "const zeros : float32[1] = [3]")
    assert errors(nonzero) == ["m.net:5:22: error: the zero point must be all zeros (TensorRT supports only "
                               "symmetric quantization)"]


@pytest.mark.parametrize("text,expected", [
    # a scale computed from a network input is not constant-rooted
    ("input q : fp4[2, 32]\ninput g : float32[]\nconst sf : fp8[2, 2] = [[1, 1], [1, 1]]\n"
     "s = dequantize(sf, g)\ny = dequantize(q, s)\noutput y\n",
     "m.net:4:20: error: dequantize's scale must be a constant or come from a dynamic_quantize scale output "
     "(directly or through a dequantize of it), or be computed only from constants; 'g' is a network input"),
    ("input q : fp4[2, 32]\ninput c : fp8[2, 2]\nconst g : float32[] = 1\n"
     "s = dequantize(c, g)\ny = dequantize(q, s)\noutput y\n",
     "m.net:5:19: error: dequantize's scale must be a constant or come from a dynamic_quantize scale output "
     "(directly or through a dequantize of it), or be computed only from constants; 's' is computed by a layer "
     "from a network input"),
    ("input x : float32[4]\ninput c : fp8[1]\nconst g : float32[] = 1\ns = dequantize(c, g)\nq = quantize(x, s)\n"
     "output q\n",
     "m.net:5:17: error: quantize's scale must be a constant or computed only from constants (a build-time "
     "tensor); 's' is computed by a layer from a network input"),
    ("input x : float32[2, 32]\ninput c : fp8[1]\nconst one : float32[] = 1\ndqs = dequantize(c, one)\n"
     "d, s = dynamic_quantize(x, dqs, axis=1, block_size=16, output_type=fp4, scale_type=fp8)\noutput d\n",
     "m.net:5:28: error: double_quant_scale must be a constant or computed only from constants"),
])
def test_other_provenance_stays_a_located_error(text: str, expected: str) -> None:
    found = errors(text)
    assert any(e.startswith(expected) for e in found), found


def test_check_verbose_says_which_tensors_are_folded(tmp_path, capsys) -> None:
    model = tmp_path / "m.net"
    model.write_text("input x : float32[2, 32]\nconst one : float32[] = 1\nz = quantize(x, one, to_type=fp8)\n"
                     + NVFP4_WEIGHT.format(gs="0.5").replace("output y", "output y, z"))
    assert cli_main(["check", "-v", str(model)]) == 0
    lines = capsys.readouterr().out.splitlines()
    plans = {line.split("=")[0].split()[1]: lines[i + 1] for i, line in enumerate(lines) if line.lstrip().startswith("layer")}
    assert plans["scale"].strip().startswith("# folded; per-tensor")
    assert plans["y"].strip().startswith("# folded; block [1, 16]")
    assert "folded" not in plans["z"]
