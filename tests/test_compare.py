"""``netdsl compare``, ``netdsl test`` and :func:`netdsl.compare.compare_outputs` (docs/compare.md).

Expected values here are written by hand: code positions from the formats' definitions, error minima
worked out on small arrays, exit codes from the contract (0 match, 1 mismatch, 2 usage / unreadable /
nothing to compare)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import netdsl
from netdsl.cli import main
from netdsl.compare import ComparisonError, compare_outputs, value_ranks
from tests.conftest import EXAMPLES, backends

QUANTIZE = """input  x : float32[2, 3]
const  s : float32[] = 0.5
q = quantize(x, s, to_type=fp8)
y = dequantize(q, s)
output q, y
"""
X = np.array([[1.0, -2.0, 0.25], [3.0, 0.0, 100.0]], np.float32)
#: fp8 codes of X / 0.5 = [2, -4, 0.5, 6, 0, 200]: 2 = 0x40, -4 = 0xC8, 0.5 = 0x30, 6 = 0x4C, 0; 200 is halfway
#: between 192 = 1.5 * 2^7 (0x74) and 208 (0x75): the even one, 0x74. So y = q * 0.5 = [1, -2, 0.25, 3, 0, 96].
Q_CODES = np.array([[0x40, 0xC8, 0x30], [0x4C, 0x00, 0x74]], np.uint8)
Y = np.array([[1, -2, 0.25], [3, 0, 96]], np.float32)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "m.net"
    path.write_text(QUANTIZE)
    np.save(tmp_path / "x.npy", X)
    return path


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def reference(tmp_path: Path, **arrays: np.ndarray) -> Path:
    path = tmp_path / "ref.npz"
    np.savez(path, **arrays)
    return path


# --------------------------------------------------------------------------------------------------
# the formats' ordered values, against tables written from their definitions


def test_code_positions_fp4_by_hand():
    # codes 0..7: 0, 0.5, 1, 1.5, 2, 3, 4, 6; 8..15 their negatives; sorted: -6 ... -0.5, 0, 0.5 ... 6 (15 values)
    assert value_ranks("fp4").tolist() == [7, 8, 9, 10, 11, 12, 13, 14, 7, 6, 5, 4, 3, 2, 1, 0]


def test_code_positions_integers_and_e8m0():
    codes = np.arange(256)
    assert np.array_equal(value_ranks("int8"), np.where(codes < 128, codes, codes - 256) + 128)
    nibbles = np.arange(16)
    assert np.array_equal(value_ranks("int4"), np.where(nibbles < 8, nibbles, nibbles - 16) + 8)
    assert np.array_equal(value_ranks("e8m0")[:255], codes[:255]) and value_ranks("e8m0")[255] == -1


def test_code_positions_fp8_by_hand():
    # E4M3FN: positive codes 0x00..0x7E increase with their value; 0x7F/0xFF are NaN; 0x80 is -0. So the 126
    # negative non-zero values come first (0xFE lowest), then zero, then 0x01..0x7E.
    ranks = value_ranks("fp8")
    for code in range(0x7F):
        assert ranks[code] == 126 + code
        assert ranks[0x80 | code] == 126 - code
    assert ranks[0x7F] == ranks[0xFF] == -1
    assert ranks[0x01] - ranks[0x81] == 2  # +-2^-9: one step each side of zero
    assert ranks[0x00] == ranks[0x80]


# --------------------------------------------------------------------------------------------------
# the Python function


def test_exact_equal_and_nan_equals_nan():
    values = np.array([1.0, np.nan, -0.0, np.inf], np.float32)
    report = compare_outputs({"y": values}, {"y": values.copy()}, {"y": "float32"})
    assert report.passed and report.exit_code == 0
    assert report.outputs[0].mismatches == 0 and report.outputs[0].compared == 4


def test_exact_sees_the_sign_of_zero_and_atol_zero_does_not():
    expected, got = {"y": np.array([0.0, 1.0], np.float32)}, {"y": np.array([-0.0, 1.0], np.float32)}
    exact = compare_outputs(expected, got, {"y": "float32"}).outputs[0]
    assert exact.mismatches == 1 and exact.min_atol == 0.0 and exact.histogram == [("sign of 0", 1)]
    assert compare_outputs(expected, got, {"y": "float32"}, atol=0.0).passed


def test_nan_on_one_side_fails_any_tolerance():
    report = compare_outputs({"y": np.array([np.nan, 1.0])}, {"y": np.array([1.0, 1.0], np.float32)},
                             {"y": "float32"}, atol=1e30).outputs[0]
    assert report.mismatches == 1 and report.nan_mismatches == 1 and report.min_atol is None


def test_nan_sign_is_counted_not_a_mismatch():
    report = compare_outputs({"y": np.array([-np.nan], np.float32)}, {"y": np.array([np.nan], np.float32)},
                             {"y": "float32"})
    assert report.passed and report.outputs[0].nan_sign_differences == 1


def test_tolerance_minima_by_hand():
    expected = {"y": np.array([1.0, 2.0, 4.0], np.float32)}
    got = {"y": np.array([1.5, 2.0, 3.0], np.float32)}
    # abs errors 0.5, 0, 1; relative 0.5, 0, 0.25
    report = compare_outputs(expected, got, {"y": "float32"}).outputs[0]
    assert (report.mismatches, report.min_atol, report.min_rtol) == (2, 1.0, 0.5)
    assert (report.max_abs_error, report.max_abs_error_index) == (1.0, [2])
    assert (report.max_rel_error, report.max_rel_error_index) == (0.5, [0])
    assert compare_outputs(expected, got, {"y": "float32"}, atol=0.5).outputs[0].mismatches == 1  # 1 > 0.5
    assert compare_outputs(expected, got, {"y": "float32"}, atol=1.0).passed
    assert compare_outputs(expected, got, {"y": "float32"}, rtol=0.5).passed  # 0.5 <= 0.5 * 1, 1 <= 0.5 * 4
    assert not compare_outputs(expected, got, {"y": "float32"}, rtol=0.49).passed
    # per output, with "" for the rest
    assert compare_outputs(expected, got, {"y": "float32"}, atol={"y": 1.0}).passed
    assert compare_outputs(expected, got, {"y": "float32"}, atol={"": 1.0}).passed
    assert not compare_outputs(expected, got, {"y": "float32"}, atol={"z": 1.0}).passed


def test_relative_error_against_zero_is_infinite():
    report = compare_outputs({"y": np.array([0.0, 2.0])}, {"y": np.array([0.5, 2.0], np.float32)},
                             {"y": "float32"}).outputs[0]
    assert report.max_rel_error == np.inf and report.min_atol == 0.5


def test_codes_distance_and_histogram():
    # fp8 codes: 0x40 = 2 vs 0x41 = 2.25 (1 step); 0x30 = 0.5 vs 0x32 (2 steps); 0x4C vs 0x4F (3);
    # 0x01 vs 0x81 (2^-9 vs -2^-9: 2 steps); 0x00 vs 0x80 (+0 / -0: 0 steps, still a mismatch); NaN vs 6
    expected = np.array([0x40, 0x30, 0x4C, 0x01, 0x00, 0x7F, 0x20], np.uint8)
    got = np.array([0x41, 0x32, 0x4F, 0x81, 0x80, 0x4C, 0x20], np.uint8).view(ml_dtypes.float8_e4m3fn)
    report = compare_outputs({"q": expected}, {"q": got}, {"q": "fp8"}).outputs[0]
    assert report.kind == "codes" and report.mismatches == 6 and report.nan_mismatches == 1
    assert (report.max_code_distance, report.max_code_distance_index) == (3, [2])
    assert report.histogram == [("0 (+0/-0)", 1), ("1", 1), ("2", 2), ("3-4", 1), ("NaN vs number", 1)]
    first = report.first[0]
    assert (first.index, first.expected, first.got, first.expected_code, first.got_code) == ((0,), 2.0, 2.25, 0x40, 0x41)


def test_nan_codes_of_either_sign_are_equal():
    got = np.array([0x7F], np.uint8).view(ml_dtypes.float8_e4m3fn)
    report = compare_outputs({"q": np.array([0xFF], np.uint8)}, {"q": got}, {"q": "fp8"})
    assert report.passed and report.outputs[0].nan_sign_differences == 1


def test_reference_forms_values_codes_packed():
    got = {"w": np.array([[1, -8, 7]], np.int8).astype(ml_dtypes.int4)}
    types = {"w": netdsl.ir.TensorType(netdsl.dtypes.INT4, (1, 3))}
    values = {"w": np.array([[1.0, -8.0, 7.0]], np.float32)}
    codes = {"w": np.array([[0x1, 0x8, 0x7]], np.uint8)}
    packed = {"w": np.array([0x81, 0x07], np.uint8)}  # element 0 in the low nibble
    for reference_ in (values, codes, packed):
        assert compare_outputs(reference_, got, types).passed, reference_
    assert compare_outputs(codes, got, types, codes=True).passed
    assert compare_outputs(values, got, types, codes=True).passed  # other arrays are values either way
    with pytest.raises(ComparisonError, match=re.escape("has shape [3], expected [2] for int4 codes")):
        compare_outputs({"w": np.array([0x81, 0x07, 0], np.uint8)}, got, types)
    saved = {"w": np.array([[1, -8, 7]], np.int8).astype(ml_dtypes.int4).view(np.void)}  # as np.save writes it
    assert saved["w"].dtype.str == "|V1" and compare_outputs(saved, got, types).passed
    with pytest.raises(ComparisonError, match="cannot represent exactly"):
        compare_outputs({"w": np.array([[1.5, 0, 0]], np.float32)}, got, types)
    with pytest.raises(ComparisonError, match="codes are 0..15"):
        compare_outputs({"w": np.array([[0x10, 0, 0]], np.uint8)}, got, types)


def test_bfloat16_raw_bits_with_codes():
    got = {"y": np.array([1.0, -2.0], np.float32).astype(ml_dtypes.bfloat16)}
    raw = {"y": np.array([0x3F80, 0xC000], np.uint16)}
    assert compare_outputs(raw, got, {"y": "bfloat16"}, codes=True).passed


def test_one_sided_and_nothing_in_common():
    report = compare_outputs({"a": np.zeros(2), "b": np.zeros(1)}, {"a": np.zeros(2, np.float32), "c": np.ones(1)},
                             {"a": "float32", "c": "float32"})
    assert report.passed and report.only_expected == ["b"] and report.only_got == ["c"]
    assert compare_outputs({"b": np.zeros(1)}, {"c": np.zeros(1, np.float32)}, {"c": "float32"}).exit_code == 2


def test_shape_difference_is_a_mismatch():
    report = compare_outputs({"y": np.zeros((2, 2))}, {"y": np.zeros(4, np.float32)}, {"y": "float32"})
    assert report.exit_code == 1 and "shape differs" in report.format()


def test_input_and_scale_behind_a_mismatch():
    net = netdsl.loads(QUANTIZE)
    got = net.run({"x": X}, backend="numpy")
    expected = dict(got, q=Q_CODES.copy())
    expected["q"][1, 2] = 0x75  # 208 instead of 192
    report = compare_outputs(expected, got, network=net, inputs={"x": X})
    q = {output.name: output for output in report.outputs}["q"]
    assert q.mismatches == 1 and q.first[0].index == (1, 2)
    assert q.first[0].behind == {"input": 100.0, "scale": 0.5}
    assert q.max_code_distance == 1


# --------------------------------------------------------------------------------------------------
# the command line


def test_cli_exact_match_exit_0(model, tmp_path, capsys):
    ref = reference(tmp_path, q=Q_CODES, y=Y)
    code, out, _ = cli(capsys, "compare", model, "--input", f"x={tmp_path / 'x.npy'}", "--load-outputs", ref,
                       "--backend", "numpy")
    assert code == 0, out
    assert "q: fp8[2, 3], exact: all 6 equal" in out and out.rstrip().endswith("PASS: 2 output(s) match")


def test_cli_mismatch_exit_1_and_json(model, tmp_path, capsys):
    y = Y.copy()
    y[1, 2] = 100
    ref = reference(tmp_path, q=Q_CODES, y=y, extra=np.zeros(1))
    report_path = tmp_path / "report.json"
    code, out, _ = cli(capsys, "compare", model, "--input", f"x={tmp_path / 'x.npy'}", "--load-outputs", ref,
                       "--backend", "numpy", "--json", report_path)
    assert code == 1
    assert "y: float32[2, 3], exact: 1 of 6 differ" in out
    assert "would pass with --atol y:4 or --rtol y:0.04" in out
    assert "[1, 2]: expected 100, got 96 (input 192, scale 0.5)" in out
    assert "only in" in out and "extra" in out
    document = json.loads(report_path.read_text())
    assert set(document) == {"model", "netdsl_compare", "expected", "got", "passed", "exit_code", "outputs",
                             "only_expected", "only_got"}
    assert (document["passed"], document["exit_code"], document["only_expected"]) == (False, 1, ["extra"])
    y_report = {o["name"]: o for o in document["outputs"]}["y"]
    assert y_report["mismatches"] == 1 and y_report["max_abs_error"] == 4.0 and y_report["min_atol"] == 4.0
    assert y_report["first_mismatches"][0] == {"index": [1, 2], "expected": 100.0, "got": 96.0,
                                               "input": 192.0, "scale": 0.5}
    assert y_report["histogram"] == [{"bin": "[1e0, 1e1)", "count": 1}]


def test_cli_tolerances(model, tmp_path, capsys):
    y = Y.copy()
    y[1, 2] = 100
    ref = reference(tmp_path, y=y)
    base = ["compare", model, "--input", f"x={tmp_path / 'x.npy'}", "--load-outputs", ref]
    assert cli(capsys, *base, "--atol", "4")[0] == 0
    assert cli(capsys, *base, "--atol", "y:4")[0] == 0
    assert cli(capsys, *base, "--atol", "3.9")[0] == 1
    assert cli(capsys, *base, "--rtol", "y:0.04")[0] == 0  # 4 <= 0.04 * 100
    assert cli(capsys, *base, "--rtol", "y:0.039")[0] == 1
    code, _, err = cli(capsys, *base, "--atol", "nope:1")
    assert code == 2 and "not an output of the model" in err
    assert cli(capsys, *base, "--atol", "-1")[0] == 2
    assert cli(capsys, *base, "--rtol", "y:abc")[0] == 2


def test_cli_json_nan_as_string(model, tmp_path, capsys):
    y = Y.copy()
    y[1, 1] = np.nan
    ref = reference(tmp_path, y=y)
    path = tmp_path / "r.json"
    assert cli(capsys, "compare", model, "--input", f"x={tmp_path / 'x.npy'}", "--load-outputs", ref,
               "--json", path)[0] == 1
    first = json.loads(path.read_text())["outputs"][0]["first_mismatches"][0]
    assert first["expected"] == "nan" and first["got"] == 0.0


@pytest.mark.parametrize("args,message", [
    ([], "compare with one of"),
    (["--load-outputs", "REF", "--backend", "numpy", "--backend", "numpy"], "compare with one of"),
    (["--backend", "numpy", "--backend", "numpy", "--backend", "numpy"], "give one backend, or two"),
    (["--load-outputs", "missing.npz"], "cannot read reference outputs 'missing.npz': no such file"),
    (["--backend", "numpy", "--backend", "numpy", "--codes"], "--codes says how the --load-outputs file"),
])
def test_cli_usage_errors(model, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    reference(tmp_path, q=Q_CODES)
    args = [a.replace("REF", str(tmp_path / "ref.npz")) for a in args]
    code, out, err = cli(capsys, "compare", model, *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_cli_nothing_in_common_exit_2(model, tmp_path, capsys):
    ref = reference(tmp_path, other=np.zeros(3))
    code, out, _ = cli(capsys, "compare", model, "--load-outputs", ref)
    assert code == 2 and "nothing to compare" in out and "only in" in out


def test_cli_value_the_type_cannot_hold_exit_2(model, tmp_path, capsys):
    ref = reference(tmp_path, q=np.full((2, 3), 1.1, np.float32))
    code, _, err = cli(capsys, "compare", model, "--load-outputs", ref)
    assert code == 2 and "output 'q' holds 1.10000002, which fp8 cannot represent exactly" in err


def test_cli_codes_reference(model, tmp_path, capsys):
    ref = reference(tmp_path, q=Q_CODES)
    base = ["compare", model, "--input", f"x={tmp_path / 'x.npy'}", "--load-outputs", ref]
    assert cli(capsys, *base)[0] == 0  # uint8 for a quantized output: codes
    assert cli(capsys, *base, "--codes")[0] == 0


@pytest.mark.parametrize("second", backends())
def test_cli_two_backends(model, capsys, second):
    code, out, _ = cli(capsys, "compare", model, "--backend", "numpy", "--backend", second)
    assert code == 0 and out.rstrip().endswith("PASS: 2 output(s) match")


def test_cli_case(capsys):
    code, out, _ = cli(capsys, "compare", EXAMPLES / "quantize.net", "--case", EXAMPLES / "quantize.case.yaml")
    assert code == 0 and "out: float32[1, 1, 3, 3], atol 0.01: all 9 within" in out
    code, _, err = cli(capsys, "compare", EXAMPLES / "quantize.net", "--case", EXAMPLES / "quantize.case.yaml",
                       "--seed", "1", "--inputs", "x.npz")
    assert code == 2 and "--case gives the inputs" in err
    # a tolerance on the command line overrides the case's
    code, out, _ = cli(capsys, "compare", EXAMPLES / "quantize.net", "--case", EXAMPLES / "quantize.case.yaml",
                       "--atol", "0.005")
    assert code == 1 and "1 of 9 differ" in out


# --------------------------------------------------------------------------------------------------
# netdsl test


def test_test_runs_every_example(capsys, monkeypatch):
    monkeypatch.chdir(EXAMPLES.parent)
    code, out, _ = cli(capsys, "test")
    lines = out.strip().splitlines()
    cases = sorted(EXAMPLES.glob("*.case.yaml"))
    assert code == 0 and lines[-1] == f"{len(cases)} cases: {len(cases)} passed"
    assert all(line.startswith("pass ") for line in lines[:-1]) and len(lines) == len(cases) + 1


def test_test_doc_example_says_it_matched(capsys):
    code, out, _ = cli(capsys, "test", EXAMPLES / "quantize.case.yaml")
    first, last = out.strip().splitlines()
    assert code == 0 and first.startswith("pass ") and "out: max error 0.00787 (atol 0.01)" in first
    assert "TensorRT operator docs, Quantize, example 'Quantize'" in first and last == "1 case: 1 passed"


def test_test_failing_and_broken_cases(tmp_path, capsys):
    for suffix in (".net", ".case.yaml"):
        shutil.copy(EXAMPLES / f"quantize{suffix}", tmp_path / f"good{suffix}")
        shutil.copy(EXAMPLES / f"quantize{suffix}", tmp_path / f"bad{suffix}")
    text = (tmp_path / "bad.case.yaml").read_text().replace("[0.67, 0.11, -1.0]", "[0.67, 0.11, -2.0]")
    (tmp_path / "bad.case.yaml").write_text(text)
    (tmp_path / "orphan.case.yaml").write_text("source: nowhere\nexpected: {y: {values: [1.0]}}\n")
    (tmp_path / "broken.case.yaml").write_text("source: x\nexpected: {out: {values: [1], tol: 2}}\n")
    shutil.copy(EXAMPLES / "quantize.net", tmp_path / "broken.net")
    code, out, _ = cli(capsys, "test", tmp_path)
    lines = out.strip().splitlines()
    assert code == 1 and lines[-1] == "4 cases: 1 passed, 3 failed"
    assert any(line.startswith("FAIL  ") and "bad.case.yaml" in line and "out: max error 0.992" in line
               for line in lines)
    assert any(line.startswith("pass  ") and "good.case.yaml" in line for line in lines)
    assert any(line.startswith("error ") and "orphan.case.yaml: no model beside it" in line for line in lines)
    assert any(line.startswith("error ") and "takes 'values' and an optional 'atol'" in line for line in lines)
    assert "[0, 0, 2, 2]: expected -2, got -1.00787401" in out


def test_test_usage_errors(tmp_path, capsys):
    code, _, err = cli(capsys, "test", tmp_path / "nope")
    assert code == 2 and "no such file or folder" in err
    code, _, err = cli(capsys, "test", tmp_path)
    assert code == 2 and "no case files" in err


@pytest.mark.parametrize("text,message", [
    ("source: s\nexpected: {y: {values: [1.0]}}\nmodel: m.net\n", "unknown key(s) model"),
    ("expected: {y: {values: [1.0]}}\n", "'source' must say where"),
    ("source: s\n", "checks no output"),
    ("source: s\nexpected: {y: {values: [1.0], atol: big}}\n", "atol must be a number"),
    ("source: s\nexpected: {y: {values: [1.0], atol: -1.0}}\n", "atol must be >= 0"),
    ("source: s\nexpected: {y: {values: [[1.0], 2.0]}}\n", "not an array of numbers"),
    ("source: s\nexpected: {y: {values: {load: missing.npy}}}\n", "'missing.npy' no such file"),
    ("source: s\nexpected: {y: {values: {load: y.npy}}}\n", "'y.npy' has shape [3], expected [2, 3]"),
    ("source: s\nexpected: {z: {values: {load: y.npy}}}\n", "expected 'z': the model has no such tensor"),
    ("source: s\ninputs: {x: {load: y.npy}}\nexpected: {y: {values: [1.0]}}\n", "'y.npy' has shape [3]"),
    ("source: s\nexpected: {y: {values: {file: a.npy}}}\n", "an array is a nested list or {load: FILE.npy}"),
    ("source: s\ninputs: [1, 2]\nexpected: {y: {values: [1.0]}}\n", "inputs: expected a mapping"),
    ("source: [unclosed\n", "not a YAML case file"),
])
def test_case_format_errors(tmp_path, text, message):
    from netdsl.cases import CaseError, load_case

    path = tmp_path / "c.case.yaml"
    path.write_text(text)
    np.save(tmp_path / "y.npy", np.zeros(3, np.float32))
    with pytest.raises(CaseError, match=re.escape(message)):
        load_case(path, netdsl.loads(QUANTIZE))


def test_the_api_names():
    assert netdsl.compare_outputs is compare_outputs and netdsl.Report.__name__ == "Report"


def test_readme_first_command_runs_the_doc_example(capsys, monkeypatch):
    readme = (EXAMPLES.parent / "README.md").read_text()
    command = readme.split("```sh\n", 1)[1].split("\n", 1)[0].split("&&")[-1].split()
    assert command[:2] == ["netdsl", "test"]
    monkeypatch.chdir(EXAMPLES.parent)
    code, out, _ = cli(capsys, *command[1:])
    assert code == 0 and "pass " in out and "TensorRT operator docs" in out


def test_case_beside_an_onnx_model(tmp_path, capsys):
    pytest.importorskip("onnx", reason="the onnx extra is not installed")
    assert cli(capsys, "export", EXAMPLES / "quantize.net", "-o", tmp_path / "quantize.onnx")[0] == 0
    shutil.copy(EXAMPLES / "quantize.case.yaml", tmp_path)
    code, out, _ = cli(capsys, "test", tmp_path)
    assert code == 0 and "out: max error 0.00787 (atol 0.01)" in out
    code, out, _ = cli(capsys, "compare", tmp_path / "quantize.onnx", "--case", tmp_path / "quantize.case.yaml")
    assert code == 0 and "all 9 within" in out


def _polygraphy_outputs(path: Path, outputs: dict[str, np.ndarray]) -> None:
    """A `polygraphy run --trt --save-outputs` file, built by hand: RunResults of one runner and one
    IterationResult, each array np.save'd and base64-encoded (polygraphy/json/serde.py)."""
    import base64
    import io

    def encoded(array: np.ndarray) -> dict:
        stream = io.BytesIO()
        np.save(stream, array, allow_pickle=False)
        return {"array": base64.b64encode(stream.getvalue()).decode(), "polygraphy_class": "ndarray"}

    iteration = {"outputs": {name: encoded(a) for name, a in outputs.items()}, "runner_name": "trt-runner-N0",
                 "polygraphy_class": "IterationResult"}
    path.write_text(json.dumps({"lst": [["trt-runner-N0", [iteration]]], "polygraphy_class": "RunResults"}))


def test_cli_polygraphy_outputs(model, tmp_path, capsys):
    path = tmp_path / "engine.json"
    y = Y.copy()
    y[0, 0] = 1.5
    _polygraphy_outputs(path, {"q": Q_CODES, "y": y})
    code, out, _ = cli(capsys, "compare", model, "--input", f"x={tmp_path / 'x.npy'}", "--load-outputs", path)
    assert code == 1 and "q: fp8[2, 3], exact: all 6 equal" in out and "y: float32[2, 3], exact: 1 of 6 differ" in out
    _polygraphy_outputs(path, {"q": Q_CODES, "y": Y})
    assert cli(capsys, "compare", model, "--input", f"x={tmp_path / 'x.npy'}", "--load-outputs", path)[0] == 0


@pytest.mark.parametrize("suffix", [".safetensors", ".json", ".npz"])
@pytest.mark.parametrize("codes", [False, True])
def test_cli_reference_saved_by_run(model, tmp_path, capsys, suffix, codes):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors", reason="the safetensors extra is not installed")
    ref = tmp_path / f"ref{suffix}"
    inputs = ["--input", f"x={tmp_path / 'x.npy'}"]
    assert cli(capsys, "run", model, *inputs, "--save", ref, *(["--codes"] if codes else []))[0] == 0
    code, out, err = cli(capsys, "compare", model, *inputs, "--load-outputs", ref, *(["--codes"] if codes else []))
    assert code == 0, out + err


def test_cli_mark_compares_a_layer_output(tmp_path, capsys):
    """--mark q makes the intermediate q an output, so the reference's q is compared too (as run --mark)."""
    path = tmp_path / "m.net"
    path.write_text(QUANTIZE.replace("output q, y", "output y"))
    np.save(tmp_path / "x.npy", X)
    given = ("--input", f"x={tmp_path / 'x.npy'}", "--backend", "numpy")
    code, out, _ = cli(capsys, "compare", path, *given, "--load-outputs", reference(tmp_path, q=Q_CODES, y=Y),
                       "--mark", "q")
    assert code == 0 and "q: fp8[2, 3], exact: all 6 equal" in out, out
    wrong = Q_CODES.copy()
    wrong[1, 2] = 0x75
    code, out, _ = cli(capsys, "compare", path, *given, "--load-outputs", reference(tmp_path, q=wrong, y=Y),
                       "--mark", "all")
    assert code == 1 and "q: fp8[2, 3], exact: 1 of 6 differ" in out, out
    code, _, err = cli(capsys, "compare", path, *given, "--load-outputs", reference(tmp_path, y=Y), "--mark", "z")
    assert code == 2 and err.startswith("netdsl: error: --mark: "), err


def test_test_trust_paths(tmp_path, capsys):
    """A case's model that load()s a file outside its folder: refused unless --trust-paths (as every command
    that reads a model)."""
    np.save(tmp_path / "w.npy", np.array([3.0, 4.0], np.float32))
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "m.net").write_text('const w : float32[2] = load("../w.npy")\noutput w\n')
    (tmp_path / "cases" / "m.case.yaml").write_text("source: by hand\nexpected: {w: {values: [3.0, 4.0]}}\n")
    code, out, _ = cli(capsys, "test", tmp_path / "cases")
    assert code == 1 and "outside the model's folder" in out, out
    code, out, _ = cli(capsys, "test", tmp_path / "cases", "--trust-paths")
    assert code == 0 and out.strip().splitlines()[-1] == "1 case: 1 passed", out
