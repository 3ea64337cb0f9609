"""The CLI's help, --version, --quiet, --json, --mark, --val-range and --save-inputs (docs/cli.md)."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.cli import COMMANDS, build_parser, main
from tests.conftest import ROOT, python_path

QUANTIZE = """network quantize
input  input1 : float32[1, 1, 3, 3]
const  scale  : float32[1] = [1/127]
q   = quantize(input1, scale, axis=3)
out = dequantize(q, scale, axis=3)
output out
"""

TWO_INPUTS = """input a : float32[64]
input b : bfloat16[4, 8]
const s : float32[] = 0.5
qa = quantize(a, s, to_type=int8)
qb = quantize(b, s, to_type=fp8)
output qa, qb
"""


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "quantize.net"
    path.write_text(QUANTIZE)
    return path


@pytest.fixture
def two(tmp_path: Path) -> Path:
    path = tmp_path / "two.net"
    path.write_text(TWO_INPUTS)
    return path


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------------------------
# Help and version


def subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_and_option_has_help_and_an_example() -> None:
    parsers = subparsers()
    assert set(parsers) == set(COMMANDS)
    for name, parser in parsers.items():
        assert parser.description and "examples:\n  netdsl " + name in (parser.epilog or ""), name
        for action in parser._actions:
            assert action.help, f"netdsl {name} {action.option_strings or action.dest} has no help"
    assert "examples:" in (build_parser().epilog or "")


@pytest.mark.parametrize("name", COMMANDS)
def test_a_command_alone_parses_as_among_all(name: str) -> None:
    """A command line naming its command first gets a parser of that command alone (no other command module
    imported): the same options, defaults and help as that command's parser among all of them."""
    alone = next(a for a in build_parser(name)._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert list(alone) == [name]

    def described(parser: argparse.ArgumentParser) -> list[tuple]:
        return [(a.option_strings, a.dest, a.default, a.help, a.choices) for a in parser._actions]

    assert described(alone[name]) == described(subparsers()[name])
    assert alone[name].format_help() == subparsers()[name].format_help()


def test_help_keeps_the_examples_as_written(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "-h"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "\n  netdsl run examples/nvfp4_bf16.net --mark all            # intermediates too, the same bits\n" in out
    assert "--val-range [NAME:][MIN,MAX] [[NAME:][MIN,MAX] ...]" in out


def test_version(capsys) -> None:
    try:
        expected = metadata.version("netdsl")
    except metadata.PackageNotFoundError:
        expected = netdsl.__version__
    assert main(["--version"]) == 0 and capsys.readouterr().out == f"netdsl {expected}\n"
    with pytest.raises(SystemExit) as exit_info:  # with other words, argparse's --version
        main(["--version", "check"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"netdsl {expected}\n"


def test_version_falls_back_to_the_package_in_a_source_checkout(monkeypatch) -> None:
    from netdsl import cli

    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    assert cli.version() == netdsl.__version__


# --------------------------------------------------------------------------------------------------
# --quiet and --json


def test_quiet_prints_nothing_but_errors(model: Path, tmp_path: Path, capsys) -> None:
    assert cli(capsys, "check", model, "--quiet") == (0, "", "")
    save = tmp_path / "out.npz"
    assert cli(capsys, "run", model, "-q", "--save", save) == (0, "", "")
    assert np.load(save)["out"].shape == (1, 1, 3, 3)
    code, out, err = cli(capsys, "run", model, "-q", "--input", "input1=missing.npy")
    assert (code, out) == (2, "") and err.startswith("netdsl: error: cannot read input 'input1'")


def test_check_json(model: Path, tmp_path: Path, capsys) -> None:
    code, out, _ = cli(capsys, "check", model, "--json", "-")
    assert code == 0
    document = json.loads(out)
    assert document["network"] == "quantize" and document["outputs"] == ["out"]
    assert [(t["name"], t["type"], t["shape"], t["provenance"]) for t in document["tensors"]] == [
        ("input1", "float32", [1, 1, 3, 3], "input"), ("scale", "float32", [1], "constant"),
        ("q", "int8", [1, 1, 3, 3], "computed"), ("out", "float32", [1, 1, 3, 3], "computed")]
    assert document["tensors"][1]["values"] == [float(np.float32(1 / 127))]
    target = tmp_path / "graph.json"
    code, out, _ = cli(capsys, "check", model, "--json", target)
    assert (code, out) == (0, "ok\n") and json.loads(target.read_text()) == document


def test_run_json(model: Path, tmp_path: Path, capsys) -> None:
    x = np.array([[[[0.56, 0.89, 1.4], [-0.56, 0.39, 6.0], [0.67, 0.11, -3.6]]]], np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, _ = cli(capsys, "run", model, "--input", f"input1={tmp_path / 'x.npy'}", "--mark", "q",
                       "--json", "-", "--backend", "numpy")
    assert code == 0
    outputs = json.loads(out)["outputs"]
    assert list(outputs) == ["out", "q"]
    assert outputs["q"]["dtype"] == "int8" and outputs["q"]["shape"] == [1, 1, 3, 3]
    assert outputs["q"]["values"] == [[[[71, 113, 127], [-71, 50, 127], [85, 14, -128]]]]  # TensorRT's docs
    assert outputs["q"]["summary"] == {"count": 9, "min": -128.0, "max": 127.0, "mean": 388 / 9, "nan": 0, "inf": 0}


def test_run_json_summarises_large_outputs(tmp_path: Path, capsys) -> None:
    path = tmp_path / "big.net"
    path.write_text("input x : float32[300]\nconst s : float32[] = 1\nq = quantize(x, s, to_type=fp8)\noutput q\n")
    code, out, _ = cli(capsys, "run", path, "--json", "-", "--val-range", "[2,2]")
    assert code == 0
    entry = json.loads(out)["outputs"]["q"]
    assert "values" not in entry and entry["summary"] == {"count": 300, "min": 2.0, "max": 2.0, "mean": 2.0,
                                                          "nan": 0, "inf": 0}


# --------------------------------------------------------------------------------------------------
# --mark


def test_mark_prints_intermediates_with_the_same_bits(model: Path, tmp_path: Path, capsys) -> None:
    plain, marked = tmp_path / "plain.npz", tmp_path / "marked.npz"
    code, out, _ = cli(capsys, "run", model, "--save", plain)
    assert code == 0 and "q:" not in out
    code, out, _ = cli(capsys, "run", model, "--mark", "all", "--save", marked)
    assert code == 0 and out.index("out: float32[1, 1, 3, 3]") < out.index("q: int8[1, 1, 3, 3]")
    assert np.load(plain)["out"].tobytes() == np.load(marked)["out"].tobytes()


@pytest.mark.parametrize("name,message", [
    ("input1", "--mark: cannot mark 'input1': it is a network input, not a layer output"),
    ("nope", "--mark: cannot mark 'nope': no such tensor; the layer outputs are q, out"),
])
def test_mark_errors(model: Path, capsys, name: str, message: str) -> None:
    code, out, err = cli(capsys, "run", model, "--mark", name)
    assert (code, out, err) == (2, "", f"netdsl: error: {message}\n")


# --------------------------------------------------------------------------------------------------
# --val-range and --save-inputs


def test_val_range_default_is_minus_one_to_one(two: Path, tmp_path: Path, capsys) -> None:
    plain, ranged = tmp_path / "plain.npz", tmp_path / "ranged.npz"
    cli(capsys, "run", two, "--save-inputs", plain)
    cli(capsys, "run", two, "--save-inputs", ranged, "--val-range", "[-1,1]")
    assert np.load(plain)["a"].tobytes() == np.load(ranged)["a"].tobytes()
    rng = np.random.default_rng(1)  # the documented rule: default_rng(seed), uniform, in input order
    expected_a = rng.uniform(-1.0, 1.0, size=64).astype(np.float32)
    assert np.load(plain)["a"].tobytes() == expected_a.tobytes()


def test_val_range_per_input(two: Path, tmp_path: Path, capsys) -> None:
    saved = tmp_path / "inputs.npz"
    code, _, _ = cli(capsys, "run", two, "--val-range", "[10,20]", "b:[-3,-2]", "--save-inputs", saved, "--seed", "7")
    assert code == 0
    inputs = np.load(saved)
    assert inputs["a"].dtype == np.float32 and 10 <= inputs["a"].min() and inputs["a"].max() < 20
    assert inputs["b"].dtype == np.float32 and -3 <= inputs["b"].min() and inputs["b"].max() <= -2  # bfloat16 values
    rng = np.random.default_rng(7)
    assert inputs["a"].tobytes() == rng.uniform(10, 20, size=64).astype(np.float32).tobytes()


@pytest.mark.parametrize("value,message", [
    ("1,2", "--val-range takes [NAME:][MIN,MAX], e.g. x:[0,1], got '1,2'"),
    ("[1,2,3]", "--val-range takes [NAME:][MIN,MAX]"),
    ("[a,2]", "--val-range '[a,2]': MIN and MAX must be numbers"),
    ("[2,1]", "--val-range '[2,1]': needs finite MIN <= MAX"),
    ("[0,inf]", "needs finite MIN <= MAX"),
    ("c:[0,1]", "--val-range: unknown input 'c': the network's inputs are a, b"),
])
def test_val_range_errors(two: Path, capsys, value: str, message: str) -> None:
    code, out, err = cli(capsys, "run", two, "--val-range", value)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("suffix", [".npz", ".json"])  # .json: Polygraphy's --load-inputs format
def test_save_inputs_reproduces_the_run(two: Path, tmp_path: Path, capsys, suffix: str) -> None:
    inputs, first, second = tmp_path / f"inputs{suffix}", tmp_path / "first.npz", tmp_path / "second.npz"
    assert cli(capsys, "run", two, "--seed", "3", "--save-inputs", inputs, "--save", first)[0] == 0
    if suffix == ".npz":
        assert sorted(np.load(inputs).files) == ["a", "b"]
    assert cli(capsys, "run", two, "--inputs", inputs, "--save", second)[0] == 0
    for name in ("qa", "qb"):
        assert np.load(first)[name].tobytes() == np.load(second)[name].tobytes()


def test_save_inputs_target_checked_before_the_run(two: Path, tmp_path: Path, capsys) -> None:
    code, out, err = cli(capsys, "run", two, "--save-inputs", tmp_path / "no" / "inputs.npz")
    assert (code, out) == (2, "") and err.startswith("netdsl: error: cannot write ")


def test_save_inputs_with_codes(two: Path, tmp_path: Path, capsys) -> None:
    inputs = tmp_path / "inputs.npz"
    assert cli(capsys, "run", two, "--save-inputs", inputs, "--codes")[0] == 0
    assert np.load(inputs)["b"].dtype == np.float32  # bfloat16 has no 8-bit codes: exact values


# --------------------------------------------------------------------------------------------------
# A fast start: what `netdsl check` loads (its speed is measured in benchmarks/bench_cli.py, not here)


def run_python(code: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": python_path(ROOT), "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_check_of_a_float_model_does_not_import_ml_dtypes(tmp_path: Path) -> None:
    code = ("import sys\nfrom netdsl.cli import main\n"
            f"assert main(['check', {str(ROOT / 'examples' / 'quantize.net')!r}]) == 0\n"
            "print(sorted(m for m in ('ml_dtypes', 'yaml', 'graphviz', 'tqdm', 'onnx') if m in sys.modules))\n")
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n[]\n"


def test_parser_cache_is_private_and_survives_damage(tmp_path: Path) -> None:
    code = ("from netdsl.cli import main\n"
            f"assert main(['check', {str(ROOT / 'examples' / 'nvfp4_bf16.net')!r}]) == 0\n")
    assert run_python(code, tmp_path).stdout == "ok\n"
    folder = tmp_path / "netdsl"
    (cache,) = folder.iterdir()
    assert folder.stat().st_mode & 0o777 == 0o700
    good = cache.read_bytes()
    cache.write_bytes(good[: len(good) // 2])  # a damaged cache (a writer killed half way) is rebuilt
    result = run_python(code, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")
    rebuilt = cache.read_bytes()  # rewritten whole (a pickle of sets: not byte for byte the same)
    assert rebuilt.split(b"\n")[0] == good.split(b"\n")[0] and len(rebuilt) > 0.9 * len(good)


# --------------------------------------------------------------------------------------------------
# The progress bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_on_a_terminal_for_long_runs_only(model: Path, monkeypatch, capsys, quiet: bool) -> None:
    from netdsl.cli import progress

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["run", str(model)] + (["--quiet"] if quiet else [])) == 0
    assert terminal.getvalue() == ""  # short: no bar
    monkeypatch.setattr(progress, "LONG_RUN_ELEMENTS", 1)
    assert main(["run", str(model), "--mark", "q"] + (["--quiet"] if quiet else [])) == 0
    out = capsys.readouterr().out
    if quiet:
        assert terminal.getvalue() == "" and out == ""
    else:
        assert "%|" in terminal.getvalue() and terminal.getvalue().endswith("\r")  # shown, then cleared
        assert "out: float32[1, 1, 3, 3]" in out


def test_progress_counts_every_element() -> None:
    from netdsl.cli import progress

    graph = netdsl.loads(TWO_INPUTS).graph
    assert progress.estimate(graph) == (64 + 32) + (64 + 32) + (64 + 32)
