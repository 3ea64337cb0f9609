"""The text front end: syntax, continuation, literals, and where syntax errors are reported."""

from __future__ import annotations

import re

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


# --- diagnostics: the source line and a caret after the one-line form ----------------------------------


def error_of(text: str, format: str = "net"):
    with pytest.raises(ModelError) as info:
        netdsl.loads(text, format=format, filename="m." + format)
    return next(d for d in info.value.diagnostics if d.severity == "error")


def caret_column(rendered: str) -> int:
    """The 0-based index in the shown source line (the text after '| ') that the caret is under."""
    _, shown, caret = rendered.split("\n")
    return caret.index("^") - (shown.index("| ") + 2)


def test_render_shows_the_line_and_a_caret_after_the_one_line_form() -> None:
    diagnostic = error_of("input x : float32[4]\nq = quantize(x, nope)\noutput q\n")
    assert str(diagnostic) == "m.net:2:17: error: unknown tensor 'nope'"
    assert diagnostic.render() == ("m.net:2:17: error: unknown tensor 'nope'\n"
                                   " 2 | q = quantize(x, nope)\n"
                                   "   |                 ^")


def test_render_expands_tabs() -> None:
    diagnostic = error_of("input x : float32[4]\n\tq = quantize(x, nope)\noutput q\n")
    assert str(diagnostic) == "m.net:2:18: error: unknown tensor 'nope'"  # a tab is one column
    assert diagnostic.render().split("\n")[1:] == [" 2 |     q = quantize(x, nope)",
                                                   "   |                     ^"]


def test_render_escapes_control_characters() -> None:
    diagnostic = error_of('const w : float32[1] = load("a\x1bb") $\n')
    assert str(diagnostic) == "m.net:1:36: error: unexpected character '$'"
    rendered = diagnostic.render()
    shown = rendered.split("\n")[1]
    assert shown == ' 1 | const w : float32[1] = load("a\\x1bb") $'  # no raw escape reaches the terminal
    assert shown[shown.index("| ") + 2 + caret_column(rendered)] == "$"


def test_render_counts_wide_characters_twice() -> None:
    diagnostic = error_of('const w : float32[2] = load("名前.npy") $\n')
    assert str(diagnostic) == "m.net:1:39: error: unexpected character '$'"
    rendered = diagnostic.render()
    assert caret_column(rendered) == 38 + 2  # two characters two columns wide before the '$'


def test_render_cuts_a_wide_line_to_a_window_around_the_column() -> None:
    line = "output q," + " q," * 100 + " $"
    diagnostic = error_of("input x : float32[2]\nconst s : float32[] = 1\nq = quantize(x, s)\n" + line + "\n")
    col = diagnostic.loc.col
    assert line[col - 1:] == "$"
    rendered = diagnostic.render()
    shown = rendered.split("\n")[1]
    text = shown[shown.index("| ") + 2:]
    assert text.startswith("...") and len(text) <= 110
    assert text[caret_column(rendered)] == "$"


def test_render_past_the_end_of_the_line() -> None:
    rendered = error_of("input x : float32[2]\noutput\n").render()
    assert rendered.split("\n")[1:] == [" 2 | output", "   |       ^"]


def test_render_of_a_yaml_error_uses_yaml_lines() -> None:
    text = "# a comment\r\ninputs: {x: \"float32[2]\"}\r\nlayers:\r\n  - {op: quantise, inputs: [x], outputs: [y]}\r\n" \
           "outputs: [y]\r\n"
    diagnostic = error_of(text, "yaml")
    assert str(diagnostic).startswith("m.yaml:4:10: error: unknown layer 'quantise'")
    assert diagnostic.render().split("\n")[1:] == [" 4 |   - {op: quantise, inputs: [x], outputs: [y]}",
                                                   "   |          ^"]


def test_errors_of_lowering_and_checking_in_one_run_without_cascades() -> None:
    with pytest.raises(ModelError) as info:
        netdsl.loads("input x : float32[2, 4]\nconst s : float32[] = 1\nconst t : float32[3] = [1, 2, 3]\n"
                     "a = quantize(x, s, axes=1)\n"       # lowering: no such attribute
                     "b = dequantize(a, s)\n"             # uses the failed layer: nothing more
                     "c = quantize(x, t, axis=1)\n"       # checking: 3 scales for an extent of 4
                     "output b, c\n", filename="m.net")
    assert [str(d) for d in info.value.diagnostics] == [
        "m.net:4:20: error: quantize has no attribute 'axes' (did you mean 'axis'?); it takes axis, to_type, "
        "block_shape",
        "m.net:6:17: error: per-channel scale has 3 elements but the input has 4 along axis 1",
    ]


def test_a_name_defined_twice_reports_nothing_at_its_uses() -> None:
    with pytest.raises(ModelError) as info:
        netdsl.loads("input x : float32[2]\ninput s : float32[]\nconst s : float32[] = 1\nq = quantize(x, s)\n"
                     "output q\n", filename="m.net")
    assert [str(d) for d in info.value.diagnostics] == ["m.net:3:7: error: 's' is already defined at line 2"]


# --- type aliases and names ------------------------------------------------------------------------------


def test_short_type_aliases_in_both_forms() -> None:
    text = ("input x : bf16[2, 32]\ninput h : fp16[2]\nconst s : fp32[] = 1\n"
            "q = quantize(h, s, to_type=e4m3)\nd, e = dynamic_quantize(x, s, axis=1, block_size=16, output_type=e2m1, "
            "scale_type=e4m3)\noutput q, d\n")
    net = netdsl.loads(text)
    assert [str(t) for t in net.inputs.values()] == ["bfloat16[2, 32]", "float16[2]"]
    assert [str(t) for t in net.outputs.values()] == ["fp8[2]", "fp4[2, 32]"]
    yaml_text = ("inputs: {h: 'fp16[2]'}\nconstants: {s: {type: 'fp32[]', value: 1}}\n"
                 "layers:\n  - {op: quantize, inputs: [h, s], outputs: [q], to_type: e4m3}\noutputs: [q]\n")
    assert str(netdsl.loads(yaml_text, format="yaml").outputs["q"]) == "fp8[2]"


def test_the_grammar_name_is_the_python_name_pattern() -> None:
    from netdsl.frontend import ast
    from netdsl.frontend.text import _parser

    assert _parser().get_terminal("NAME").pattern.value == ast.NAME_PATTERN


# --- large literals: the fast path reads exactly what the parser reads -----------------------------------

ELEMENTS = ["0.1", "-0", "+2.5", "1e999", "-1e999", "16777217", "0x1p-7", "0x10", "-inf", "Inf", "nan", "-NaN",
            "1e-320", "3.4028235e38", "65520", "1.00390625", "007", "0" * 5000 + "3", "9" * 400, ".5", "5.", "1E2"]


def constant_bits(literal: str, type_name: str) -> bytes:
    n = len(ELEMENTS)
    net = netdsl.loads(f"const c : {type_name}[{n}] = {literal}\nconst s : float32[] = 1\nx = quantize(c, s)\n"
                       "output x\n")
    return net.graph.values["c"].data.tobytes()


@pytest.mark.parametrize("type_name", ["float32", "float16", "bfloat16"])
def test_fast_path_values_equal_the_parser_values(type_name: str) -> None:
    from netdsl.diagnostics import Diagnostics
    from netdsl.frontend import ast
    from netdsl.frontend.text import parse_text

    plain = "[" + ", ".join(ELEMENTS) + "]"
    parsed = "[" + ", ".join(f"({e})" for e in ELEMENTS) + "]"  # parentheses: the parser reads it
    assert isinstance(parse_text(f"const c : float32[2] = {plain}\n", "m", Diagnostics()).statements[0].value,
                      ast.NumberBlock)
    assert isinstance(parse_text(f"const c : float32[2] = {parsed}\n", "m", Diagnostics()).statements[0].value,
                      ast.ListExpr)
    assert constant_bits(plain, type_name) == constant_bits(parsed, type_name)
    # and both are what Python's own float64 rule then NumPy's rounding give, element by element
    expected = [float(e.replace("Inf", "inf").replace("NaN", "nan")) if "x" not in e else float.fromhex(e)
                if "p" in e else float(int(e, 16)) for e in ELEMENTS]
    storage = netdsl.dtypes.lookup(type_name).storage
    with np.errstate(over="ignore"):  # 1e999 and 65520 in float16 round to inf, as they should
        bits = np.array(expected, np.float64).astype(storage)
    assert constant_bits(plain, type_name) == bits.tobytes()


def test_fast_path_nested_and_multiline_keeps_every_location() -> None:
    rows = ",\n  ".join("[" + ", ".join(str(i * 8 + j) for j in range(8)) + "]" for i in range(4))
    text = f"const w : int8[4, 8] = [\n  {rows}\n]\nconst s : float32[] = 1\nq = dequantize(w, s)\noutput q, nope\n"
    with pytest.raises(ModelError) as info:
        netdsl.loads(text, filename="m.net")
    assert str(info.value.diagnostics[0]) == "m.net:9:11: error: unknown tensor 'nope'"
    net = netdsl.loads(text.replace(", nope", ""))
    assert net.graph.values["w"].data.tolist() == np.arange(32).reshape(4, 8).tolist()


@pytest.mark.parametrize("shape,literal,at,message", [
    ("[16]", "[" + ", ".join(["1"] * 15 + ["0.3"]) + "]", "0.3", "0.3 is not exactly representable in fp4"),
    ("[2, 16]", "[[" + ", ".join(["1"] * 16) + "], [1, 2]]", "[1, 2]",
     "this list has 2 elements, the declared shape needs 16"),
    ("[16]", "[" + ", ".join(["1"] * 17) + "]", "[", "this list has 17 elements, the declared shape needs 16"),
    ("[16]", "[" + ", ".join(["[1]"] * 16) + "]", "[1]", "expected a number here, found a list (the literal is nested "
                                                       "deeper than the declared shape)"),
])
def test_fast_path_errors_are_located_as_the_parser_locates_them(shape: str, literal: str, at: str,
                                                                 message: str) -> None:
    text = f"const w : fp4{shape} = {literal}\nconst s : float32[] = 1\nq = dequantize(w, s)\noutput q\n"
    assert str(error_of(text)) == f"m.net:1:{text.index(at, text.index('=')) + 1}: error: {message}"
    # the same literal with its numbers in parentheses (the parser's path) has the same error and location
    parsed = re.sub(r"(?<![\d.])(\d+(?:\.\d+)?)", r"(\1)", literal)
    moved = f"const w : fp4{shape} = {parsed}\nconst s : float32[] = 1\nq = dequantize(w, s)\noutput q\n"
    assert str(error_of(moved)).split(": error: ")[1] == message


# --- limits: memory and literal size, checked while reading ----------------------------------------------


def test_literal_limit_is_enforced_before_the_literal_is_materialised() -> None:
    import tracemalloc

    count = 4_000_000
    text = "const w : float32[2] = [" + "1," * count + "]\n"
    tracemalloc.start()
    try:
        error = str(error_of(text))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error == ("m.net:1:24: error: a literal may hold at most 1048576 elements; "
                     "load() larger constants from a file")
    assert peak < 4 * len(text)  # reading 4M numbers would take over 100 MB


def test_literal_limit_is_enforced_while_the_parser_reads(monkeypatch) -> None:
    from netdsl.frontend import text as text_form

    monkeypatch.setattr(text_form, "MAX_LITERAL_ELEMENTS", 100)
    literal = "[" + ", ".join(["(1)"] * 101) + "]"  # not plain numbers: the parser's path
    # refused at the 101st element: the syntax error after it is never reached
    diagnostic = error_of(f"\nconst w : float32[2] = {literal} $\n")
    assert str(diagnostic).startswith("m.net:2:24: error: a literal may hold at most")
    nested = "[" + ", ".join(["[(1), (2)]"] * 51) + "]"
    assert "at most" in str(error_of(f"const w : float32[51, 2] = {nested}\n"))
    fine = "[" + ", ".join(["[(1), (2)]"] * 50) + "]"
    assert "at most" not in str(error_of(f"const w : float32[50, 2] = {fine}\n"))  # (no outputs)


@pytest.mark.parametrize("text", [
    "\n" * 1_000_000,
    " \n\t\n" * 250_000,
    "# comment\n" * 100_000,
    'const w : float32[1] = load("' + "a" * 1_000_000 + '")\n',
])
def test_lexer_memory_is_linear_with_a_small_constant(text: str) -> None:
    import tracemalloc

    from netdsl.diagnostics import Diagnostics
    from netdsl.frontend.text import parse_text

    parse_text("output x\n", "m", Diagnostics())  # the parser is built outside the measurement
    tracemalloc.start()
    try:
        parse_text(text, "m.net", Diagnostics())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * len(text) + (1 << 20)  # was ~280 bytes per byte for blank lines


@pytest.mark.parametrize("body,message", [
    ("[" * 65 + "1" + "]" * 65, "m.net:1:87: error: the model is nested too deeply (more than 64 brackets open)"),
    ("(" * 100_000 + "1" + ")" * 100_000, "m.net:1:87: error: the model is nested too deeply"),
    ("-" * 100_000 + "1", "m.net:1:1: error: this statement is nested too deeply"),
    ("+".join(["1"] * 100_000), "m.net:1:1: error: this statement is nested too deeply"),
])
def test_deep_nesting_is_an_error_not_a_crash(body: str, message: str) -> None:
    with pytest.raises(ModelError) as info:
        netdsl.loads(f"const c : float32[] = {body}\noutput c\n", filename="m.net")
    assert len(info.value.diagnostics) == 1  # nothing more about 'c'
    assert str(info.value.diagnostics[0]).startswith(message)


def test_parses_in_threads_keep_their_own_files() -> None:
    """The parser is shared; each parse's file name and blocks travel in a context variable."""
    from concurrent.futures import ThreadPoolExecutor

    def first_error_file(index: int) -> str:
        literal = "[" + ", ".join(["1"] * 40) + "]"
        text = "".join(f"const c{j} : float32[40] = {literal}\n" for j in range(20)) + "q = quantize(c0, nope)\noutput q\n"
        with pytest.raises(ModelError) as info:
            netdsl.loads(text, filename=f"m{index}.net")
        return str(info.value.diagnostics[0])

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(first_error_file, range(8)))
    assert results == [f"m{i}.net:21:18: error: unknown tensor 'nope'" for i in range(8)]


@pytest.mark.parametrize("type_name,big", [("float32", "-1e999"), ("float16", "70000"), ("float16", "1e999")])
def test_fast_path_overflow_warnings_equal_the_parser_ones(type_name: str, big: str) -> None:
    plain = "[" + ", ".join(["1"] * 14 + [big, "2"]) + "]"
    parsed = plain.replace("2]", "(2)]")  # the parser's path, the big number at the same place
    warnings = []
    for literal in (plain, parsed):
        net = netdsl.loads(f"const c : {type_name}[16] = {literal}\nconst s : float32[] = 1\nq = quantize(c, s)\n"
                           f"output q\n", filename="m.net")
        warnings.append([str(w) for w in net.warnings])
    col = len(f"const c : {type_name}[16] = ") + plain.index(big.lstrip("-")) + 1
    assert warnings[0] == warnings[1] == [f"m.net:1:{col}: warning: {big.lstrip('-')} overflows {type_name} and "
                                          f"becomes Inf in constant 'c'"]
