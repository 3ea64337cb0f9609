"""netdsl.cuda_start: the CUDA driver started in a thread before `netdsl apply`'s imports (docs/scale.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from netdsl import cuda_start
from netdsl.cli import main
from tests.test_apply import NVFP4, make_checkpoint

ROOT = Path(__file__).resolve().parents[1]


class FakeDriver:
    """libcuda's three entry points, recording their calls; ``fail`` names one that returns an error."""

    def __init__(self, calls: list[tuple], fail: str | None = None):
        self.calls, self.fail = calls, fail

    def __getattr__(self, name: str):
        def call(*args):
            self.calls.append((name, *(getattr(a, "_obj", a) for a in args)))
            if name == "cuDeviceGet":
                args[0]._obj.value = 7  # the device's handle
            return 100 if name == self.fail else 0
        return call


@pytest.mark.parametrize("fail", [None, "cuInit", "cuDeviceGet"])
def test_the_driver_and_the_primary_context_start_in_order(fail, monkeypatch) -> None:
    calls: list[tuple] = []
    monkeypatch.setattr(cuda_start.ctypes, "CDLL", lambda name: FakeDriver(calls, fail))
    cuda_start.start_in_background(2).join(timeout=60)  # ok: a hang limit, not a timing
    names = [c[0] for c in calls]
    assert names == {None: ["cuInit", "cuDeviceGet", "cuDevicePrimaryCtxRetain"], "cuInit": ["cuInit"],
                     "cuDeviceGet": ["cuInit", "cuDeviceGet"]}[fail]
    if fail is None:
        assert calls[1][2] == 2 and calls[2][2].value == 7  # device 2's handle, then its primary context


def test_no_driver_is_nothing_to_start(monkeypatch) -> None:
    def missing(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(cuda_start.ctypes, "CDLL", missing)
    thread = cuda_start.start_in_background()
    thread.join(timeout=60)  # ok: a hang limit, not a timing
    assert not thread.is_alive()


@pytest.mark.parametrize(("options", "started", "finishes"), [
    ([], True, True), (["--backend", "numpy"], False, True),
    (["--backend", "cupy"], True, False), (["--workers", "1"], False, False)])  # (here: no GPU, maybe no Dask)
def test_apply_starts_the_driver_only_where_it_runs_on_this_process_gpu(options, started, finishes,
                                                                         tmp_path: Path, monkeypatch) -> None:
    """The default (auto) and cupy backends start the driver before the imports; NumPy and Dask don't
    (Dask's client uses no GPU)."""
    starts: list[int] = []
    monkeypatch.setattr(cuda_start, "start_in_background", lambda device=0: starts.append(device))
    make_checkpoint(tmp_path / "ckpt")
    code = main(["apply", str(NVFP4), str(tmp_path / "ckpt"), "-o", str(tmp_path / "out"), "--no-progress",
                 *options])
    assert starts == ([0] if started else [])
    if finishes:
        assert code == 0


def test_the_apply_parser_imports_no_numpy() -> None:
    """What runs before the driver starts (the program, its parser for `apply`) imports neither NumPy nor the
    language's front end, so the driver's start runs beside those imports."""
    code = ("import sys; from netdsl.cli import build_parser; build_parser('apply'); "
            "print(sorted(m for m in ('numpy', 'lark', 'netdsl.model', 'cupy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_cupy_warm_up_does_nothing_where_cupy_fails(monkeypatch) -> None:
    """`apply`'s second warm-up (CuPy imported, its context, pools and cached kernels, beside the planning)
    swallows a failure: the first real use reports it, with its context."""
    from netdsl.backends.cupy import device

    def broken():
        raise ImportError("No module named 'cupy'")

    monkeypatch.setattr(device, "import_cupy", broken)
    device.make_ready()  # returns, raising nothing


def test_the_command_line_imports_lark_without_regex() -> None:
    """`netdsl`'s process imports lark with the third-party `regex` module hidden (lark's optional use of it is
    50 ms of import that netdsl's grammar never needs); `regex` can still be imported after, and the language
    still parses."""
    code = ("import sys; import netdsl.cli as cli; cli._lark_without_regex(); "
            "from netdsl.model import load; "
            "load('examples/quantize.net'); "
            "print('regex' in sys.modules, 'lark' in sys.modules); "
            "import importlib.util; print(importlib.util.find_spec('regex') is not None or 'absent')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    first, second = out.stdout.split("\n")[:2]
    assert first == "False True"
    assert second in ("True", "absent")


def test_version_is_printed_without_the_commands_imports() -> None:
    code = ("import sys; from netdsl.cli import main; code = main(['--version']); "
            "print(code, sorted(m for m in ('numpy', 'lark', 'netdsl.model') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[0].startswith("netdsl ")
    assert out.stdout.split("\n")[1] == "0 []"
