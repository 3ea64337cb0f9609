"""Issue 12's reproductions for files, saving and confinement (docs/reliability.md): each test here failed
on the code before netdsl/files.py (exit 3, a hang, a lost or misplaced file, a file read from outside the
model's folder, a stray warning) and passes now.
"""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl import ModelError, files
from netdsl.cli import main
from tests.conftest import ROOT, npy_bytes, npz_bytes, python_path

LOAD_MODEL = 'const w : float32[2] = load("{name}")\nconst s : float32[] = 1\nq = quantize(w, s)\noutput q\n'
INPUT_MODEL = "input x : float32[2]\nconst s : float32[] = 1\nq = quantize(x, s)\noutput q\n"
#: what a rejected file may allocate: parser tables and buffers, nothing of the declared size
SMALL = 16 * 2**20
#: a hang limit for subprocesses, far above a loaded machine's run (no test asserts a speed)
HANG = 300


def unclosed_paren_npy() -> bytes:
    """Issue 12's file: an .npy whose header dict leaves a '(' open (NumPy's parser raised tokenize's error)."""
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, }"
    header += b" " * (63 - 10 - len(header)) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 8


def patched_zip(field: str) -> bytes:
    """An .npz whose member claims an unknown compression (NotImplementedError in zipfile) or encryption
    (RuntimeError), patched in both its local and central headers."""
    data = bytearray(npz_bytes({"x.npy": npy_bytes(np.zeros(2, np.float32))}))
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature)
        if field == "method":
            data[at + flags_at + 2:at + flags_at + 4] = struct.pack("<H", 99)
        else:
            data[at + flags_at:at + flags_at + 2] = struct.pack("<H", 1)
    return bytes(data)


def corrupt_deflate() -> bytes:
    """A compressed .npz (np.savez_compressed) with its deflate stream damaged: zlib.error in NumPy."""
    stream = io.BytesIO()
    np.savez_compressed(stream, x=np.arange(4096, dtype=np.float32))
    data = bytearray(stream.getvalue())
    start = data.index(b"x.npy") + 5
    for i in range(start + 10, start + 60):
        data[i] ^= 0x5A
    return bytes(data)


#: issue 12's crashing files: each escaped as exit 3 through load(), --input and --inputs
CRASHERS = {
    "unclosed ( in the header": (unclosed_paren_npy, "its .npy header is not a valid Python dict literal"),
    "corrupt deflate (zlib.error)": (corrupt_deflate, "compressed data is corrupt"),
    "unknown compression (NotImplementedError)": (lambda: patched_zip("method"), "uses a compression NumPy never writes"),
    "encrypted member (RuntimeError)": (lambda: patched_zip("flags"), "is encrypted"),
}


def one_line(err: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err and "Error:" not in err and "allow_pickle" not in err, err


@pytest.mark.parametrize("case", list(CRASHERS))
def test_crashing_files_are_clear_errors_everywhere(case: str, tmp_path: Path, capsys) -> None:
    make, reason = CRASHERS[case]
    content = make()
    single = content if content.startswith(b"\x93NUMPY") else None
    archive = content if single is None else npz_bytes({"x.npy": content})
    (tmp_path / "in.npz").write_bytes(archive)
    (tmp_path / "x.bin").write_bytes(single or archive)
    (tmp_path / "m.net").write_text(LOAD_MODEL.format(name="x.bin"))
    (tmp_path / "i.net").write_text(INPUT_MODEL)
    assert main(["check", str(tmp_path / "m.net")]) == 1
    first, *source = capsys.readouterr().err.splitlines()  # the diagnostic, then its source line and caret
    one_line(first + "\n")
    assert first.startswith(f"{tmp_path / 'm.net'}:1:24: error: cannot read ") and reason in first, first
    assert len(source) == 2
    for args in (["--input", f"x={tmp_path / 'x.bin'}"], ["--inputs", str(tmp_path / "in.npz")]):
        assert main(["run", str(tmp_path / "i.net"), *args]) == 2
        err = capsys.readouterr().err
        one_line(err)
        assert err.startswith("netdsl: error: cannot read input") and reason in err, err


def test_no_numpy_pickle_advice(tmp_path: Path, capsys) -> None:
    """A pickled array: our words, not NumPy's advice to load it unsafely."""
    np.save(tmp_path / "x.npy", np.array([{}, {}], dtype=object), allow_pickle=True)
    (tmp_path / "i.net").write_text(INPUT_MODEL)
    assert main(["run", str(tmp_path / "i.net"), "--input", f"x={tmp_path / 'x.npy'}"]) == 2
    err = capsys.readouterr().err
    one_line(err)
    assert err.endswith("it holds Python objects (a pickle), which netdsl never reads: they can run code\n")


# --------------------------------------------------------------------------------------------------
# files that aren't regular files: refused before they are opened


def test_dev_zero_is_not_a_regular_file(tmp_path: Path, capsys) -> None:
    """/dev/zero was reported with NumPy's pickle advice (--input) or as "no such file" (load, models)."""
    (tmp_path / "i.net").write_text(INPUT_MODEL)
    assert main(["run", str(tmp_path / "i.net"), "--input", "x=/dev/zero"]) == 2
    assert capsys.readouterr().err == \
        "netdsl: error: cannot read input 'x' '/dev/zero': it is not a regular file (a device)\n"
    assert main(["check", "/dev/zero"]) == 2
    assert capsys.readouterr().err == "netdsl: error: cannot read model '/dev/zero': it is not a regular file (a device)\n"
    with pytest.raises(ModelError, match=r"cannot read '/dev/zero': it is not a regular file \(a device\)"):
        netdsl.loads(LOAD_MODEL.format(name="/dev/zero"), trust_paths=True)


def test_fifo_never_blocks(tmp_path: Path) -> None:
    """A FIFO given as --input, --inputs, a load() file or the model: refused at once (it blocked the
    reader forever: nothing ever writes it). Run in a subprocess so that a regression can't hang the suite."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "i.net").write_text(INPUT_MODEL)
    (tmp_path / "m.net").write_text(LOAD_MODEL.format(name="pipe"))
    env = dict(os.environ, PYTHONPATH=python_path(ROOT))
    for args, expected in (
        (["run", "i.net", "--input", "x=pipe"], "netdsl: error: cannot read input 'x' 'pipe': it is not a regular file (a FIFO)"),
        (["run", "i.net", "--inputs", "pipe"], "netdsl: error: cannot read inputs file 'pipe': it is not a regular file (a FIFO)"),
        (["check", "m.net"], "m.net:1:24: error: cannot read 'pipe': it is not a regular file (a FIFO)"),
        (["check", "pipe"], "netdsl: error: cannot read model 'pipe': it is not a regular file (a FIFO)"),
    ):
        result = subprocess.run([sys.executable, "-m", "netdsl", *args], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=HANG, check=False)  # ok: a hang safety net
        first_line = result.stderr.splitlines()[0]  # a model error shows its source line and caret after it
        assert (result.returncode, first_line) == (1 if args[1] == "m.net" else 2, expected), result.stderr


def test_directory_is_named(tmp_path: Path, capsys) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "i.net").write_text(INPUT_MODEL)
    assert main(["run", str(tmp_path / "i.net"), "--input", f"x={tmp_path / 'd'}"]) == 2
    assert capsys.readouterr().err.endswith("it is a directory, not a file\n")


# --------------------------------------------------------------------------------------------------
# safetensors: lying headers


def safetensors_file(header: object, data: bytes = b"", length: int | None = None) -> bytes:
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(text) if length is None else length) + text + data


GOOD_ENTRY = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
LIARS = {
    "length past the file": (safetensors_file({"w": GOOD_ENTRY}, b"\0" * 8, length=10**9), "claims 1000000000 bytes"),
    "length 2^63": (safetensors_file({"w": GOOD_ENTRY}, b"\0" * 8, length=2**63), "claims 9223372036854775808 bytes"),
    "header not JSON": (safetensors_file(b"{nope", b"\0" * 8), "header is not valid JSON"),
    "header a list": (safetensors_file([1, 2]), "not a JSON object"),
    "unknown dtype": (safetensors_file({"w": {**GOOD_ENTRY, "dtype": "F128"}}, b"\0" * 8), "dtype 'F128'"),
    "negative dim": (safetensors_file({"w": {**GOOD_ENTRY, "shape": [-2]}}, b"\0" * 8), "not a list of non-negative"),
    "2^40 elements": (safetensors_file({"w": {**GOOD_ENTRY, "shape": [2**40]}}, b"\0" * 8), "needs 4398046511104 bytes"),
    "offsets past the data": (safetensors_file({"w": {**GOOD_ENTRY, "data_offsets": [0, 2**40]}}, b"\0" * 8),
                              "data offsets outside the file's 8 data bytes"),
    "offsets backwards": (safetensors_file({"w": {**GOOD_ENTRY, "data_offsets": [8, 0]}}, b"\0" * 8), "data offsets"),
    "metadata not strings": (safetensors_file({"__metadata__": {"a": 1}, "w": GOOD_ENTRY}, b"\0" * 8),
                             "__metadata__ is not a map of strings"),
    "extra key": (safetensors_file({"w": {**GOOD_ENTRY, "x": 1}}, b"\0" * 8), "is not {dtype, shape, data_offsets}"),
    "overlapping tensors": (safetensors_file({"w": GOOD_ENTRY, "v": GOOD_ENTRY}, b"\0" * 8), "safetensors refuses it"),
    "netdsl record lies": (safetensors_file({"__metadata__": {"netdsl.packed": '{"w": {"type": "int4", "shape": [99]}}'},
                                             "w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"\0"),
                           "doesn't match tensor 'w'"),
}


@pytest.mark.parametrize("case", list(LIARS))
def test_lying_safetensors_headers(case: str, tmp_path: Path, capsys) -> None:
    pytest.importorskip("safetensors")
    content, reason = LIARS[case]
    (tmp_path / "m.safetensors").write_bytes(content)
    tracemalloc.start()
    try:
        with pytest.raises(files.FileError) as info:
            files.read_tensor(tmp_path / "m.safetensors", netdsl.ir.TensorType(netdsl.dtypes.FLOAT32, (2,)), "w")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reason in str(info.value)
    assert peak < SMALL
    (tmp_path / "i.net").write_text(INPUT_MODEL.replace("input x", "input w").replace("(x,", "(w,"))
    assert main(["run", str(tmp_path / "i.net"), "--inputs", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    one_line(err)
    assert reason in err


# --------------------------------------------------------------------------------------------------
# --save


SAVE_MODEL = "input x : float32[4]\nconst s : float32[] = 0.5\nq = quantize(x, s)\noutput q\n"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "m.net"
    path.write_text(SAVE_MODEL)
    return path


def test_every_output_name_is_saved(tmp_path: Path, capsys) -> None:
    """Outputs named allow_pickle and file: np.savez took them as its own keyword arguments (one was
    dropped, the other crashed the save)."""
    (tmp_path / "m.net").write_text("input x : float32[2]\nconst s : float32[] = 1\nallow_pickle = quantize(x, s)\n"
                                    "file = quantize(x, s)\nargs = quantize(x, s)\noutput allow_pickle, file, args\n")
    assert main(["run", str(tmp_path / "m.net"), "--save", str(tmp_path / "o.npz")]) == 0
    with np.load(tmp_path / "o.npz") as archive:
        assert sorted(archive.files) == ["allow_pickle", "args", "file"]


def run_netdsl(args: list[str], cwd: Path, **options) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=python_path(ROOT))
    return subprocess.run([sys.executable, "-m", "netdsl", *args], cwd=cwd, env=env, timeout=HANG, check=False,
                          **options)


def test_saved_before_printing_to_a_full_stdout(model: Path, tmp_path: Path) -> None:
    """`> /dev/full`: the outputs were printed first, so the print failed (exit 3) and nothing was saved."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        result = run_netdsl(["run", "m.net", "--save", "o.npz"], tmp_path, stdout=full, stderr=subprocess.PIPE, text=True)
    assert (result.returncode, result.stderr) == (2, "netdsl: error: cannot write to standard output: No space left "
                                                     "on device\n")
    with np.load(tmp_path / "o.npz") as archive:
        assert archive.files == ["q"]


def test_saved_before_printing_to_a_closed_pipe(tmp_path: Path) -> None:
    """`| head -1`: the reader closes the pipe; the file is saved all the same, and netdsl ends quietly."""
    lines = ["input x : float32[256]", "const s : float32[] = 0.5"]
    lines += [f"q{i} = quantize(x, s)" for i in range(300)] + ["output " + ", ".join(f"q{i}" for i in range(300))]
    (tmp_path / "m.net").write_text("\n".join(lines) + "\n")
    env = dict(os.environ, PYTHONPATH=python_path(ROOT))
    process = subprocess.Popen([sys.executable, "-m", "netdsl", "run", "m.net", "--save", "o.npz"], cwd=tmp_path,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.readline()
    process.stdout.close()
    process.wait(timeout=HANG)  # ok: a hang safety net
    err = process.stderr.read().decode()
    process.stderr.close()
    assert (process.returncode, err) == (141, "")
    with np.load(tmp_path / "o.npz") as archive:
        assert len(archive.files) == 300


SLOW_SAVE = """
import sys, time
from pathlib import Path
import numpy as np
from netdsl.cli import main

real = np.lib.format.write_array
def slow(stream, array, **options):
    real(stream, array, **options)
    stream.write(b"x" * (1 << 20))
    stream.flush()
    Path("writing").write_text("now")
    time.sleep(600)

np.lib.format.write_array = slow
sys.exit(main(["run", "m.net", "--save", "out.npz"]))
"""


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGHUP, -signal.SIGHUP),
                                         (signal.SIGINT, 130)])
def test_signals_during_a_save_leave_no_temporary_file(signum: int, code: int, model: Path, tmp_path: Path) -> None:
    """SIGTERM, SIGHUP and SIGINT while --save writes: the temporary file is removed, the old file kept, and
    the signal then does what it would have done (end the process; SIGINT: netdsl's "interrupted", 130)."""
    (tmp_path / "out.npz").write_bytes(b"previous")
    (tmp_path / "slow.py").write_text(SLOW_SAVE)
    env = dict(os.environ, PYTHONPATH=python_path(ROOT))
    process = subprocess.Popen([sys.executable, "slow.py"], cwd=tmp_path, env=env, stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + HANG
    while not (tmp_path / "writing").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    process.send_signal(signum)
    assert process.wait(timeout=HANG) == code  # ok: a hang safety net
    process.stderr.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.net", "out.npz", "slow.py", "writing"]
    assert (tmp_path / "out.npz").read_bytes() == b"previous"


@pytest.mark.parametrize("target,reason", [
    ("m.net", "it is '{model}', which this command reads: netdsl never replaces its own inputs"),
    ("in.npz", "it is '{inputs}', which this command reads: netdsl never replaces its own inputs"),
    ("link.npz", "it is '{inputs}', which this command reads: netdsl never replaces its own inputs"),
    ("ro.npz", "it is read-only"),
    ("", "the file name is empty"),
    ("a" * 256 + ".npz", "the file name is 260 bytes long; this file system allows 255"),
    ("missing/o.npz", "no such directory '{tmp}/missing'"),
    ("o.npy", "an .npy file holds one array; --save writes .npz, .safetensors or .json"),
])
def test_save_targets_refused_before_the_run(target: str, reason: str, model: Path, tmp_path: Path, capsys) -> None:
    """The model or an input file (also through a symbolic link), a read-only file, an empty or overlong
    name: a usage error before the run (nothing printed), the file untouched. The model file and inputs
    were silently replaced, a read-only file too, and '' exited 0 writing nothing."""
    np.savez(tmp_path / "in.npz", x=np.zeros(4, np.float32))
    (tmp_path / "link.npz").symlink_to(tmp_path / "in.npz")
    (tmp_path / "ro.npz").write_bytes(b"keep")
    (tmp_path / "ro.npz").chmod(0o444)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    path = str(tmp_path / target) if target else ""
    if os.pathconf(tmp_path, "PC_NAME_MAX") != 255 and len(target) > 255:
        pytest.skip("this file system's name limit is not 255")
    code = main(["run", str(model), "--inputs", str(tmp_path / "in.npz"), "--save", path])
    out, err = capsys.readouterr()
    expected = reason.format(model=model, inputs=tmp_path / "in.npz", tmp=tmp_path)
    assert (code, out, err) == (2, "", f"netdsl: error: cannot write '{path}': {expected}\n")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_a_name_at_the_limit_is_written(model: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """A 255-byte name: the temporary name (``.~`` + random + name) was longer than the file system allows;
    now it is cut to the limit."""
    if os.pathconf(tmp_path, "PC_NAME_MAX") != 255:
        pytest.skip("this file system's name limit is not 255")
    target = tmp_path / ("b" * 251 + ".npz")
    temporary_names = []
    real_replace = os.replace

    def recording_replace(source, destination):
        temporary_names.append(os.path.basename(source))
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", recording_replace)
    assert main(["run", str(model), "--save", str(target)]) == 0
    assert target.is_file() and len(temporary_names[0]) == 255 and temporary_names[0].startswith(b".~")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_files_get_the_umask(umask: int, model: Path, tmp_path: Path, capsys) -> None:
    """Saved files were always 0600 (mkstemp's mode); now 0666 less the umask, as any new file."""
    old = os.umask(umask)
    try:
        for name in ("o.npz", "o.safetensors", "o.json"):
            assert main(["run", str(model), "--save", str(tmp_path / name)]) == 0
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
        assert main(["convert", str(model), "--to", "yaml", "-o", str(tmp_path / "c.yaml")]) == 0
        assert stat.S_IMODE((tmp_path / "c.yaml").stat().st_mode) == 0o666 & ~umask
    finally:
        os.umask(old)


def test_the_file_and_its_directory_are_fsynced(model: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    assert main(["run", str(model), "--save", str(tmp_path / "o.npz")]) == 0
    assert synced == ["file", "dir"]


# --------------------------------------------------------------------------------------------------
# load() confined to the model's folder


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file of the user's outside the model's folder, and the model's folder."""
    (tmp_path / "model").mkdir()
    path = tmp_path / "secret.npy"
    np.save(path, np.array([3.0, 4.0], np.float32))
    return path


THIEF = 'const w : float32[2] = load("{path}")\noutput w\n'


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_load_outside_the_model_folder_is_refused(how: str, secret: Path, tmp_path: Path, capsys) -> None:
    """A downloaded model could copy any .npy of the user's into the file it saves (a constant can be an
    output): absolute paths, '..' and symbolic links out of the folder are located model errors now."""
    folder = tmp_path / "model"
    path = {"absolute": str(secret), "dotdot": "../secret.npy", "symlink": "link.npy"}[how]
    (folder / "link.npy").symlink_to(secret)
    (folder / "m.net").write_text(THIEF.format(path=path))
    assert main(["run", str(folder / "m.net"), "--save", str(tmp_path / "loot.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{folder / 'm.net'}:1:24: error: cannot read ") and \
        f"it is outside the model's folder '{folder.resolve()}'" in err and "--trust-paths" in err, err
    assert not (tmp_path / "loot.npz").exists()
    with pytest.raises(ModelError, match="trust_paths=True"):
        netdsl.load(folder / "m.net")
    # trusted: the same model reads it
    assert netdsl.load(folder / "m.net", trust_paths=True).run({}, backend="numpy")["w"].tolist() == [3.0, 4.0]
    assert main(["run", str(folder / "m.net"), "--trust-paths", "--save", str(tmp_path / "loot.npz")]) == 0
    for command in (["check"], ["convert", "--to", "yaml"]):
        assert main([command[0], str(folder / "m.net"), *command[1:], "--trust-paths"]) == 0


def test_load_inside_the_folder_works(secret: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "sub").mkdir()
    np.save(folder / "sub" / "w.npy", np.array([1.0, 2.0], np.float32))
    (folder / "inner.npy").symlink_to(folder / "sub" / "w.npy")
    for path in ("sub/w.npy", "sub/../sub/w.npy", "inner.npy", str(folder / "sub" / "w.npy")):
        (folder / "m.net").write_text(THIEF.format(path=path))
        assert netdsl.load(folder / "m.net").run({}, backend="numpy")["w"].tolist() == [1.0, 2.0], path


def test_yaml_and_loads_are_confined_too(secret: Path, tmp_path: Path, monkeypatch) -> None:
    text = f"constants:\n  w: {{type: 'float32[2]', load: {secret}}}\noutputs: [w]\n"
    with pytest.raises(ModelError, match="outside the model's folder"):
        netdsl.loads(text, format="yaml", base_dir=tmp_path / "model")
    monkeypatch.chdir(tmp_path / "model")  # loads() without base_dir: the current directory
    with pytest.raises(ModelError, match="outside the model's folder"):
        netdsl.loads(THIEF.format(path="../secret.npy"))
    assert netdsl.loads(THIEF.format(path="../secret.npy"), trust_paths=True).run({}, backend="numpy")["w"].tolist() \
        == [3.0, 4.0]


def test_confined_for_other_readers(tmp_path: Path) -> None:
    """files.confined, which ONNX external data uses too."""
    (tmp_path / "a").mkdir()
    assert files.confined("x/y.bin", tmp_path / "a") == (tmp_path / "a" / "x" / "y.bin").resolve()
    with pytest.raises(files.FileError, match="outside the model's folder"):
        files.confined("../y.bin", tmp_path / "a")


# --------------------------------------------------------------------------------------------------
# smaller items


def test_convert_with_a_non_utf8_load_path(tmp_path: Path, capsys) -> None:
    r"""A load() path naming a file whose name is not UTF-8 (written "\udcff.npy" in the model): convert -o
    raised UnicodeEncodeError (exit 3); now both forms are written and read back."""
    with open(os.path.join(os.fsencode(tmp_path), b"\xff.npy"), "wb") as stream:
        np.save(stream, np.array([1.0, 2.0], np.float32))
    (tmp_path / "u.net").write_text(LOAD_MODEL.format(name="\\udcff.npy"))
    for to in ("net", "yaml"):
        out = tmp_path / f"out.{to}"
        assert main(["convert", str(tmp_path / "u.net"), "--to", to, "-o", str(out)]) == 0
        assert "\\udcff.npy" in out.read_text(encoding="utf-8")
        assert netdsl.load(out).run({}, backend="numpy")["q"].tolist() == [1, 2]


def test_backslash_in_a_load_path_warns_nothing(tmp_path: Path) -> None:
    r"""``load("a\d.npy")``: the string was evaluated by Python's parser, which warns about '\d'
    (SyntaxWarning on 3.12, DeprecationWarning before). The backslash stays, silently."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ModelError) as info:
            netdsl.loads(LOAD_MODEL.format(name="a\\d.npy"), base_dir=tmp_path)
    assert [str(w.message) for w in caught] == []
    assert "cannot read" in str(info.value) and "a\\d.npy" in str(info.value)


def test_api_load_of_a_device_or_fifo(tmp_path: Path) -> None:
    """netdsl.load of /dev/zero read forever (until memory ran out); of a FIFO, it blocked."""
    os.mkfifo(tmp_path / "m.net")
    for path in ("/dev/zero", tmp_path / "m.net"):
        with pytest.raises(files.FileError, match="it is not a regular file"):
            netdsl.load(path)
