"""Comparing outputs: a run against reference outputs, or two backends (docs/compare.md).

:func:`compare_outputs` compares every output present on both sides and returns a :class:`Report`:

- Exact by default: bit for bit (the sign of zero counts), NaN equals NaN whatever its sign (NaNs whose
  sign differs are counted apart, and named when a producer rule explains them). With a tolerance
  (``atol``, ``rtol``, per output or for all), an element is within it where
  ``|got - expected| <= atol`` or ``|got - expected| <= rtol * |expected|`` (Polygraphy's rule); NaN only
  matches NaN, and an infinity only itself.
- Quantized outputs (int8, int4, fp8, fp4, e8m0) are compared as codes: how many differ, and the
  largest distance in steps along the format's ordered values (+0 and -0 are one value, so they are 0
  steps apart). Tolerances apply to their values.
- Float outputs: how many differ, the largest absolute and relative errors and where, and the
  smallest ``atol`` (alone) and ``rtol`` (alone) that would pass.
- A text histogram of the errors, the first mismatches with index, expected and got and, given the
  network and its inputs, the input value and scale behind them (:func:`netdsl.producers.context`) and
  the known producer differences that explain them (:func:`netdsl.producers.explain`).

A reference array may hold exact values in any standard dtype, netdsl's storage types (``ml_dtypes``,
also as ``np.save`` writes them), or raw codes: ``uint8`` for a quantized output is always read as codes
(4-bit codes one per element or packed two per byte, ONNX's layout); with ``codes=True`` a ``uint16``
array for a bfloat16 output holds its raw bits too. Other arrays are values either way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from netdsl import dtypes
from netdsl.dtypes import DType
from netdsl.ir import TensorType

#: how many mismatches a report lists
FIRST = 5
#: the width of the longest histogram bar
BAR = 40

Tolerance = float | Mapping[str, float] | None


class ComparisonError(ValueError):
    """A side that can't be compared as the output's type (a value the type can't hold, a bad code)."""


# --------------------------------------------------------------------------------------------------
# the formats' ordered values


def _is_coded(dtype: DType) -> bool:
    """Compared as codes: the quantized types and e8m0."""
    return not dtype.is_float


@cache
def value_ranks(name: str) -> np.ndarray:
    """For each code of a quantized type (int64 array indexed by the uint8 code): its position among the
    format's distinct values in increasing order (+0 and -0 one value), -1 for NaN codes."""
    dtype = dtypes.lookup(name)
    codes = np.arange(16 if dtype.bits == 4 else 256, dtype=np.uint8)
    values = dtypes.decode(dtypes.from_codes(codes, dtype), dtype).astype(np.float64)
    nan = np.isnan(values)
    ranks = np.searchsorted(np.unique(values[~nan]), values).astype(np.int64)
    ranks[nan] = -1
    return ranks


# --------------------------------------------------------------------------------------------------
# one side of a comparison: exact values (float64) and, for quantized types, codes


@dataclass
class Side:
    values: np.ndarray  # float64, NaN signs kept
    codes: np.ndarray | None  # uint8 codes (4-bit types one per element) for quantized types


def _fp8_nan_sign(codes: np.ndarray, values: np.ndarray, dtype: DType) -> np.ndarray:
    if dtype.name == "fp8":
        codes = np.where(np.isnan(values) & np.signbit(values), codes | np.uint8(0x80), codes)
    return codes


def side(array: Any, dtype: DType, shape: tuple[int, ...] | None = None, codes: bool = False) -> Side:
    """One side's array as the output's ``dtype`` and ``shape`` (default: the array's; see the module
    docstring for what is accepted); ComparisonError when it can't be. Raw codes and ``np.save``'s raw bytes
    of ``ml_dtypes`` arrays are read as :func:`netdsl.files.interpret` reads a file's array."""
    from netdsl import files
    from netdsl.arrays import MismatchError

    array = np.asarray(array)
    if array.dtype.hasobject:
        raise ComparisonError(f"has dtype {array.dtype}, which holds no numbers")
    shape = tuple(array.shape) if shape is None else tuple(shape)
    code_dtype = np.uint16 if dtype.bits == 16 else np.uint8  # raw codes: uint8, uint16 for bfloat16
    as_codes = files.has_codes(dtype) and array.dtype == code_dtype and (codes or not dtype.is_float)
    try:
        if as_codes and dtype.bits == 4 and array.shape == shape and array.dtype == np.uint8:
            if np.any(array > 0x0F):  # one code per element, as dtypes.to_codes gives them
                raise ComparisonError(f"holds code {int(array.max())}; {dtype.name} codes are 0..15 (or packed "
                                      f"two per byte in a 1-D array)")
            array = dtypes.from_codes(np.ascontiguousarray(array), dtype)
        elif as_codes or array.dtype.type is np.void:
            tensor_type = TensorType(dtype, shape)
            files.check_header(array.shape, array.dtype, tensor_type, as_codes)
            array = files.interpret(array, tensor_type, as_codes)
    except (MismatchError, ValueError) as error:
        if isinstance(error, ComparisonError):
            raise
        raise ComparisonError(str(error)) from None
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype != dtype.storage and array.dtype.kind not in "fiub":
        raise ComparisonError(f"has dtype {array.dtype}, which holds no numbers")
    if not _is_coded(dtype):
        return Side(array.astype(np.float64), None)
    stored = array if array.dtype == dtype.storage else _exact(array, dtype)
    raw_codes = dtypes.to_codes(stored, dtype)
    values = dtypes.decode(stored, dtype).astype(np.float64)
    if array.dtype.kind == "f":  # a NaN's sign as the file wrote it
        values = np.where(np.isnan(values), array.astype(np.float64), values)
        raw_codes = _fp8_nan_sign(raw_codes, values, dtype)
    return Side(values, raw_codes)


def _exact(array: np.ndarray, dtype: DType) -> np.ndarray:
    values = array.astype(np.float64)
    exact = dtypes.representable(values, dtype)
    if not exact.all():
        raise ComparisonError(f"holds {_g(values[~exact].flat[0])}, which {dtype.name} cannot represent exactly "
                              f"(give exact values or raw uint8 codes)")
    if dtype.name == "e8m0":
        return dtypes.e8m0_round_up(np.where(np.isnan(values), np.nan, np.abs(values)).astype(np.float32))
    return dtypes.encode(values.astype(np.float32), dtype)


# --------------------------------------------------------------------------------------------------
# the report


@dataclass
class Mismatch:
    index: tuple[int, ...]
    expected: float
    got: float
    expected_code: int | None = None
    got_code: int | None = None
    behind: dict[str, float] = field(default_factory=dict)  # input and scale (or amax), where known

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": list(self.index), "expected": _json_number(self.expected),
                                 "got": _json_number(self.got)}
        if self.expected_code is not None:
            entry.update(expected_code=self.expected_code, got_code=self.got_code)
        entry.update((key, _json_number(value)) for key, value in self.behind.items())
        return entry


@dataclass
class OutputReport:
    """The comparison of one output. Error statistics are None where there is nothing to measure."""

    name: str
    type: str  # the netdsl type name
    shape: list[int]
    expected_shape: list[int]
    kind: str  # "codes" or "values"
    atol: float | None  # None, None: exact
    rtol: float | None
    compared: int = 0
    mismatches: int = 0
    nan_mismatches: int = 0  # NaN on one side only
    nan_sign_differences: int = 0  # NaN on both sides, signs differ (not a mismatch)
    max_code_distance: int | None = None
    max_code_distance_index: list[int] | None = None
    max_abs_error: float | None = None
    max_abs_error_index: list[int] | None = None
    max_rel_error: float | None = None
    max_rel_error_index: list[int] | None = None
    min_atol: float | None = None
    min_rtol: float | None = None
    histogram: list[tuple[str, int]] = field(default_factory=list)
    first: list[Mismatch] = field(default_factory=list)
    causes: list[Any] = field(default_factory=list)  # netdsl.producers.Cause
    unexplained: int | None = None

    @property
    def exact(self) -> bool:
        return self.atol is None and self.rtol is None

    @property
    def passed(self) -> bool:
        return self.shape == self.expected_shape and self.mismatches == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "type": self.type, "shape": self.shape, "expected_shape": self.expected_shape,
            "kind": self.kind, "exact": self.exact, "atol": self.atol, "rtol": self.rtol,
            "passed": self.passed, "compared": self.compared, "mismatches": self.mismatches,
            "nan_mismatches": self.nan_mismatches, "nan_sign_differences": self.nan_sign_differences,
            "max_code_distance": self.max_code_distance, "max_code_distance_index": self.max_code_distance_index,
            "max_abs_error": _json_number(self.max_abs_error), "max_abs_error_index": self.max_abs_error_index,
            "max_rel_error": _json_number(self.max_rel_error), "max_rel_error_index": self.max_rel_error_index,
            "min_atol": _json_number(self.min_atol), "min_rtol": _json_number(self.min_rtol),
            "histogram": [{"bin": label, "count": count} for label, count in self.histogram],
            "first_mismatches": [m.to_dict() for m in self.first],
            "causes": [{"class": c.key, "title": c.title, "who": c.who, "explains": c.explains, "of": c.of,
                        "what": c.what} for c in self.causes],
            "unexplained": self.unexplained,
        }

    def format(self) -> str:
        shape = ", ".join(map(str, self.shape))
        how = "exact" if self.exact else ", ".join(
            f"{k} {_g(v)}" for k, v in (("atol", self.atol), ("rtol", self.rtol)) if v is not None)
        head = f"{self.name}: {self.type}[{shape}], {how}"
        if self.shape != self.expected_shape:
            return f"{head}: shape differs, expected [{', '.join(map(str, self.expected_shape))}]"
        if not self.mismatches:
            lines = [f"{head}: all {self.compared} equal" if self.exact else f"{head}: all {self.compared} within"]
        else:
            lines = [f"{head}: {self.mismatches} of {self.compared} differ"
                     + (f" ({self.nan_mismatches} NaN on one side only)" if self.nan_mismatches else "")]
        if self.max_code_distance:
            lines.append(f"  largest code distance {self.max_code_distance} step(s) at {self.max_code_distance_index}")
        if self.max_abs_error:
            lines.append(f"  max abs error {_g(self.max_abs_error)} at {self.max_abs_error_index}, "
                         f"max rel error {_g(self.max_rel_error)} at {self.max_rel_error_index}")
        if self.mismatches:
            if self.min_atol is None:
                lines.append("  no tolerance passes: NaN on one side only")
            else:
                lines.append(f"  would pass with --atol {self.name}:{_g(self.min_atol)}"
                             + (f" or --rtol {self.name}:{_g(self.min_rtol)}" if math.isfinite(self.min_rtol or 0)
                                else "") + ("" if self.min_atol else " (only the sign of zero differs)"))
        if self.nan_sign_differences:
            lines.append(f"  {self.nan_sign_differences} NaN(s) differ in sign (NaN equals NaN: not a mismatch)")
        if self.histogram:
            top = max(count for _, count in self.histogram)
            width = max(len(label) for label, _ in self.histogram)
            lines.append("  " + ("code distance (steps):" if self.kind == "codes" else "abs error:"))
            lines += [f"    {label:>{width}}  {'#' * max(1, round(BAR * count / top)):<{BAR}}  {count}"
                      for label, count in self.histogram]
        if self.first:
            lines.append(f"  first {len(self.first)} mismatch(es):")
            lines += [f"    {list(m.index)}: expected {self._show(m.expected, m.expected_code)}, "
                      f"got {self._show(m.got, m.got_code)}" + _behind(m.behind) for m in self.first]
        for cause in self.causes:
            lines.append(f"  why: {cause}")
        if self.unexplained:
            lines.append(f"  why: {self.unexplained} of {self.mismatches} match no known producer difference")
        return "\n".join(lines)

    def _show(self, value: float, code: int | None) -> str:
        if code is None:
            return _g(value)
        return f"{_g(value)} (code 0x{code:0{1 if self.type in ('int4', 'fp4') else 2}X})"


def _behind(behind: dict[str, float]) -> str:
    return f" ({', '.join(f'{key} {_g(value)}' for key, value in behind.items())})" if behind else ""


def _g(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value)) if not (value == 0 and math.copysign(1, value) < 0) else "-0"
    return f"{value:.9g}"


def _json_number(value: float | None) -> float | str | None:
    """JSON has no NaN or infinities: those are written as the strings "nan", "inf", "-inf"."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


@dataclass
class Report:
    """Every compared output, the names found on one side only, and what the sides were."""

    outputs: list[OutputReport]
    only_expected: list[str]
    only_got: list[str]
    expected_label: str = "expected"
    got_label: str = "got"

    @property
    def passed(self) -> bool:
        return bool(self.outputs) and all(output.passed for output in self.outputs)

    @property
    def exit_code(self) -> int:
        """0: every compared output within tolerance; 1: a mismatch; 2: nothing to compare."""
        return 2 if not self.outputs else 0 if self.passed else 1

    def to_dict(self) -> dict[str, Any]:
        return {"netdsl_compare": 1, "expected": self.expected_label, "got": self.got_label,
                "passed": self.passed, "exit_code": self.exit_code,
                "outputs": [output.to_dict() for output in self.outputs],
                "only_expected": self.only_expected, "only_got": self.only_got}

    def format(self) -> str:
        lines = [f"expected: {self.expected_label}", f"got:      {self.got_label}"]
        lines += [output.format() for output in self.outputs]
        if self.only_expected:
            lines.append(f"only in {self.expected_label}: {', '.join(self.only_expected)}")
        if self.only_got:
            lines.append(f"only in {self.got_label}: {', '.join(self.only_got)}")
        failed = [output.name for output in self.outputs if not output.passed]
        if not self.outputs:
            lines.append("nothing to compare: no output name is on both sides")
        elif failed:
            lines.append(f"FAIL: {len(failed)} of {len(self.outputs)} output(s) differ: {', '.join(failed)}")
        else:
            lines.append(f"PASS: {len(self.outputs)} output(s) match")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# comparing


def _for(tolerance: Tolerance, name: str) -> float | None:
    if tolerance is None:
        return None
    if isinstance(tolerance, Mapping):
        value = tolerance.get(name, tolerance.get(""))
        return None if value is None else float(value)
    return float(tolerance)


def _differs(expected: Side, got: Side, atol: float | None, rtol: float | None) -> np.ndarray:
    """The mismatch mask (see the module docstring)."""
    e, g = expected.values, got.values
    both_nan = np.isnan(e) & np.isnan(g)
    if atol is None and rtol is None:
        if expected.codes is not None and got.codes is not None:
            return (expected.codes != got.codes) & ~both_nan
        return ((e != g) | (np.signbit(e) != np.signbit(g))) & ~both_nan
    error = _abs_error(e, g)
    with np.errstate(invalid="ignore"):
        within = (error <= (atol or 0.0)) | (error <= (rtol or 0.0) * np.abs(e))
    return ~(within | both_nan)


def _abs_error(e: np.ndarray, g: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(g - e)
    return np.where(e == g, 0.0, error)  # equal infinities: 0, not NaN


def _histogram_values(error: np.ndarray, sign_only: int, nan: int) -> list[tuple[str, int]]:
    rows: list[tuple[str, int]] = [("sign of 0", sign_only)] if sign_only else []
    finite = error[np.isfinite(error) & (error > 0)]
    if finite.size:
        decades = np.floor(np.log10(finite)).astype(np.int64)
        for decade in range(int(decades.min()), int(decades.max()) + 1):
            count = int((decades == decade).sum())
            if count:
                rows.append((f"[1e{decade}, 1e{decade + 1})", count))
    infinite = int(np.isinf(error).sum())
    rows += [("inf", infinite)] if infinite else []
    return rows + ([("NaN vs number", nan)] if nan else [])


def _histogram_codes(distance: np.ndarray, nan: int) -> list[tuple[str, int]]:
    rows: list[tuple[str, int]] = []
    zero = int((distance == 0).sum())
    rows += [("0 (+0/-0)", zero)] if zero else []
    low, high = 1, 1  # bins 1, 2, 3-4, 5-8, ...: (2^(k-1), 2^k]
    while distance.size and low <= distance.max():
        count = int(((distance >= low) & (distance <= high)).sum())
        if count:
            rows.append((str(low) if low == high else f"{low}-{high}", count))
        low, high = high + 1, 2 * high
    return rows + ([("NaN vs number", nan)] if nan else [])


def _argmax(values: np.ndarray, mask: np.ndarray) -> tuple[float, list[int]] | tuple[None, None]:
    if not mask.any():
        return None, None
    masked = np.where(mask, values, -np.inf)
    flat = int(np.argmax(masked))
    return float(masked.flat[flat]), [int(i) for i in np.unravel_index(flat, values.shape)]


def compare_one(name: str, expected: Side, got: Side, dtype: DType, shape: tuple[int, ...],
                expected_shape: tuple[int, ...], atol: float | None = None, rtol: float | None = None,
                first: int = FIRST) -> tuple[OutputReport, np.ndarray | None]:
    """One output's report and its mismatch mask (None when the shapes differ)."""
    report = OutputReport(name, dtype.name, list(shape), list(expected_shape),
                          "codes" if _is_coded(dtype) else "values", atol, rtol)
    if tuple(shape) != tuple(expected_shape):
        return report, None
    e, g = expected.values, got.values
    mismatch = _differs(expected, got, atol, rtol)
    e_nan, g_nan = np.isnan(e), np.isnan(g)
    numbers = ~e_nan & ~g_nan
    report.compared = int(e.size)
    report.mismatches = int(mismatch.sum())
    report.nan_mismatches = int((e_nan != g_nan).sum())
    report.nan_sign_differences = int((e_nan & g_nan & (np.signbit(e) != np.signbit(g))).sum())
    error = np.where(numbers, _abs_error(e, g), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(error == 0, 0.0, error / np.abs(e))
    if error.any():
        report.max_abs_error, report.max_abs_error_index = _argmax(error, numbers)
        report.max_rel_error, report.max_rel_error_index = _argmax(relative, numbers)
    if report.mismatches and not report.nan_mismatches:
        report.min_atol = float(error.max()) if error.size else 0.0
        report.min_rtol = float(relative.max()) if relative.size else 0.0
    if _is_coded(dtype) and expected.codes is not None and got.codes is not None:
        ranks = value_ranks(dtype.name)
        distance = np.abs(ranks[expected.codes] - ranks[got.codes])
        largest, where = _argmax(distance.astype(np.float64), numbers)
        if largest:
            report.max_code_distance, report.max_code_distance_index = int(largest), where
        if report.mismatches:
            report.histogram = _histogram_codes(distance[mismatch & numbers], int((mismatch & ~numbers).sum()))
    elif report.mismatches:
        sign_only = int((mismatch & numbers & (error == 0)).sum())
        report.histogram = _histogram_values(error[mismatch & numbers], sign_only,
                                             int((mismatch & ~numbers).sum()))
    for flat in np.flatnonzero(mismatch)[:first]:
        index = tuple(int(i) for i in np.unravel_index(flat, shape))
        report.first.append(Mismatch(index, float(e[index]), float(g[index]),
                                     None if expected.codes is None else int(expected.codes[index]),
                                     None if got.codes is None else int(got.codes[index])))
    return report, mismatch


def _type_of(spec: Any) -> tuple[DType, tuple[int, ...] | None]:
    if isinstance(spec, TensorType):
        return spec.dtype, spec.shape
    if isinstance(spec, DType):
        return spec, None
    return dtypes.lookup(str(spec)), None


def compare_outputs(expected: Mapping[str, Any], got: Mapping[str, Any],
                    types: Mapping[str, Any] | None = None, atol: Tolerance = None, rtol: Tolerance = None, *,
                    codes: bool = False, network: Any = None, inputs: Mapping[str, Any] | None = None,
                    expected_label: str = "expected", got_label: str = "got", first: int = FIRST) -> Report:
    """Compare every output present in both ``expected`` and ``got`` (name -> array).

    ``types``: output name -> ``TensorType``, ``DType`` or type name (default: ``network.outputs``);
    an output without a type is left out. ``atol``/``rtol``: None (exact), a number for every output, or
    a mapping name -> number (key ``""``: every other output). ``codes``: ``expected`` holds raw codes.
    ``network`` and ``inputs`` (the inputs ``got`` was computed from): the report then shows the input
    and scale behind each listed mismatch and the known producer differences that explain them.
    Raises ComparisonError (a ValueError) for an array that can't be read as its output's type.
    """
    if types is None:
        types = network.outputs if network is not None else {}
    common = [name for name in got if name in expected and name in types]
    reports = []
    environment: dict[str, np.ndarray] | None = None
    for name in common:
        dtype, shape = _type_of(types[name])
        got_side = _side(got[name], dtype, shape, False, name, got_label)
        expected_side = _side(expected[name], dtype, shape, codes, name, expected_label)
        tolerance = _for(atol, name), _for(rtol, name)
        report, mismatch = compare_one(name, expected_side, got_side, dtype, got_side.values.shape,
                                       expected_side.values.shape, *tolerance, first=first)
        if network is not None and inputs is not None and name in network.graph.values and (
                report.mismatches or report.nan_sign_differences):
            from netdsl import producers

            if environment is None:
                environment = producers.evaluate(network.graph, network.prepare_inputs(dict(inputs)))
            _explain(report, network.graph, environment, expected_side, got_side, mismatch, dtype, shape, tolerance)
        reports.append(report)
    return Report(reports, [n for n in expected if n not in common], [n for n in got if n not in common],
                  expected_label, got_label)


def _side(array: Any, dtype: DType, shape: tuple[int, ...] | None, codes: bool, name: str, label: str) -> Side:
    try:
        return side(array, dtype, shape, codes)
    except ComparisonError as error:
        raise ComparisonError(f"{label}: output '{name}' {error}") from None


def _explain(report: OutputReport, graph: Any, env: dict[str, np.ndarray], expected: Side, got: Side,
             mismatch: np.ndarray | None, dtype: DType, shape: tuple[int, ...] | None,
             tolerance: tuple[float | None, float | None]) -> None:
    from netdsl import producers

    if mismatch is None:
        return
    behind = producers.context(graph, env, report.name, [m.index for m in report.first])
    for entry, values in zip(report.first, behind):
        entry.behind = values

    def still_differs(candidate: np.ndarray) -> np.ndarray:
        return _differs(expected, side(candidate, dtype, shape), *tolerance)

    if report.mismatches:
        report.causes, report.unexplained = producers.explain(graph, env, report.name, mismatch, still_differs)
    e, g = expected.values, got.values
    nan_sign = np.isnan(e) & np.isnan(g) & (np.signbit(e) != np.signbit(g))
    nan_cause = producers.nan_bits(graph, env, report.name, nan_sign, np.signbit(e))
    if nan_cause is not None:
        report.causes.append(nan_cause)
