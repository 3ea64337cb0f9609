"""The command line: exit codes 0/1/2/3, messages, printing, --save and --codes, no partial files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from netdsl.cli import main
from tests.conftest import python_path

ROOT = Path(__file__).resolve().parent.parent

QUANTIZE = """# TensorRT operator docs, "Quantize"
network quantize
input  input1 : float32[1, 1, 3, 3]
const  scale  : float32[1] = [1/127]
q   = quantize(input1, scale, axis=3)
out = dequantize(q, scale, axis=3)
output out, q
"""

NVFP4 = """input x : bfloat16[2, 33, 16]
const dqs : float32[] = 0.5
data, scale = dynamic_quantize(x, dqs, axis=-1, block_size=16, output_type=fp4, scale_type=fp8)
output data, scale
"""


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "quantize.net"
    path.write_text(QUANTIZE)
    return path


def run_cli(*args: str, capsys) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_ok(model, capsys) -> None:
    assert run_cli("check", str(model), capsys=capsys) == (0, "ok\n", "")


def test_check_verbose_prints_graph(model, capsys) -> None:
    code, out, _ = run_cli("check", "-v", str(model), capsys=capsys)
    assert code == 0
    assert "input  input1 : float32[1, 1, 3, 3]" in out
    assert "layer  q : int8[1, 1, 3, 3] = quantize(input1, scale, axis=3)" in out
    assert "# computed; per-tensor, to int8" in out
    assert out.endswith("ok\n")


def test_model_error_exit_1(tmp_path, capsys) -> None:
    path = tmp_path / "bad.net"
    path.write_text("input x : float32[4]\nq = quantize(x, nope)\noutput q\n")
    code, out, err = run_cli("check", str(path), capsys=capsys)
    assert code == 1 and out == ""
    # the first line is the one scripts parse; the source line and a caret follow it
    assert err == (f"{path}:2:17: error: unknown tensor 'nope'\n"
                   " 2 | q = quantize(x, nope)\n"
                   "   |                 ^\n")


def test_warning_does_not_change_exit_code(tmp_path, capsys) -> None:
    path = tmp_path / "warn.net"
    path.write_text("input x : float32[4]\ninput y : float32[4]\nconst s : float32[] = 1\nq = quantize(x, s)\noutput q\n")
    code, out, err = run_cli("check", str(path), capsys=capsys)
    assert (code, out) == (0, "ok\n")
    assert err == (f"{path}:2:7: warning: input 'y' is not used\n"
                   " 2 | input y : float32[4]\n"
                   "   |       ^\n")


@pytest.mark.parametrize("args,message", [
    ([], "the following arguments are required"),
    (["frobnicate"], "invalid choice"),
    (["check"], "the following arguments are required: model"),
    (["check", "missing.net"], "cannot read model 'missing.net': no such file"),
    (["run", "MODEL", "--backend", "tpu"], "invalid choice"),
    (["run", "MODEL", "--input", "input1"], "--input takes NAME=FILE"),
    (["run", "MODEL", "--input", "input1=missing.npy"], "cannot read input 'input1' 'missing.npy': no such file"),
    (["run", "MODEL", "--inputs", "missing.npz"], "no such file"),
    (["run", "MODEL", "--seed", "x"], "invalid int value"),
    (["convert", "MODEL"], "the following arguments are required: --to"),
])
def test_usage_errors_exit_2_one_line(model, capsys, args, message) -> None:
    args = [str(model) if a == "MODEL" else a for a in args]
    code, out, err = run_cli(*args, capsys=capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("netdsl: error: ") and message in err, err


def test_input_that_does_not_fit_exits_2(model, tmp_path, capsys) -> None:
    np.save(tmp_path / "x.npy", np.zeros((3, 3), np.float32))
    code, _, err = run_cli("run", str(model), "--input", f"input1={tmp_path / 'x.npy'}", capsys=capsys)
    assert code == 2 and "input 'input1' has shape [3, 3], expected [1, 1, 3, 3]" in err
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 3, 3), np.int32))
    code, _, err = run_cli("run", str(model), "--input", f"input1={tmp_path / 'x.npy'}", capsys=capsys)
    assert code == 2 and "has dtype int32, expected float32" in err
    code, _, err = run_cli("run", str(model), "--input", f"other={tmp_path / 'x.npy'}", capsys=capsys)
    assert code == 2 and "unknown input 'other'" in err


def test_pickled_input_refused(model, tmp_path, capsys) -> None:
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = run_cli("run", str(model), "--input", f"input1={tmp_path / 'x.npy'}", capsys=capsys)
    assert code == 2 and "holds Python objects (a pickle), which netdsl never reads" in err
    assert "allow_pickle" not in err


def test_run_prints_and_saves_doc_example(model, tmp_path, capsys) -> None:
    np.save(tmp_path / "x.npy", np.array([[[[0.56, 0.89, 1.4], [-0.56, 0.39, 6.0], [0.67, 0.11, -3.6]]]], np.float32))
    save = tmp_path / "out.npz"
    code, out, _ = run_cli("run", str(model), "--input", f"input1={tmp_path / 'x.npy'}", "--save", str(save),
                           "--backend", "numpy", capsys=capsys)
    assert code == 0
    assert out.startswith("out: float32[1, 1, 3, 3]\n")
    assert "q: int8[1, 1, 3, 3]" in out and "127" in out and "-128" in out
    saved = np.load(save)
    assert sorted(saved.files) == ["out", "q"]
    assert saved["q"].dtype == np.int8
    assert saved["q"].ravel().tolist() == [71, 113, 127, -71, 50, 127, 85, 14, -128]
    assert saved["out"].dtype == np.float32
    np.testing.assert_allclose(saved["out"].ravel(), [0.56, 0.89, 1, -0.56, 0.39, 1.0, 0.67, 0.11, -1.0], atol=1e-2)


def test_save_writes_exactly_the_path_given(model, tmp_path, capsys) -> None:
    save = tmp_path / "results.data"
    assert run_cli("run", str(model), "--save", str(save), capsys=capsys)[0] == 0
    assert save.is_file() and not (tmp_path / "results.data.npz").exists()


def test_seeded_random_inputs(model, tmp_path, capsys) -> None:
    a, b, c = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"
    run_cli("run", str(model), "--save", str(a), capsys=capsys)
    run_cli("run", str(model), "--save", str(b), "--seed", "1", capsys=capsys)
    run_cli("run", str(model), "--save", str(c), "--seed", "2", capsys=capsys)
    x = np.random.default_rng(1).uniform(-1.0, 1.0, size=(1, 1, 3, 3)).astype(np.float32)
    expected_q = np.clip(np.rint(x / np.float32(1 / 127)), -128, 127)
    assert np.load(a)["q"].tolist() == np.load(b)["q"].tolist() == expected_q.astype(np.int8).tolist()
    assert np.load(a)["q"].tolist() != np.load(c)["q"].tolist()


def test_codes_packs_4bit_outputs(tmp_path, capsys) -> None:
    path = tmp_path / "nvfp4.net"
    path.write_text(NVFP4)
    plain, codes = tmp_path / "plain.npz", tmp_path / "codes.npz"
    assert run_cli("run", str(path), "--save", str(plain), capsys=capsys)[0] == 0
    assert run_cli("run", str(path), "--save", str(codes), "--codes", capsys=capsys)[0] == 0
    values, raw = np.load(plain), np.load(codes)
    assert values["data"].dtype == np.float32 and values["data"].shape == (2, 33, 16)
    assert raw["data"].dtype == np.uint8 and raw["data"].shape == (2 * 33 * 16 // 2,)
    assert raw["scale"].dtype == np.uint8 and raw["scale"].shape == (2, 33, 1)
    # decode the packed codes independently: low nibble first, E2M1 magnitudes
    magnitudes = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], np.float32)
    nibbles = np.stack([raw["data"] & 0xF, raw["data"] >> 4], axis=-1).reshape(-1)
    decoded = np.where(nibbles & 8, -1, 1) * magnitudes[nibbles & 7]
    assert decoded.tolist() == values["data"].reshape(-1).tolist()
    assert raw["scale"].view(ml_dtypes.float8_e4m3fn).astype(np.float32).tolist() == values["scale"].tolist()


def test_error_leaves_no_partial_file_and_keeps_existing(model, tmp_path, capsys) -> None:
    save = tmp_path / "out.npz"
    save.write_bytes(b"previous")
    np.save(tmp_path / "x.npy", np.zeros((2,), np.float32))
    code, _, _ = run_cli("run", str(model), "--input", f"input1={tmp_path / 'x.npy'}", "--save", str(save),
                         capsys=capsys)
    assert code == 2
    assert save.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz", "quantize.net", "x.npy"]


def test_save_into_missing_directory_exits_2(model, tmp_path, capsys) -> None:
    code, _, err = run_cli("run", str(model), "--save", str(tmp_path / "no" / "out.npz"), capsys=capsys)
    assert code == 2 and "no such directory" in err


def test_cupy_backend_unavailable_is_a_usage_error(model, capsys) -> None:
    from netdsl.backends.cupy import BACKEND

    if BACKEND.available()[0]:
        pytest.skip("a GPU is available here")
    code, _, err = run_cli("run", str(model), "--backend", "cupy", capsys=capsys)
    assert code == 2 and err.startswith("netdsl: error: the cupy backend is not available: ")


def test_internal_error_exits_3(model, capsys, monkeypatch) -> None:
    import netdsl.cli.common

    def broken(path, *args, **options):
        raise RuntimeError("boom")

    monkeypatch.setattr(netdsl.cli.common, "load", broken)
    code, _, err = run_cli("check", str(model), capsys=capsys)
    assert code == 3 and err == "netdsl: internal error: RuntimeError: boom (please report this)\n"


def test_python_dash_m_and_no_traceback(tmp_path) -> None:
    path = tmp_path / "bad.net"
    path.write_text("input x : float32[4\n")
    env = dict(os.environ, PYTHONPATH=python_path(ROOT))
    result = subprocess.run([sys.executable, "-m", "netdsl", "check", str(path)], capture_output=True, text=True,
                            env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{path}:1:18: error: '[' is never closed")


def test_large_output_prints_summary(tmp_path, capsys) -> None:
    path = tmp_path / "big.net"
    path.write_text("input x : float32[64, 64]\nconst s : float32[] = 0.01\nq = quantize(x, s)\noutput q\n")
    code, out, _ = run_cli("run", str(path), capsys=capsys)
    assert code == 0
    assert out.startswith("q: int8[64, 64]\n  4096 values: min ")
