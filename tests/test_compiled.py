"""The compiled CPU loop (numba): per-tensor int8/int4 quantize, against values written by hand and
against the NumPy path, bit for bit. numba is in the test extra: under CI=true a missing numba fails."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import netdsl
from netdsl import dtypes, settings
from netdsl.backends.numpy import compiled
from tests.conftest import ROOT, python_path

F32 = np.float32
NAN_PAYLOAD = np.array([0x7FC00001, 0xFFC000AB, 0x7F800001], np.uint32).view(F32)  # quiet, negative, signalling


@pytest.fixture
def numba_kernel(in_ci: bool):
    """The compiled loop; a skip without numba, a failure under CI=true."""
    kernel = compiled.kernel()
    if kernel is None:
        if in_ci:
            pytest.fail("CI=true but numba is not installed: the compiled CPU loop is not tested")
        pytest.skip("numba is not installed")
    return kernel


@pytest.fixture
def loop(monkeypatch, numba_kernel):
    """The compiled loop, taken for every piece size (and seen to be taken)."""
    kernel = numba_kernel
    calls = []

    def spy(*args):
        calls.append(args[0].size)
        kernel(*args)
    monkeypatch.setattr(compiled, "_loaded", [spy])
    monkeypatch.setattr(compiled, "MIN_ELEMENTS", 0)
    monkeypatch.setenv("NETDSL_NUMBA", "1")
    yield
    assert calls, "the compiled loop was not taken"


@pytest.fixture(params=["compiled", "numpy"])
def path(request, monkeypatch):
    """Both CPU paths: the compiled loop, and NumPy alone."""
    if request.param == "compiled":
        request.getfixturevalue("loop")
    else:
        monkeypatch.setenv("NETDSL_NUMBA", "0")


def quantize(x: np.ndarray, scale: str, to_type: str) -> np.ndarray:
    net = netdsl.loads(f"input x : float32[{x.size}]\nconst s : float32[] = {scale}\n"
                       f"q = quantize(x, s, to_type={to_type})\noutput q\n")
    return net.run({"x": x}, backend="numpy")["q"]


def codes(values: np.ndarray) -> list[int]:
    return values.view(np.uint8).tolist()


# (input, int8 code) at scale 1, written by hand: ties to even, saturation, NaN -> 0, -0 -> 0
INT8_CASES = [
    (0.5, 0), (1.5, 2), (2.5, 2), (-0.5, 0), (-1.5, 0xFE), (-2.5, 0xFE), (0.49999997, 0), (126.5, 126),
    (127.49998, 127), (127.5, 127), (128.0, 127), (1e30, 127), (np.inf, 127), (-128.5, 0x80), (-129.0, 0x80),
    (-np.inf, 0x80), (np.nan, 0), (-0.0, 0), (1e-45, 0), (-1e-45, 0), (3.0, 3), (-7.0, 0xF9),
]
# int4 at scale 1: the two's complement nibble
INT4_CASES = [(0.5, 0), (1.5, 2), (-1.0, 0x0F), (-7.5, 0x08), (-8.0, 0x08), (-9.0, 0x08), (6.5, 6), (7.5, 7),
              (100.0, 7), (np.inf, 7), (-np.inf, 0x08), (np.nan, 0), (-0.0, 0), (2.5, 2), (-2.5, 0x0E)]


@pytest.mark.parametrize("to_type,cases", [("int8", INT8_CASES), ("int4", INT4_CASES)])
@pytest.mark.parametrize("scale,factor", [("1.0", 1.0), ("0.0078125", 2.0**-7), ("4.0", 4.0)])
def test_hand_written_values(path, to_type: str, cases, scale: str, factor: float) -> None:
    # scales that are powers of two take the loop's multiply; x * factor is exact for these inputs
    x = np.array([v for v, _ in cases], F32) * F32(factor)
    assert codes(quantize(x, scale, to_type)) == [c for _, c in cases]


def test_nan_payloads_and_divided_scale(path) -> None:
    # scale 3 is not a power of two: the loop divides. 7.5 / 3 = 2.5 ties to 2; 4.5 / 3 = 1.5 ties to 2
    x = np.concatenate([NAN_PAYLOAD, np.array([7.5, 4.5, -7.5, 382.5, 1e38, -1e38, 1.4e-45], F32)])
    assert codes(quantize(x, "3.0", "int8")) == [0, 0, 0, 2, 2, 0xFE, 127, 127, 0x80, 0]


def test_subnormal_scale_divides(path) -> None:
    # 2**-127 is subnormal: its reciprocal 2**127 is exact, but netdsl only multiplies for normal scales;
    # x / 2**-127 for x = 2**-133 is 2**-6 -> 0, for 2**-128 is 0.5 -> 0 (tie to even), 3 * 2**-128 -> 2; -2**-149 -> -0 -> 0
    x = np.array([2.0**-133, 2.0**-128, 3 * 2.0**-128, 2.0**-120, -(2.0**-126), -(2.0**-149)], F32)
    assert codes(quantize(x, "0x1p-127", "int8")) == [0, 0, 2, 127, 0xFE, 0]


def oracle(x: np.ndarray, scale: np.float32, low: int, high: int, mask: int) -> np.ndarray:
    """An independent formula: float32 IEEE division, clamp, RNE, NaN -> 0, two's complement & mask."""
    with np.errstate(all="ignore"):
        q = np.clip(np.divide(x, scale, dtype=F32), low, high)
        q[np.isnan(q)] = 0
        return (np.rint(q).astype(np.int32) & mask).astype(np.uint8)


@pytest.mark.parametrize("to_type,low,high,mask", [("int8", -128, 127, 0xFF), ("int4", -8, 7, 0x0F)])
@pytest.mark.parametrize("scale", ["0.007874016", "0.0078125", "0.3", "0x1p-127", "3.4e38"])
def test_every_bit_pattern_kind_against_an_oracle_and_numpy(loop, monkeypatch, to_type, low, high, mask,
                                                             scale) -> None:
    rng = np.random.default_rng(abs(hash((to_type, scale))) % 2**32)
    n = (1 << 20) + 13  # several pieces and a ragged tail
    x = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(F32)  # every kind of float32
    x[: n // 2] = (rng.standard_normal(n // 2) * 100).astype(F32)  # values in range, many ties near .5
    with np.errstate(invalid="ignore"):
        x[1::97] = np.rint(x[1::97]) + F32(0.5)
    ours = quantize(x, scale, to_type)
    assert codes(ours) == oracle(x, F32(scale.replace("0x1p-127", str(2.0**-127))), low, high, mask).tolist()
    monkeypatch.setenv("NETDSL_NUMBA", "0")
    assert quantize(x, scale, to_type).tobytes() == ours.tobytes()


def test_taken_only_where_it_applies(loop, monkeypatch) -> None:  # each True below is a call the spy sees
    x = np.ones((4, 8), F32)
    out = np.empty((4, 8), np.int8)
    assert compiled.quantize_per_tensor(x, np.array([2.0], F32), dtypes.INT8, out)
    assert out.tolist() == [[0] * 8] * 4  # 1 / 2 = 0.5 ties to 0
    assert not compiled.quantize_per_tensor(x, np.array([2.0], F32), dtypes.FP8, out)
    assert not compiled.quantize_per_tensor(x[:, ::2], np.array([2.0], F32), dtypes.INT8, out[:, ::2])
    assert not compiled.quantize_per_tensor(x.astype(np.float16), np.array([2.0], F32), dtypes.INT8, out)
    monkeypatch.setenv("NETDSL_NUMBA", "off")
    assert not compiled.quantize_per_tensor(x, np.array([2.0], F32), dtypes.INT8, out)
    monkeypatch.setattr(compiled, "MIN_ELEMENTS", 64)
    monkeypatch.setenv("NETDSL_NUMBA", "1")
    assert not compiled.quantize_per_tensor(x, np.array([2.0], F32), dtypes.INT8, out)


@pytest.mark.parametrize("value,want", [(None, "auto"), ("", "auto"), ("auto", "auto"), ("1", "on"), (" ON", "on"),
                                        ("true", "on"), ("0", "off"), ("no", "off"), ("False", "off")])
def test_numba_setting(monkeypatch, value, want: str) -> None:
    if value is None:
        monkeypatch.delenv("NETDSL_NUMBA", raising=False)
    else:
        monkeypatch.setenv("NETDSL_NUMBA", value)
    assert settings.numba() == want


def test_auto_loads_after_the_break_even_work(monkeypatch) -> None:
    """Unset, a process keeps to NumPy until it has quantized BREAK_EVEN_ELEMENTS elements that way."""
    monkeypatch.delenv("NETDSL_NUMBA", raising=False)
    monkeypatch.setattr(compiled, "_loaded", [])
    monkeypatch.setattr(compiled, "_seen", [0])
    monkeypatch.setattr(compiled, "BREAK_EVEN_ELEMENTS", 100)
    assert [compiled._wanted(40) for _ in range(3)] == [False, False, True]
    monkeypatch.setenv("NETDSL_NUMBA", "0")
    assert not compiled._wanted(40)
    monkeypatch.setenv("NETDSL_NUMBA", "1")
    monkeypatch.setattr(compiled, "_seen", [0])
    assert compiled._wanted(1)


@pytest.mark.parametrize("setting,loaded", [(None, False), ("1", True)])
def test_command_line_loads_numba_only_when_told(numba_kernel, tmp_path, setting, loaded: bool) -> None:
    """One run of a network does not repay numba's load (about 0.4 s): a process that quantized less than
    BREAK_EVEN_ELEMENTS elements does not import numba, unless NETDSL_NUMBA=1."""
    np.save(tmp_path / "x.npy", np.linspace(-300, 300, 1 << 17, dtype=F32))
    (tmp_path / "q.net").write_text(f"input x : float32[{1 << 17}]\nconst s : float32[] = 2.0\n"
                                    "q = quantize(x, s)\noutput q\n")
    probe = ("import sys; from netdsl.cli import main; "
             f"code = main(['run', {str(tmp_path / 'q.net')!r}, '--input', 'x=' + {str(tmp_path / 'x.npy')!r}, "
             "'--backend', 'numpy']); print('numba' in sys.modules, code)")
    env = {k: v for k, v in os.environ.items() if k != "NETDSL_NUMBA"}
    env["PYTHONPATH"] = python_path(ROOT)
    if setting is not None:
        env["NETDSL_NUMBA"] = setting
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip().splitlines()[-1] == f"{loaded} 0"
