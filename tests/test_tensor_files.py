"""Tensor file formats (docs/files.md), checked against the libraries that define them: ``np.save`` of
ml_dtypes arrays, raw codes, ``safetensors`` (its own writer and reader), Polygraphy's JSON (its own
``save_json``/``load_json``/``RunResults``), and torch where installed.

The expected values never come from netdsl: they are the arrays handed to the defining library, or the
bytes that library writes.
"""

from __future__ import annotations

import base64
import io
import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import netdsl
from netdsl import ModelError, files
from netdsl.cli import main
from netdsl.dtypes import lookup
from netdsl.ir import TensorType

safetensors = pytest.importorskip("safetensors")
from safetensors import TensorSpec, serialize  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

polygraphy_json = pytest.importorskip("polygraphy.json")
from polygraphy.comparator import IterationResult, RunResults  # noqa: E402


def exhaustive(ml_type, count: int | None = None) -> np.ndarray:
    """Every code of an 8-bit or 4-bit ml_dtypes type, NaN codes dropped (their payload is not a value)."""
    bits = 4 if np.dtype(ml_type).name in ("int4", "float4_e2m1fn") else 8
    codes = np.arange(1 << bits, dtype=np.uint8)
    values = codes.view(ml_type)
    keep = ~np.isnan(values.astype(np.float32))
    return values[keep][:count]


def all_bfloat16() -> np.ndarray:
    values = np.arange(1 << 16, dtype=np.uint16).view(ml_dtypes.bfloat16)
    return values[~np.isnan(values.astype(np.float32))]


#: netdsl type -> (ml_dtypes type, every value of it)
TYPES = {
    "bfloat16": (ml_dtypes.bfloat16, all_bfloat16),
    "fp8": (ml_dtypes.float8_e4m3fn, lambda: exhaustive(ml_dtypes.float8_e4m3fn)),
    "e8m0": (ml_dtypes.float8_e8m0fnu, lambda: exhaustive(ml_dtypes.float8_e8m0fnu)),
    "fp4": (ml_dtypes.float4_e2m1fn, lambda: exhaustive(ml_dtypes.float4_e2m1fn)),
    "int4": (ml_dtypes.int4, lambda: exhaustive(ml_dtypes.int4)),
}


def typed(name: str, shape: tuple[int, ...]) -> TensorType:
    return TensorType(lookup(name), shape)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------------------------------
# np.save of ml_dtypes arrays: what it writes, and that we read it back


@pytest.mark.parametrize("name", list(TYPES))
def test_np_save_of_every_ml_dtypes_value_reads_back(name: str, tmp_path: Path) -> None:
    """np.save writes bfloat16 as '<V2' and the 8- and 4-bit types as '<V1' (one element per byte): the
    declared type says what the raw bytes hold. Every value of each type, in .npy and in .npz."""
    ml_type, values = TYPES[name]
    array = values()
    np.save(tmp_path / "a.npy", array)
    np.savez(tmp_path / "a.npz", w=array)
    header = (tmp_path / "a.npy").read_bytes()[:80]
    assert (b"'<V2'" if name == "bfloat16" else b"'<V1'") in header  # what np.save writes today
    tensor_type = typed(name, array.shape)
    assert same_bits(files.read_tensor(tmp_path / "a.npy", tensor_type), array)
    assert same_bits(files.read_tensor(tmp_path / "a.npz", tensor_type, "w"), array)


def test_raw_bytes_of_the_wrong_width_or_type_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "b.npy", np.zeros(4, ml_dtypes.bfloat16))
    with pytest.raises(files.MismatchError, match=r"holds raw 2-byte values \([<|]V2, as np.save writes ml_dtypes "
                                                  r"arrays\), which can't be fp8"):
        files.read_tensor(tmp_path / "b.npy", typed("fp8", (4,)))
    np.save(tmp_path / "f.npy", np.zeros(4, ml_dtypes.float8_e4m3fn))
    with pytest.raises(files.MismatchError, match="can't be float32"):
        files.read_tensor(tmp_path / "f.npy", typed("float32", (4,)))


def test_a_4_bit_byte_with_its_high_nibble_set_is_refused(tmp_path: Path) -> None:
    raw = np.array([0x01, 0x1F], np.uint8).view("V1")
    np.save(tmp_path / "q.npy", raw)
    with pytest.raises(ValueError, match="holds byte 0x1f at flat index 1, not a 4-bit fp4 code"):
        files.read_tensor(tmp_path / "q.npy", typed("fp4", (2,)))


def test_float8_e5m2_is_named(tmp_path: Path) -> None:
    """np.save writes ml_dtypes float8_e5m2 as '<f1', which NumPy itself can't read back."""
    np.save(tmp_path / "e.npy", np.zeros(2, ml_dtypes.float8_e5m2))
    with pytest.raises(files.FileError, match="float8_e5m2 values .* netdsl has no E5M2 type"):
        files.read_tensor(tmp_path / "e.npy", typed("fp8", (2,)))


# --------------------------------------------------------------------------------------------------
# raw codes


@pytest.mark.parametrize("name", list(TYPES) + ["int8"])
def test_codes_read_as_the_type(name: str, tmp_path: Path) -> None:
    """With codes: uint8 (uint16 for bfloat16) codes, 4-bit ones packed two per byte, low nibble first
    (ONNX's layout, built here by hand), give the values whose codes they are."""
    if name == "int8":
        array = np.arange(-128, 128, dtype=np.int8)
        codes = array.view(np.uint8)
    else:
        ml_type, values = TYPES[name]
        array = values()
        width = np.uint16 if name == "bfloat16" else np.uint8
        codes = array.view(width)
        if name in ("fp4", "int4"):
            nibbles = list(codes & 0x0F) + ([0] if codes.size % 2 else [])
            codes = np.array([lo | (hi << 4) for lo, hi in zip(nibbles[0::2], nibbles[1::2])], np.uint8)
    np.save(tmp_path / "c.npy", codes)
    tensor_type = typed(name, array.shape)
    assert same_bits(files.read_tensor(tmp_path / "c.npy", tensor_type, codes=True), array)
    with pytest.raises(files.MismatchError, match=r"raw codes\? pass --codes, or load\(\.\.\., codes=true\)"):
        files.read_tensor(tmp_path / "c.npy", tensor_type)


def test_4_bit_codes_must_be_packed(tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", np.zeros((2, 3), np.uint8))
    with pytest.raises(files.MismatchError, match=r"has shape \[2, 3\], expected \[3\] for int4 codes \(4-bit codes "
                                                  r"are packed two per byte, 1-D\)"):
        files.read_tensor(tmp_path / "c.npy", typed("int4", (2, 3)), codes=True)


SAVE_MODEL = """input x : float32[2, 64]
const s : float32[] = 0.125
a = quantize(x, s, to_type=fp8)
b = quantize(x, s, to_type=fp4)
c = quantize(x, s, to_type=int4)
d = quantize(x, s)
e, f = dynamic_quantize(x, axis=1, block_size=32, output_type=fp8, scale_type=e8m0)
g = dequantize(a, s, to_type=bfloat16)
output a, b, c, d, e, f, g
"""
BACK_MODEL = """input a : fp8[2, 64]
input b : fp4[2, 64]
input c : int4[2, 64]
input d : int8[2, 64]
input f : e8m0[2, 2]
input g : bfloat16[2, 64]
const s : float32[] = 1
a2 = dequantize(a, s)
b2 = dequantize(b, s)
c2 = dequantize(c, s)
d2 = dequantize(d, s)
g2 = quantize(g, s, to_type=fp8)
output a2, b2, c2, d2, f, g2
"""


@pytest.fixture
def saved_run(tmp_path: Path) -> dict[str, np.ndarray]:
    """The outputs of SAVE_MODEL, from the API."""
    (tmp_path / "m.net").write_text(SAVE_MODEL)
    (tmp_path / "back.net").write_text(BACK_MODEL)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return netdsl.load(tmp_path / "m.net").run({"x": x}, backend="numpy")


@pytest.mark.parametrize("ext", ["npz", "safetensors", "json"])
@pytest.mark.parametrize("codes", [False, True], ids=["values", "codes"])
def test_save_then_inputs_round_trip(ext: str, codes: bool, saved_run, tmp_path: Path, capsys) -> None:
    """What ``--save`` writes in each format (with and without --codes) comes back through ``--inputs``
    (with --codes where it was saved so) as the same bits."""
    out = tmp_path / f"out.{ext}"
    flag = ["--codes"] if codes else []
    assert main(["run", str(tmp_path / "m.net"), "--input", f"x={tmp_path / 'x.npy'}", "--save", str(out), *flag]) == 0
    back = netdsl.load(tmp_path / "back.net")
    read = files.read_tensors(out, back.inputs, codes=codes)
    assert sorted(k for k, v in read.items() if v is not None) == ["a", "b", "c", "d", "f", "g"]
    for name, array in read.items():
        if array is not None:
            assert same_bits(array, saved_run[name]), name
    capsys.readouterr()
    assert main(["run", str(tmp_path / "back.net"), "--inputs", str(out), *flag]) == 2  # 'e' is not an input
    assert "unknown input 'e'" in capsys.readouterr().err


def test_load_codes_keyword_in_both_forms_and_convert(tmp_path: Path, capsys, monkeypatch) -> None:
    """``load("c.npy", codes=true)`` and YAML's ``load: {file: c.npy, codes: true}`` read codes; convert
    keeps the keyword both ways."""
    values = exhaustive(ml_dtypes.float8_e4m3fn, 16)
    np.save(tmp_path / "c.npy", values.view(np.uint8))
    text = ('const w : fp8[16] = load("c.npy", codes=true)\nconst s : float32[] = 1\n'
            'y = dequantize(w, s)\noutput y\n')
    (tmp_path / "m.net").write_text(text)
    expected = values.astype(np.float32)
    assert netdsl.load(tmp_path / "m.net").run({}, backend="numpy")["y"].tolist() == expected.tolist()
    assert main(["convert", str(tmp_path / "m.net"), "--to", "yaml", "-o", str(tmp_path / "m.yaml")]) == 0
    yaml_text = (tmp_path / "m.yaml").read_text()
    assert "load: {file: c.npy, codes: true}" in yaml_text
    assert netdsl.load(tmp_path / "m.yaml").run({}, backend="numpy")["y"].tolist() == expected.tolist()
    monkeypatch.chdir(tmp_path)
    assert main(["convert", "m.yaml", "--to", "net"]) == 0
    assert 'load("c.npy", codes=true)' in capsys.readouterr().out
    with pytest.raises(ModelError, match="raw codes"):
        netdsl.loads(text.replace(", codes=true", ""), base_dir=tmp_path)


@pytest.mark.parametrize("call,message", [
    ('load("c.npy", codes=maybe)', "1:40: error: codes takes true or false"),
    ('load("c.npy", code=true)', "1:34: error: load has one keyword, codes=true; 'code' is not it"),
    ('load("c.npy", codes=true, codes=false)', "1:46: error: 'codes' is given twice"),
])
def test_load_keyword_errors(call: str, message: str, tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", np.zeros(2, np.uint8))
    with pytest.raises(ModelError) as info:
        netdsl.loads(f"const w : fp8[2] = {call}\nconst s : float32[] = 1\ny = dequantize(w, s)\noutput y\n",
                     base_dir=tmp_path, filename="m.net")
    assert str(info.value.diagnostics[0]) == "m.net:" + message


# --------------------------------------------------------------------------------------------------
# safetensors: files its own writer made, read by us; ours read by its reader


def test_safetensors_written_by_safetensors(tmp_path: Path) -> None:
    """safetensors.numpy.save_file writes F32, F16, BF16, I8, F8_E4M3, F8_E8M0 (checked in the header it
    wrote): each reads back as the array it was given, by key, through load() and --inputs alike."""
    arrays = {
        "layer.0.weight": np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4),
        "h": np.arange(6, dtype=np.float16),
        "b": all_bfloat16()[1000:1012].reshape(2, 6),
        "q": np.arange(-6, 6, dtype=np.int8),
        "f": exhaustive(ml_dtypes.float8_e4m3fn, 32),
        "e": exhaustive(ml_dtypes.float8_e8m0fnu, 8),
    }
    types = {"layer.0.weight": "float32", "h": "float16", "b": "bfloat16", "q": "int8", "f": "fp8", "e": "e8m0"}
    save_file(arrays, tmp_path / "m.safetensors")
    raw = (tmp_path / "m.safetensors").read_bytes()
    header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
    assert {k: v["dtype"] for k, v in header.items() if k != "__metadata__"} == \
        {"layer.0.weight": "F32", "h": "F16", "b": "BF16", "q": "I8", "f": "F8_E4M3", "e": "F8_E8M0"}
    for key, array in arrays.items():
        assert same_bits(files.read_tensor(tmp_path / "m.safetensors", typed(types[key], array.shape), key), array)
    text = ('const w : float32[3, 4] = load("m.safetensors", "layer.0.weight")\nconst s : float32[] = 0.5\n'
            'y = quantize(w, s)\noutput y\n')
    out = netdsl.loads(text, base_dir=tmp_path).run({}, backend="numpy")["y"]
    assert out.tolist() == np.clip(np.round(arrays["layer.0.weight"] / 0.5), -128, 127).tolist()


def test_safetensors_f4_written_by_safetensors(tmp_path: Path) -> None:
    """F4 as safetensors writes it (float4_e2m1fn_x2: the header shape counts elements, two per byte,
    element 2k in the low nibble, as PyTorch's float4_e2m1fn_x2 and ModelOpt pack them)."""
    values = exhaustive(ml_dtypes.float4_e2m1fn)  # 16 codes
    codes = values.view(np.uint8)
    packed = (codes[0::2] | (codes[1::2] << 4)).reshape(2, 4)
    spec = TensorSpec(dtype="float4_e2m1fn_x2", shape=(2, 4), data_ptr=packed.ctypes.data, data_len=packed.nbytes)
    (tmp_path / "f4.safetensors").write_bytes(bytes(serialize({"w": spec})))
    raw = (tmp_path / "f4.safetensors").read_bytes()
    assert json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])["w"]["shape"] == [2, 8]
    assert same_bits(files.read_tensor(tmp_path / "f4.safetensors", typed("fp4", (2, 8))), values.reshape(2, 8))


def test_our_safetensors_read_by_safetensors(saved_run, tmp_path: Path) -> None:
    """``--save out.safetensors``: safetensors' own deserializer reads it, with its dtype tags (F8_E4M3,
    F4, F8_E8M0, BF16, I8; int4 as packed U8 with netdsl's metadata) and the exact bytes of each value."""
    out = tmp_path / "out.safetensors"
    assert main(["run", str(tmp_path / "m.net"), "--input", f"x={tmp_path / 'x.npy'}", "--save", str(out)]) == 0
    tensors = dict(safetensors.deserialize(out.read_bytes()))
    tags = {name: tensor["dtype"] for name, tensor in tensors.items()}
    assert tags == {"a": "F8_E4M3", "b": "F4", "c": "U8", "d": "I8", "e": "F8_E4M3", "f": "F8_E8M0", "g": "BF16"}
    for name in ("a", "d", "e", "f", "g"):
        assert bytes(tensors[name]["data"]) == saved_run[name].tobytes(), name
        assert tensors[name]["shape"] == list(saved_run[name].shape)
    for name in ("b", "c"):  # two codes per byte, element 2k in the low nibble
        codes = saved_run[name].view(np.uint8).reshape(-1) & 0x0F
        assert bytes(tensors[name]["data"]) == bytes((codes[0::2] | (codes[1::2] << 4)).tolist()), name
    with safetensors.safe_open(str(out), framework="np") as handle:
        assert json.loads(handle.metadata()["netdsl.packed"]) == {"c": {"shape": [2, 64], "type": "int4"}}


def test_torch_reads_our_safetensors(saved_run, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    out = tmp_path / "out.safetensors"
    assert main(["run", str(tmp_path / "m.net"), "--input", f"x={tmp_path / 'x.npy'}", "--save", str(out)]) == 0
    loaded = load_file(str(out))
    assert loaded["a"].dtype == torch.float8_e4m3fn
    assert loaded["a"].float().numpy().tolist() == saved_run["a"].astype(np.float32).tolist()
    assert loaded["g"].float().numpy().tolist() == saved_run["g"].astype(np.float32).tolist()


# --------------------------------------------------------------------------------------------------
# Polygraphy JSON: its own serializer and deserializer


def test_polygraphy_inputs_file_read_by_inputs(saved_run, tmp_path: Path, capsys) -> None:
    """A feed list as ``polygraphy run --save-inputs`` writes it (polygraphy.json.save_json) is an
    ``--inputs`` file; its outputs as RunResults.save writes them a reference file for read_tensors."""
    x = np.load(tmp_path / "x.npy")
    polygraphy_json.save_json([{"x": x}], str(tmp_path / "inputs.json"))
    assert main(["run", str(tmp_path / "m.net"), "--inputs", str(tmp_path / "inputs.json"),
                 "--save", str(tmp_path / "a.npz")]) == 0
    assert main(["run", str(tmp_path / "m.net"), "--input", f"x={tmp_path / 'x.npy'}",
                 "--save", str(tmp_path / "b.npz")]) == 0
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    results = RunResults()
    results.append(("trt-runner", [IterationResult({"a": saved_run["a"].astype(np.float32)}, runner_name="trt-runner")]))
    results.save(str(tmp_path / "outputs.json"))
    read = files.read_tensors(tmp_path / "outputs.json", {"a": typed("fp8", (2, 64))})
    assert same_bits(read["a"], saved_run["a"])


def test_our_json_is_polygraphys_own(saved_run, tmp_path: Path) -> None:
    """``--save out.json`` writes byte for byte what Polygraphy's RunResults.save writes for the same arrays
    (exact values in standard dtypes, runner "netdsl", runtime null), and Polygraphy loads it."""
    out = tmp_path / "out.json"
    assert main(["run", str(tmp_path / "m.net"), "--input", f"x={tmp_path / 'x.npy'}", "--save", str(out)]) == 0
    expected = {name: files.for_saving(array, lookup(_type_of(name))) for name, array in saved_run.items()}
    results = RunResults()
    results.append(("netdsl", [IterationResult(expected, runtime=None, runner_name="netdsl")]))
    assert out.read_text() == results.to_json()
    loaded = RunResults.load(str(out))
    assert [name for name, _ in loaded] == ["netdsl"]
    for name, array in loaded["netdsl"][0].items():
        assert same_bits(np.asarray(array), expected[name])


def _type_of(name: str) -> str:
    return {"a": "fp8", "b": "fp4", "c": "int4", "d": "int8", "e": "fp8", "f": "e8m0", "g": "bfloat16"}[name]


def test_polygraphy_legacy_marker_and_latin1(tmp_path: Path) -> None:
    """Older Polygraphy files: the '__polygraphy_encoded_ndarray' marker, the array as latin-1 text."""
    x = np.arange(4, dtype=np.float32)
    stream = io.BytesIO()
    np.save(stream, x)
    feed = {"x": {"array": stream.getvalue().decode("latin-1"),
                  "__polygraphy_encoded_ndarray": "polygraphy_serialized_json_type"}}
    (tmp_path / "old.json").write_text(json.dumps([feed]))
    assert same_bits(files.read_tensors(tmp_path / "old.json")["x"], x)


@pytest.mark.parametrize("content,message", [
    ([{"x": {"tensor": "AAAA", "polygraphy_class": "Tensor"}}], "holds a torch tensor"),
    ([{"x": 1}], "is not a Polygraphy file of {name: array} maps"),
    ({"lst": [["a", []], ["b", []]], "polygraphy_class": "RunResults"}, "holds 0 iterations"),
    ([{"x": {"array": "!!", "polygraphy_class": "ndarray"}}] * 2, "the .npy header is truncated"),
    ({"polygraphy_class": "AccuracyResult", "lst": []}, "holds a Polygraphy 'AccuracyResult', not arrays"),
    ("a string", "is not a Polygraphy inputs or outputs file"),
])
def test_polygraphy_files_we_refuse(content, message: str, tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps(content))
    with pytest.raises(files.FileError, match=message.replace("{", "\\{").replace("}", "\\}")):
        files.read_tensors(tmp_path / "p.json")


def test_polygraphy_two_iterations_are_named(tmp_path: Path) -> None:
    x = np.zeros(2, np.float32)
    polygraphy_json.save_json([{"x": x}, {"x": x}], str(tmp_path / "two.json"))
    with pytest.raises(files.FileError, match="holds 2 iterations; netdsl reads a file of exactly one"):
        files.read_tensors(tmp_path / "two.json")


def test_polygraphy_base64_is_checked(tmp_path: Path) -> None:
    """A base64 payload whose .npy header declares more than it holds is refused before allocating."""
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": "<f4", "fortran_order": False, "shape": (2**40,)})
    payload = base64.b64encode(stream.getvalue() + b"\0" * 8).decode()
    (tmp_path / "p.json").write_text(json.dumps([{"x": {"array": payload, "polygraphy_class": "ndarray"}}]))
    with pytest.raises(files.FileError, match=r"declares 4398046511104 bytes of data .* only 8 follow"):
        files.read_tensors(tmp_path / "p.json")


def test_codes_on_the_command_line(saved_run, tmp_path: Path, capsys) -> None:
    """``--codes`` reads uint8 input arrays as codes (and leaves other arrays as values): the codes of the
    run's own fp8 output, given back with --codes, give the same dequantized values."""
    codes = saved_run["a"].view(np.uint8)
    np.save(tmp_path / "a.npy", codes)
    back = tmp_path / "back.net"
    args = ["run", str(back)] + [f"--input={name}={tmp_path / name}.npy" for name in ("a",)]
    assert main([*args, "--save", str(tmp_path / "with.npz"), "--codes"]) == 0
    with np.load(tmp_path / "with.npz") as archive:
        assert archive["a2"].tolist() == saved_run["a"].astype(np.float32).tolist()
    capsys.readouterr()
    assert main(args) == 2
    assert "input 'a' has dtype uint8, expected float32 or float8_e4m3fn for fp8 (raw codes? pass --codes" in \
        capsys.readouterr().err


def test_polygraphy_reads_our_inputs_file(tmp_path: Path) -> None:
    """An inputs file as netdsl writes it (kind="inputs", for --save-inputs) is byte for byte Polygraphy's
    own save_json of the same feed list."""
    arrays = {"x": np.linspace(-1, 1, 8, dtype=np.float32), "q": np.arange(-4, 4, dtype=np.int8)}
    files.write_tensors(tmp_path / "ours.json", arrays, {"x": lookup("float32"), "q": lookup("int8")},
                        kind="inputs")
    polygraphy_json.save_json([arrays], str(tmp_path / "theirs.json"))
    assert (tmp_path / "ours.json").read_bytes() == (tmp_path / "theirs.json").read_bytes()
    (loaded,) = polygraphy_json.load_json(str(tmp_path / "ours.json"))
    assert all(same_bits(loaded[name], arrays[name]) for name in arrays)


def test_polygraphy_iterations_of_several_runners(tmp_path: Path) -> None:
    """files.polygraphy_iterations gives every runner's iterations of a RunResults, in order."""
    results = RunResults()
    for runner, value in (("onnxrt-runner", 1.0), ("trt-runner", 2.0)):
        results.append((runner, [IterationResult({"y": np.full(2, value, np.float32)}, runner_name=runner)]))
    results.save(str(tmp_path / "out.json"))
    got = files.polygraphy_iterations(tmp_path / "out.json")
    assert [(runner, arrays["y"].tolist()) for runner, arrays in got] == \
        [("onnxrt-runner", [1.0, 1.0]), ("trt-runner", [2.0, 2.0])]


@pytest.mark.parametrize("ext", ["npz", "safetensors", "json"])
def test_scalars_keep_their_shape(ext: str, tmp_path: Path) -> None:
    """A 0-d tensor is written and read back as 0-d (np.ascontiguousarray would make it [1])."""
    scalar = np.array(0.5, np.float32)
    files.write_tensors(tmp_path / f"s.{ext}", {"s": scalar}, {"s": lookup("float32")})
    assert same_bits(files.read_tensor(tmp_path / f"s.{ext}", typed("float32", ()), "s"), scalar)
