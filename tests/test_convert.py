"""``netdsl convert`` and the writer: net -> yaml -> net and yaml -> net -> yaml keep the IR (names, types,
attributes, constants' exact bits, load() files), the output is deterministic, and the command writes -o
atomically or prints to stdout, with the usual exit codes."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import netdsl
from netdsl.check import print_graph
from netdsl.cli import main
from netdsl.frontend.writer import value_texts, write_model
from tests.conftest import python_path

ROOT = Path(__file__).resolve().parent.parent

ALL_OPS = """network all_ops
input x : float32[4, 32]
input h : float16[2, 64]
input b16 : bfloat16[4, 6]
const w : float32[4, 3] = [[-1, 2, -3], [0.5, -inf, inf], [nan, -nan, -0.0], [1e-45, 3.4028235e38, -1.5e-7]]
const s : float32[] = 0x1p-7
const ch : float32[4] = [0.5, 0.25, 0x1.8p-2, 1/127]
const zp : int8[4] = [0, 0, -0, 0]
const blk : float32[4, 2] = [[1, 2], [3, 4], [5, 6], [7, 8.5e-3]]
const rows : bfloat16[2, 1] = [[0.1], [3]]
const e : e8m0[4, 1] = [[0x1p-3], [1], [2], [0x1p10]]
const dqs : float32[1] = [1e-3]
q1 = quantize(x, s)
q2 = quantize(w, ch, zp, axis=0, to_type=int8)
q3 = quantize(x, blk, to_type=int4)
q4 = quantize(b16, rows, to_type=fp4, block_shape=[2, -1])
q5 = quantize(x, s, to_type=fp8)
d1 = dequantize(q1, s, to_type=float16)
d2 = dequantize(q2, ch, zp, axis=-2)
d3 = dequantize(q3, blk, to_type=bfloat16)
d4 = dequantize(q4, rows, block_shape=[2, 6], to_type=bfloat16)
d5 = dequantize(q5, e, block_shape=[1, 32])
nv, nv_scale = dynamic_quantize(h, dqs, axis=-1, block_size=16)
nv_sdq = dequantize(nv_scale, dqs, to_type=float16)
nv_dq = dequantize(nv, nv_sdq, to_type=float16)
mx, mx_scale = dynamic_quantize(x, axis=1, block_size=32, output_type=fp8, scale_type=e8m0)
fs, fs_scale = dynamic_quantize(x, block_shape=[2, -1], output_type=int8, scale_type=float32)
output d1, d2, d3, d4, d5, nv_dq, mx, mx_scale, fs, fs_scale, x
"""

#: a constant of every data type, with their extreme, subnormal, signed-zero and non-finite values
ALL_DTYPES = """network all_dtypes
const f32 : float32[8] = [1/3, -0.1, 1e-45, 1.17549435e-38, -3.4028235e38, -0.0, inf, -nan]
const f16 : float16[6] = [65504, -6e-8, 6.1e-5, 1/3, -inf, nan]
const bf16 : bfloat16[2, 3] = [[0.1, -1e-40, 3.38e38], [1/3, -0.0, -inf]]
const i8 : int8[4] = [-128, 127, 0, -1]
const i4 : int4[2, 2] = [[-8, 7], [0, -1]]
const f8 : fp8[6] = [-448, 0x1p-9, 0x1.cp-7, 240, nan, -0.0]
const f4 : fp4[8] = [-6, -0.5, 0, 0.5, 1, 1.5, 4, -0.0]
const e : e8m0[5] = [0x1p-127, 0x1p-1, 1, 0x1p127, nan]
const scalar : float32[] = -2.5
const empty : float32[0] = []
const empty2 : int8[2, 0] = [[], []]
const s : float32[] = 1
q = quantize(f32, s, to_type=fp8)
output q
"""

LOADS = """network loads
input x : float32[2, 4]
const w : float32[2, 4] = load("data/w.npy")
const s : float32[2, 1] = load("data/all.npz", "scale")
const wb : bfloat16[2, 4] = load("data/w.npy")
const w4 : int4[2, 4] = load("data/codes.npy")
const f8 : fp8[3] = load("data/all.npz", "fp8")
const e : e8m0[2] = load("data/all.npz", "e")
q = quantize(w, s, to_type=int4)
r = quantize(x, s)
output q, r
"""

NO_NAME = """input x : float32[3]
const s : float32[] = 0.5
q = quantize(x, s, axis=-1)
output q, x
"""

NET_MODELS = {"all_ops": ALL_OPS, "all_dtypes": ALL_DTYPES, "loads": LOADS, "no_name": NO_NAME}

YAML_ALL_OPS = """network: yaml_ops
inputs:
  x: float32[4, 32]
constants:
  s: {type: "float32[]", value: .0078125}
  ch: {type: "float32[4]", value: [0.5, 0.25, 0x1.8p-2, 0.007874015748031496]}
  zp: {type: "int8[4]", value: [0, 0, 0, 0]}
  w:
    type: float32[4, 3]
    value: [[-1, 2, -3], [.5, -.inf, .inf], [.nan, -.NaN, -0.0], [1e-45, 3.4e38, -1.5e-7]]
  dqs: {type: "float32[]", value: 1e-3}
  h: {type: "float16[2, 16]", load: data/h.npy}
layers:
  - {op: quantize, inputs: [w, ch, zp], outputs: [q], axis: 0}
  - op: dequantize
    inputs: [q, ch]
    outputs: [d]
    axis: -2
    to_type: half
  - {op: dynamic_quantize, inputs: [h, dqs], outputs: [a, b], axis: -1, block_size: 16, output_type: fp4,
     scale_type: float8_e4m3fn}
  - {op: dynamic_quantize, inputs: [x], outputs: [c, e], block_shape: [1, -1], output_type: fp8,
     scale_type: float32}
outputs: [d, a, b, c, e]
"""

YAML_MODELS = {"yaml_ops": YAML_ALL_OPS, "all_dtypes": None, "loads": None}  # None: the net model converted


def write_data(folder: Path) -> None:
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    np.save(data / "w.npy", np.array([[1, -2, 3.3, 0.1], [-0.5, 6, 7, 1e-3]], np.float32))
    np.save(data / "codes.npy", np.array([[-8, 7, 0, 1], [2, 3, -1, -2]], np.int8))
    np.save(data / "h.npy", np.linspace(-1, 1, 32, dtype=np.float16).reshape(2, 16))
    np.savez(data / "all.npz", scale=np.array([[0.5], [0.25]], np.float32),
             fp8=np.array([448, -0.001953125, np.nan], np.float32), e=np.array([0.5, 2.0**100], np.float32))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    write_data(folder)
    return folder


def graph_key(network: netdsl.Network, base_dir: Path) -> tuple[str, dict]:
    """The IR to compare: the printed graph (load paths resolved to the file they name) and every
    constant's type and exact bytes."""
    printed = print_graph(network.graph)
    constants = {}
    for value in network.graph.constants:
        assert value.data is not None
        origin = None
        if value.source is not None:
            origin = ((base_dir / value.source.path).resolve(), value.source.key)
            printed = printed.replace(repr(value.source.path), "PATH", 1)
        constants[value.name] = (str(value.type), value.data.dtype.str, value.data.tobytes(), origin)
    return printed, constants


def load_text(text: str, to: str, folder: Path, stem: str) -> netdsl.Network:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.{to}"
    path.write_text(text)
    return netdsl.load(path, trust_paths=True)  # a model written elsewhere reads the source's files


def round_trip(text: str, start: str, source: Path, stem: str, via: Path) -> None:
    """start -> other form (written into ``via``) -> start (into ``via``/back); all three the same IR, and
    writing is deterministic: each form is written the same way from either graph."""
    other = "yaml" if start == "net" else "net"
    first = load_text(text, start, source, stem)
    converted = write_model(first.graph, other, source, via)
    second = load_text(converted, other, via, stem)
    back_dir = via / "back"
    back = write_model(second.graph, start, via, back_dir)
    third = load_text(back, start, back_dir, stem)
    assert graph_key(first, source) == graph_key(second, via) == graph_key(third, back_dir)
    assert write_model(third.graph, other, back_dir, via) == converted
    assert write_model(third.graph, start, back_dir, back_dir) == back


@pytest.mark.parametrize("stem", NET_MODELS)
def test_net_to_yaml_to_net(stem: str, source: Path, tmp_path: Path) -> None:
    round_trip(NET_MODELS[stem], "net", source, stem, tmp_path / "out" / "nested")


@pytest.mark.parametrize("stem", YAML_MODELS)
def test_yaml_to_net_to_yaml(stem: str, source: Path, tmp_path: Path) -> None:
    text = YAML_MODELS[stem]
    if text is None:
        text = write_model(load_text(NET_MODELS[stem], "net", source, stem).graph, "yaml", source, source)
    round_trip(text, "yaml", source, stem, tmp_path / "elsewhere")


EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*")
                  if p.suffix in (".net", ".yaml") and not p.name.endswith(".case.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_round_trip(path: Path, tmp_path: Path) -> None:
    network = netdsl.load(path)
    for to in ("net", "yaml"):
        converted = write_model(network.graph, to, path.parent, tmp_path)
        again = load_text(converted, to, tmp_path, path.stem)
        assert graph_key(again, tmp_path) == graph_key(network, path.parent)


def test_language_example_converts_to_the_yaml_form(tmp_path: Path) -> None:
    np.save(tmp_path / "weights.npy", np.zeros((4, 8), np.float32))
    path = tmp_path / "quantize.net"
    path.write_text("""network quantize
input  input1 : float32[1, 1, 3, 3]
const  scale  : float32[1] = [1/127]
const  w      : float32[4, 8] = load("weights.npy")
q   = quantize(input1, scale, axis=3)
out = dequantize(q, scale, axis=3)
output out
""")
    assert write_model(netdsl.load(path).graph, "yaml", tmp_path, tmp_path) == """network: quantize
inputs:
  input1: float32[1, 1, 3, 3]
constants:
  scale: {type: "float32[1]", value: [0.007874016]}
  w: {type: "float32[4, 8]", load: weights.npy}
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
    assert write_model(netdsl.load(path).graph, "net", tmp_path, tmp_path / "sub") == """network quantize
input input1 : float32[1, 1, 3, 3]
const scale : float32[1] = [0.007874016]
const w : float32[4, 8] = load("../weights.npy")
q = quantize(input1, scale, axis=3)
out = dequantize(q, scale, axis=3)
output out
"""


@pytest.mark.parametrize("dtype,values,expected", [
    ("float32", [1 / 127, 0.1, 1.0, -0.0, 1e-45, 3.4028234663852886e38, np.inf, -np.inf],
     ["0.007874016", "0.1", "1.0", "-0.0", "1e-45", "3.4028235e+38", "inf", "-inf"]),
    ("float16", [0.1, 65504, 6e-8, 1 / 3], ["0.1", "6.55e+04", "6e-08", "0.3333"]),
    ("bfloat16", [0.1, 1 / 3, 256, -1e-40], ["0.1", "0.334", "256.0", "-9e-41"]),
    ("int8", [-128, 0, 127], ["-128", "0", "127"]),
    ("int4", [-8, 7], ["-8", "7"]),
    ("fp8", [448, 2.0**-9, -0.0], ["448.0", "0.001953125", "-0.0"]),
    ("fp4", [-6, 0.5], ["-6.0", "0.5"]),
    ("e8m0", [2.0**-127, 1, 2.0**127, np.nan], ["0x1p-127", "0x1p0", "0x1p127", "nan"]),
])
def test_literal_values_are_short_and_exact(dtype: str, values: list[float], expected: list[str]) -> None:
    from netdsl import dtypes

    kind = dtypes.lookup(dtype)
    data = np.array(values, np.float64).astype(kind.storage) if kind.is_float or dtype.startswith("int") \
        else dtypes.encode(np.array(values, np.float32), kind) if dtype != "e8m0" \
        else dtypes.e8m0_round_up(np.array(values, np.float32))
    assert value_texts(data, kind) == expected


def test_nan_sign_is_kept() -> None:
    from netdsl import dtypes

    data = np.array([np.nan, -np.nan], np.float32)
    assert value_texts(data, dtypes.FLOAT32) == ["nan", "-nan"]


def test_network_name_that_is_not_a_name_comes_back_from_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "my-model.net"
    path.write_text(NO_NAME)
    network = netdsl.load(path)
    assert network.name == "my-model"
    for to in ("net", "yaml"):
        text = write_model(network.graph, to, tmp_path, tmp_path)
        assert "my-model" not in text
        assert load_text(text, to, tmp_path / to, "my-model").name == "my-model"


def test_odd_file_names_are_quoted(tmp_path: Path) -> None:
    folder = tmp_path / 'we"ird dir: #1'
    folder.mkdir()
    np.save(folder / "w.npy", np.ones(3, np.float32))
    np.savez(folder / "a b.npz", **{"k: 1": np.ones(3, np.float32)})
    model = folder / "m.net"
    model.write_text('const w : float32[3] = load("w.npy")\nconst v : float32[3] = load("a b.npz", "k: 1")\n'
                     "const s : float32[] = 1\nq = quantize(w, s)\nr = quantize(v, s)\noutput q, r\n")
    network = netdsl.load(model)
    for to in ("net", "yaml"):
        text = write_model(network.graph, to, folder, tmp_path)
        assert graph_key(load_text(text, to, tmp_path, "m"), tmp_path) == graph_key(network, folder)


# --- exact values through both forms: random bit patterns ------------------------------------------------


#: storage and bit-pattern types of the float types
_FLOAT_TYPES = {"float32": (np.float32, np.uint32), "float16": (np.float16, np.uint16),
                "bfloat16": (ml_dtypes.bfloat16, np.uint16)}


def _edge_patterns(dtype: str) -> st.SearchStrategy[int]:
    """Bit patterns of hypothesis' favourite floats (zeros, subnormals, extremes, inf, NaN); bfloat16 takes
    a float32's upper half."""
    if dtype == "float16":
        return st.floats(width=16).map(lambda v: int(np.float16(v).view(np.uint16)))
    shift = 16 if dtype == "bfloat16" else 0
    return st.floats(width=32).map(lambda v: int(np.float32(v).view(np.uint32)) >> shift)


def _source_literal(value: float) -> str:
    """A literal for the text form that is exactly ``value`` (hex for finite values)."""
    if math.isnan(value):
        return "-nan" if math.copysign(1, value) < 0 else "nan"
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    return value.hex()


@settings(max_examples=150, deadline=None)
@given(dtype=st.sampled_from(sorted(_FLOAT_TYPES)), data=st.data())
def test_random_values_survive_net_yaml_net_exactly(dtype: str, data) -> None:
    storage, unsigned = _FLOAT_TYPES[dtype]
    any_pattern = st.integers(0, np.iinfo(unsigned).max)
    bits = data.draw(st.lists(st.one_of(any_pattern, _edge_patterns(dtype)), min_size=1, max_size=8))
    # a literal can't carry a NaN's payload: the one NaN of each sign stands for them all
    values = [math.copysign(math.nan, v) if math.isnan(v) else v
              for v in np.array(bits, unsigned).view(storage).astype(np.float64).tolist()]
    text = f"const c : {dtype}[{len(values)}] = [{', '.join(map(_source_literal, values))}]\n" \
           "const s : float32[] = 1\nq = quantize(c, s)\noutput q\n"
    network = netdsl.loads(text)
    original = network.graph.values["c"].data
    assert original.tobytes() == np.array(values, np.float64).astype(storage).tobytes()
    from_yaml = netdsl.loads(write_model(network.graph, "yaml", Path("."), Path(".")), format="yaml")
    back = netdsl.loads(write_model(from_yaml.graph, "net", Path("."), Path(".")))
    assert from_yaml.graph.values["c"].data.tobytes() == original.tobytes()
    assert back.graph.values["c"].data.tobytes() == original.tobytes()


# --- the command ---------------------------------------------------------------------------------------


def run_cli(*args: str, capsys) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def model(source: Path) -> Path:
    path = source / "loads.net"
    path.write_text(LOADS)
    return path


def test_convert_writes_the_file_given(model: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "out" / "loads.yaml"
    target.parent.mkdir()
    outside = ("netdsl: warning: the written model's load() reads 'data/w.npy', 'data/all.npz', 'data/codes.npy' "
               "from outside its folder: run it with --trust-paths, or move the files beside it\n")
    assert run_cli("convert", str(model), "--to", "yaml", "-o", str(target), capsys=capsys) == (0, "", outside)
    text = target.read_text()
    assert 'load: ../src/data/w.npy' in text
    assert graph_key(netdsl.load(target, trust_paths=True), target.parent) == \
        graph_key(netdsl.load(model), model.parent)
    assert sorted(p.name for p in target.parent.iterdir()) == ["loads.yaml"]  # no temporary left
    back = tmp_path / "back.net"
    assert run_cli("convert", str(target), "--to", "net", "-o", str(back), "--trust-paths", capsys=capsys) == \
        (0, "", "")
    assert graph_key(netdsl.load(back), back.parent) == graph_key(netdsl.load(model), model.parent)


def test_convert_prints_to_stdout_relative_to_the_current_directory(model: Path, tmp_path: Path, capsys,
                                                                    monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("convert", str(model), "--to", "net", capsys=capsys)
    assert (code, err) == (0, "")
    assert 'const w : float32[2, 4] = load("src/data/w.npy")' in out
    assert graph_key(netdsl.loads(out, base_dir=tmp_path, filename="loads.net"), tmp_path) == \
        graph_key(netdsl.load(model), model.parent)


def test_convert_prints_warnings_and_succeeds(tmp_path: Path, capsys) -> None:
    path = tmp_path / "m.net"
    path.write_text("input x : float32[2]\ninput unused : float32[2]\nconst s : float32[] = 1\n"
                    "q = quantize(x, s)\noutput q\n")
    code, out, err = run_cli("convert", str(path), "--to", "yaml", capsys=capsys)
    assert code == 0 and out.startswith("network: m\ninputs:\n  x: float32[2]\n  unused: float32[2]\n")
    assert err == (f"{path}:2:7: warning: input 'unused' is not used\n"
                   " 2 | input unused : float32[2]\n"
                   "   |       ^\n")


def test_model_error_exits_1_and_keeps_the_existing_output(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("inputs:\n  x: float32[2]\noutputs: [x, y]\n")
    target = tmp_path / "out.net"
    target.write_text("precious\n")
    code, out, err = run_cli("convert", str(path), "--to", "net", "-o", str(target), capsys=capsys)
    assert (code, out) == (1, "")
    assert err == (f"{path}:3:14: error: unknown tensor 'y'\n"
                   " 3 | outputs: [x, y]\n"
                   "   |              ^\n")
    assert target.read_text() == "precious\n"


def test_failed_write_leaves_no_partial_file(model: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    target = tmp_path / "out.yaml"
    target.write_text("precious\n")

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    code, out, err = run_cli("convert", str(model), "--to", "yaml", "-o", str(target), capsys=capsys)
    assert (code, out) == (2, "")
    assert err == f"netdsl: error: cannot write '{target}': No space left on device\n"
    assert target.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.yaml", "src"]


@pytest.mark.parametrize("args,message", [
    (["convert", "MODEL"], "the following arguments are required: --to"),
    (["convert", "MODEL", "--to", "json"], "argument --to: invalid choice: 'json'"),
    (["convert", "missing.net", "--to", "yaml"], "cannot read model 'missing.net': no such file"),
    (["convert", "MODEL", "--to", "yaml", "-o", "no/such/dir/m.yaml"],
     "cannot write 'no/such/dir/m.yaml': no such directory 'no/such/dir'"),
])
def test_usage_errors_exit_2(args: list[str], message: str, model: Path, tmp_path: Path, capsys,
                             monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(*[str(model) if a == "MODEL" else a for a in args], capsys=capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"netdsl: error: {message}") and err.count("\n") == 1


def test_python_dash_m_convert(model: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=python_path(ROOT))
    result = subprocess.run([sys.executable, "-m", "netdsl", "convert", str(model), "--to", "yaml"],
                            capture_output=True, text=True, env=env, cwd=model.parent, check=False)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("network: loads\n")
