"""``netdsl graph`` (netdsl/render.py): the DOT it writes, the files by extension, the errors when Graphviz is
missing, and the picture as a real browser shows it.

The browser test renders the SVG and the HTML page in Debian's headless Chromium and reads the screenshot:
the right size, not blank, and showing the fill colour of every number format the network uses. It skips
saying why where Chromium or Graphviz is missing, and fails instead under CI=true (.ci/run installs both).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl import render
from netdsl.cli import main
from netdsl.diagnostics import UsageError

graphviz = pytest.importorskip("graphviz", reason='the graphviz package is missing: pip install "netdsl[graph]"')

ROOT = Path(__file__).resolve().parent.parent
MODEL = """
network mixed
input x : float32[4, 64]
const w : float32[4, 8] = [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 1, 1, 1, 1], [3, 3, 3, 3, 3, 3, 3, 3]]
const s : float32[4] = [0.5, 0.25, 1, 2]
q = quantize(w, s, axis=0, to_type=int8)
y = dequantize(q, s, axis=0, to_type=float16)
d, sc = dynamic_quantize(x, axis=-1, block_size=32, output_type=fp8, scale_type=e8m0)
output y, d, sc
"""
WINDOW = (1200, 1000)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.net"
    path.write_text(MODEL)
    return path


def need(program: str, in_ci: bool) -> str:
    found = shutil.which(program)
    if found is None:
        message = f"'{program}' is not installed (Debian: apt-get install -y {'graphviz' if program == 'dot' else program})"
        if in_ci:
            pytest.fail(f"{message}; .ci/run installs it")
        pytest.skip(message)
    return found


def test_dot_source_has_every_tensor_layer_and_colour() -> None:
    source = render.to_dot(netdsl.loads(MODEL).graph).source
    for label in ("x\\nfloat32[4, 64]\\ninput", "q\\nint8[4, 8]\\nfolded", "y\\nfloat16[4, 8]\\noutput, folded",
                  "sc\\ne8m0[4, 2]\\noutput, dynamic scale", "s\\nfloat32[4]\\nconstant\\n= [0.5, 0.25, 1.0, 2.0]",
                  "quantize\\nper-channel on axis 0, to int8\\nblock shape [1, 8]",
                  "dynamic_quantize\\nMXFP8: block [1, 32], data fp8, scale e8m0"):
        assert label in source
    for name in ("float32", "int8", "float16", "fp8", "e8m0"):
        assert f'fillcolor="{render.FORMAT_COLOURS[name]}"' in source
    assert render.FORMAT_COLOURS["fp4"] not in source  # only the formats the network uses


def test_dot_file_needs_no_program(model: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no 'dot' anywhere
    target = tmp_path / "m.dot"
    assert main(["graph", str(model), "-o", str(target)]) == 0
    assert target.read_text().startswith("digraph mixed {")
    assert main(["graph", str(model), "-o", str(tmp_path / "m.svg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("netdsl: error: netdsl graph needs Graphviz's 'dot' program for SVG") and err.count("\n") == 1
    assert not (tmp_path / "m.svg").exists()


def test_unknown_extension_and_missing_package(model: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    assert main(["graph", str(model), "-o", str(tmp_path / "m.txt")]) == 2
    assert "netdsl graph writes .svg, .png, .dot, .gv, .html files; got '.txt'" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "graphviz", None)
    with pytest.raises(UsageError, match=r'pip install "netdsl\[graph\]"'):
        render.to_dot(netdsl.loads(MODEL).graph)


@pytest.mark.parametrize("suffix", [".svg", ".png", ".html"])
def test_rendered_files(model: Path, tmp_path: Path, suffix: str, in_ci: bool) -> None:
    need("dot", in_ci)
    target = tmp_path / f"m{suffix}"
    assert main(["graph", str(model), "-o", str(target), "--quiet"]) == 0
    data = target.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
    else:
        text = data.decode()
        assert "<svg" in text and "dynamic_quantize" in text
        if suffix == ".html":
            assert text.startswith("<!DOCTYPE html>") and "<?xml" not in text


def screenshot(browser: str, page: Path, out: Path, profile: Path) -> None:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={out}",
               f"--window-size={WINDOW[0]},{WINDOW[1]}", page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and out.is_file(), result.stderr[-2000:]


def colour_present(pixels: np.ndarray, colour: str, least: int = 50) -> bool:
    """At least ``least`` pixels within 6 levels of ``colour`` on every channel."""
    want = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels - want).max(axis=-1) <= 6).sum()) >= least


def test_picture_renders_in_a_browser(model: Path, tmp_path: Path, in_ci: bool) -> None:
    need("dot", in_ci)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        need("chromium", in_ci)
    Image = pytest.importorskip("PIL.Image", reason="Pillow is missing (it is in the test extra)")
    for suffix in (".svg", ".html"):
        page = tmp_path / f"m{suffix}"
        assert main(["graph", str(model), "-o", str(page), "--quiet"]) == 0
        shot = tmp_path / f"shot{suffix}.png"
        screenshot(browser, page, shot, tmp_path / "profile")
        with Image.open(shot) as image:
            assert image.size == WINDOW
            pixels = np.asarray(image.convert("RGB")).astype(np.int16)
        coloured = int((pixels.max(axis=-1) - pixels.min(axis=-1) > 40).sum())
        assert coloured > 0.02 * WINDOW[0] * WINDOW[1], f"{suffix}: the page looks blank"
        for name in ("float32", "int8", "float16", "fp8", "e8m0"):
            assert colour_present(pixels, render.FORMAT_COLOURS[name]), f"{suffix}: no {name} colour on screen"
        assert not colour_present(pixels, render.FORMAT_COLOURS["fp4"], least=1)


def test_marked_tensors_are_drawn_as_outputs(model: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "m.dot"
    assert main(["graph", str(model), "-o", str(target), "--mark", "q"]) == 0
    assert capsys.readouterr().out == f"wrote {target}\n"
    assert "q\\nint8[4, 8]\\noutput, folded" in target.read_text()
