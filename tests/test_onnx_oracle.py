"""Differential tests against two independent implementations of ONNX's QuantizeLinear/DequantizeLinear.

The oracles are onnx's reference evaluator (``onnx.reference.ReferenceEvaluator``, onnx 1.23, opset 25) and
onnxruntime's CPU provider (1.32, ``ORT_DISABLE_ALL``). netdsl runs the same configuration as a ``.net``
model through its NumPy backend, and every element must have the same bit pattern.

What each oracle can express (probed with onnx 1.23 / onnxruntime 1.32):

- reference evaluator: QuantizeLinear to int8, int4, fp8 (float8e4m3fn) and fp4 (float4e2m1, opset 23+) from
  float32/float16/bfloat16 x and scales (``precision=FLOAT`` makes the division float32, as docs/semantics.md
  wants); DequantizeLinear from all four with float32/float16/bfloat16 scales, e8m0 scales (opset 24+) and
  ``output_dtype`` float32/float16/bfloat16; per-tensor, per-axis, and blocked on one axis with a
  remainder block.
- onnxruntime CPU: the same for int8, int4 and fp8 with float32/float16 x, scales and outputs; no bfloat16, no
  fp4 and no e8m0-scale kernels. Its Cast to float8e8m0 (``round_mode="up"``) exists, which is the MXFP8
  scale rule. int4 tensors cannot cross its Python API, so the graphs Cast int4 to and from int8 (exact).

Where docs/semantics.md deliberately differs from an oracle, a test below names the difference in its docstring
and asserts both sides (the oracle's value and netdsl's value); the property tests exempt exactly those
elements, and check netdsl's value there against docs/semantics.md. ``test_special_values.py`` covers the rest.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import netdsl

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

OPSET = 25
EXAMPLES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.data_too_large])

#: netdsl type name -> (ONNX element type, NumPy storage dtype)
TYPES = {
    "float32": (TensorProto.FLOAT, np.dtype(np.float32)),
    "float16": (TensorProto.FLOAT16, np.dtype(np.float16)),
    "bfloat16": (TensorProto.BFLOAT16, np.dtype(ml_dtypes.bfloat16)),
    "int8": (TensorProto.INT8, np.dtype(np.int8)),
    "int4": (TensorProto.INT4, np.dtype(ml_dtypes.int4)),
    "fp8": (TensorProto.FLOAT8E4M3FN, np.dtype(ml_dtypes.float8_e4m3fn)),
    "fp4": (TensorProto.FLOAT4E2M1, np.dtype(ml_dtypes.float4_e2m1fn)),
    "e8m0": (TensorProto.FLOAT8E8M0, np.dtype(ml_dtypes.float8_e8m0fnu)),
}
INT_RANGE = {"int8": (-128, 127), "int4": (-8, 7)}
#: docs/semantics.md: canonical NaN bits of each float output type
CANONICAL_NAN = {"float32": 0x7FC00000, "float16": 0x7E00, "bfloat16": 0x7FC0}
#: what a C float -> int32 conversion gives for NaN and for values >= 2^31 on this machine (x86-64: INT_MIN);
#: the reference evaluator's integer QuantizeLinear is ``np.clip(np.rint(x / s).astype(np.int32), lo, hi)``
with warnings.catch_warnings(), np.errstate(invalid="ignore"):
    warnings.simplefilter("ignore")
    C_INT32_OF_NAN = int(np.array([np.nan], np.float32).astype(np.int32)[0])
    C_INT32_OF_HUGE = int(np.array([2.0**31], np.float32).astype(np.int32)[0])


def bits(array: np.ndarray) -> np.ndarray:
    """Every element's bit pattern as an unsigned integer (int4 as its int8 value's byte)."""
    array = np.asarray(array)
    if array.dtype == ml_dtypes.int4:
        return array.astype(np.int8).view(np.uint8)
    if array.dtype == ml_dtypes.float4_e2m1fn:
        return array.view(np.uint8) & 0x0F
    return array.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[array.dtype.itemsize])


def assert_bits_equal(ours: np.ndarray, theirs: np.ndarray, context: str) -> None:
    ours_bits, theirs_bits = bits(ours), bits(theirs)
    assert ours_bits.shape == theirs_bits.shape, context
    differ = np.argwhere(ours_bits != theirs_bits)
    if differ.size:
        index = tuple(differ[0])
        raise AssertionError(f"{len(differ)} elements differ, first at {index}: netdsl {ours[index]!r} "
                             f"(0x{int(ours_bits[index]):x}), oracle {theirs[index]!r} "
                             f"(0x{int(theirs_bits[index]):x})\n{context}")


# --------------------------------------------------------------------------------------------------
# the oracles


def onnx_model(nodes: list, inputs: list[tuple[str, str, list[int]]], outputs: list[tuple[str, str, list[int]]]):
    def info(name: str, type_name: str, shape: list[int]):
        return helper.make_tensor_value_info(name, TYPES[type_name][0], shape)

    graph = helper.make_graph(nodes, "oracle", [info(*i) for i in inputs], [info(*o) for o in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 11
    onnx.checker.check_model(model, full_check=True)
    return model


def run_reference(model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # the reference's own NaN -> int32 casts
        return ReferenceEvaluator(model).run(None, feeds)[0]


def run_ort(model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """onnxruntime, CPU, no graph optimisation; fp8/e8m0 inputs cross as their raw bytes."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = {}
    for name, array in feeds.items():
        array = np.ascontiguousarray(array)
        if array.dtype in (TYPES["fp8"][1], TYPES["e8m0"][1]):
            onnx_type = TYPES["fp8" if array.dtype == TYPES["fp8"][1] else "e8m0"][0]
            values[name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(array.view(np.uint8), onnx_type)
        else:
            values[name] = ort.OrtValue.ortvalue_from_numpy(array)
    return session.run_with_ort_values(None, values)[0].numpy()


# --------------------------------------------------------------------------------------------------
# a configuration, in ONNX terms and as a netdsl model


@dataclass(frozen=True)
class Layout:
    """How a scale maps onto x: ``kind`` per-tensor, per-axis or block (``block_size`` along ``axis``)."""

    shape: tuple[int, ...]
    kind: str
    axis: int  # as written in both models (may be negative)
    block_size: int = 0
    scalar_scale: bool = False  # per-tensor: a 0-D scale rather than shape [1]

    @property
    def scale_shape(self) -> tuple[int, ...]:
        axis = self.axis % len(self.shape)
        if self.kind == "per-tensor":
            return () if self.scalar_scale else (1,)
        if self.kind == "per-axis":
            return (self.shape[axis],)
        return tuple(-(-d // self.block_size) if i == axis else d for i, d in enumerate(self.shape))

    def per_element(self, scale: np.ndarray) -> np.ndarray:
        """The scale each element of x uses (test-side, from the ONNX definition)."""
        axis = self.axis % len(self.shape)
        if self.kind == "per-tensor":
            return np.broadcast_to(scale.reshape(()), self.shape)
        if self.kind == "per-axis":
            return np.broadcast_to(scale.reshape([-1 if i == axis else 1 for i in range(len(self.shape))]),
                                   self.shape)
        repeated = np.repeat(scale, self.block_size, axis=axis)
        return np.take(repeated, np.arange(self.shape[axis]), axis=axis)

    def ort_per_tensor(self, for_ort: bool) -> bool:
        """onnxruntime takes a one-element scale only as per-tensor: 0-D or [1], and no block_size."""
        return for_ort and int(np.prod(self.scale_shape)) == 1

    def onnx_scale_shape(self, for_ort: bool = False) -> list[int]:
        return [] if self.ort_per_tensor(for_ort) else list(self.scale_shape)

    def onnx_attributes(self, for_ort: bool = False) -> dict[str, int]:
        attributes = {"axis": self.axis}
        if self.kind == "block" and not self.ort_per_tensor(for_ort):
            attributes["block_size"] = self.block_size
        return attributes

    def netdsl_keywords(self) -> list[str]:
        if self.kind == "per-axis":
            return [f"axis={self.axis}"]
        if self.kind == "block":
            axis = self.axis % len(self.shape)
            block_shape = [self.block_size if i == axis else 1 for i in range(len(self.shape))]
            return [f"block_shape=[{', '.join(map(str, block_shape))}]"]
        return [f"axis={self.axis}"]  # per-tensor: axis is ignored (the Quantize doc example gives one)


def literal(values: np.ndarray) -> str:
    """A netdsl literal holding ``values`` exactly (hex floats)."""
    if values.ndim == 0:
        return float(values).hex()
    return "[" + ", ".join(literal(v) for v in values) + "]"


def netdsl_model(op: str, x_type: str, layout: Layout, scale_type: str, scale: np.ndarray, to_type: str) -> str:
    dims = ", ".join(map(str, layout.shape))
    scale_dims = ", ".join(map(str, scale.shape))
    keywords = ", ".join(layout.netdsl_keywords() + [f"to_type={to_type}"])
    return (f"input x : {x_type}[{dims}]\n"
            f"const s : {scale_type}[{scale_dims}] = {literal(scale.astype(np.float64))}\n"
            f"y = {op}(x, s, {keywords})\n"
            f"output y\n")


def run_netdsl(text: str, x: np.ndarray) -> np.ndarray:
    return netdsl.loads(text).run({"x": x}, backend="numpy")["y"]


# --------------------------------------------------------------------------------------------------
# strategies


@st.composite
def layouts(draw, max_rank: int = 4) -> Layout:
    rank = draw(st.integers(1, max_rank))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    kind = draw(st.sampled_from(["per-tensor", "per-axis", "block"]))
    axis = draw(st.integers(-rank, rank - 1))
    if kind == "block":
        extent = shape[axis % rank]
        block_size = draw(st.integers(1, extent + 1))  # a remainder block whenever it doesn't divide
        return Layout(shape, kind, axis, block_size)
    return Layout(shape, kind, axis, scalar_scale=draw(st.booleans()))


def short_mantissa(low: int, high: int) -> st.SearchStrategy[float]:
    """m * 2^e with m odd < 256: x = (k + 0.5) * s is then exact in float32, a true tie."""
    return st.builds(lambda m, e: float(m) * 2.0**e, st.integers(0, 127).map(lambda k: 2 * k + 1),
                     st.integers(low, high))


def positive(type_name: str) -> st.SearchStrategy[float]:
    """Positive finite scale values of a type: short mantissas, powers of two, anything, subnormals."""
    if type_name == "e8m0":
        return st.integers(-127, 127).map(lambda k: 2.0**k)
    dtype = TYPES[type_name][1]
    finfo = ml_dtypes.finfo(dtype)
    tiny, biggest = float(finfo.smallest_subnormal), float(finfo.max)
    width = 16 if type_name == "float16" else 32
    anything = st.floats(min_value=tiny, max_value=biggest, width=width)
    low = int(np.log2(tiny))
    high = int(np.log2(biggest)) - 8
    return st.one_of(short_mantissa(low, high), anything, st.integers(low, high).map(lambda e: 2.0**e)) \
        .map(lambda v: float(np.array(min(max(v, tiny), biggest)).astype(dtype).astype(np.float64)))


#: small odd integers: every quantized type holds them (int4 and fp4 up to 7 and 3)
ODD = (3, 5, 7, 9, 11, 13)


def near_ties() -> st.SearchStrategy[float]:
    """float32 scales s = fl32(t / k) for a float16 or bfloat16 rounding tie t and a small odd k: the product
    k * s then lies within a float32 ulp of t, and fl32(k * s) often is t itself, where rounding once
    (from the exact product) and twice (through float32, as docs/semantics.md wants) differ."""
    def build(mantissa_bits: int, j: int, e: int, k: int) -> float:
        tie = (1 + (2 * (j % (1 << mantissa_bits)) + 1) * 2.0 ** -(mantissa_bits + 1)) * 2.0**e
        return float(np.float32(tie / k))

    return st.builds(build, st.sampled_from([7, 10]), st.integers(0, 1023), st.integers(-14, 14),
                     st.sampled_from(ODD))


def scales(layout: Layout, type_name: str) -> st.SearchStrategy[np.ndarray]:
    elements = positive(type_name)
    if type_name == "float32":
        elements = st.one_of(elements, near_ties())
    return hnp.arrays(np.float64, layout.scale_shape, elements=elements) \
        .map(lambda a: a.astype(TYPES[type_name][1]))


def _grid(type_name: str) -> np.ndarray:
    """The non-negative finite values of a minifloat, from ml_dtypes' decoding of every code."""
    codes = np.arange(256 if type_name == "fp8" else 8, dtype=np.uint8)
    values = codes.view(TYPES[type_name][1]).astype(np.float64)
    return np.unique(values[np.isfinite(values) & (values >= 0)])


def _targets(type_name: str) -> list[float]:
    """Values of x / scale that sit on a representable value, a tie, or past saturation."""
    if type_name in INT_RANGE:
        low, high = INT_RANGE[type_name]
        grid = np.arange(low - 2, high + 3, dtype=np.float64)
        extra = [1e9, 3e9, 1e30]
    else:
        grid = _grid(type_name)
        extra = [grid[-1] * 1.0625, grid[-1] * 1.5, 1e30, float(grid[1]) / 2, float(grid[1]) / 4]
    midpoints = (grid[1:] + grid[:-1]) / 2
    values = np.concatenate([grid, midpoints, extra])
    return sorted(set(values.tolist()) | set((-values).tolist()))


SPECIAL_INPUTS = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 2.0**-149, -(2.0**-149), 2.0**-126 * 0.75,
                  2.0**-24, 65504.0, 65520.0, 3.4028234663852886e38, -3.4028234663852886e38]


def raw_values(x_type: str) -> st.SearchStrategy[float]:
    """Any value of the x type, and often a special one: NaN (both signs), Inf, zeros, subnormals."""
    anything = st.floats(width=16 if x_type == "float16" else 32, allow_nan=True, allow_infinity=True,
                         allow_subnormal=True)
    return st.one_of(anything, st.sampled_from(SPECIAL_INPUTS))


def each(shape: tuple[int, ...], dtype, elements: st.SearchStrategy) -> st.SearchStrategy[np.ndarray]:
    """An array whose every element is drawn (no shared fill value)."""
    return hnp.arrays(dtype, shape, elements=elements, fill=st.nothing())


@st.composite
def inputs_for(draw, layout: Layout, scale: np.ndarray, x_type: str, to_type: str) -> np.ndarray:
    """x: a mix of raw values and targets * scale (exact ties where the scale has a short mantissa)."""
    raw = draw(each(layout.shape, np.float32, raw_values(x_type)))
    targets = draw(each(layout.shape, np.float64, st.sampled_from(_targets(to_type))))
    pick = draw(each(layout.shape, np.bool_, st.booleans()))
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = (targets * layout.per_element(scale).astype(np.float64)).astype(np.float32)
        return np.where(pick, scaled, raw).astype(TYPES[x_type][1])


# --------------------------------------------------------------------------------------------------
# the deliberate differences (each asserted by a named test below)


def quotient(x: np.ndarray, layout: Layout, scale: np.ndarray) -> np.ndarray:
    """fl32(x / scale) per element: IEEE float32 division, computed here with NumPy."""
    with np.errstate(all="ignore"):
        return x.astype(np.float32) / layout.per_element(scale).astype(np.float32)


def quantize_exemptions(q: np.ndarray, to_type: str, oracle: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask, netdsl's value per docs/semantics.md, the set of oracle values) where netdsl and ``oracle`` differ
    on purpose. NaN everywhere; for the reference's integers also x / s >= 2^31 (its int32 cast)."""
    nan = np.isnan(q)
    if to_type in INT_RANGE:
        low, high = INT_RANGE[to_type]
        mask = nan | (q >= 2.0**31) if oracle == "reference" else nan
        ours = np.where(nan, 0, high)
        theirs = {int(np.clip(C_INT32_OF_NAN, low, high))} | (
            {int(np.clip(C_INT32_OF_HUGE, low, high))} if oracle == "reference" else set())
        return mask, ours, np.array(sorted(theirs))
    if to_type == "fp8":
        return nan, np.full(q.shape, 0x7F), np.array([0x7F, 0xFF])  # the oracles keep the NaN's sign
    return nan, np.full(q.shape, 0x07), np.array([0x00, 0x08])  # fp4: ml_dtypes' NaN -> -0 / +0


def check_quantize(ours: np.ndarray, theirs: np.ndarray, q: np.ndarray, to_type: str, oracle: str,
                   context: str) -> None:
    mask, expected_ours, allowed_theirs = quantize_exemptions(q, to_type, oracle)
    ours_bits, theirs_bits = bits(ours).astype(np.int64), bits(theirs).astype(np.int64)
    if to_type in INT_RANGE:
        ours_bits, theirs_bits = ours.astype(np.int64), theirs.astype(np.int64)
    assert (ours_bits[mask] == expected_ours[mask]).all(), f"netdsl differs from docs/semantics.md\n{context}"
    assert np.isin(theirs_bits[mask], allowed_theirs).all(), \
        f"the {oracle} oracle no longer gives {allowed_theirs.tolist()} there\n{context}"
    assert_bits_equal(np.where(mask, 0, ours_bits), np.where(mask, 0, theirs_bits), context)


def check_dequantize(ours: np.ndarray, theirs: np.ndarray, to_type: str, context: str) -> None:
    """Bit-identical, except that a NaN is canonical in netdsl and keeps its sign in the oracles."""
    nan = np.isnan(theirs.astype(np.float32))
    ours_bits = bits(ours)
    assert (ours_bits[nan] == CANONICAL_NAN[to_type]).all(), f"netdsl NaN is not canonical\n{context}"
    theirs_bits = bits(theirs).copy()
    theirs_bits[nan] = CANONICAL_NAN[to_type]
    assert_bits_equal(ours_bits, theirs_bits, context)


# --------------------------------------------------------------------------------------------------
# Quantize


def quantize_graph(layout: Layout, x_type: str, scale_type: str, to_type: str, for_ort: bool = False):
    """QuantizeLinear with the float32 division of docs/semantics.md (``precision=FLOAT``); for onnxruntime an
    int4 result is Cast to int8 (exact) so that it can leave the session."""
    shape = list(layout.shape)
    cast_int4 = for_ort and to_type == "int4"
    node = helper.make_node("QuantizeLinear", ["x", "s"], ["q" if cast_int4 else "y"],
                            output_dtype=TYPES[to_type][0], precision=TensorProto.FLOAT,
                            **layout.onnx_attributes(for_ort))
    nodes = [node] + ([helper.make_node("Cast", ["q"], ["y"], to=TensorProto.INT8)] if cast_int4 else [])
    return onnx_model(nodes, [("x", x_type, shape), ("s", scale_type, layout.onnx_scale_shape(for_ort))],
                      [("y", "int8" if cast_int4 else to_type, shape)])


@st.composite
def quantize_cases(draw, to_type: str, float_types: tuple[str, ...]):
    layout = draw(layouts())
    x_type, scale_type = draw(st.sampled_from(float_types)), draw(st.sampled_from(float_types))
    scale = draw(scales(layout, scale_type))
    x = draw(inputs_for(layout, scale, x_type, to_type))
    return layout, x_type, scale_type, scale, x


@pytest.mark.parametrize("to_type", ["int8", "int4", "fp8", "fp4"])
@EXAMPLES
@given(data=st.data())
def test_quantize_matches_onnx_reference(to_type: str, data) -> None:
    layout, x_type, scale_type, scale, x = data.draw(quantize_cases(to_type, ("float32", "float16", "bfloat16")))
    text = netdsl_model("quantize", x_type, layout, scale_type, scale, to_type)
    ours = run_netdsl(text, x)
    theirs = run_reference(quantize_graph(layout, x_type, scale_type, to_type), {"x": x, "s": scale})
    check_quantize(ours, theirs, quotient(x, layout, scale), to_type, "reference", f"{text}x = {x!r}")


@pytest.mark.parametrize("to_type", ["int8", "int4", "fp8"])
@EXAMPLES
@given(data=st.data())
def test_quantize_matches_onnxruntime(to_type: str, data) -> None:
    layout, x_type, scale_type, scale, x = data.draw(quantize_cases(to_type, ("float32", "float16")))
    text = netdsl_model("quantize", x_type, layout, scale_type, scale, to_type)
    ours = run_netdsl(text, x)
    model = quantize_graph(layout, x_type, scale_type, to_type, for_ort=True)
    theirs = run_ort(model, {"x": x, "s": scale.reshape(layout.onnx_scale_shape(for_ort=True))})
    if to_type == "int4":
        theirs = theirs.astype(ml_dtypes.int4)
    elif to_type == "fp8":
        theirs = theirs.view(ml_dtypes.float8_e4m3fn)
    check_quantize(ours, theirs, quotient(x, layout, scale), to_type, "onnxruntime", f"{text}x = {x!r}")


# --------------------------------------------------------------------------------------------------
# Dequantize


def dequantize_graph(layout: Layout, from_type: str, scale_type: str, to_type: str, for_ort: bool = False):
    """DequantizeLinear with ``output_dtype``; for onnxruntime an int4 input comes in as int8 and is Cast."""
    shape = list(layout.shape)
    cast_int4 = for_ort and from_type == "int4"
    node = helper.make_node("DequantizeLinear", ["q" if cast_int4 else "x", "s"], ["y"],
                            output_dtype=TYPES[to_type][0], **layout.onnx_attributes(for_ort))
    nodes = ([helper.make_node("Cast", ["x"], ["q"], to=TensorProto.INT4)] if cast_int4 else []) + [node]
    return onnx_model(nodes, [("x", "int8" if cast_int4 else from_type, shape),
                              ("s", scale_type, layout.onnx_scale_shape(for_ort))], [("y", to_type, shape)])


def every_code(from_type: str) -> st.SearchStrategy[int]:
    """Any code of a quantized type, NaN codes included, and often one of the small odd values of
    :data:`ODD` that :func:`near_ties` scales are built for."""
    dtype = TYPES[from_type][1]
    if from_type in INT_RANGE:
        low, high = INT_RANGE[from_type]
        odd = [v for k in ODD for v in (k, -k) if low <= v <= high]
        return st.one_of(st.integers(low, high), st.sampled_from(odd))
    decoded = np.arange(256 if from_type == "fp8" else 16, dtype=np.uint8).view(dtype).astype(np.float64)
    odd_codes = [code for code, value in enumerate(decoded) if abs(value) in ODD]
    return st.one_of(st.integers(0, len(decoded) - 1), st.sampled_from(odd_codes))


@st.composite
def dequantize_cases(draw, from_type: str, scale_types: tuple[str, ...], to_types: tuple[str, ...]):
    layout = draw(layouts())
    scale_type, to_type = draw(st.sampled_from(scale_types)), draw(st.sampled_from(to_types))
    scale = draw(scales(layout, scale_type))
    codes = draw(each(layout.shape, np.int64, every_code(from_type)))
    if from_type in INT_RANGE:
        q = codes.astype(np.int8).astype(TYPES[from_type][1])
    else:
        q = codes.astype(np.uint8).view(TYPES[from_type][1])
    return layout, scale_type, to_type, scale, q


@pytest.mark.parametrize("from_type", ["int8", "int4", "fp8", "fp4"])
@EXAMPLES
@given(data=st.data())
def test_dequantize_matches_onnx_reference(from_type: str, data) -> None:
    layout, scale_type, to_type, scale, q = data.draw(dequantize_cases(
        from_type, ("float32", "float16", "bfloat16", "e8m0"), ("float32", "float16", "bfloat16")))
    text = netdsl_model("dequantize", from_type, layout, scale_type, scale, to_type)
    ours = run_netdsl(text, q)
    theirs = run_reference(dequantize_graph(layout, from_type, scale_type, to_type), {"x": q, "s": scale})
    check_dequantize(ours, theirs, to_type, f"{text}q = {q!r}")


@pytest.mark.parametrize("from_type", ["int8", "int4", "fp8"])
@EXAMPLES
@given(data=st.data())
def test_dequantize_matches_onnxruntime(from_type: str, data) -> None:
    layout, scale_type, to_type, scale, q = data.draw(dequantize_cases(
        from_type, ("float32", "float16"), ("float32", "float16")))
    text = netdsl_model("dequantize", from_type, layout, scale_type, scale, to_type)
    ours = run_netdsl(text, q)
    model = dequantize_graph(layout, from_type, scale_type, to_type, for_ort=True)
    theirs = run_ort(model, {"x": q.astype(np.int8) if from_type == "int4" else q,
                             "s": scale.reshape(layout.onnx_scale_shape(for_ort=True))})
    check_dequantize(ours, theirs, to_type, f"{text}q = {q!r}")


# --------------------------------------------------------------------------------------------------
# DynamicQuantize, composed from ONNX operators: Cast to float32, Abs, ReduceMax per block, the mode's scale
# (Div, Cast to float8e4m3fn with saturate=1, or Cast to float8e8m0 with round_mode="up"), QuantizeLinear.
# Blocks run along the last axis. Inputs hold no NaN: ONNX's ReduceMax propagates NaN, netdsl's amax ignores
# it (docs/semantics.md), which test_special_values.py checks.

DYNAMIC_MODES = {  # mode -> (output_type, scale_type, block size, dqs)
    "NVFP4": ("fp4", "fp8", 16, True),
    "MXFP8": ("fp8", "e8m0", 32, False),
    "float-scale fp8": ("fp8", "float32", None, False),
    "float-scale int8": ("int8", "float32", None, False),
}


def dynamic_graph(mode: str, x_type: str, shape: tuple[int, ...], block: int, dqs: float | None,
                  with_data: bool = True):
    """Outputs: the data (unless not ``with_data``) and the block scale (as float32 for e8m0, which can't
    leave onnxruntime)."""
    output_type, scale_type, _, _ = DYNAMIC_MODES[mode]
    blocked = list(shape[:-1]) + [shape[-1] // block, block]
    scale_shape = blocked[:-1]

    def const(name: str, value, onnx_type=TensorProto.FLOAT):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(
            name, onnx_type, np.shape(value), np.ravel(value).tolist()))

    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("Abs", ["xf"], ["magnitude"]),
             const("blocked_shape", blocked, TensorProto.INT64),
             helper.make_node("Reshape", ["magnitude", "blocked_shape"], ["blocks"]),
             const("last", [-1], TensorProto.INT64),
             helper.make_node("ReduceMax", ["blocks", "last"], ["amax"], keepdims=0)]
    scale_out = "s"
    if mode == "NVFP4":
        nodes += [const("six", 6.0), const("dqs", dqs),
                  helper.make_node("Div", ["amax", "six"], ["t1"]), helper.make_node("Div", ["t1", "dqs"], ["t"]),
                  helper.make_node("Cast", ["t"], ["s"], to=TensorProto.FLOAT8E4M3FN, saturate=1),
                  helper.make_node("Cast", ["s"], ["s32"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", ["s32", "dqs"], ["effective"])]
    elif mode == "MXFP8":
        nodes += [const("bound", 448.0), helper.make_node("Div", ["amax", "bound"], ["t"]),
                  helper.make_node("Cast", ["t"], ["e"], to=TensorProto.FLOAT8E8M0, round_mode="up", saturate=1),
                  helper.make_node("Cast", ["e"], ["effective"], to=TensorProto.FLOAT)]
        scale_out = "effective"
    else:
        nodes += [const("bound", 448.0 if output_type == "fp8" else 127.0),
                  helper.make_node("Div", ["amax", "bound"], ["effective"])]
        scale_out = "effective"
    outputs = [(scale_out, "fp8" if scale_type == "fp8" else "float32", scale_shape)]
    if with_data:
        nodes.append(helper.make_node("QuantizeLinear", ["xf", "effective"], ["data"], axis=-1,
                                      block_size=block, output_dtype=TYPES[output_type][0]))
        outputs.insert(0, ("data", output_type, list(shape)))
    return onnx_model(nodes, [("x", x_type, list(shape))], outputs)


@st.composite
def dynamic_cases(draw, mode: str, x_types: tuple[str, ...]):
    output_type, scale_type, block, needs_dqs = DYNAMIC_MODES[mode]
    block = block or draw(st.sampled_from([1, 2, 3, 4, 8, 16]))
    leading = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    blocks = draw(st.integers(1, 3))
    if int(np.prod(leading)) * blocks == 1:
        blocks = 2  # one block in all would be a one-element scale: onnxruntime's per-tensor case
    shape = leading + (blocks * block,)
    x_type = draw(st.sampled_from(x_types))
    elements = st.one_of(st.floats(width=32, allow_nan=False), st.floats(-2.0**-120, 2.0**-120, width=32),
                         st.sampled_from([0.0, -0.0, np.inf, -np.inf, 448.0, 6.0]))
    x = draw(each(shape, np.float32, elements))
    zero_blocks = draw(hnp.arrays(np.bool_, shape[:-1] + (blocks,),  # now and then an all-zero block: amax 0
                                  elements=st.sampled_from([False, False, False, True]), fill=st.just(False)))
    x = np.where(np.repeat(zero_blocks, block, axis=-1), np.float32(0), x)
    with np.errstate(over="ignore"):
        x = x.astype(TYPES[x_type][1])
    dqs = draw(positive("float32")) if needs_dqs else None
    return x_type, x, block, dqs


def netdsl_dynamic(mode: str, x_type: str, x: np.ndarray, block: int, dqs: float | None):
    output_type, scale_type, _, _ = DYNAMIC_MODES[mode]
    dims = ", ".join(map(str, x.shape))
    dqs_line, dqs_arg = (f"const dqs : float32[] = {dqs.hex()}\n", "dqs, ") if dqs is not None else ("", "")
    text = (f"input x : {x_type}[{dims}]\n{dqs_line}"
            f"data, scale = dynamic_quantize(x, {dqs_arg}axis=-1, block_size={block}, output_type={output_type}, "
            f"scale_type={scale_type})\noutput data, scale\n")
    outputs = netdsl.loads(text).run({"x": x}, backend="numpy")
    scale = outputs["scale"]
    if scale_type == "e8m0":
        scale = scale.astype(np.float32)  # exact: every e8m0 value is a float32 (2^-127 a subnormal)
    return text, outputs["data"], scale


def block_quotient_input(mode: str, x: np.ndarray, block: int, dqs: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Test-side: per block the exact float32 amax and fl32(amax / bound [/ dqs]), before any rounding
    into the scale type."""
    blocks = np.abs(x.astype(np.float32)).reshape(x.shape[:-1] + (x.shape[-1] // block, block))
    amax = blocks.max(axis=-1)
    with np.errstate(all="ignore"):
        if mode == "NVFP4":
            return amax, amax / np.float32(6) / np.float32(dqs)
        return amax, amax / np.float32(448 if DYNAMIC_MODES[mode][0] == "fp8" else 127)


@pytest.mark.parametrize("oracle", ["reference", "onnxruntime"])
@pytest.mark.parametrize("mode", list(DYNAMIC_MODES))
@EXAMPLES
@given(data=st.data())
def test_dynamic_quantize_matches_onnx_composition(mode: str, oracle: str, data) -> None:
    """netdsl's DynamicQuantize against the same rule built from ONNX operators. Deliberate differences:

    - an effective block scale of 0 (amax = 0, or an NVFP4 scale that underflows): netdsl writes +0 data
      (docs/semantics.md, as TensorRT-LLM does); QuantizeLinear divides by zero (NaN or +-Inf, then encoded);
    - NaN quotients (+-Inf / Inf in a float-scale block): the encodings of test_*_nan_* below;
    - MXFP8 with the reference evaluator: its float8e8m0 Cast rounds a nonzero subnormal q <= 2^-127 up to
      2^-126 and maps Inf to NaN (test_reference_e8m0_cast_subnormal_and_inf); netdsl gives 2^-127 and
      2^127, as onnxruntime's Cast does. Those blocks' scales are asserted and their data skipped.
    onnxruntime has no float4 QuantizeLinear: for NVFP4 it checks the scale only.
    """
    output_type, scale_type, _, _ = DYNAMIC_MODES[mode]
    x_types = ("float32", "float16", "bfloat16") if oracle == "reference" else ("float32", "float16")
    x_type, x, block, dqs = data.draw(dynamic_cases(mode, x_types))
    text, ours_data, ours_scale = netdsl_dynamic(mode, x_type, x, block, dqs)
    with_data = not (mode == "NVFP4" and oracle == "onnxruntime")
    model = dynamic_graph(mode, x_type, x.shape, block, dqs, with_data)
    context = f"{text}x = {x!r}"
    if oracle == "reference":
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            theirs_data, theirs_scale = ReferenceEvaluator(model).run(None, {"x": x})
    elif not with_data:  # no fp4 QuantizeLinear kernel: the scale only
        theirs_data, theirs_scale = None, run_ort(model, {"x": x}).view(ml_dtypes.float8_e4m3fn)
    else:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        theirs_data, theirs_scale = session.run(None, {"x": x})
        theirs_data = theirs_data.view(TYPES[output_type][1]) if output_type == "fp8" else theirs_data

    amax, t = block_quotient_input(mode, x, block, dqs)
    skip = np.zeros(amax.shape, bool)
    if mode == "MXFP8" and oracle == "reference":
        skip = ((t > 0) & (t <= 2.0**-127)) | np.isinf(t)
        assert (ours_scale[skip] == np.where(np.isinf(t[skip]), 2.0**127, 2.0**-127)).all(), context
        assert (np.isnan(theirs_scale[np.isinf(t)]).all()
                and (theirs_scale[skip & ~np.isinf(t)] == 2.0**-126).all()), context
    ours_scale_bits, theirs_scale_bits = bits(ours_scale), bits(theirs_scale)
    assert_bits_equal(np.where(skip, 0, ours_scale_bits), np.where(skip, 0, theirs_scale_bits), context)
    if theirs_data is None:
        return

    effective = ours_scale.astype(np.float32) * (np.float32(dqs) if dqs is not None else np.float32(1))
    per_element = np.repeat(effective, block, axis=-1)
    with np.errstate(all="ignore"):
        q = x.astype(np.float32) / per_element
    zero = per_element == 0
    skipped = np.repeat(skip, block, axis=-1)
    mask, expected_ours, allowed_theirs = quantize_exemptions(q, output_type, oracle)
    ours_bits, theirs_bits = bits(ours_data).astype(np.int64), bits(theirs_data).astype(np.int64)
    if output_type in INT_RANGE:
        ours_bits, theirs_bits = ours_data.astype(np.int64), theirs_data.astype(np.int64)
    assert (ours_bits[zero] == 0).all(), f"an effective scale of 0 gives +0 data (docs/semantics.md)\n{context}"
    exempt = mask & ~zero & ~skipped
    assert (ours_bits[exempt] == expected_ours[exempt]).all(), context
    assert np.isin(theirs_bits[exempt], allowed_theirs).all(), context
    compared = ~(mask | zero | skipped)
    assert_bits_equal(np.where(compared, ours_bits, 0), np.where(compared, theirs_bits, 0), context)


# --------------------------------------------------------------------------------------------------
# the deliberate differences, one named test each: what the oracle gives, and what netdsl gives per docs/semantics.md

SPECIALS = np.array([np.nan, -np.nan, np.inf, -np.inf, 3e9, -3e9, 1e30, 127.5, -128.5, 7.5, -8.5, -0.0],
                    np.float32)


def quantize_specials(to_type: str, oracle: str) -> tuple[np.ndarray, np.ndarray]:
    layout = Layout((SPECIALS.size,), "per-tensor", 0, scalar_scale=True)
    scale = np.array(1.0, np.float32)
    ours = run_netdsl(netdsl_model("quantize", "float32", layout, "float32", scale, to_type), SPECIALS)
    for_ort = oracle == "onnxruntime"
    model = quantize_graph(layout, "float32", "float32", to_type, for_ort=for_ort)
    theirs = (run_ort if for_ort else run_reference)(model, {"x": SPECIALS, "s": scale})
    return ours, theirs


@pytest.mark.parametrize("to_type", ["int8", "int4"])
def test_reference_integer_nan_inf_and_overflow(to_type: str) -> None:
    """The reference evaluator computes ``np.clip(np.rint(x / s).astype(np.int32), lo, hi)``: NaN, +Inf and
    any x / s >= 2^31 go through C's float -> int32 conversion, INT_MIN on x86-64, and so become -128 (int8)
    or -8 (int4). docs/semantics.md: NaN gives 0, +Inf and overflow saturate to 127 / 7. Everything else
    (-Inf, -3e9, ties, -0) agrees."""
    low, high = INT_RANGE[to_type]
    ours, theirs = quantize_specials(to_type, "reference")
    nan_like, huge_like = int(np.clip(C_INT32_OF_NAN, low, high)), int(np.clip(C_INT32_OF_HUGE, low, high))
    if C_INT32_OF_NAN == C_INT32_OF_HUGE == -(2**31):  # x86-64
        assert nan_like == huge_like == low
    # x:        NaN  -NaN  +Inf  -Inf  3e9  -3e9  1e30  127.5 -128.5 7.5  -8.5  -0
    expected = {"int8": [0, 0, 127, -128, 127, -128, 127, 127, -128, 8, -8, 0],
                "int4": [0, 0, 7, -8, 7, -8, 7, 7, -8, 7, -8, 0]}[to_type]
    assert ours.astype(int).tolist() == expected
    n, h = nan_like, huge_like
    assert theirs.astype(int).tolist() == [n, n, h, low, h, low, h] + expected[7:]


@pytest.mark.parametrize("to_type", ["int8", "int4"])
def test_onnxruntime_integer_nan(to_type: str) -> None:
    """onnxruntime's CPU QuantizeLinear turns NaN into the low end, -128 (int8) / -8 (int4); docs/semantics.md
    gives 0. Its +-Inf and overflow saturate as docs/semantics.md does."""
    low, high = INT_RANGE[to_type]
    ours, theirs = quantize_specials(to_type, "onnxruntime")
    theirs = theirs.astype(int)
    assert ours.astype(int)[:2].tolist() == [0, 0]
    assert theirs[:2].tolist() == [low, low]
    assert (ours.astype(int)[2:] == theirs[2:]).all()


@pytest.mark.parametrize("oracle", ["reference", "onnxruntime"])
def test_fp8_nan_sign_and_saturation(oracle: str) -> None:
    """fp8 (E4M3FN): both oracles keep a NaN's sign, -NaN -> 0xFF; docs/semantics.md makes NaN canonical, 0x7F.
    QuantizeLinear's default ``saturate=1`` is docs/semantics.md's rule: +-Inf and overflow give +-448
    (0x7E / 0xFE), exactly as netdsl; with ``saturate=0`` the reference gives NaN for them instead."""
    ours, theirs = quantize_specials("fp8", oracle)
    ours_bits, theirs_bits = bits(ours), bits(theirs.view(ml_dtypes.float8_e4m3fn))
    assert ours_bits[:2].tolist() == [0x7F, 0x7F]
    assert theirs_bits[:2].tolist() == [0x7F, 0xFF]
    assert (ours_bits[2:] == theirs_bits[2:]).all()
    assert ours_bits[2:4].tolist() == [0x7E, 0xFE]
    if oracle == "reference":
        node = helper.make_node("QuantizeLinear", ["x", "s"], ["y"], output_dtype=TensorProto.FLOAT8E4M3FN,
                                saturate=0)
        model = onnx_model([node], [("x", "float32", [SPECIALS.size]), ("s", "float32", [])],
                           [("y", "fp8", [SPECIALS.size])])
        unsaturated = bits(run_reference(model, {"x": SPECIALS, "s": np.array(1.0, np.float32)}))
        assert unsaturated[2] & 0x7F == 0x7F and unsaturated[6] & 0x7F == 0x7F  # +Inf, 1e30 -> NaN


def test_reference_fp4_nan() -> None:
    """fp4 (E2M1, opset 23+): the reference evaluator casts with ml_dtypes, which maps NaN to a zero, +NaN to
    -0 (0x8) and -NaN to +0 (0x0). docs/semantics.md (ONNX's float4 rule) gives +6 (0x7) for both. +-Inf and
    overflow saturate to +-6 in both."""
    ours, theirs = quantize_specials("fp4", "reference")
    ours_bits, theirs_bits = bits(ours), bits(theirs)
    assert ours_bits[:2].tolist() == [0x7, 0x7]
    assert theirs_bits[:2].tolist() == [0x8, 0x0]
    assert (ours_bits[2:] == theirs_bits[2:]).all()
    assert ours_bits[2:4].tolist() == [0x7, 0xF]


@pytest.mark.parametrize("oracle,to_type", [("reference", "float32"), ("reference", "float16"),
                                            ("reference", "bfloat16"), ("onnxruntime", "float32"),
                                            ("onnxruntime", "float16")])
def test_dequantize_nan_sign(oracle: str, to_type: str) -> None:
    """Dequantizing fp8's NaN codes: the oracles keep the sign, so 0xFF gives a negative NaN (float32
    0xFFC00000, float16 0xFE00, bfloat16 0xFFC0); docs/semantics.md makes every NaN output canonical (0x7FC00000,
    0x7E00, 0x7FC0). onnxruntime has no bfloat16 output."""
    q = np.array([0x7F, 0xFF, 0x01, 0x81], np.uint8).view(ml_dtypes.float8_e4m3fn)
    layout = Layout((4,), "per-tensor", 0, scalar_scale=True)
    scale = np.array(0.5, np.float32)
    ours = run_netdsl(netdsl_model("dequantize", "fp8", layout, "float32", scale, to_type), q)
    model = dequantize_graph(layout, "fp8", "float32", to_type, for_ort=oracle == "onnxruntime")
    theirs = (run_ort if oracle == "onnxruntime" else run_reference)(model, {"x": q, "s": scale})
    canonical = CANONICAL_NAN[to_type]
    sign = {"float32": 0x80000000, "float16": 0x8000, "bfloat16": 0x8000}[to_type]
    assert bits(ours)[:2].tolist() == [canonical, canonical]
    assert bits(theirs)[:2].tolist() == [canonical, canonical | sign]
    assert (bits(ours)[2:] == bits(theirs)[2:]).all()  # +-2^-10: subnormal fp8 times 0.5, exact


def e8m0_cast(oracle: str, q: np.ndarray) -> np.ndarray:
    nodes = [helper.make_node("Cast", ["q"], ["e"], to=TensorProto.FLOAT8E8M0, round_mode="up", saturate=1),
             helper.make_node("Cast", ["e"], ["y"], to=TensorProto.FLOAT)]
    model = onnx_model(nodes, [("q", "float32", [q.size])], [("y", "float32", [q.size])])
    return (run_ort if oracle == "onnxruntime" else run_reference)(model, {"q": q})


def netdsl_mxfp8_scales(q: np.ndarray) -> np.ndarray:
    """netdsl's MXFP8 block scales for blocks whose amax / 448 is exactly ``q`` (one nonzero element
    448 * q per block of 32, where that product is exact)."""
    x = np.zeros((q.size, 32), np.float32)
    x[:, 0] = q.astype(np.float64) * 448
    text = (f"input x : float32[{q.size}, 32]\ndata, scale = dynamic_quantize(x, axis=1, block_size=32, "
            f"output_type=fp8, scale_type=e8m0)\noutput scale\n")
    return netdsl.loads(text).run({"x": x}, backend="numpy")["scale"].astype(np.float32).reshape(-1)


def test_reference_e8m0_cast_subnormal_and_inf() -> None:
    """The MXFP8 scale rule is ONNX's Cast to float8e8m0 with ``round_mode="up"``. The reference evaluator's
    version rounds every nonzero float32 subnormal q up to 2^-126 (its exponent field 0 plus one), even
    q <= 2^-127, and maps +Inf to NaN despite ``saturate=1``. docs/semantics.md: the smallest e with q <= 2^e,
    clamped to [-127, 127], so q <= 2^-127 gives 2^-127 and Inf gives 2^127 -- what onnxruntime's Cast gives
    (test_mxfp8_scale_rule_matches_onnxruntime_cast)."""
    q = np.array([2.0**-130, 2.0**-127, 2.0**-126, 0.0, np.inf, 1.5], np.float32)
    theirs = e8m0_cast("reference", q)
    ours = netdsl_mxfp8_scales(q[:4])
    assert theirs[:3].tolist() == [2.0**-126] * 3 and theirs[3] == 2.0**-127
    assert np.isnan(theirs[4]) and theirs[5] == 2.0
    assert ours.tolist() == [2.0**-127, 2.0**-127, 2.0**-126, 2.0**-127]
    inf_block = netdsl.loads("input x : float32[1, 32]\nd, s = dynamic_quantize(x, axis=1, block_size=32, "
                             "output_type=fp8, scale_type=e8m0)\noutput s\n").run(
        {"x": np.full((1, 32), np.inf, np.float32)}, backend="numpy")["s"]
    assert inf_block.astype(np.float32).tolist() == [[2.0**127]]


@EXAMPLES
@given(hnp.arrays(np.float32, st.integers(1, 64), elements=st.one_of(
    st.floats(min_value=0, width=32, allow_subnormal=True),
    st.integers(-127, 127).map(lambda e: np.float32(2.0**e)),
    st.sampled_from([0.0, 2.0**-149, 2.0**-127, 2.0**127 * 1.5]))))
def test_mxfp8_scale_rule_matches_onnxruntime_cast(q: np.ndarray) -> None:
    """e8m0 round-up, every float32 q >= 0 (subnormals, powers of two, Inf): netdsl's MXFP8 scale equals
    onnxruntime's Cast(float -> float8e8m0, round_mode="up", saturate=1), bit for bit."""
    from netdsl import dtypes

    theirs = e8m0_cast("onnxruntime", q)
    assert_bits_equal(dtypes.e8m0_round_up(q).astype(np.float32), theirs, f"q = {q!r}")
    with np.errstate(over="ignore"):
        exact = (q * np.float32(448)).astype(np.float64) == q.astype(np.float64) * 448  # amax = 448 q exactly
    if exact.any():  # the same through the whole layer
        assert_bits_equal(netdsl_mxfp8_scales(q[exact]), theirs[exact], f"q = {q[exact]!r}")


@pytest.mark.parametrize("oracle", ["reference", "onnxruntime"])
def test_float16_division_needs_precision_float(oracle: str) -> None:
    """docs/semantics.md divides in float32 whatever the input types. QuantizeLinear (opset 23+) divides in the
    scale's type unless ``precision`` says otherwise: with float16 x = 91.625 and scale 1.1669921875, the
    float16 quotient is 78.5 (a tie, to even: 78) while the float32 quotient is 78.51381 (79). Both oracles
    give 78 by default and 79 with ``precision=FLOAT``, which is what the property tests above use."""
    x, scale = np.array([91.625], np.float16), np.array(1.1669921875, np.float16)
    run = run_ort if oracle == "onnxruntime" else run_reference
    results = []
    for precision in ({}, {"precision": TensorProto.FLOAT}):
        node = helper.make_node("QuantizeLinear", ["x", "s"], ["y"], output_dtype=TensorProto.INT8, **precision)
        model = onnx_model([node], [("x", "float16", [1]), ("s", "float16", [])], [("y", "int8", [1])])
        results.append(int(run(model, {"x": x, "s": scale})[0]))
    layout = Layout((1,), "per-tensor", 0, scalar_scale=True)
    ours = run_netdsl(netdsl_model("quantize", "float16", layout, "float16", scale, "int8"), x)
    assert results == [78, 79]
    assert int(ours[0]) == 79
