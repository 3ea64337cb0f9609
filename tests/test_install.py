"""A plain, non-editable ``pip install .`` checks and runs a model from another directory: the
grammar and the kernels ship inside the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import python_path

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_non_editable_install_runs_from_elsewhere(tmp_path: Path) -> None:
    pytest.importorskip("hatchling", reason="the build backend (pip install '.[test]' brings it)")
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-compile", "--target", str(target), str(ROOT)],
        capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    package = target / "netdsl"
    assert (package / "grammar" / "netdsl.lark").is_file()
    assert any((package / "kernels").glob("*.cu")), "the CUDA kernels must ship in the wheel"
    assert not (target / "grammar").exists() and not (target / "kernels").exists()

    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "model.net").write_text(
        "input x : float32[2, 32]\nconst g : float32[1] = [1]\n"
        "d, s = dynamic_quantize(x, g, axis=1, block_size=16, output_type=fp4, scale_type=fp8)\n"
        "sf = dequantize(s, g)\ny = dequantize(d, sf)\noutput y\n")
    env = dict(os.environ, PYTHONPATH=python_path(target))
    for command in (["check", "model.net"], ["run", "model.net", "--backend", "numpy", "--save", "out.npz"]):
        result = subprocess.run([sys.executable, "-m", "netdsl", *command], capture_output=True, text=True,
                                cwd=work, env=env)
        assert result.returncode == 0, result.stderr
    probe = subprocess.run([sys.executable, "-c", "import netdsl, sys; print(netdsl.__file__)"],
                           capture_output=True, text=True, cwd=work, env=env)
    assert probe.stdout.strip().startswith(str(target)), "the installed copy must be the one that ran"
    assert (work / "out.npz").is_file()
