"""Conformance: every example in examples/ against its case file (examples/README.md has the format).

For each ``examples/NAME.case.yaml``: both forms of the network (``NAME.net``, ``NAME.yaml``), on every
backend (numpy always; cupy where it is available, otherwise a skip that says why), through the Python
API; and once through the command line (``check`` on both forms, ``run --save`` on the text form).
The expected values come from the TensorRT docs, observed TensorRT runs, or tests/oracle.py, never from
netdsl itself; comparisons are exact (value, NaN position, sign of zero) unless the case gives ``atol``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl import cases
from netdsl.cli import main as cli_main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CASES = sorted(EXAMPLES.glob("*.case.yaml"))
NAMES = [path.name[: -len(".case.yaml")] for path in CASES]
FORMS = ("net", "yaml")


# --------------------------------------------------------------------------------------------------
# reading case files (netdsl/cases.py, the reader `netdsl test` uses)


def load_case(name: str) -> dict:
    case = cases.load_case(EXAMPLES / f"{name}.case.yaml", netdsl.load(EXAMPLES / f"{name}.net"))
    return {"source": case.source, "inputs": case.inputs,
            "expected": {output: (values, case.atol.get(output)) for output, values in case.expected.items()}}


# --------------------------------------------------------------------------------------------------
# comparing


def mismatches(got: np.ndarray, want: np.ndarray, atol: float | None) -> list[str]:
    """Why ``got`` isn't ``want``: shape, NaN positions, values (exact: incl. the sign of zero)."""
    if got.shape != want.shape:
        return [f"shape {list(got.shape)}, expected {list(want.shape)}"]
    got_nan, want_nan = np.isnan(got), np.isnan(want)
    if atol is None:
        bad = (got_nan != want_nan) | (~got_nan & ~want_nan & ((got != want) | (np.signbit(got) != np.signbit(want))))
    else:
        with np.errstate(invalid="ignore"):
            close = (np.abs(got - want) <= atol) | (got == want)  # got == want: equal infinities
        bad = (got_nan != want_nan) | (~got_nan & ~want_nan & ~close)
    return [f"at {list(index)}: got {got[index]!r}, expected {want[index]!r}"
            for index in zip(*np.nonzero(bad))]


def assert_matches(outputs: dict, expected: dict, what: str) -> None:
    problems = []
    for name, (want, atol) in expected.items():
        assert name in outputs, f"{what}: no output '{name}' (outputs: {sorted(outputs)})"
        got = np.asarray(outputs[name], dtype=np.float64)
        found = mismatches(got, want, atol)
        if found:
            tolerance = "exactly" if atol is None else f"within {atol}"
            problems.append(f"{name}: {len(found)} value(s) differ ({tolerance}); first: " + "; ".join(found[:5]))
    assert not problems, f"{what}:\n  " + "\n  ".join(problems)


def test_comparison_is_exact_about_zero_sign_and_nan():
    plus, minus, nan = np.array([0.0]), np.array([-0.0]), np.array([np.nan])
    assert mismatches(plus, minus, None) and not mismatches(minus, minus, None)
    assert not mismatches(nan, nan, None) and mismatches(nan, plus, None) and mismatches(nan, plus, 0.1)
    assert not mismatches(np.array([np.inf]), np.array([np.inf]), 0.01)
    assert not mismatches(np.array([1.004]), np.array([1.0]), 0.01) and mismatches(np.array([1.02]), np.array([1.0]), 0.01)


# --------------------------------------------------------------------------------------------------
# the examples are complete


def test_every_example_has_both_forms_and_a_case():
    models = {path.stem for path in EXAMPLES.glob("*.net")}
    yamls = {path.stem for path in EXAMPLES.glob("*.yaml") if not path.name.endswith(".case.yaml")}
    assert models == yamls == set(NAMES), (models ^ set(NAMES)) | (yamls ^ set(NAMES))
    assert len(NAMES) >= 12


@pytest.mark.parametrize("name", NAMES)
def test_forms_agree_and_case_fits(name):
    """Both forms load to the same checked graph, and the case feeds every input and checks outputs."""
    nets = {form: netdsl.load(EXAMPLES / f"{name}.{form}") for form in FORMS}
    assert nets["net"].describe() == nets["yaml"].describe()
    case = load_case(name)
    net = nets["net"]
    assert set(case["inputs"]) == set(net.inputs), "the case must give every network input"
    assert set(case["expected"]) <= set(net.outputs), "the case checks outputs the network doesn't have"
    for input_name, value in case["inputs"].items():
        assert value.shape == net.inputs[input_name].shape, input_name
    for output_name, (value, _) in case["expected"].items():
        assert value.shape == net.outputs[output_name].shape, output_name


# --------------------------------------------------------------------------------------------------
# the Python API, every form, every backend


def _backend_param(name: str):
    if name == "numpy":
        return name
    try:
        from netdsl.backends import get_backend

        get_backend(name)
    except Exception as error:  # noqa: BLE001 - any failure to get it means: not available here
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return pytest.param(name, marks=pytest.mark.skip(reason=f"backend {name} not available: {reason}"))
    return name


BACKENDS = [_backend_param("numpy"), _backend_param("cupy")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", NAMES)
def test_example(name, form, backend):
    case = load_case(name)
    net = netdsl.load(EXAMPLES / f"{name}.{form}")
    outputs = net.run(cases.feed(case["inputs"], net), backend=backend)
    assert_matches(outputs, case["expected"], f"{name}.{form} on {backend} ({case['source']})")


# --------------------------------------------------------------------------------------------------
# the command line


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", NAMES)
def test_cli_check(name, form, capsys):
    assert cli_main(["check", str(EXAMPLES / f"{name}.{form}")]) == 0
    assert capsys.readouterr().out.strip() == "ok"


@pytest.mark.parametrize("name", NAMES)
def test_cli_run_save(name, tmp_path, capsys):
    case = load_case(name)
    model = EXAMPLES / f"{name}.net"
    args = ["run", str(model), "--save", str(tmp_path / "out.npz")]
    if case["inputs"]:
        np.savez(tmp_path / "inputs.npz", **cases.feed(case["inputs"], netdsl.load(model)))
        args += ["--inputs", str(tmp_path / "inputs.npz")]
    assert cli_main(args) == 0, capsys.readouterr().err
    with np.load(tmp_path / "out.npz", allow_pickle=False) as saved:
        outputs = {key: saved[key] for key in saved.files}
    assert set(outputs) == set(netdsl.load(model).outputs)
    assert_matches(outputs, case["expected"], f"netdsl run {model.name} --save")
