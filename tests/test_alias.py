"""``alias NAME = "original"`` (docs/onnx.md, "Names"): a tensor written under a valid name carries an
original name that is not one (an ONNX name), in both forms, through convert, with located errors."""

from __future__ import annotations

import numpy as np
import pytest

import netdsl
from netdsl import ModelError
from netdsl.frontend.writer import write_model, written_names

NET = """\
alias _model_x = "/model/x:0"
alias _q_out = "/q out"
input _model_x : float32[2, 4]
const s : float32[] = 0.5
_q_out = quantize(_model_x, s)
output _q_out
"""
YAML = """\
aliases:
  _model_x: "/model/x:0"
  _q_out: "/q out"
inputs:
  _model_x: float32[2, 4]
constants:
  s: {type: "float32[]", value: 0.5}
layers:
  - op: quantize
    inputs: [_model_x, s]
    outputs: [_q_out]
outputs: [_q_out]
"""


@pytest.mark.parametrize("text,form", [(NET, "net"), (YAML, "yaml")])
def test_an_alias_gives_the_original_name(text: str, form: str) -> None:
    net = netdsl.loads(text, format=form)
    assert list(net.inputs) == ["/model/x:0"] and list(net.outputs) == ["/q out"]
    out = net.run({"/model/x:0": np.ones((2, 4), np.float32)}, backend="numpy")
    assert list(out) == ["/q out"]


@pytest.mark.parametrize("to", ["net", "yaml"])
def test_convert_writes_aliases_back(to: str, tmp_path) -> None:
    net = netdsl.loads(NET)
    text = write_model(net.graph, to, tmp_path, tmp_path)
    again = netdsl.loads(text, format=to)
    assert list(again.inputs) == ["/model/x:0"] and list(again.outputs) == ["/q out"]


def test_the_written_name_rule() -> None:
    assert written_names(["/model/fc1/Relu_output_0", "x", "1st", ".a", "a-b", "a_b", ""]) == {
        "x": "x", "a_b": "a_b", "/model/fc1/Relu_output_0": "_model_fc1_Relu_output_0", "1st": "_1st",
        ".a": "_.a", "a-b": "a_b_2", "": "_"}


@pytest.mark.parametrize("text,expected", [
    ('alias y = "Y"\ninput x : float32[2]\nconst s : float32[] = 1\nq = quantize(x, s)\noutput q\n',
     "m.net:1:7: error: alias of an unknown tensor 'y'"),
    ('alias x = "A"\nalias x = "B"\ninput x : float32[2]\nconst s : float32[] = 1\nq = quantize(x, s)\noutput q\n',
     "m.net:2:7: error: 'x' is already aliased"),
    ('alias x = "s"\ninput x : float32[2]\nconst s : float32[] = 1\nq = quantize(x, s)\noutput q\n',
     "m.net:1:11: error: 's' already names a tensor"),
])
def test_alias_errors(text: str, expected: str) -> None:
    with pytest.raises(ModelError) as info:
        netdsl.loads(text, filename="m.net")
    assert expected in [str(d) for d in info.value.diagnostics]
