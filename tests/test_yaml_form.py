"""The YAML front end: the same AST and IR as the text form, numbers read by the text form's rules, and
a located error (1-based line:column of the offending node) for every malformed input."""

from __future__ import annotations

import numpy as np
import pytest

import netdsl
from netdsl import ModelError
from netdsl.check import print_graph
from netdsl.diagnostics import Diagnostics
from netdsl.frontend import ast
from netdsl.frontend.text import parse_text
from netdsl.frontend.yaml_form import parse_yaml

TEXT_EXAMPLE = """# TensorRT operator docs, "Quantize"
network quantize                       # optional, first statement; defaults to the file stem

input  input1 : float32[1, 1, 3, 3]
const  scale  : float32[1] = [1/127]   # literal: numbers and + - * / ( ) with the usual precedence
const  w      : float32[4, 8] = load("weights.npy")    # .npy, or load("w.npz", "key")

q   = quantize(input1, scale, axis=3)              # to_type defaults to int8
out = dequantize(q, scale, axis=3)                 # to_type defaults to float32
output out                                         # one or more: output a, b
"""

YAML_EXAMPLE = """network: quantize
inputs:
  input1: float32[1, 1, 3, 3]          # the same type syntax as the text form
constants:
  scale: {type: "float32[1]", value: [0.007874015748031496]}
  w:     {type: "float32[4, 8]", load: weights.npy}      # or load: [w.npz, key]
layers:
  - op: quantize
    inputs: [input1, scale]
    outputs: [q]
    axis: 3
  - op: dequantize
    inputs: [q, scale]
    outputs: [out]
    axis: 3
outputs: [out]
"""

#: a valid model to vary: each failing input below breaks one rule of it
MINIMAL = """inputs:
  x: float32[2, 4]
constants:
  s: {type: "float32[]", value: 0.5}
layers:
  - op: quantize
    inputs: [x, s]
    outputs: [q]
outputs: [q]
"""


def errors(text: str, tmp_path=None) -> list[str]:
    """Every error, rendered ``LINE:COL: error: MESSAGE`` (file m.yaml)."""
    with pytest.raises(ModelError) as info:
        netdsl.loads(text, format="yaml", filename="m.yaml", base_dir=tmp_path)
    rendered = [str(d) for d in info.value.diagnostics if d.severity == "error"]
    assert all(r.startswith("m.yaml:") for r in rendered)
    return [r[len("m.yaml:"):] for r in rendered]


def constant(text: str, name: str = "c", **kwargs) -> np.ndarray:
    data = netdsl.loads(text, format="yaml", **kwargs).graph.values[name].data
    assert data is not None
    return data


def graph_key(network: netdsl.Network) -> tuple[str, dict[str, tuple[str, bytes]]]:
    """The IR as the tests compare it: the printed graph plus every constant's type and exact bytes."""
    graph = network.graph
    return print_graph(graph), {v.name: (str(v.type), v.data.tobytes()) for v in graph.constants}


# --- the same model in both forms ----------------------------------------------------------------------


@pytest.fixture
def weights_dir(tmp_path):
    np.save(tmp_path / "weights.npy", np.arange(32, dtype=np.float32).reshape(4, 8) / 8)
    return tmp_path


def test_language_example_equals_text_example(weights_dir) -> None:
    from_yaml = netdsl.loads(YAML_EXAMPLE, format="yaml", base_dir=weights_dir, filename="quantize.yaml")
    from_text = netdsl.loads(TEXT_EXAMPLE, format="net", base_dir=weights_dir, filename="quantize.net")
    assert graph_key(from_yaml) == graph_key(from_text)
    assert from_yaml.name == "quantize"
    x = np.linspace(-1, 1, 9, dtype=np.float32).reshape(1, 1, 3, 3)
    assert from_yaml.run({"input1": x}, backend="numpy")["out"].tobytes() == \
        from_text.run({"input1": x}, backend="numpy")["out"].tobytes()


def _strip_locs(node):
    """An AST with every location replaced by None, to compare what two front ends built."""
    if isinstance(node, list):
        return [_strip_locs(n) for n in node]
    if hasattr(node, "__dataclass_fields__"):
        fields = {key: None if key == "loc" else _strip_locs(getattr(node, key))
                  for key in node.__dataclass_fields__}
        return type(node)(**fields)
    return node


def test_builds_the_same_ast_as_the_text_form() -> None:
    text = """network n
input x : float32[2, 32]
const s : float32[2] = [-1.5, 0x1p-7]
const z : float32[] = -inf
const w : fp8[1] = [nan]
a, b = dynamic_quantize(x, axis=-1, block_size=32, output_type=fp8, scale_type=e8m0)
q = quantize(x, s, axis=0, block_shape=[1, -1])
output a, b, q
"""
    yaml_text = """network: n
inputs:
  x: float32[2, 32]
constants:
  s: {type: "float32[2]", value: [-1.5, 0x1p-7]}
  z: {type: "float32[]", value: -inf}
  w: {type: "fp8[1]", value: [nan]}
layers:
  - {op: dynamic_quantize, inputs: [x], outputs: [a, b], axis: -1, block_size: 32, output_type: fp8,
     scale_type: e8m0}
  - {op: quantize, inputs: [x, s], outputs: [q], axis: 0, block_shape: [1, -1]}
outputs: [a, b, q]
"""
    from_text = parse_text(text, "m", Diagnostics())
    from_yaml = parse_yaml(yaml_text, "m", Diagnostics())
    assert from_text is not None and from_yaml is not None
    assert _strip_locs(from_yaml.statements) == _strip_locs(from_text.statements)


def test_locations_are_the_yaml_nodes() -> None:
    module = parse_yaml(MINIMAL, "m.yaml", Diagnostics())
    assert module is not None
    inputs, const, layer, output = module.statements
    assert isinstance(inputs, ast.InputStmt) and (inputs.name.loc.line, inputs.name.loc.col) == (2, 3)
    assert (inputs.type.dtype.loc.line, inputs.type.dtype.loc.col) == (2, 6)
    assert isinstance(const, ast.ConstStmt) and (const.value.loc.line, const.value.loc.col) == (4, 33)
    assert isinstance(layer, ast.LayerStmt) and (layer.op.loc.line, layer.op.loc.col) == (6, 9)
    assert [(a.loc.line, a.loc.col) for a in layer.args] == [(7, 14), (7, 17)]
    assert isinstance(output, ast.OutputStmt)
    assert (output.names[0].loc.line, output.names[0].loc.col) == (9, 11)


def test_sections_in_any_order_and_network_optional() -> None:
    text = "outputs: [q]\nlayers:\n  - {op: quantize, inputs: [x, s], outputs: [q]}\n" \
           "constants:\n  s: {type: \"float32[]\", value: 1}\ninputs:\n  x: \"float32[2]\"\n"
    network = netdsl.loads(text, format="yaml", filename="dir/stem.yaml")
    assert network.name == "stem"
    assert str(network.outputs["q"]) == "int8[2]"


def test_load_npz_key_and_quoted_strings(tmp_path) -> None:
    np.savez(tmp_path / "all.npz", scale=np.array([0.25, 0.5], np.float32))
    text = _replace('{type: "float32[]", value: 0.5}', "{type: 'float32[2]', load: ['all.npz', \"scale\"]}")
    text = text.replace("outputs: [q]\n", "outputs: [q]\n    axis: 0\n", 1)
    assert constant(text, "s", base_dir=tmp_path).tolist() == [0.25, 0.5]


def test_names_are_never_reserved_or_implicitly_typed() -> None:
    # PyYAML would read these as booleans, null and numbers; here they are names
    text = """network: no
inputs:
  yes: float32[2]
  null: float32[2]
constants:
  on: {type: "float32[]", value: 1}
layers:
  - {op: quantize, inputs: [yes, on], outputs: [true]}
  - {op: quantize, inputs: [null, on], outputs: [~x]}
outputs: [true]
"""
    assert errors(text) == [("9:50: error: expected a tensor name, found '~x' "
                             "(a name is letters, digits, '_' and '.', not starting with a digit)")]
    network = netdsl.loads(text.replace("~x", "off").replace("outputs: [true]\n", "outputs: [true, off]\n"),
                           format="yaml")
    assert network.name == "no"
    assert list(network.inputs) == ["yes", "null"]
    assert list(network.outputs) == ["true", "off"]


# --- numbers: the text form's rules, read from the source text -----------------------------------------


def number_model(literal: str, dtype: str = "float32") -> tuple[str, str]:
    """The same one-constant model in both forms, the constant ``c`` holding ``literal``."""
    text = f"const c : {dtype}[1] = [{literal}]\nconst s : float32[] = 1\nq = quantize(c, s)\noutput q\n"
    yaml_text = f"constants:\n  c: {{type: \"{dtype}[1]\", value: [{literal}]}}\n" \
                "  s: {type: \"float32[]\", value: 1}\n" \
                "layers:\n  - {op: quantize, inputs: [c, s], outputs: [q]}\noutputs: [q]\n"
    return text, yaml_text


@pytest.mark.parametrize("literal,expected", [
    ("1e-3", 1e-3),
    ("1E+2", 100.0),
    ("0x1p-7", 2.0**-7),
    ("0X1.8P1", 3.0),
    ("0x10", 16.0),
    ("010", 10.0),  # decimal, not octal
    ("-1", -1.0),
    ("+2.5", 2.5),
    (".5", 0.5),
    ("-.5", -0.5),
    ("1.", 1.0),
    ("0.007874015748031496", 1 / 127),
    ("inf", np.inf),
    ("-inf", -np.inf),
    ("Inf", np.inf),
    (".inf", np.inf),
    ("-.inf", -np.inf),
    ("+.Inf", np.inf),
    (".INF", np.inf),
    ("1e999", np.inf),
    ("1" + "0" * 400, np.inf),
    ("-0", -0.0),
])
def test_numbers(literal: str, expected: float) -> None:
    got = constant(number_model(literal)[1])
    assert got.tobytes() == np.array([expected], np.float32).tobytes()


@pytest.mark.parametrize("literal,negative", [
    ("nan", False), ("NaN", False), (".nan", False), (".NaN", False), ("-nan", True), ("-.nan", True)])
def test_nan_spellings(literal: str, negative: bool) -> None:
    got = constant(number_model(literal)[1])[0]
    assert np.isnan(got) and bool(np.signbit(got)) == negative


@pytest.mark.parametrize("literal", ["1e-3", "0x1p-7", "-1", "3.4028235e38", "1.00048828125", "1e-45", "-0.0",
                                     "16777217", "0.1", "65520", "-nan"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_numbers_read_exactly_as_the_text_form_reads_them(literal: str, dtype: str) -> None:
    text, yaml_text = number_model(literal, dtype)
    assert constant(yaml_text).tobytes() == netdsl.loads(text).graph.values["c"].data.tobytes()


def test_attribute_values() -> None:
    text = """inputs:
  x: float32[4, 6]
constants:
  s: {type: "float32[2, 1]", value: [[1], [0x1p-3]]}
layers:
  - op: quantize
    inputs: [x, s]
    outputs: [q]
    block_shape: [2, -1]
    to_type: "fp8"
    axis: -0x1
outputs: [q]
"""
    node = netdsl.loads(text, format="yaml").graph.nodes[0]
    assert node.attrs.block_shape == (2, -1)
    assert node.attrs.to_type.name == "fp8"
    assert node.attrs.axis == -1


# --- failing inputs: message and 1-based line:column ----------------------------------------------------


def _replace(old: str, new: str) -> str:
    assert old in MINIMAL
    return MINIMAL.replace(old, new, 1)


def _model_outputs(outputs: str | None) -> str:
    """MINIMAL with its last line ``outputs: [q]`` replaced (None: left out)."""
    head = MINIMAL.rsplit("outputs: [q]\n", 1)[0]
    return head if outputs is None else head + f"outputs: {outputs}\n"



FAILING = [
    # the document
    ("",
     ["1:1: error: the document is empty; a model is a mapping with inputs, constants, layers and outputs"]),
    ("# only a comment\n", ["1:1: error: the document is empty"]),
    ("- a\n- b\n", ["1:1: error: the model must be a mapping, found a list"]),
    ("quantize\n", ["1:1: error: the model must be a mapping, found 'quantize'"]),
    (MINIMAL + "---\noutputs: [q]\n",
     ["10:1: error: invalid YAML: but found another document (expected a single document in the stream"]),
    # YAML syntax, located at PyYAML's problem mark
    (_replace("inputs: [x, s]", "inputs: [x, s"),
     ["8:12: error: invalid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence at line"]),
    (_replace("  x: float32[2, 4]", "  x: float32[2, 4]\n bad: 1"),
     ["3:2: error: invalid YAML: expected <block end>"]),
    (_replace("  x: float32[2, 4]", "\tx: float32[2, 4]"),
     ["2:1: error: invalid YAML: found character '\\t' that cannot start any token"]),
    (_replace("value: 0.5", 'value: "0.5'), ["10:1: error: invalid YAML: found unexpected end of stream"]),
    (_replace("  x: float32[2, 4]", "  x: float32[2, 4]\x07"),
     ["2:19: error: invalid YAML: the character #x0007 is not allowed (special characters are not allowed)"]),
    # top-level keys
    (_replace("inputs:", "input:"),
     [("1:1: error: unknown key 'input' in the model (did you mean 'inputs'?); "
       "expected 'network', 'aliases', 'inputs', 'constants', 'layers' or 'outputs'")]),
    (_replace("layers:", "layer:"),
     ["5:1: error: unknown key 'layer' in the model (did you mean 'layers'?)"]),
    (MINIMAL + "version: 2\n", ["10:1: error: unknown key 'version' in the model; expected 'network'"]),
    (MINIMAL + "inputs:\n  y: float32[1]\n", ["10:1: error: duplicate key 'inputs' (first at line 1)"]),
    (_model_outputs(None),
     ["1:1: error: the model has no 'outputs': add outputs: [NAME, ...]"]),
    (_model_outputs("[]"),
     ["9:10: error: 'outputs' names no tensor: add outputs: [NAME, ...]"]),
    (_model_outputs("q"),
     ["9:10: error: 'outputs' must be a list, e.g. outputs: [out]; found 'q'"]),
    (_model_outputs("[q, r]"),
     ["9:14: error: unknown tensor 'r'"]),
    (_model_outputs("[q, [r]]"),
     ["9:14: error: expected a tensor name, found a list"]),
    ("network: my-net\n" + MINIMAL,
     ["1:10: error: expected the network name, found 'my-net' (a name is letters"]),
    ("network: [a]\n" + MINIMAL, ["1:10: error: expected the network name, found a list"]),
    # anchors, aliases, tags
    (_replace("inputs: [x, s]", "inputs: &in [x, s]"), ["7:13: error: anchors are not allowed (&in)"]),
    (_replace("  x: float32[2, 4]", "  x: &t float32[2, 4]\n  y: *t"),
     ["2:6: error: anchors are not allowed (&t)",
      "3:6: error: aliases are not allowed (*t): write the value out"]),
    (_replace("outputs: [q]\n", "outputs: [*q]\n"),
     ["8:15: error: aliases are not allowed (*q): write the value out",
      "8:15: error: invalid YAML: found undefined alias 'q'"]),
    (_replace("value: 0.5", "value: !!float 0.5"),
     ["4:33: error: tags are not allowed (!!float): plain values only"]),
    (_replace("  x: float32[2, 4]", "  x: !!python/object:os.system float32[2, 4]"),
     ["2:6: error: tags are not allowed (!!python/object:os.system)"]),
    ("!!map\n" + MINIMAL, ["1:1: error: tags are not allowed (!!map)"]),
    (_replace("value: 0.5", "value: ! 0.5"), ["4:33: error: tags are not allowed (!)"]),
    (_replace("value: 0.5", "value: !custom 0.5"), ["4:33: error: tags are not allowed (!custom)"]),
    # inputs
    (_replace("  x: float32[2, 4]", "  - x"),
     ["2:3: error: 'inputs' (NAME: TYPE) must be a mapping, found a list"]),
    (_replace("  x: float32[2, 4]", "  x: [2, 4]"),
     ["2:6: error: expected a type such as float32[1, 3], found a list"]),
    (_replace("  x: float32[2, 4]", "  x:"),
     ["2:5: error: expected a type such as float32[1, 3], found nothing"]),
    (_replace("  x: float32[2, 4]", "  x: float32[2, 4"), ["2:13: error: '[' is never closed"]),
    (_replace("  x: float32[2, 4]", "  x: float32[2, $]"), ["2:17: error: unexpected character '$'"]),
    (_replace("  x: float32[2, 4]", '  x: "float32[2, $]"'), ["2:18: error: unexpected character '$'"]),
    (_replace("  x: float32[2, 4]", "  x: floa32[2, 4]"),
     ["2:6: error: unknown type 'floa32' (did you mean 'float32'?)"]),
    (_replace("  x: float32[2, 4]", "  x: float32[2, 4.5]"),
     ["2:17: error: a dimension must be a non-negative integer"]),
    (_replace("  x: float32[2, 4]", "  1x: float32[2, 4]"),
     ["2:3: error: expected an input name, found '1x'"]),
    (_replace("  x: float32[2, 4]", "  x: float32[2, 4]\n  x: float32[2]"),
     ["3:3: error: duplicate key 'x' (first at line 2)"]),
    (_replace("  x: float32[2, 4]", "  [a]: float32[2, 4]"),
     ["2:3: error: a key must be a name, found a list"]),
    (_replace("  x: float32[2, 4]", "  x: float32[2, 4]\n  s: float32[2]"),
     ["5:3: error: 's' is already defined at line 3"]),
    # constants
    (_replace('  s: {type: "float32[]", value: 0.5}', "  - s"),
     ["4:3: error: 'constants' (NAME: {type: TYPE, value: ...}) must be a mapping, found a list"]),
    (_replace('  s: {type: "float32[]", value: 0.5}', "  s: 0.5"),
     ["4:6: error: constant 's' must be a mapping, found '0.5'"]),
    (_replace('{type: "float32[]", value: 0.5}', "{value: 0.5}"),
     ["4:6: error: constant 's' needs a type: {type: \"float32[1]\", value: [0.5]}"]),
    (_replace('{type: "float32[]", value: 0.5}', '{type: "float32[]"}'),
     ["4:6: error: constant 's' needs a 'value' (a literal) or a 'load'"]),
    (_replace('value: 0.5}', "value: 0.5, load: s.npy}"),
     ["4:38: error: constant 's' has both 'value' and 'load'; give one"]),
    (_replace('value: 0.5}', "values: 0.5}"),
     ["4:26: error: unknown key 'values' in constant 's' (did you mean 'value'?); expected 'type', 'value'"]),
    (_replace('value: 0.5}', "value: 0.5, type: float32}"),
     ["4:38: error: duplicate key 'type' (first at line 4)"]),
    (_replace('value: 0.5}', 'value: "0.5"}'),
     ['4:33: error: expected a number, found the string "0.5" (numbers are written unquoted)']),
    (_replace('value: 0.5}', "value: '1e-3'}"),
     ['4:33: error: expected a number, found the string "1e-3" (numbers are written unquoted)']),
    (_replace('value: 0.5}', "value: yes}"), ["4:33: error: expected a number, found 'yes'"]),
    (_replace('value: 0.5}', "value: 1/127}"), ["4:33: error: expected a number, found '1/127'"]),
    (_replace('value: 0.5}', "value: 1_000}"), ["4:33: error: expected a number, found '1_000'"]),
    (_replace('value: 0.5}', "value: }"), ["4:32: error: expected a number, found nothing"]),
    (_replace('value: 0.5}', "value: {a: 1}}"), ["4:33: error: expected a number, found a mapping"]),
    (_replace('value: 0.5}', "value: [0.5, x]}"), ["4:39: error: expected a number, found 'x'"]),
    (_replace('value: 0.5}', "value: [0.5]}"),
     ["4:33: error: expected a number here, found a list"]),
    (_replace('"float32[]", value: 0.5}', '"float32[2]", value: [[0.5], [1]]}'),
     ["4:35: error: expected a number here, found a list"]),
    (_replace('"float32[]", value: 0.5}', '"float32[2]", value: [0.5]}'),
     ["4:34: error: this list has 1 elements, the declared shape needs 2"]),
    (_replace('"float32[]", value: 0.5}', '"int4[]", value: 8}'),
     ["4:30: error: 8.0 is not exactly representable in int4"]),
    (_replace('"float32[]"', '"float32[)"'), ["4:22: error: unexpected ')'"]),
    (_replace('"float32[]"', "[1]"), ["4:13: error: expected a type such as float32[1, 3], found a list"]),
    (_replace('value: 0.5}', "load: [a.npz, k, j]}"),
     ["4:32: error: load takes a file name (load: w.npy) or a file name and a key (load: [w.npz, key])"]),
    (_replace('value: 0.5}', "load: }"), ["4:31: error: load takes a file name"]),
    (_replace('value: 0.5}', "load: [[a.npz]]}"), ["4:32: error: load takes a file name"]),
    (_replace('value: 0.5}', "load: missing.npy}"), ["4:32: error: cannot read '"]),
    # layers
    (MINIMAL.split("layers:")[0] + "layers:\n  op: quantize\noutputs: [q]\n",
     ["6:3: error: 'layers' must be a list, e.g. - {op: quantize, inputs: [x, s], outputs: [q]}; found a"]),
    (_replace("  - op: quantize\n    inputs: [x, s]\n    outputs: [q]\n", "  - quantize\n"),
     ["6:5: error: a layer must be a mapping, found 'quantize'"]),
    (_replace("  - op: quantize\n", "  - opp: quantize\n"),
     ["6:5: error: unknown key 'opp' in a layer (did you mean 'op'?)"]),
    (_replace("    inputs: [x, s]", "    input: [x, s]"),
     ["7:5: error: unknown key 'input' in a layer (did you mean 'inputs'?)"]),
    (_replace("    outputs: [q]\n", ""), ["6:5: error: a layer needs 'outputs', e.g. outputs: [q]"]),
    (_replace("  - op: quantize\n    inputs: [x, s]\n", "  - "),
     ["6:9: error: a layer needs 'op' and 'inputs', e.g. op: quantize, inputs: [x, scale]"]),
    (_replace("    inputs: [x, s]", "    inputs: x"),
     ["7:13: error: 'inputs' must be a list, e.g. inputs: [x, scale]; found 'x'"]),
    (_replace("    inputs: [x, s]", "    inputs: [x, 1]"),
     ["7:17: error: expected a tensor name, found '1'"]),
    (_replace("    inputs: [x, s]", "    inputs: [x, {s: 1}]"),
     ["7:17: error: expected a tensor name, found a mapping"]),
    (_replace("    inputs: [x, s]", "    inputs: [x, t]"), ["7:17: error: unknown tensor 't'"]),
    (_replace("    inputs: [x, s]", "    inputs: [x, s]\n    inputs: [x]"),
     ["8:5: error: duplicate key 'inputs' (first at line 7)"]),
    (_replace("  - op: quantize", "  - op: quantise"),
     ["6:9: error: unknown layer 'quantise' (did you mean 'quantize'?)",
      "9:11: error: unknown tensor 'q'"]),
    (_replace("  - op: quantize", "  - op: [quantize]"),
     ["6:9: error: expected a layer name such as quantize, found a list"]),
    (_replace("    outputs: [q]", "    outputs: [q, r]"),
     ["6:5: error: quantize has 1 output (output), but 2 names are given",
      "9:11: error: unknown tensor 'q'"]),
    (_replace("    outputs: [q]", "    outputs: [q]\n    axes: 1"),
     ["9:5: error: quantize has no attribute 'axes' (did you mean 'axis'?)"]),
    (_replace("    outputs: [q]", "    outputs: [q]\n    axis: 1.5"), ["9:11: error: axis takes integers"]),
    (_replace("    outputs: [q]", "    outputs: [q]\n    axis: '1'"),
     ['9:11: error: expected an integer, a list of integers or a type name, found the string "1"']),
    (_replace("    outputs: [q]", "    outputs: [q]\n    axis: {a: 1}"),
     ["9:11: error: expected an integer, a list of integers or a type name, found a mapping"]),
    (_replace("    outputs: [q]", "    outputs: [q]\n    axis:"),
     ["9:10: error: expected an integer, a list of integers or a type name, found nothing"]),
    (_replace("    outputs: [q]", "    outputs: [q]\n    block_shape: [1, x]"),
     ["9:22: error: expected a number, found 'x'"]),
    (_replace("    outputs: [q]", "    outputs: [q]\n    block_shape: 4"),
     ["9:18: error: block_shape takes a list of integers, e.g. block_shape=[4, -1]"]),
    (_replace("    outputs: [q]", "    outputs: [q]\n    to_type: int9"),
     ["9:14: error: unknown type 'int9' (did you mean 'int8'?)"]),
    (_replace("    outputs: [q]", "    outputs: [q]\n    to_type: 8"),
     ["9:14: error: to_type takes a type name, e.g. to_type=fp8"]),
    (_replace("    outputs: [q]", "    outputs: [q]\n    axis: 5"),
     ["9:11: error: axis 5 is out of range for a rank-2 input"]),
    (_replace("    outputs: [q]", "    outputs: [q]\n    2x: 5"),
     ["9:5: error: expected an attribute name, found '2x'"]),
]


@pytest.mark.parametrize("text,expected", FAILING)
def test_failing_inputs(text: str, expected: list[str], tmp_path) -> None:
    got = errors(text, tmp_path)
    assert len(got) == len(expected), got
    for message, prefix in zip(got, expected):
        assert message.startswith(prefix), (message, prefix)


def test_every_structural_error_in_one_run() -> None:
    text = _replace("    inputs: [x, s]", "    inputs: [x, 1]").replace("value: 0.5}", 'value: "0.5"}')
    text += "extra: 1\n"
    assert [e.split(": error:")[0] for e in errors(text)] == ["4:33", "7:17", "10:1"]


def test_reading_does_not_construct_python_objects(tmp_path) -> None:
    marker = tmp_path / "touched"
    text = _replace("  x: float32[2, 4]", f"  x: !!python/object/apply:os.system ['touch {marker}']")
    assert errors(text)[0].startswith("2:6: error: tags are not allowed (!!python/object/apply:os.system)")
    assert not marker.exists()


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    text = _replace("value: 0.5}", "value: " + "[" * 5000 + "]" * 5000 + "}")
    assert errors(text) == ["1:1: error: the model is nested too deeply"]


@pytest.mark.parametrize("number", ["0x1p99999", "1" * 5000, "1e999"])
def test_numbers_past_float64_read_as_inf_in_both_forms(number: str) -> None:
    yaml_text = _replace("value: 0.5}", f"value: {number}}}")
    net_text = f"input x : float32[2, 4]\nconst s : float32[] = {number}\nq = quantize(x, s)\noutput q\n"
    # a scale must be finite after rounding (docs/special-values.md), so both forms report the inf they read
    for text, form in ((yaml_text, "yaml"), (net_text, "net")):
        with pytest.raises(netdsl.ModelError, match="'s' holds inf"):
            netdsl.loads(text, format=form)


def test_literal_limit_is_enforced_while_composing(monkeypatch) -> None:
    from netdsl.frontend import yaml_form

    monkeypatch.setattr(yaml_form, "MAX_LITERAL_ELEMENTS", 100)
    values = ", ".join(["[1, 2]"] * 51)
    # refused at the 101st number: the YAML error after the list is never reached
    text = f"inputs: {{x: 'float32[2]'}}\nconstants:\n  w: {{type: 'float32[51, 2]', value: [{values}]}}\n]\n"
    with pytest.raises(ModelError) as info:
        netdsl.loads(text, format="yaml", filename="m.yaml")
    assert [str(d) for d in info.value.diagnostics] == [
        "m.yaml:3:38: error: a literal may hold at most 1048576 elements; load() larger constants from a file"]
    fine = ", ".join(["[1, 2]"] * 50)
    with pytest.raises(ModelError, match="invalid YAML"):
        netdsl.loads(text.replace(values, fine).replace("51", "50"), format="yaml")


def test_literal_limit_counts_one_list_not_the_model(monkeypatch) -> None:
    from netdsl.frontend import yaml_form

    monkeypatch.setattr(yaml_form, "MAX_LITERAL_ELEMENTS", 8)
    layers = "".join(f"  - {{op: quantize, inputs: [x, s], outputs: [q{i}]}}\n" for i in range(6))
    text = ("inputs: {x: 'float32[2]'}\nconstants:\n  s: {type: 'float32[]', value: 1}\nlayers:\n" + layers +
            f"outputs: [{', '.join(f'q{i}' for i in range(6))}]\n")
    assert len(netdsl.loads(text, format="yaml").outputs) == 6  # 12 names in lists, 6 in the outputs
