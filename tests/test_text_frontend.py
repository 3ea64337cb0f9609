"""The text front end: syntax, continuation, literals, and where syntax errors are reported."""

from __future__ import annotations

import numpy as np
import pytest

import netdsl
from netdsl import ModelError


def first_error(text: str) -> str:
    with pytest.raises(ModelError) as info:
        netdsl.loads(text, filename="m.net")
    return str(info.value.diagnostics[0])


@pytest.mark.parametrize("text,expected", [
    ("input x : float32[2\n", "m.net:1:18: error: '[' is never closed"),
    ("input x float32[2]\n", "m.net:1:9: error: unexpected 'float32'"),
    ("q = quantize(x, s\noutput q\n", "m.net:1:13: error: '(' is never closed"),
    # the innermost bracket that nothing closes, even where later brackets are balanced
    ("const s : float32[2] = [1, 2\nq = quantize(x, s)\noutput q\n", "m.net:1:24: error: '[' is never closed"),
    ("q = quantize(x, s, block_shape=[1, 2\noutput q\n", "m.net:1:32: error: '[' is never closed"),
    # a closing bracket of the other kind is the error itself
    ("q = quantize(x, s, block_shape=[1, 2)\noutput q\n", "m.net:1:37: error: unexpected ')'; expected ',' or ']'"),
    # a bracket closed later: the error is where the parser stopped (a missing comma)
    ("const s : float32[3] = [\n 1,\n 2\n 3]\n", "m.net:4:2: error: unexpected '3'"),
    ("input x : float32[2] $\n", "m.net:1:22: error: unexpected character '$'"),
    ("input x : float32[2]\nq = quantize(x, , s)\n", "m.net:2:17: error: unexpected ','"),
    ("input 1x : float32[2]\n", "m.net:1:7: error: unexpected '1'"),
    ("const s : float32[] = (1\n", "m.net:1:23: error: '(' is never closed"),
    ("const s : float32[] = 1 +\n", "m.net:1:26: error: unexpected end of line"),
    ("output\n", "m.net:1:7: error: unexpected end of line"),
])
def test_syntax_error_locations(text: str, expected: str) -> None:
    assert first_error(text) == expected or first_error(text).startswith(expected)


def test_statement_continues_inside_brackets() -> None:
    net = netdsl.loads("""
input x : float32[
    2, 3]
const s : float32[3] = [   # a comment inside the literal
    1,
    2,
    4,
]
q = quantize(
    x,
    s,
    axis=1,
)
output q
""")
    assert str(net.outputs["q"]) == "int8[2, 3]"


def test_no_reserved_words() -> None:
    text = """network quantize
input input : float32[2]
const const : float32[] = 1
quantize = quantize(input, const)
output = dequantize(quantize, const)
output output
"""
    net = netdsl.loads(text)
    assert net.name == "quantize"
    assert list(net.outputs) == ["output"]


def test_dotted_names_and_comments() -> None:
    net = netdsl.loads("input layer.0.x : float32[2]  # trailing\n# whole line\nconst s : float32[] = 1\n"
                       "layer.0.q = quantize(layer.0.x, s)\noutput layer.0.q")
    assert list(net.outputs) == ["layer.0.q"]


@pytest.mark.parametrize("literal,expected", [
    ("1/127", np.float32(1 / 127)),
    ("0x1p-7", np.float32(2**-7)),
    ("1e-3", np.float32(1e-3)),
    ("-(2 + 3) * 4", np.float32(-20)),
    ("2 * 3 + 4 / 8", np.float32(6.5)),
    ("1 - 2 - 3", np.float32(-4)),
    ("8 / 4 / 2", np.float32(1)),
    ("-inf", np.float32(-np.inf)),
    ("3.4028235e38 * 2", np.float32(np.inf)),
    (".5", np.float32(0.5)),
    ("0x10", np.float32(16)),
])
def test_literal_arithmetic(literal: str, expected: np.float32) -> None:
    net = netdsl.loads(f"const c : float32[1] = [{literal}]\nconst s : float32[] = 1\nx = quantize(c, s)\noutput x\n")
    assert net.graph.values["c"].data.tobytes() == np.array([expected], np.float32).tobytes()


def test_literal_is_evaluated_in_float64_then_rounded_once() -> None:
    # 1/3 in float64 rounded to float32 differs from float32(1)/float32(3) only by evaluation order;
    # check against NumPy's own float64 -> float32 rounding, as TensorRT's examples build their scales
    net = netdsl.loads("const c : float32[3] = [1/3, 0.1 + 0.2, 16777217]\nconst s : float32[] = 1\n"
                       "x = quantize(c, s)\noutput x\n")
    assert net.graph.values["c"].data.tobytes() == np.array([1 / 3, 0.1 + 0.2, 16777217], np.float32).tobytes()


def test_float16_and_bfloat16_literals_round_to_nearest_even() -> None:
    import ml_dtypes

    net = netdsl.loads("const h : float16[2] = [1.00048828125, 65520]\nconst b : bfloat16[1] = [1.00390625]\n"
                       "const s : float32[] = 1\nx = quantize(h, s)\ny = quantize(b, s)\noutput x, y\n")
    assert net.graph.values["h"].data.tolist() == [1.0, float("inf")]
    assert net.graph.values["b"].data.astype(np.float32).tolist() == [1.0]
    assert net.graph.values["b"].data.dtype == ml_dtypes.bfloat16


def test_quantized_constants_take_exact_values() -> None:
    net = netdsl.loads("const w : fp4[4] = [-6, 0.5, 1.5, -0]\nconst i : int4[2] = [-8, 7]\n"
                       "const e : e8m0[2] = [0x1p-127, 0x1p127]\nconst f : fp8[2] = [448, 0x1p-9]\n"
                       "const s : float32[] = 1\na = dequantize(w, s)\nb = dequantize(i, s)\nc = dequantize(f, e, axis=0)\n"
                       "output a, b, c\n")
    assert net.graph.values["w"].data.astype(np.float32).tolist() == [-6, 0.5, 1.5, 0]
    assert np.signbit(net.graph.values["w"].data.astype(np.float32)[3])
    assert net.graph.values["e"].data.astype(np.float64).tolist() == [2.0**-127, 2.0**127]


def test_network_name_defaults_to_file_stem(tmp_path) -> None:
    path = tmp_path / "my_model.net"
    path.write_text("input x : float32[2]\nconst s : float32[] = 1\nq = quantize(x, s)\noutput q\n")
    assert netdsl.load(path).name == "my_model"


def test_load_relative_to_model_file(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "w.npy", np.arange(8, dtype=np.float32).reshape(2, 4))
    np.savez(tmp_path / "sub" / "all.npz", scale=np.array([0.5], np.float32), other=np.zeros(2, np.float32))
    model = tmp_path / "sub" / "m.net"
    model.write_text('const w : float32[2, 4] = load("w.npy")\nconst s : float32[1] = load("all.npz", "scale")\n'
                     "q = quantize(w, s)\noutput q\n")
    out = netdsl.load(model).run({}, backend="numpy")["q"]
    assert out.astype(np.int32).tolist() == [[0, 2, 4, 6], [8, 10, 12, 14]]


@pytest.mark.parametrize("setup,call,expected", [
    (lambda d: None, 'load("missing.npy")', "1:24: error: cannot read"),
    (lambda d: (d / "bad.npy").write_bytes(b"not an npy"), 'load("bad.npy")', "1:24: error: cannot read"),
    (lambda d: np.save(d / "obj.npy", np.array([object()]), allow_pickle=True), 'load("obj.npy")',
     "1:24: error: cannot read"),
    (lambda d: np.save(d / "w.npy", np.zeros(3, np.float32)), 'load("w.npy")',
     "1:24: error: 'w.npy' has shape [3], expected [2]"),
    (lambda d: np.save(d / "w.npy", np.zeros(2, np.int32)), 'load("w.npy")',
     "1:24: error: 'w.npy' has dtype int32, expected float32 for float32"),
    (lambda d: np.savez(d / "a.npz", x=np.zeros(2, np.float32), y=np.zeros(2, np.float32)), 'load("a.npz")',
     "1:24: error: 'a.npz' holds 2 arrays (x, y)"),
    (lambda d: np.savez(d / "a.npz", scale=np.zeros(2, np.float32)), 'load("a.npz", "scales")',
     "1:38: error: 'a.npz' has no array 'scales' (did you mean 'scale'?)"),
    (lambda d: np.save(d / "w.npy", np.zeros(2, np.float32)), 'load("w.npy", "k")',
     "1:38: error: 'w.npy' holds a single array: it takes no key"),
    (lambda d: None, 'load()', "1:24: error: load takes a file name"),
])
def test_load_errors(tmp_path, setup, call: str, expected: str) -> None:
    setup(tmp_path)
    text = f"const w : float32[2] = {call}\nconst s : float32[] = 1\nq = quantize(w, s)\noutput q\n"
    with pytest.raises(ModelError) as info:
        netdsl.loads(text, base_dir=tmp_path, filename="m.net")
    assert any(str(d).startswith("m.net:" + expected) for d in info.value.diagnostics), info.value.diagnostics


def test_load_quantized_constant_from_saved_dtype(tmp_path) -> None:
    np.save(tmp_path / "w.npy", np.array([1.5, -6.0], np.float32))
    np.save(tmp_path / "bad.npy", np.array([1.25, -6.0], np.float32))
    text = 'const w : fp4[2] = load("{}")\nconst s : float32[] = 1\nd = dequantize(w, s)\noutput d\n'
    assert netdsl.loads(text.format("w.npy"), base_dir=tmp_path).run({})["d"].tolist() == [1.5, -6.0]
    with pytest.raises(ModelError, match="holds 1.25, which fp4 cannot represent exactly"):
        netdsl.loads(text.format("bad.npy"), base_dir=tmp_path)
