"""Files and data at netdsl's edges: ``load()`` constants, YAML, ``--input``/``--inputs`` arrays, ``--save``.

Complements tests/test_text_frontend.py (missing, non-.npy and pickled ``load()`` files, shape and dtype
mismatches, npz keys), tests/test_yaml_form.py (tags, anchors, no object construction) and tests/test_cli.py
(input shape/dtype, pickled input, no partial ``--save`` after an input error). Here: corrupt and truncated
files, zips that aren't npz archives, headers that declare more than the file holds (refused before any
allocation), mis-typed values, the YAML form's locations, the Python API's errors, and ``--save`` failing
while it writes.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import tracemalloc
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import yaml

import netdsl
from netdsl import ModelError, files
from netdsl.cli import main
from netdsl.dtypes import lookup
from netdsl.ir import TensorType

LOAD_AT = "m.net:1:24: error: "  # where `const w : float32[2] = load(...)` puts its load call
HUGE = 2**40
#: what reading a rejected file may allocate: parser tables and buffers, nothing of the declared size
SMALL = 16 * 2**20


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": descr, "fortran_order": False, "shape": shape})
    return stream.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


def write_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def load_errors(tmp_path: Path, call: str, declared: str = "float32[2]") -> list[str]:
    text = f"const w : {declared} = {call}\nconst s : float32[] = 1\nq = quantize(w, s)\noutput q\n"
    with pytest.raises(ModelError) as info:
        netdsl.loads(text, base_dir=tmp_path, filename="m.net")
    return [str(d) for d in info.value.diagnostics]


# --------------------------------------------------------------------------------------------------
# load(): corrupt, truncated, mis-shaped, mis-typed files, each reported at the load call

GOOD = np.array([0.5, -1.5], np.float32)

CORRUPT = {
    "truncated .npy (data cut)": ("w.npy", npy_bytes(GOOD)[:-3], "cannot read"),
    "truncated .npy (header cut)": ("w.npy", npy_bytes(GOOD)[:20], "cannot read"),
    "empty file": ("w.npy", b"", "cannot read"),
    "wrong magic": ("w.npy", b"\x93NUMPX\x01\x00" + npy_bytes(GOOD)[8:], "cannot read"),
    "garbled header": ("w.npy", npy_bytes(GOOD).replace(b"'descr'", b"'dscr' "), "cannot read"),
    "unsupported .npy version": ("w.npy", b"\x93NUMPY\x09\x00" + npy_bytes(GOOD)[8:], "cannot read"),
    "a raw pickle": ("w.npy", pickle.dumps([0.5, -1.5]), "cannot read"),
    "an .npz that is not a zip": ("w.npz", b"PK\x03\x04" + b"\x00" * 64, "cannot read"),
    "a truncated .npz": ("w.npz", None, "cannot read"),
    "a zip of text, not arrays": ("w.npz", {"w": b"0.5 -1.5"}, "cannot read 'w.npz': member 'w' is not an .npy array"),
    "an .npz holding a pickle": ("w.npz", {"w.npy": npy_bytes(np.array([{}, {}], dtype=object))}, "cannot read"),
    "an .npz holding a truncated array": ("w.npz", {"w.npy": npy_bytes(GOOD)[:-2]}, "cannot read"),
    "a 2^40-element header": ("w.npy", npy_header((HUGE,)) + b"\x00" * 8,
                              "'w.npy' has shape [1099511627776], expected [2]"),
    "a 2^40-element header in an .npz": ("w.npz", {"w.npy": npy_header((HUGE,)) + b"\x00" * 8},
                                         "'w.npz' has shape [1099511627776], expected [2]"),
    "a gigabyte-wide dtype": ("w.npy", npy_header((2,), "|V1000000000") + b"\x00" * 8,
                              "'w.npy' holds raw 1000000000-byte values (|V1000000000, as np.save writes ml_dtypes "
                              "arrays), which can't be float32"),
    "a header wider than the file": ("w.npy", npy_header((1 << 20, 2)) + b"\x00" * 8,
                                     "'w.npy' has shape [1048576, 2], expected [2]"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_load_files_are_located_model_errors(case: str, tmp_path: Path) -> None:
    """Each corrupt file is a model error at the load call, and allocates (almost) nothing: a header that
    declares 2^40 elements, or a dtype a gigabyte wide, is refused before any data is read."""
    name, content, expected = CORRUPT[case]
    path = tmp_path / name
    if content is None:  # a valid archive cut in half
        write_zip(path, {"w.npy": npy_bytes(GOOD)})
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif isinstance(content, dict):
        write_zip(path, content)
    else:
        path.write_bytes(content)
    tracemalloc.start()
    try:
        errors = load_errors(tmp_path, f'load("{name}")')
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert errors[0].startswith(LOAD_AT + expected.replace("'w.npz':", f"'{path}':")), errors
    assert len(errors) == 1
    assert peak < SMALL, f"{peak / 2**20:.1f} MiB allocated"


def test_pickled_array_refused_in_our_words(tmp_path: Path) -> None:
    """An object array is never unpickled: the error says why in our words, without NumPy's advice to pass
    allow_pickle=True (issue 12)."""
    np.save(tmp_path / "w.npy", np.array([object(), object()]), allow_pickle=True)
    (error,) = load_errors(tmp_path, 'load("w.npy")')
    assert error.startswith(LOAD_AT + "cannot read") and error.endswith(
        "it holds Python objects (a pickle), which netdsl never reads: they can run code")
    assert "allow_pickle" not in error


@pytest.mark.parametrize("declared,array,expected", [
    ("float32[2]", np.array([0.5, 1.5]), "has dtype float64, expected float32 for float32"),
    ("float32[2]", np.array([1, 2], np.int64), "has dtype int64, expected float32 for float32"),
    ("float32[2]", np.array([True, False]), "has dtype bool, expected float32 for float32"),
    ("float32[2]", np.array([1 + 1j, 0], np.complex64), "has dtype complex64, expected float32 for float32"),
    ("float32[2]", np.array(["a", "b"]), "has dtype <U1, expected float32 for float32"),
    ("float16[2]", np.array([0.5, 1.5]), "has dtype float64, expected float16 or float32 for float16"),
    ("int4[2]", np.array([7, 8], np.int8), "holds 8, which int4 cannot represent exactly"),
    ("int8[2]", np.array([1.0, 2.0], np.float32), "has dtype float32, expected int8 for int8"),
    ("fp8[2]", np.array([0.3, 1.0], np.float32), "which fp8 cannot represent exactly"),
    ("fp8[2]", np.array([480.0, 1.0], np.float32), "holds 480.0, which fp8 cannot represent exactly"),
    ("fp4[2]", np.array([np.nan, 1.0], np.float32), "holds nan, which fp4 cannot represent exactly"),
    ("e8m0[2]", np.array([3.0, 1.0], np.float32), "holds 3.0, which e8m0 cannot represent exactly"),
    ("e8m0[2]", np.array([-2.0, 1.0], np.float32), "holds -2.0, which e8m0 cannot represent exactly"),
    ("float32[2]", np.zeros((1, 2), np.float32), "has shape [1, 2], expected [2]"),
    ("float32[2]", np.zeros((), np.float32), "has shape [], expected [2]"),
    ("float32[2, 1]", np.zeros((1, 2), np.float32), "has shape [1, 2], expected [2, 1]"),
])
def test_mistyped_and_misshaped_load(declared: str, array: np.ndarray, expected: str, tmp_path: Path) -> None:
    np.save(tmp_path / "w.npy", array)
    scale, layer = ("const s : float32[] = 1\n", "dequantize") if declared[:3] in ("int", "fp8", "fp4", "e8m") \
        else ("const s : float32[] = 1\n", "quantize")
    text = f'const w : {declared} = load("w.npy")\n{scale}q = {layer}(w, s)\noutput q\n'
    if declared.startswith("e8m0"):
        text = f'const w : {declared} = load("w.npy")\nconst f : fp8[2] = [1, 2]\nq = dequantize(f, w, axis=0)\n' \
               "output q\n"
    with pytest.raises(ModelError) as info:
        netdsl.loads(text, base_dir=tmp_path, filename="m.net")
    (error,) = [str(d) for d in info.value.diagnostics]
    assert error.startswith(f"m.net:1:{text.index('load(') + 1}: error: 'w.npy' ") and expected in error, error


def test_mis_shaped_npz_member_names_its_key(tmp_path: Path) -> None:
    np.savez(tmp_path / "w.npz", a=np.zeros(3, np.float32), b=np.zeros(2, np.float32))
    (error,) = load_errors(tmp_path, 'load("w.npz", "a")')
    assert error == LOAD_AT + "'w.npz' key 'a' has shape [3], expected [2]"


@pytest.mark.parametrize("target", ["", ".", "sub", "a" * 5000, "missing/w.npy", "w.npy\x00x"])
def test_unreadable_load_paths(target: str, tmp_path: Path) -> None:
    """A directory, a name too long for the file system, a NUL: a located "cannot read", never an OSError
    (a 5000-character name raised ENAMETOOLONG from the existence check)."""
    (tmp_path / "sub").mkdir()
    escaped = target.replace("\x00", "\\x00")
    (error,) = load_errors(tmp_path, f'load("{escaped}")')
    assert error.startswith(LOAD_AT + "cannot read '"), error


def test_fortran_order_and_big_endian_arrays_load_exactly(tmp_path: Path) -> None:
    """Any memory layout of an accepted dtype loads to the same values (only the byte order of float32
    counts as the same dtype to NumPy, so '>f4' is accepted too)."""
    values = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    np.save(tmp_path / "f.npy", np.asfortranarray(values))
    np.save(tmp_path / "b.npy", values.astype(">f4"))
    for name in ("f.npy", "b.npy"):
        text = f'const w : float32[2, 3] = load("{name}")\nconst s : float32[] = 0.25\nq = quantize(w, s)\noutput q\n'
        out = netdsl.loads(text, base_dir=tmp_path).run({}, backend="numpy")["q"]
        assert out.astype(int).tolist() == [[0, 1, 2], [3, 4, 5]]


# --------------------------------------------------------------------------------------------------
# array data read by a thread per core (netdsl/files.py, _read_data)

THREADED_ARRAYS = {
    "float32": (np.float32, "float32"), "float32 big-endian": (">f4", "float32"), "float16": (np.float16, "float16"),
    "int8": (np.int8, "int8"), "bfloat16 (np.save's <V2)": (ml_dtypes.bfloat16, "bfloat16"),
    "fp8 (np.save's <V1)": (ml_dtypes.float8_e4m3fn, "fp8"),
}


@pytest.fixture
def threaded_reads(monkeypatch) -> list[int]:
    """Reads split among 3 threads from 4 bytes a thread on; returns the list of preadv sizes, as they come."""
    calls: list[int] = []
    preadv = os.preadv

    def counting(fd: int, buffers: list, offset: int) -> int:
        got = preadv(fd, buffers, offset)
        calls.append(got)
        return got

    monkeypatch.setattr(files, "PARALLEL_READ", 4)
    monkeypatch.setattr(files.os, "cpu_count", lambda: 3)
    monkeypatch.setattr(files.os, "preadv", counting)
    return calls


@pytest.mark.parametrize("kind", list(THREADED_ARRAYS))
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 0, 2), (1021,), (33, 65)])
@pytest.mark.parametrize("fortran", [False, True])
def test_threaded_read_is_np_load(kind: str, shape: tuple[int, ...], fortran: bool, threaded_reads: list[int],
                                  tmp_path: Path) -> None:
    """Every size (empty, one element, odd counts that split unevenly), dtype and layout reads by threads to
    exactly what np.load gives (as raw bytes for the ml_dtypes types, which np.save writes as void)."""
    storage, type_name = THREADED_ARRAYS[kind]
    values = (np.arange(math.prod(shape)) % 200 - 100).astype(np.float32).reshape(shape) / 4
    array = values.astype(storage)
    np.save(tmp_path / "a.npy", np.asfortranarray(array) if fortran else array)
    got = files.read_array(tmp_path / "a.npy", TensorType(lookup(type_name), shape))
    expected = np.load(tmp_path / "a.npy")
    assert got.shape == expected.shape and got.tobytes() == np.ascontiguousarray(expected).tobytes()
    assert got.dtype == (expected.dtype if expected.dtype.kind != "V" else np.dtype(storage))
    assert got.flags.writeable and got.flags.c_contiguous
    assert (sum(threaded_reads) == array.nbytes) if array.nbytes >= 8 else not threaded_reads


def test_npz_members_are_read_in_order(threaded_reads: list[int], tmp_path: Path) -> None:
    """A zip member has no file descriptor of its own: read in order, to the same values."""
    values = np.arange(1001, dtype=np.float32)
    np.savez(tmp_path / "a.npz", x=values)
    np.savez_compressed(tmp_path / "c.npz", x=values)
    for name in ("a.npz", "c.npz"):
        got = files.read_array(tmp_path / name, TensorType(lookup("float32"), (1001,)), key="x")
        assert got.tobytes() == values.tobytes()
    assert not threaded_reads


@pytest.mark.parametrize("threads", [True, False])
def test_a_file_cut_while_it_is_read(threads: bool, tmp_path: Path, monkeypatch, capsys) -> None:
    """A file truncated by another process after its header was checked against its size, while its data
    is read (by threads, or in one read): the read that finds the end says so in one line (how much was
    expected, how much is left), and the command exits 2 and writes nothing."""
    if threads:
        monkeypatch.setattr(files, "PARALLEL_READ", 4)
        monkeypatch.setattr(files.os, "cpu_count", lambda: 3)
    values = np.arange(4000, dtype=np.float32)
    path = tmp_path / "x.npy"
    check_size = files.NpyHeader.check_size

    def checked_then_cut(header: files.NpyHeader) -> None:
        check_size(header)
        os.truncate(path, path.stat().st_size - values.nbytes + 10000)

    monkeypatch.setattr(files.NpyHeader, "check_size", checked_then_cut)
    np.save(path, values)
    with pytest.raises(files.FileError, match=r"^the array data is truncated: 16000 bytes expected, 10000 found$"):
        files.read_array(path, TensorType(lookup("float32"), (4000,)))
    np.save(path, values)
    model = tmp_path / "m.net"
    model.write_text("input x : float32[4000]\nconst s : float32[] = 1\nq = quantize(x, s)\noutput q\n")
    assert main(["run", str(model), "--input", f"x={path}", "--save", str(tmp_path / "o.npz")]) == 2
    assert capsys.readouterr().err == f"netdsl: error: cannot read input 'x' '{path}': the array data is " \
                                      "truncated: 16000 bytes expected, 10000 found\n"
    assert not (tmp_path / "o.npz").exists()


def test_yaml_load_errors_are_located_at_the_load_node(tmp_path: Path) -> None:
    """The YAML form reports a corrupt or mis-shaped file at the line and column of its ``load:`` value."""
    (tmp_path / "bad.npy").write_bytes(npy_bytes(GOOD)[:-3])
    np.save(tmp_path / "long.npy", np.zeros(3, np.float32))
    (tmp_path / "huge.npy").write_bytes(npy_header((HUGE,)))
    for name, expected in (("bad.npy", "cannot read"), ("long.npy", "'long.npy' has shape [3], expected [2]"),
                           ("huge.npy", "'huge.npy' has shape [1099511627776], expected [2]")):
        text = (f"inputs: {{}}\nconstants:\n  w: {{type: 'float32[2]', load: {name}}}\n"
                "  s: {type: 'float32[]', value: 1}\n"
                "layers:\n  - {op: quantize, inputs: [w, s], outputs: [q]}\noutputs: [q]\n")
        with pytest.raises(ModelError) as info:
            netdsl.loads(text, format="yaml", base_dir=tmp_path, filename="m.yaml")
        (error,) = [str(d) for d in info.value.diagnostics]
        column = text.splitlines()[2].index(name) + 1
        assert error.startswith(f"m.yaml:3:{column}: error: {expected}"), error


# --------------------------------------------------------------------------------------------------
# YAML is read safely


def test_yaml_is_only_composed_never_constructed(tmp_path: Path, monkeypatch) -> None:
    """netdsl builds its model from PyYAML's node tree: no loader that constructs Python objects (load,
    full_load, unsafe_load, safe_load, the constructors) runs, so no tag can reach Python."""
    def refuse(*args, **kwargs):
        raise AssertionError("netdsl constructed YAML objects")

    for name in ("load", "full_load", "unsafe_load", "safe_load", "load_all", "unsafe_load_all"):
        monkeypatch.setattr(yaml, name, refuse)
    monkeypatch.setattr(yaml.constructor.BaseConstructor, "construct_document", refuse)
    text = ("network: safe\ninputs: {x: 'float32[4]'}\nconstants:\n  s: {type: 'float32[]', value: 0.5}\n"
            "layers:\n  - {op: quantize, inputs: [x, s], outputs: [q], to_type: fp8}\noutputs: [q]\n")
    assert netdsl.loads(text, format="yaml").name == "safe"
    marker = tmp_path / "pwned"
    hostile = text.replace("network: safe", f"network: !!python/object/new:os.system ['touch {marker}']")
    with pytest.raises(ModelError, match="tags are not allowed"):
        netdsl.loads(hostile, format="yaml")
    assert not marker.exists()


# --------------------------------------------------------------------------------------------------
# input arrays: the Python API raises ValueError, the command line exits 2 with one line

MODEL = "input x : float32[2, 2]\ninput h : bfloat16[2]\ninput q : int4[2]\ninput f : fp8[2]\n" \
        "const s : float32[] = 1\na = quantize(x, s)\nb = quantize(h, s)\nc = dequantize(q, s)\nd = dequantize(f, s)\n" \
        "output a, b, c, d\n"
FITTING = {"x": np.zeros((2, 2), np.float32), "h": np.zeros(2, np.float32), "q": np.array([-8, 7], np.int8),
           "f": np.array([448, -0.5], np.float32)}


@pytest.mark.parametrize("name,array,expected", [
    ("x", np.zeros((2, 3), np.float32), "input 'x' has shape [2, 3], expected [2, 2]"),
    ("x", np.zeros(4, np.float32), "input 'x' has shape [4], expected [2, 2]"),
    ("x", np.zeros((2, 2), np.float64), "input 'x' has dtype float64, expected float32 for float32"),
    ("x", np.zeros((2, 2), np.int32), "input 'x' has dtype int32, expected float32 for float32"),
    ("h", np.zeros(2, np.float64), "input 'h' has dtype float64, expected bfloat16 or float32 for bfloat16"),
    ("q", np.array([-9, 0], np.int8), "input 'q' holds -9, which int4 cannot represent exactly"),
    ("q", np.zeros(2, np.float32), "input 'q' has dtype float32, expected int4 or int8 for int4"),
    ("f", np.array([0.1, 0], np.float32), "which fp8 cannot represent exactly"),
    ("f", np.array([np.inf, 0], np.float32), "input 'f' holds inf, which fp8 cannot represent exactly"),
    ("f", np.zeros(2, np.uint8), "input 'f' has dtype uint8, expected float32 or float8_e4m3fn for fp8"),
    ("x", np.array([[object(), 1], [2, 3]], dtype=object), "input 'x' has dtype object"),
])
def test_ill_fitting_inputs(name: str, array: np.ndarray, expected: str, tmp_path: Path, capsys) -> None:
    """The same message from the API (ValueError) and the command line (exit 2, one line)."""
    network = netdsl.loads(MODEL)
    with pytest.raises(ValueError) as info:
        network.run({**FITTING, name: array}, backend="numpy")
    assert expected in str(info.value)
    if array.dtype == object:
        return  # not something np.save writes without pickling
    model = tmp_path / "m.net"
    model.write_text(MODEL)
    np.save(tmp_path / "a.npy", array)
    for args in (["--input", f"{name}={tmp_path / 'a.npy'}"], ["--inputs", str(tmp_path / "all.npz")]):
        np.savez(tmp_path / "all.npz", **{**FITTING, name: array})
        capsys.readouterr()
        assert main(["run", str(model), *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("netdsl: error: ") and expected in err, err


def test_fitting_inputs_in_save_dtypes(tmp_path: Path, capsys) -> None:
    """The dtypes ``--save`` writes come back in (float32 for bfloat16 and fp8, int8 for int4)."""
    model = tmp_path / "m.net"
    model.write_text(MODEL)
    np.savez(tmp_path / "all.npz", **FITTING)
    assert main(["run", str(model), "--inputs", str(tmp_path / "all.npz")]) == 0
    out = netdsl.loads(MODEL).run(FITTING, backend="numpy")
    assert out["d"].tolist() == [448, -0.5]


@pytest.mark.parametrize("content", [
    pytest.param(lambda: npy_bytes(np.zeros((2, 2), np.float32))[:-4], id="truncated"),
    pytest.param(lambda: b"PK\x03\x04" + b"\x00" * 64, id="corrupt zip"),
    pytest.param(lambda: npy_header((HUGE,)) + b"\x00" * 16, id="2^40-element header"),
    pytest.param(lambda: npy_header((2, 2), "|V1000000000"), id="gigabyte dtype"),
    pytest.param(lambda: pickle.dumps(np.zeros((2, 2), np.float32)), id="raw pickle"),
    pytest.param(lambda: b"", id="empty"),
])
def test_corrupt_input_files_exit_2(content, tmp_path: Path, capsys) -> None:
    """Corrupt files given to ``--input``: exit 2 with one line (a zip that isn't one raised BadZipFile,
    and a header declaring 2^40 elements MemoryError: exit 3 before)."""
    model = tmp_path / "m.net"
    model.write_text(MODEL)
    (tmp_path / "x.npy").write_bytes(content())
    tracemalloc.start()
    try:
        code = main(["run", str(model), "--input", f"x={tmp_path / 'x.npy'}"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("netdsl: error: "), err
    assert peak < SMALL


@pytest.mark.parametrize("members,expected", [
    ({"x.npy": npy_header((HUGE,))}, "input 'x' has shape [1099511627776], expected [2, 2]"),
    ({"x.npy": npy_bytes(np.zeros((2, 2), np.float32))[:-4]}, "cannot read inputs file"),
    ({"x": b"not an array"}, "member 'x' is not an .npy array"),
    ({"other.npy": npy_header((HUGE,))}, "unknown input 'other'"),
])
def test_corrupt_inputs_archives_exit_2(members: dict[str, bytes], expected: str, tmp_path: Path, capsys) -> None:
    model = tmp_path / "m.net"
    model.write_text(MODEL)
    write_zip(tmp_path / "in.npz", members)
    assert main(["run", str(model), "--inputs", str(tmp_path / "in.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err


def test_archive_and_array_swapped_exit_2(tmp_path: Path, capsys) -> None:
    model = tmp_path / "m.net"
    model.write_text(MODEL)
    np.save(tmp_path / "x.npy", FITTING["x"])
    np.savez(tmp_path / "all.npz", **FITTING)
    assert main(["run", str(model), "--inputs", str(tmp_path / "x.npy")]) == 2
    assert "it is an .npy holding a single array, not a file of named arrays" in capsys.readouterr().err
    assert main(["run", str(model), "--input", f"x={tmp_path / 'all.npz'}"]) == 2
    assert "holds 4 arrays (x, h, q, f): name one; use --inputs for a file of several arrays" in \
        capsys.readouterr().err


def test_negative_seed_exits_2(tmp_path: Path, capsys) -> None:
    """``--seed -1`` was NumPy's ValueError (exit 3)."""
    model = tmp_path / "m.net"
    model.write_text(MODEL)
    assert main(["run", str(model), "--seed", "-1"]) == 2
    assert capsys.readouterr().err == "netdsl: error: --seed takes a non-negative integer, got -1\n"


def test_model_path_too_long_exits_2(tmp_path: Path, capsys) -> None:
    """A model path past the file system's name limit raised OSError from the existence check (exit 3)."""
    assert main(["check", str(tmp_path / ("m" * 5000 + ".net"))]) == 2
    assert capsys.readouterr().err.startswith("netdsl: error: cannot read model")


# --------------------------------------------------------------------------------------------------
# --save: atomic


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "m.net"
    model.write_text("input x : float32[4]\nconst s : float32[] = 0.5\nq = quantize(x, s)\noutput q\n")
    out = tmp_path / "out.npz"
    out.write_bytes(b"the previous results")
    return model, out


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("failure,code", [(OSError(28, "No space left on device"), 2),
                                          (RuntimeError("boom"), 3), (KeyboardInterrupt(), 130)])
def test_save_failing_mid_write_keeps_the_old_file(failure: BaseException, code: int, saved, monkeypatch,
                                                   capsys) -> None:
    """Writing the archive fails after its first member: the old file is intact, no temporary file remains,
    and the exit code says what happened (2 for an OSError, 3 for an internal error, 130 interrupted)."""
    model, out = saved
    before = listing(out.parent)
    real_write = np.lib.format.write_array

    def failing_write(stream, array, **options):
        real_write(stream, array, **options)
        stream.flush()
        raise failure

    monkeypatch.setattr(np.lib.format, "write_array", failing_write)
    assert main(["run", str(model), "--save", str(out)]) == code
    assert out.read_bytes() == b"the previous results"
    assert listing(out.parent) == before
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_save_replaces_atomically_on_success(saved, capsys) -> None:
    model, out = saved
    before = listing(out.parent)
    assert main(["run", str(model), "--save", str(out), "--seed", "3"]) == 0
    assert listing(out.parent) == before
    with np.load(out) as archive:
        assert archive.files == ["q"] and archive["q"].dtype == np.int8 and archive["q"].shape == (4,)


def test_model_error_writes_no_file(tmp_path: Path, capsys) -> None:
    model = tmp_path / "m.net"
    model.write_text("input x : float32[4]\nq = quantize(x, nope)\noutput q\n")
    assert main(["run", str(model), "--save", str(tmp_path / "out.npz")]) == 1
    assert listing(tmp_path) == ["m.net"]


def test_save_onto_a_directory_or_fifo_is_refused(saved, capsys) -> None:
    """The rename that makes ``--save`` atomic would replace whatever is at the path: a FIFO (or, run as
    root, a device such as /dev/full) became a regular file. Now only a regular file is replaced."""
    model, out = saved
    fifo = out.parent / "pipe"
    os.mkfifo(fifo)
    (out.parent / "folder").mkdir()
    before = listing(out.parent)
    for target, reason in ((fifo, "it is not a regular file"), (out.parent / "folder", "it is a directory")):
        assert main(["run", str(model), "--save", str(target)]) == 2
        assert capsys.readouterr().err == f"netdsl: error: cannot write '{target}': {reason}\n"
    assert fifo.is_fifo() and (out.parent / "folder").is_dir()
    assert listing(out.parent) == before


def test_saved_values_round_trip_as_inputs(tmp_path: Path, capsys) -> None:
    """What ``--save`` writes for each type is accepted back as an input of that type, bit-exactly."""
    model = tmp_path / "m.net"
    model.write_text("input x : float32[2, 64]\nconst s : float32[] = 0.125\n"
                     "a = quantize(x, s, to_type=fp8)\nb = quantize(x, s, to_type=fp4)\n"
                     "c = quantize(x, s, to_type=int4)\ne, f = dynamic_quantize(x, axis=1, block_size=32, "
                     "output_type=fp8, scale_type=e8m0)\ng = dequantize(a, s, to_type=bfloat16)\n"
                     "output a, b, c, e, f, g\n")
    assert main(["run", str(model), "--save", str(tmp_path / "out.npz")]) == 0
    back = tmp_path / "back.net"
    back.write_text("input a : fp8[2, 64]\ninput b : fp4[2, 64]\ninput c : int4[2, 64]\ninput f : e8m0[2, 2]\n"
                    "input g : bfloat16[2, 64]\nconst s : float32[] = 1\n"
                    "a2 = dequantize(a, s)\nb2 = dequantize(b, s)\nc2 = dequantize(c, s)\n"
                    "g2 = quantize(g, s, to_type=fp8)\noutput a2, b2, c2, g2\n")
    with np.load(tmp_path / "out.npz") as archive:
        inputs = {name: archive[name] for name in ("a", "b", "c", "f", "g")}
    net = netdsl.loads(back.read_text())
    prepared = net.prepare_inputs(inputs)
    assert prepared["a"].dtype == ml_dtypes.float8_e4m3fn and prepared["b"].dtype == ml_dtypes.float4_e2m1fn
    assert prepared["c"].dtype == ml_dtypes.int4 and prepared["f"].dtype == ml_dtypes.float8_e8m0fnu
    assert prepared["g"].dtype == ml_dtypes.bfloat16
    for name, array in inputs.items():
        assert prepared[name].astype(np.float32).tobytes() == array.astype(np.float32).tobytes(), name
