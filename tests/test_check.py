"""A failing input for every checker and language rule: the message and its location."""

from __future__ import annotations

import numpy as np
import pytest

import netdsl
from netdsl import ModelError

HEADER = "input x : float32[4, 8]\nconst s : float32[1] = [0.5]\n"


def errors(text: str, base_dir=None) -> list[str]:
    with pytest.raises(ModelError) as info:
        netdsl.loads(text, base_dir=base_dir, filename="m.net")
    return [str(d) for d in info.value.diagnostics if d.severity == "error"]


def warnings(text: str) -> list[str]:
    return [str(d) for d in netdsl.loads(text, filename="m.net").warnings]


CASES = [
    # --- language rules ---
    ("unknown tensor", HEADER + "q = quantize(y, s)\noutput q\n", "3:14: error: unknown tensor 'y'"),
    ("did you mean", HEADER + "q = quantize(xx, s)\noutput q\n", "(did you mean 'x'?)"),
    ("redefined", HEADER + "x = quantize(x, s)\noutput x\n", "3:1: error: 'x' is already defined at line 1"),
    ("unknown layer", HEADER + "q = quantise(x, s)\noutput q\n", "3:5: error: unknown layer 'quantise' (did you mean 'quantize'?)"),
    ("too few tensors", HEADER + "q = quantize(x)\noutput q\n", "3:5: error: quantize takes 2 to 3 tensors"),
    ("too many tensors", HEADER + "q = quantize(x, s, s, s)\noutput q\n", "3:23: error: quantize takes 2 to 3 tensors"),
    ("wrong output count", HEADER + "a, b = quantize(x, s)\noutput a\n", "3:1: error: quantize has 1 output"),
    ("dq one output", HEADER + "d = dynamic_quantize(x, axis=1, block_size=8, output_type=int8, scale_type=float32)\noutput d\n",
     "3:1: error: dynamic_quantize has 2 outputs"),
    ("unknown keyword", HEADER + "q = quantize(x, s, axes=1)\noutput q\n", "3:20: error: quantize has no attribute 'axes' (did you mean 'axis'?)"),
    ("duplicate keyword", HEADER + "q = quantize(x, s, axis=1, axis=1)\noutput q\n", "3:28: error: 'axis' is given twice"),
    ("keyword kind int", HEADER + "q = quantize(x, s, axis=fp8)\noutput q\n", "3:25: error: axis takes integers"),
    ("keyword kind dtype", HEADER + "q = quantize(x, s, to_type=3)\noutput q\n", "3:28: error: to_type takes a type name"),
    ("keyword unknown dtype", HEADER + "q = quantize(x, s, to_type=fp9)\noutput q\n", "3:28: error: unknown type 'fp9'"),
    ("keyword kind shape", HEADER + "q = quantize(x, s, block_shape=4)\noutput q\n", "3:32: error: block_shape takes a list of integers"),
    ("positional not a name", HEADER + "q = quantize(x, 0.5)\noutput q\n", "3:17: error: quantize's positional arguments are tensor names"),
    ("output missing", HEADER + "q = quantize(x, s)\noutput r\n", "4:8: error: unknown tensor 'r'"),
    ("output twice", HEADER + "q = quantize(x, s)\noutput q, q\n", "4:11: error: 'q' is already an output"),
    ("no outputs", HEADER + "q = quantize(x, s)\n", "error: the network has no outputs"),
    ("network not first", HEADER + "network n\nq = quantize(x, s)\noutput q\n", "3:1: error: 'network' must be the first statement"),
    ("unknown statement", "inptu x : float32[2]\n", "1:1: error: unknown statement 'inptu'; expected 'input' or 'const' (did you mean 'input'?)"),
    ("unknown type", "input x : flaot32[2]\nconst s : float32[] = 1\nq = quantize(x, s)\noutput q\n", "1:11: error: unknown type 'flaot32' (did you mean 'float32'?)"),
    ("bad dimension", "input x : float32[2.5]\n", "1:19: error: a dimension must be a non-negative integer"),
    ("volume limit input", "input x : float32[65536, 32768]\n", "1:11: error: float32[65536, 32768] has 2147483648 elements, over TensorRT's limit of 2^31-1"),
    ("literal nesting", "input x : float32[2]\nconst s : float32[2] = [1, [2]]\nq = quantize(x, s, axis=0)\noutput q\n", "2:28: error: expected a number here, found a list"),
    ("literal length", "input x : float32[2]\nconst s : float32[2] = [1]\nq = quantize(x, s, axis=0)\noutput q\n", "2:24: error: this list has 1 elements, the declared shape needs 2"),
    ("literal not list", "input x : float32[2]\nconst s : float32[2] = 1\nq = quantize(x, s, axis=0)\noutput q\n", "2:24: error: expected a list of 2 here"),
    ("literal name", "input x : float32[2]\nconst s : float32[] = foo\nq = quantize(x, s)\noutput q\n", "2:23: error: 'foo' is not a number"),
    ("inexact int4", "const w : int4[2] = [1, 8]\nz = dequantize(w, s)\nconst s : float32[] = 1\noutput z\n", "1:25: error: 8.0 is not exactly representable in int4"),
    ("inexact fp4", "const w : fp4[2] = [1, 2.5]\nconst s : float32[] = 1\nz = dequantize(w, s)\noutput z\n", "1:24: error: 2.5 is not exactly representable in fp4"),
    ("unknown function", "input x : float32[2]\nconst s : float32[] = read(\"a\")\nq = quantize(x, s)\noutput q\n", "2:23: error: unknown function 'read'"),
    ("load missing", "input x : float32[2]\nconst s : float32[2] = load(\"nope.npy\")\nq = quantize(x, s, axis=0)\noutput q\n", "2:24: error: cannot read"),
    # --- quantize ---
    ("q input type", "input x : int8[4]\nconst s : float32[] = 1\nq = quantize(x, s)\noutput q\n", "3:14: error: quantize's input must be float32, float16, bfloat16; 'x' is int8"),
    ("q scalar input", "input x : float32[]\nconst s : float32[] = 1\nq = quantize(x, s)\noutput q\n", "3:14: error: quantize's input must not be a scalar"),
    ("q scale type", "input x : float32[4]\nconst s : int8[] = 1\nq = quantize(x, s)\noutput q\n", "3:17: error: quantize's scale must be float32, float16, bfloat16"),
    ("q scale constant", "input x : float32[4]\ninput s : float32[]\nq = quantize(x, s)\noutput q\n", "3:17: error: quantize's scale must be a constant"),
    ("q scale positive", "input x : float32[4]\nconst s : float32[2] = [1, 0]\nq = quantize(x, s, axis=0)\noutput q\n", "3:17: error: every scale value must be finite and > 0"),
    ("q scale nan", "input x : float32[4]\nconst s : float32[] = nan\nq = quantize(x, s)\noutput q\n", "3:17: error: every scale value must be finite and > 0"),
    ("q scale inf", "input x : float32[4]\nconst s : float32[] = inf\nq = quantize(x, s)\noutput q\n", "3:17: error: every scale value must be finite and > 0; 's' holds inf"),
    ("q scale overflows float16", "input x : float32[4]\nconst s : float16[] = 70000\nq = quantize(x, s)\noutput q\n",
     "3:17: error: every scale value must be finite and > 0; 's' holds inf (70000 rounded to float16)"),
    ("q scale overflows bfloat16", "input x : float32[4]\nconst s : bfloat16[2] = [1, 3.4e38]\nq = quantize(x, s, axis=0)\noutput q\n",
     "3:17: error: every scale value must be finite and > 0; 's' holds inf (3.4e+38 rounded to bfloat16)"),
    ("q scale overflows float64", "input x : float32[4]\nconst s : float32[] = 1e999\nq = quantize(x, s)\noutput q\n",
     "3:17: error: every scale value must be finite and > 0; 's' holds inf (1e999 rounded to float32)"),
    ("dq scale inf", "input q : int8[4]\nconst s : float32[] = inf\ny = dequantize(q, s)\noutput y\n", "3:19: error: every scale value must be finite and > 0; 's' holds inf"),
    ("dq scale overflows float16", "input q : int8[4]\nconst s : float16[] = 256 * 256\ny = dequantize(q, s)\noutput y\n",
     "3:19: error: every scale value must be finite and > 0; 's' holds inf (65536 rounded to float16)"),
    ("q to_type", HEADER + "q = quantize(x, s, to_type=float16)\noutput q\n", "3:28: error: to_type must be int8, int4, fp8, fp4, got float16"),
    ("q axis range", HEADER + "q = quantize(x, s, axis=2)\noutput q\n", "3:25: error: axis 2 is out of range for a rank-2 input (allowed -2..1)"),
    ("per-channel needs axis", "const w : float32[4, 8] = load(\"w.npy\")\n", None),
    ("per-channel length", "input x : float32[4, 8]\nconst s : float32[3] = [1, 1, 1]\nq = quantize(x, s, axis=0)\noutput q\n", "3:17: error: per-channel scale has 3 elements but the input has 4 along axis 0"),
    ("scale rank", "input x : float32[2, 4, 8]\nconst s : float32[2, 2] = [[1, 1], [1, 1]]\nq = quantize(x, s)\noutput q\n", "3:17: error: scale of shape [2, 2] fits no granularity"),
    ("block two dims", "input x : float32[4, 8]\nconst s : float32[2, 4] = [[1, 1, 1, 1], [1, 1, 1, 1]]\nq = quantize(x, s)\noutput q\n", "3:17: error: block scale shape [2, 4] must differ from the input shape [4, 8] in exactly one of the last two dimensions"),
    ("block not last two", "input x : float32[4, 2, 2]\nconst s : float32[2, 2, 2] = [[[1, 1], [1, 1]], [[1, 1], [1, 1]]]\nq = quantize(x, s)\noutput q\n", "must differ from the input shape [4, 2, 2] in exactly one of the last two"),
    ("block divides", "input x : float32[4, 6]\nconst s : float32[4, 4] = [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]\nq = quantize(x, s)\noutput q\n", "3:17: error: input extent 6 on axis 1 is not divisible by the scale's 4"),
    ("block_shape scale shape", "input x : float32[4, 8]\nconst s : float32[2, 2] = [[1, 1], [1, 1]]\nq = quantize(x, s, block_shape=[2, 3])\noutput q\n", "3:17: error: scale shape [2, 2] does not match the input shape [4, 8] in blocks of [2, 3]: expected [2, 3]"),
    ("block_shape rank", "input x : float32[4, 8]\nconst s : float32[2, 2] = [[1, 1], [1, 1]]\nq = quantize(x, s, block_shape=[2])\noutput q\n", "3:32: error: block_shape has 1 entries but the input has rank 2"),
    ("block_shape entries", "input x : float32[4, 8]\nconst s : float32[2, 2] = [[1, 1], [1, 1]]\nq = quantize(x, s, block_shape=[0, 4])\noutput q\n", "3:32: error: block_shape entries must be > 0 or -1"),
    ("block_shape with 1-D scale", "input x : float32[4, 8]\nconst s : float32[4] = [1, 1, 1, 1]\nq = quantize(x, s, axis=0, block_shape=[1, 8])\noutput q\n", "3:40: error: block_shape needs a scale of the input's rank 2"),
    ("zero point shape", HEADER + "const z : int8[2] = [0, 0]\nq = quantize(x, s, z)\noutput q\n", "4:20: error: the zero point must have the scale's shape [1], got [2]"),
    ("zero point nonzero", HEADER + "const z : int8[1] = [1]\nq = quantize(x, s, z)\noutput q\n", "4:20: error: the zero point must be all zeros"),
    ("zero point type", HEADER + "const z : int4[1] = [0]\nq = quantize(x, s, z)\noutput q\n", "4:20: error: the zero point must be int8, float32; 'z' is int4"),
    ("zero point constant", HEADER + "input z : int8[1]\nq = quantize(x, s, z)\noutput q\n", "4:20: error: the zero point must be a constant"),
    # --- dequantize ---
    ("dq input type", HEADER + "d = dequantize(x, s)\noutput d\n", "3:16: error: dequantize's input must be int8, int4, fp8, fp4; 'x' is float32"),
    ("dq scale type", "input q : int8[4]\nconst s : int8[] = 1\nd = dequantize(q, s)\noutput d\n", "3:19: error: dequantize's scale must be float32, float16, bfloat16, e8m0"),
    ("dq to_type", "input q : int8[4]\nconst s : float32[] = 1\nd = dequantize(q, s, to_type=int8)\noutput d\n", "3:30: error: to_type must be float32, float16, bfloat16, got int8"),
    ("dq scale provenance", "input q : int8[4]\ninput s : float32[]\nd = dequantize(q, s)\noutput d\n", "3:19: error: dequantize's scale must be a constant or come from a dynamic_quantize scale output"),
    ("dq scale from data", "input x : float32[2, 32]\nd, s = dynamic_quantize(x, axis=1, block_size=16, output_type=fp8, scale_type=float32)\ny = dequantize(d, d)\noutput y\n", "3:19: error: dequantize's scale must be float32, float16, bfloat16, e8m0; 'd' is fp8"),
    # --- dynamic_quantize ---
    ("dyn input type", "input x : int8[2, 32]\nd, s = dynamic_quantize(x, axis=1, block_size=16, output_type=fp8, scale_type=float32)\noutput d\n", "2:25: error: dynamic_quantize's input must be float32"),
    ("dyn mode pair", "input x : float32[2, 32]\nd, s = dynamic_quantize(x, axis=1, block_size=16, output_type=fp4, scale_type=float32)\noutput d\n", "2:63: error: output_type fp4 with scale_type float32 is not a dynamic quantization mode"),
    ("dyn both forms", "input x : float32[2, 32]\nd, s = dynamic_quantize(x, axis=1, block_size=16, block_shape=[1, 16], output_type=fp8, scale_type=float32)\noutput d\n", "2:63: error: give either axis and block_size"),
    ("dyn neither form", "input x : float32[2, 32]\nd, s = dynamic_quantize(x, output_type=fp8, scale_type=float32)\noutput d\n", "2:1: error: dynamic_quantize needs axis and block_size"),
    ("dyn rank 1-D", "input x : float32[2, 2, 2, 32]\nd, s = dynamic_quantize(x, axis=3, block_size=16, output_type=fp8, scale_type=float32)\noutput d\n", "2:25: error: dynamic_quantize with axis/block_size takes a rank 2 or 3 input, got rank 4"),
    ("dyn rank N-D", "input x : float32[32]\nd, s = dynamic_quantize(x, block_shape=[16], output_type=fp8, scale_type=float32)\noutput d\n", "2:25: error: dynamic_quantize with block_shape takes a rank 2, 3 or 4 input, got rank 1"),
    ("dyn axis", "input x : float32[2, 4, 32]\nd, s = dynamic_quantize(x, axis=0, block_size=2, output_type=fp8, scale_type=float32)\noutput d\n", "2:33: error: axis must be the last or second-to-last dimension"),
    ("dyn divisible", "input x : float32[2, 40]\nd, s = dynamic_quantize(x, axis=1, block_size=16, output_type=fp8, scale_type=float32)\noutput d\n", "2:47: error: the extent 40 of axis 1 is not divisible by block_size 16"),
    ("dyn block_size positive", "input x : float32[2, 32]\nd, s = dynamic_quantize(x, axis=1, block_size=0, output_type=fp8, scale_type=float32)\noutput d\n", "2:47: error: block_size must be > 0"),
    ("nvfp4 block size", "input x : float32[2, 32]\nconst g : float32[] = 1\nd, s = dynamic_quantize(x, g, axis=1, block_size=32, output_type=fp4, scale_type=fp8)\noutput d\n", "3:50: error: NVFP4 needs blocks of 16"),
    ("nvfp4 2-D blocks", "input x : float32[32, 32]\nconst g : float32[] = 1\nd, s = dynamic_quantize(x, g, block_shape=[4, 4], output_type=fp4, scale_type=fp8)\noutput d\n", "3:43: error: NVFP4 blocks one dimension only; block [4, 4] blocks 2 (TensorRT: \"double_quant_scale must have scalar block_size\")"),
    ("nvfp4 needs dqs", "input x : float32[2, 32]\nd, s = dynamic_quantize(x, axis=1, block_size=16, output_type=fp4, scale_type=fp8)\noutput d\n", "2:1: error: NVFP4 needs a double_quant_scale input"),
    ("mxfp8 no dqs", "input x : float32[2, 32]\nconst g : float32[] = 1\nd, s = dynamic_quantize(x, g, axis=1, block_size=32, output_type=fp8, scale_type=e8m0)\noutput d\n", "3:28: error: MXFP8 takes no double_quant_scale"),
    ("mxfp8 block size", "input x : float32[2, 32]\nd, s = dynamic_quantize(x, axis=1, block_size=16, output_type=fp8, scale_type=e8m0)\noutput d\n", "2:47: error: MXFP8 needs blocks of 32"),
    ("dqs constant", "input x : float32[2, 32]\ninput g : float32[]\nd, s = dynamic_quantize(x, g, axis=1, block_size=16, output_type=fp4, scale_type=fp8)\noutput d\n", "3:28: error: double_quant_scale must be a constant"),
    ("dqs one element", "input x : float32[2, 32]\nconst g : float32[2] = [1, 1]\nd, s = dynamic_quantize(x, g, axis=1, block_size=16, output_type=fp4, scale_type=fp8)\noutput d\n", "3:28: error: double_quant_scale must hold one element"),
    ("dqs positive", "input x : float32[2, 32]\nconst g : float32[] = -1\nd, s = dynamic_quantize(x, g, axis=1, block_size=16, output_type=fp4, scale_type=fp8)\noutput d\n", "3:28: error: every double_quant_scale value must be finite and > 0"),
    ("dqs inf", "input x : float32[2, 32]\nconst g : float32[] = inf\nd, s = dynamic_quantize(x, g, axis=1, block_size=16, output_type=fp4, scale_type=fp8)\noutput d\n",
     "3:28: error: every double_quant_scale value must be finite and > 0; 'g' holds inf"),
    ("dqs overflows float16", "input x : float32[2, 32]\nconst g : float16[] = 70000\nd, s = dynamic_quantize(x, g, axis=1, block_size=16, output_type=fp4, scale_type=fp8)\noutput d\n",
     "3:28: error: every double_quant_scale value must be finite and > 0; 'g' holds inf (70000 rounded to float16)"),
    ("dqs type", "input x : float32[2, 32]\nconst g : int8[] = 1\nd, s = dynamic_quantize(x, g, axis=1, block_size=16, output_type=fp4, scale_type=fp8)\noutput d\n", "3:28: error: double_quant_scale must be float32"),
]


@pytest.mark.parametrize("name,text,expected", [c for c in CASES if c[2]], ids=[c[0] for c in CASES if c[2]])
def test_rule(name: str, text: str, expected: str) -> None:
    found = errors(text)
    assert any(expected in e for e in found), found


def test_per_channel_needs_axis(tmp_path) -> None:
    np.save(tmp_path / "w.npy", np.ones((4, 8), np.float32))
    text = "const w : float32[4, 8] = load(\"w.npy\")\nconst s : float32[4] = [1, 1, 1, 1]\nq = quantize(w, s)\noutput q\n"
    assert "m.net:3:17: error: a per-channel scale (1-D, more than one element) needs 'axis'" in errors(text, tmp_path)


def test_all_errors_in_one_run() -> None:
    text = "input x : float32[4]\nq = quantize(y, s)\nr = dequantize(z, s)\noutput q, r, t\n"
    assert errors(text) == [
        "m.net:2:14: error: unknown tensor 'y'", "m.net:2:17: error: unknown tensor 's'",
        "m.net:3:16: error: unknown tensor 'z'", "m.net:3:19: error: unknown tensor 's'",
        "m.net:4:14: error: unknown tensor 't'",
    ]


def test_failed_layer_does_not_cascade() -> None:
    text = "input x : int8[4]\nconst s : float32[] = 1\nq = quantize(x, s)\nd = dequantize(q, s)\noutput d\n"
    assert len(errors(text)) == 1


def test_unused_input_warns() -> None:
    text = "input x : float32[4]\ninput unused : float32[2]\nconst s : float32[] = 1\nq = quantize(x, s)\noutput q\n"
    assert warnings(text) == ["m.net:2:7: warning: input 'unused' is not used"]


def test_per_channel_on_activation_warns() -> None:
    text = "input x : float32[4, 8]\nconst s : float32[4] = [1, 2, 3, 4]\nq = quantize(x, s, axis=0)\noutput q\n"
    assert warnings(text) == ["m.net:3:17: warning: TensorRT accepts a per-channel scale only on "
                              "constant-rooted tensors (weights); 'x' is not"]


def test_per_channel_on_weights_does_not_warn() -> None:
    text = "const w : float32[2, 2] = [[1, 2], [3, 4]]\nconst s : float32[2] = [1, 2]\nq = quantize(w, s, axis=0)\noutput q\n"
    assert warnings(text) == []


def test_loaded_scale_that_overflows_its_type(tmp_path) -> None:
    """70000 in a float32 file, loaded into a float16 scale, becomes Inf: a warning at the load, an error at
    the use naming the value."""
    np.save(tmp_path / "s.npy", np.array(70000, np.float32))
    text = "input x : float32[4]\nconst s : float16[] = load(\"s.npy\")\nq = quantize(x, s)\noutput q\n"
    with pytest.raises(ModelError) as info:
        netdsl.loads(text, base_dir=tmp_path, filename="m.net")
    assert [str(d) for d in info.value.diagnostics] == [
        "m.net:2:23: warning: 70000 overflows float16 and becomes Inf in constant 's'",
        "m.net:3:17: error: every scale value must be finite and > 0; 's' holds inf (70000 rounded to float16)"]


@pytest.mark.parametrize("literal,expected", [
    ("[1, 70000]", "m.net:1:28: warning: 70000 overflows float16 and becomes Inf in constant 'c'"),
    ("[1, 1e999]", "m.net:1:28: warning: 1e999 overflows float16 and becomes Inf in constant 'c'"),
    ("[1, 1e300 * 1e300]", "m.net:1:28: warning: 1e+300 * 1e+300 overflows float16 and becomes Inf in constant 'c'"),
    ("[-70000, 1e999]", "m.net:1:25: warning: -70000 overflows float16 and becomes Inf in constant 'c' (2 values overflow)"),
    ("[256 * 256, 1]", "m.net:1:25: warning: 65536 overflows float16 and becomes Inf in constant 'c'"),
])
def test_data_constant_that_overflows_warns(literal: str, expected: str) -> None:
    """A data constant keeps IEEE's Inf where a finite value overflows its type, with a located warning."""
    text = f"const c : float16[2] = {literal}\noutput c\n"
    network = netdsl.loads(text, filename="m.net")
    assert [str(w) for w in network.warnings] == [expected]
    assert np.isinf(network.run({}, backend="numpy")["c"]).any()


@pytest.mark.parametrize("literal", ["[inf, -inf]", "[65504, -65504]", "[1/0, 1]"])
def test_data_constant_given_inf_or_in_range_does_not_warn(literal: str) -> None:
    assert warnings(f"const c : float16[2] = {literal}\noutput c\n") == []


def test_loaded_data_constant_that_overflows_warns(tmp_path) -> None:
    np.save(tmp_path / "c.npy", np.array([1, 3.4e38, -3.4e38], np.float32))
    network = netdsl.loads('const c : bfloat16[3] = load("c.npy")\noutput c\n', base_dir=tmp_path, filename="m.net")
    assert [str(w) for w in network.warnings] == [
        "m.net:1:25: warning: 3.4e+38 overflows bfloat16 and becomes Inf in constant 'c' (2 values overflow)"]


def test_volume_limit_of_layer_output_checked_before_allocation() -> None:
    # shapes are checked symbolically: a 2^31-1-element input is accepted without allocating anything
    net = netdsl.loads("input x : float32[2147483647]\nconst s : float32[] = 1\nq = quantize(x, s)\noutput q\n")
    assert net.outputs["q"].volume == 2**31 - 1


ACCEPTED = [
    # per-tensor with a shape-(1,) scale and axis=3 (the Quantize doc example)
    "input x : float32[1, 1, 3, 3]\nconst s : float32[1] = [1/127]\nq = quantize(x, s, axis=3)\noutput q\n",
    # block quantization without block_shape (the Block Quantization doc example)
    "input x : float32[4, 8]\nconst s : float32[2, 8] = [[1,1,2,2,3,3,4,4],[4,4,5,5,6,6,7,7]]\nq = quantize(x, s, to_type=int4)\noutput q\n",
    # partial edge blocks with block_shape
    "input x : float32[8, 8]\nconst s : float32[2, 3] = [[1, 1, 1], [1, 1, 1]]\nq = quantize(x, s, block_shape=[4, 3], to_type=fp8)\noutput q\n",
    # 1-D input: a shorter 1-D scale is a block scale
    "input x : float32[8]\nconst s : float32[2] = [1, 2]\nq = quantize(x, s)\noutput q\n",
    # zero point: float32, one-element shapes match per-tensor
    "input x : float32[8]\nconst s : float32[1] = [1]\nconst z : float32[] = 0\nq = quantize(x, s, z)\noutput q\n",
    # the NVFP4 chain: DQ(scale, dqs) then DQ(data, that)
    "input x : float32[2, 32]\nconst g : float32[1] = [1]\nd, s = dynamic_quantize(x, g, axis=1, block_size=16, output_type=fp4, scale_type=fp8)\n"
    "sf = dequantize(s, g)\ny = dequantize(d, sf)\noutput y\n",
    # MXFP8 with an N-D block_shape blocking one dimension
    "input x : float32[2, 64, 4]\nd, s = dynamic_quantize(x, block_shape=[1, 32, 1], output_type=fp8, scale_type=e8m0)\ny = dequantize(d, s, block_shape=[1, 32, 1])\noutput y\n",
    # aliases
    "input x : half[2, 32]\nd, s = dynamic_quantize(x, axis=-1, block_size=32, output_type=float8_e4m3fn, scale_type=float8_e8m0fnu)\noutput d, s\n",
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_accepted(text: str) -> None:
    netdsl.loads(text)


# --- the checked graph: a separate, typed and resolved view; the executors take only that -------------------

CHAIN = HEADER + """d, sc = dynamic_quantize(x, axis=1, block_size=8, output_type=int8, scale_type=float32)
y = dequantize(d, sc, block_shape=[1, 8], to_type=float16)
q = quantize(x, s, to_type=fp8)
output y, q
"""


def _lowered(text: str):
    from pathlib import Path

    from netdsl.diagnostics import Diagnostics
    from netdsl.frontend.lower import lower
    from netdsl.frontend.text import parse_text

    diagnostics = Diagnostics()
    module = parse_text(text, "m.net", diagnostics)
    graph = lower(module, Path.cwd(), diagnostics)
    assert not diagnostics.errors
    return graph, diagnostics


def test_check_leaves_the_graph_as_it_is() -> None:
    from netdsl.check import CheckedGraph, check

    graph, diagnostics = _lowered(CHAIN)
    before = {name: (value.type, value.producer) for name, value in graph.values.items()}
    nodes = [(node.op, list(node.inputs), list(node.outputs), node.attrs) for node in graph.nodes]
    checked = check(graph, diagnostics)
    assert isinstance(checked, CheckedGraph)
    assert {name: (value.type, value.producer) for name, value in graph.values.items()} == before
    assert [(node.op, node.inputs, node.outputs, node.attrs) for node in graph.nodes] == nodes
    assert all(graph.values[name].type is None for name in ("d", "sc", "y", "q"))
    assert [str(checked.type_of(name)) for name in ("d", "sc", "y", "q")] == \
        ["int8[4, 8]", "float32[4, 1]", "float16[4, 8]", "fp8[4, 8]"]
    assert [node.resolution.describe() for node in checked.nodes] == [
        "float-scale: block [1, 8], data int8, scale float32", "block [1, 8], to float16", "per-tensor, to fp8"]


def test_check_returns_nothing_on_an_error() -> None:
    from netdsl.check import check

    graph, diagnostics = _lowered(HEADER + "q = quantize(x, s, to_type=float16)\noutput q\n")
    assert check(graph, diagnostics) is None
    assert [d.message for d in diagnostics.errors] == ["to_type must be int8, int4, fp8, fp4, got float16"]


def test_backends_run_only_checked_graphs() -> None:
    from netdsl.backends.cupy import BACKEND as CUPY
    from netdsl.backends.numpy import BACKEND as NUMPY

    graph, _ = _lowered(CHAIN)
    network = netdsl.loads(CHAIN)
    inputs = network.prepare_inputs({"x": np.ones((4, 8), np.float32)})
    for backend in (NUMPY, CUPY):
        with pytest.raises(TypeError, match="run takes a CheckedGraph"):
            backend.run(graph, inputs)
    assert set(NUMPY.run(network.graph, inputs)) == {"y", "q"}
