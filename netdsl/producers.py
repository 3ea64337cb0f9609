"""Why an output differs: the known ways other quantizers depart from TensorRT's rules.

Each :class:`ProducerRule` is TensorRT's rule for one layer with exactly one change, the change a named
peer makes (ModelOpt, torchao, PyTorch core...; docs/semantics.md, "How other quantizers differ, and what
compare says"). To explain a mismatch, :func:`explain` recomputes the layers upstream of the output with
each rule that applies to them and counts the mismatching elements whose reference value the rule
reproduces. The peers' arithmetic is written out here in plain NumPy float32 (and ``ml_dtypes`` casts
with explicit saturation), on purpose independent of netdsl's own kernels: a rule that reproduces the
reference says what the reference's producer did, not what netdsl does. The layers after the changed one
are evaluated with netdsl's reference implementations (``OpDef.evaluate``), as the network defines them.

:func:`evaluate` runs a graph with those reference implementations and keeps every tensor, which also
gives ``compare`` the input value and scale behind a mismatching element (:func:`context`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from netdsl import dtypes
from netdsl.check import CheckedGraph, CheckedNode
from netdsl.ops.common import ScaleResolution
from netdsl.ops.dequantize import DEQUANTIZE
from netdsl.ops.dynamic_quantize import DYNAMIC_QUANTIZE, DynamicResolution
from netdsl.ops.quantize import QUANTIZE

F32 = np.float32
#: the smallest positive fp8 (E4M3) value, and its smallest normal
FP8_MIN_SUBNORMAL, FP8_MIN_NORMAL = F32(2.0**-9), F32(2.0**-6)


# --------------------------------------------------------------------------------------------------
# the network's tensors, by netdsl's reference implementations


def evaluate(graph: CheckedGraph, inputs: dict[str, np.ndarray], replaced: dict[str, np.ndarray] | None = None,
             env: dict[str, np.ndarray] | None = None, nodes: list[int] | None = None) -> dict[str, np.ndarray]:
    """Every tensor of ``graph`` (name -> storage array) for storage ``inputs``, by each layer's NumPy
    reference. ``replaced`` overrides outputs of layers; ``env`` and ``nodes`` (indices in graph order)
    continue an earlier evaluation with only those layers."""
    values: dict[str, np.ndarray] = dict(env) if env is not None else dict(inputs)
    if env is None:
        for constant in graph.constants:
            assert constant.data is not None
            values[constant.name] = constant.data
    replaced = replaced or {}
    for k in range(len(graph.nodes)) if nodes is None else nodes:
        node = graph.nodes[k]
        if all(name in replaced for name in node.outputs):
            values.update((name, replaced[name]) for name in node.outputs)
            continue
        results = node.op.evaluate(node.resolution, [values[name] for name in node.inputs])
        values.update(zip(node.outputs, results))
    return values


def _decoded(graph: CheckedGraph, env: dict[str, np.ndarray], name: str) -> np.ndarray:
    """A tensor's exact values as float32."""
    value_type = graph.values[name].type
    assert value_type is not None
    return dtypes.decode(env[name], value_type.dtype).astype(F32)


def _block(node: CheckedNode) -> tuple[int, ...]:
    """The normalised block of a layer: element ``i`` uses scale ``i // block`` (docs/semantics.md)."""
    resolution = node.resolution
    if isinstance(resolution, DynamicResolution):
        return resolution.block
    assert isinstance(resolution, ScaleResolution)  # the layers a producer difference is about
    return resolution.granularity.block


def _per_element(scale: np.ndarray, block: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """``out[i] = scale[i // block]``."""
    return scale[np.ix_(*[np.arange(extent) // b for extent, b in zip(shape, block)])] if shape else scale


def _block_max(magnitude: np.ndarray, block: tuple[int, ...]) -> np.ndarray:
    """max over each block (NaN propagates; padding with 0 leaves the maximum of |x| alone)."""
    padded = np.pad(magnitude, [(0, -(-d // b) * b - d) for d, b in zip(magnitude.shape, block)])
    split = [n for d, b in zip(padded.shape, block) for n in (d // b, b)]
    return padded.reshape(split).max(axis=tuple(range(1, 2 * magnitude.ndim, 2)))


def producer_node(graph: CheckedGraph, output: str) -> CheckedNode | None:
    return graph.producer(output)


def context(graph: CheckedGraph, env: dict[str, np.ndarray], output: str,
            indices: list[tuple[int, ...]]) -> list[dict[str, float]]:
    """For each element index of ``output``: what produced it where its layer is elementwise. A
    Quantize/Dequantize output or a DynamicQuantize data output: ``input`` (the layer's input value) and
    ``scale`` (the effective scale: for NVFP4 the block scale times double_quant_scale); a
    DynamicQuantize scale output: ``amax`` of its block. Empty dicts elsewhere."""
    node = producer_node(graph, output)
    if node is None or node.op not in (QUANTIZE, DEQUANTIZE, DYNAMIC_QUANTIZE):
        return [{} for _ in indices]
    x = _decoded(graph, env, node.inputs[0])
    block = _block(node)
    resolution = node.resolution
    if isinstance(resolution, DynamicResolution):
        scale = _decoded(graph, env, node.outputs[1])
        if resolution.double_quant_scale is not None:
            scale = scale * F32(resolution.double_quant_scale)
        if output == node.outputs[1]:
            amax = _block_max(np.where(np.isnan(x), F32(0), np.abs(x)), block)
            return [{"amax": float(amax[index])} for index in indices]
    else:
        assert isinstance(resolution, ScaleResolution)
        scale = _decoded(graph, env, node.inputs[1]).reshape(resolution.granularity.scale_shape)
    return [{"input": float(x[index]),
             "scale": float(scale[tuple(i // b for i, b in zip(index, block))])} for index in indices]


# --------------------------------------------------------------------------------------------------
# the peers' arithmetic, written out (float32 throughout, as the peers compute)


def _fp8(q: np.ndarray) -> np.ndarray:
    """E4M3 values of float32 ``q``: saturate to +-448, round to nearest even; NaN -> NaN."""
    with np.errstate(invalid="ignore"):
        values = np.clip(q, -448, 448).astype(ml_dtypes.float8_e4m3fn).astype(F32)
    return np.where(np.isnan(q), F32(np.nan), values)


def _fp4(q: np.ndarray) -> np.ndarray:
    """E2M1 values: saturate to +-6, round to nearest even; NaN -> +6 (ONNX's rule, as TensorRT)."""
    clipped = np.where(np.isnan(q), F32(6), np.clip(q, -6, 6))
    return clipped.astype(ml_dtypes.float4_e2m1fn).astype(F32)


def _integer(q: np.ndarray, low: int, high: int) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        values = np.rint(np.clip(q, low, high))
    return np.where(np.isnan(values), F32(0), values).astype(F32)


def _round_to(q: np.ndarray, dtype: dtypes.DType) -> np.ndarray:
    """Values of ``dtype`` (int8, int4, fp8, fp4) for float32 quotients ``q``."""
    if dtype.name == "fp8":
        return _fp8(q)
    if dtype.name == "fp4":
        return _fp4(q)
    return _integer(q, -128, 127) if dtype.name == "int8" else _integer(q, -8, 7)


def _power_of_two_ceil(q: np.ndarray) -> np.ndarray:
    """The smallest e with q <= 2^e, in [-127, 127] (q = 0 -> -127, Inf -> 127); NaN stays NaN."""
    mantissa, exponent = np.frexp(q.astype(np.float64))  # q = mantissa * 2^exponent, mantissa in [0.5, 1)
    e = np.where(mantissa == 0.5, exponent - 1, exponent).astype(np.float64)
    e = np.where(np.isinf(q), 127, np.where(q == 0, -127, e))
    return np.where(np.isnan(q), np.nan, np.clip(e, -127, 127))


def _power_of_two_floor(q: np.ndarray) -> np.ndarray:
    """floor(log2 q) for finite q > 0."""
    _, exponent = np.frexp(q.astype(np.float64))
    return (exponent - 1).astype(np.float64)


def _divide(x: np.ndarray, scale: np.ndarray, reciprocal: bool) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return x * (F32(1) / scale) if reciprocal else x / scale


def _amax(x: np.ndarray, block: tuple[int, ...], nan_propagates: bool) -> np.ndarray:
    magnitude = np.abs(x)
    if not nan_propagates:
        magnitude = np.where(np.isnan(magnitude), F32(0), magnitude)
    return _block_max(magnitude, block)


def _stored(values: np.ndarray, dtype: dtypes.DType) -> np.ndarray:
    """Exact values (of ``dtype``) as netdsl's storage array, for the layers evaluated after them."""
    return dtypes.encode(values.astype(F32), dtype)


# --------------------------------------------------------------------------------------------------
# each rule: one layer recomputed with one peer's change; returns the layer's outputs (storage) or None


@dataclass(frozen=True)
class Layer:
    """The layer a rule recomputes: its node, its inputs' exact float32 values, its resolution."""

    node: CheckedNode
    args: list[np.ndarray | None]
    env: dict[str, np.ndarray]
    graph: CheckedGraph

    @property
    def resolution(self) -> Any:
        return self.node.resolution

    @property
    def mode(self) -> str:
        return self.resolution.mode if self.node.op is DYNAMIC_QUANTIZE else self.node.op.name

    def input_type(self, slot: int = 0) -> dtypes.DType:
        value_type = self.graph.values[self.node.inputs[slot]].type
        assert value_type is not None
        return value_type.dtype


def _nvfp4(layer: Layer, *, one_division: bool = False, nan_amax: bool = False, reciprocal: bool = False,
           scale_rule: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
           plus_zero: bool = False) -> list[np.ndarray]:
    x = layer.args[0]
    assert x is not None
    block, dqs = layer.resolution.block, F32(layer.resolution.double_quant_scale)
    amax = _amax(x, block, nan_amax)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        raw = amax / (F32(6) * dqs) if one_division else amax / F32(6) / dqs
    scale = _fp8(raw)
    if scale_rule is not None:
        scale = scale_rule(scale, amax)
    effective = _per_element((scale * dqs).astype(F32), block, x.shape)
    data = np.where(effective == 0, F32(0), _fp4(_divide(x, effective, reciprocal)))
    if plus_zero:
        data = np.where(data == 0, F32(0), data)
    return [_stored(data, dtypes.FP4), _stored(scale, dtypes.FP8)]


def _mxfp8(layer: Layer, *, nan_amax: bool = False, exponent: Callable[[np.ndarray], np.ndarray] | None = None,
           smallest_scale_divisor: float | None = None) -> list[np.ndarray]:
    x = layer.args[0]
    assert x is not None
    block = layer.resolution.block
    amax = _amax(x, block, nan_amax)
    with np.errstate(invalid="ignore"):
        e = exponent(amax) if exponent is not None else _power_of_two_ceil(amax / F32(448))
    e = np.where(np.isnan(amax), np.nan, e)
    scale = np.ldexp(F32(1), np.nan_to_num(e, nan=0).astype(np.int32)).astype(F32)
    scale = np.where(np.isnan(e), F32(np.nan), scale)
    divisor = scale if smallest_scale_divisor is None else np.where(e == -127, F32(smallest_scale_divisor), scale)
    data = _fp8(_divide(x, _per_element(divisor, block, x.shape), False))
    return [_stored(data, dtypes.FP8), _stored(scale, dtypes.E8M0)]


def _float_scale(layer: Layer, *, reciprocal: bool) -> list[np.ndarray]:
    x = layer.args[0]
    assert x is not None
    block, output_type = layer.resolution.block, layer.resolution.output_type
    with np.errstate(invalid="ignore"):
        scale = (_amax(x, block, False) / F32(448 if output_type.name == "fp8" else 127)).astype(F32)
    effective = _per_element(scale, block, x.shape)
    data = np.where(effective == 0, F32(0), _round_to(_divide(x, effective, reciprocal), output_type))
    return [_stored(data, output_type), _stored(scale, dtypes.FLOAT32)]


def _quantize(layer: Layer, *, reciprocal: bool = False, bf16_quotient: bool = False,
              zero_block_code: float | None = None, plus_zero: bool = False) -> list[np.ndarray]:
    x, scale = layer.args[0], layer.args[1]
    assert x is not None and scale is not None
    block, to_type = layer.resolution.granularity.block, layer.resolution.to_type
    per_element = _per_element(scale.reshape(layer.resolution.granularity.scale_shape), block, x.shape)
    quotient = _divide(x, per_element, reciprocal)
    if bf16_quotient:
        quotient = quotient.astype(ml_dtypes.bfloat16).astype(F32)
    data = _round_to(quotient, to_type)
    if zero_block_code is not None:
        zero_block = _per_element(_block_max(np.abs(x), block) == 0, block, x.shape)
        data = np.where(zero_block, F32(zero_block_code), data)
    if plus_zero:
        data = np.where(data == 0, F32(0), data)
    return [_stored(data, to_type)]


def _dequantize_plus_zero(layer: Layer) -> list[np.ndarray]:
    """Code 0x8 (-0) of fp4 dequantizes to +0."""
    q, scale = layer.args[0], layer.args[1]
    assert q is not None and scale is not None
    resolution = layer.resolution
    values = np.where(q == 0, F32(0), q)
    y = values * _per_element(scale.reshape(resolution.granularity.scale_shape), resolution.granularity.block, q.shape)
    return [y.astype(F32).astype(resolution.to_type.storage)]


def _fake_quant_reciprocal(layer: Layer) -> list[np.ndarray] | None:
    """ModelOpt's ``scaled_e4m3``: ``fp8(x * r) / r`` with ``r = fl32(fl32(1 / amax) * 448)``, for a
    Dequantize of a per-tensor fp8 Quantize with the same scale (amax = fl32(scale * 448))."""
    node, graph = layer.node, layer.graph
    source = graph.producer(node.inputs[0])
    if source is None or source.op is not QUANTIZE or not isinstance(source.resolution, ScaleResolution) \
            or source.resolution.to_type.name != "fp8" \
            or source.inputs[1] != node.inputs[1] or layer.args[1] is None or layer.args[1].size != 1:
        return None
    x = _decoded(graph, layer.env, source.inputs[0])
    amax = (layer.args[1].reshape(()) * F32(448)).astype(F32)
    r = ((F32(1) / amax) * F32(448)).astype(F32)
    with np.errstate(invalid="ignore", over="ignore"):
        y = (_fp8((x * r).astype(F32)) / r).astype(F32)
    return [y.astype(layer.resolution.to_type.storage)]


def _floor_exponent(amax: np.ndarray) -> np.ndarray:
    finite = np.isfinite(amax) & (amax > 0)
    e = np.where(finite, _power_of_two_floor(np.where(finite, amax, 1)) - 8, -127)
    return np.clip(np.where(np.isinf(amax), 127, e), -127, 127)


def _float_log2_exponent(amax: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        e = np.ceil(np.log2((amax / F32(448)).astype(F32)))  # float32 log2, as the peers' eager code
    return np.clip(e, -127, 127)


def _inf_as_exponent_128(amax: np.ndarray) -> np.ndarray:
    return np.where(np.isinf(amax), 120.0, _power_of_two_ceil(amax / F32(448)))


@dataclass(frozen=True)
class ProducerRule:
    """One known difference: ``title`` (the class), ``who`` does it, on which layer ``modes``
    (``quantize``, ``dequantize``, ``NVFP4``, ``MXFP8``, ``float-scale``), and the layer recomputed with
    it (None where it doesn't apply to that layer)."""

    key: str
    title: str
    who: str
    modes: tuple[str, ...]
    run: Callable[[Layer], list[np.ndarray] | None]
    applies: Callable[[Layer], bool] = lambda layer: True


def _clamp_underflow(scale: np.ndarray, amax: np.ndarray) -> np.ndarray:
    return np.where((scale == 0) & (amax > 0), FP8_MIN_SUBNORMAL, scale)


def _clamp_min_normal(scale: np.ndarray, amax: np.ndarray) -> np.ndarray:
    return np.where(amax > 0, np.maximum(scale, FP8_MIN_NORMAL), scale)


def _zero_block(value: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda scale, amax: np.where(amax == 0, F32(value), scale)


#: the known producer differences (docs/semantics.md, "How other quantizers differ, and what compare says");
#: "NaN bits" is not here: NaN equals NaN in a comparison, and :func:`nan_bits` names NaNs whose sign differs
RULES: tuple[ProducerRule, ...] = (
    ProducerRule("nan-amax", "NaN in amax", "ModelOpt NVFP4/MXFP8, torchao MXFP8", ("NVFP4", "MXFP8"),
                 lambda layer: (_nvfp4 if layer.mode == "NVFP4" else _mxfp8)(layer, nan_amax=True)),
    ProducerRule("zero-block-scale-1", "zero block scale 1.0", "ModelOpt NVFP4", ("NVFP4",),
                 lambda layer: _nvfp4(layer, scale_rule=_zero_block(1.0))),
    ProducerRule("zero-block-scale-2^-6", "zero block scale 2^-6", "torchao NVFP4", ("NVFP4",),
                 lambda layer: _nvfp4(layer, scale_rule=_zero_block(2.0**-6))),
    ProducerRule("scale-underflow", "scale underflow clamped to 2^-9", "ModelOpt NVFP4", ("NVFP4",),
                 lambda layer: _nvfp4(layer, scale_rule=_clamp_underflow)),
    ProducerRule("one-division", "one division", "ModelOpt NVFP4", ("NVFP4",),
                 lambda layer: _nvfp4(layer, one_division=True)),
    ProducerRule("reciprocal", "reciprocal", "torchao NVFP4/INT8/INT4, PyTorch core, ModelOpt INT4QTensor",
                 ("quantize", "NVFP4", "float-scale"),
                 lambda layer: {"quantize": lambda: _quantize(layer, reciprocal=True),
                                "NVFP4": lambda: _nvfp4(layer, reciprocal=True),
                                "float-scale": lambda: _float_scale(layer, reciprocal=True)}[layer.mode]()),
    ProducerRule("floor-e8m0", "FLOOR e8m0", "torchao FLOOR, OCP spec, microxcaling", ("MXFP8",),
                 lambda layer: _mxfp8(layer, exponent=_floor_exponent)),
    ProducerRule("float-log2", "float log2", "ModelOpt MXFP8, torchao RCEIL (eager)", ("MXFP8",),
                 lambda layer: _mxfp8(layer, exponent=_float_log2_exponent)),
    ProducerRule("e8m0-2^-127-rceil", "e8m0 = 2^-127 (data times 1.0)", "torchao RCEIL", ("MXFP8",),
                 lambda layer: _mxfp8(layer, smallest_scale_divisor=1.0)),
    ProducerRule("e8m0-2^-127-floor", "e8m0 = 2^-127 (data divided by 2^-126)", "torchao FLOOR", ("MXFP8",),
                 lambda layer: _mxfp8(layer, smallest_scale_divisor=2.0**-126)),
    ProducerRule("inf-amax", "Inf amax read as exponent 128", "torchao FLOOR", ("MXFP8",),
                 lambda layer: _mxfp8(layer, exponent=_inf_as_exponent_128)),
    ProducerRule("scale-clamp-2^-6", "2^-6 scale clamp", "torchao NVFP4", ("NVFP4",),
                 lambda layer: _nvfp4(layer, scale_rule=_clamp_min_normal)),
    ProducerRule("minus-zero", "-0 as +0", "ModelOpt NVFP4", ("NVFP4", "quantize", "dequantize"),
                 lambda layer: {"NVFP4": lambda: _nvfp4(layer, plus_zero=True),
                                "quantize": lambda: _quantize(layer, plus_zero=True),
                                "dequantize": lambda: _dequantize_plus_zero(layer)}[layer.mode](),
                 applies=lambda layer: layer.mode == "NVFP4" or layer.input_type(0).name == "fp4"
                 or (layer.mode == "quantize" and layer.resolution.to_type.name == "fp4")),
    ProducerRule("bf16-division", "bf16 division", "ModelOpt FP8QTensor", ("quantize",),
                 lambda layer: _quantize(layer, bf16_quotient=True),
                 applies=lambda layer: layer.input_type(0).name == "bfloat16"),
    ProducerRule("fake-quant-reciprocal", "fake-quant reciprocal", "ModelOpt scaled_e4m3", ("dequantize",),
                 _fake_quant_reciprocal),
    ProducerRule("zero-int4-block", "zero INT4 block", "ModelOpt INT4QTensor", ("quantize",),
                 lambda layer: _quantize(layer, zero_block_code=-8.0),
                 applies=lambda layer: layer.resolution.to_type.name == "int4"),
)

NAN_BITS = ("nan-bits", "NaN bits", "every fp8 peer")


# --------------------------------------------------------------------------------------------------
# explaining


@dataclass(frozen=True)
class Cause:
    """A known producer difference and how many of an output's differences it reproduces."""

    key: str
    title: str
    who: str
    explains: int
    of: int
    what: str = "mismatches"

    def __str__(self) -> str:
        return f"{self.title} ({self.who}): explains {self.explains} of {self.of} {self.what}"


def _upstream(graph: CheckedGraph, output: str) -> list[int]:
    """Indices of the nodes ``output`` depends on, in graph order."""
    needed, pending = set(), [output]
    while pending:
        producer = graph.producer(pending.pop())
        if producer is not None and id(producer) not in needed:
            needed.add(id(producer))
            pending.extend(producer.inputs)
    return [k for k, node in enumerate(graph.nodes) if id(node) in needed]


def explain(graph: CheckedGraph, env: dict[str, np.ndarray], output: str, mismatch: np.ndarray,
            still_differs: Callable[[np.ndarray], np.ndarray]) -> tuple[list[Cause], int]:
    """The rules that reproduce the reference at ``output``'s mismatching elements (``mismatch``, a
    boolean mask), each with how many of them it explains, and how many no rule explains.
    ``still_differs(candidate)`` is the comparison's mismatch mask of a candidate output (storage)."""
    total = int(mismatch.sum())
    explained_any = np.zeros_like(mismatch)
    upstream = _upstream(graph, output)
    layers = [Layer(graph.nodes[k], [_decoded(graph, env, name) for name in graph.nodes[k].inputs], env, graph)
              for k in upstream]
    causes = []
    for rule in RULES:
        explained = np.zeros_like(mismatch)
        for position, layer in enumerate(layers):
            if layer.mode not in rule.modes or not rule.applies(layer):
                continue
            with np.errstate(all="ignore"):
                outputs = rule.run(layer)
            if outputs is None:
                continue
            replaced = dict(zip(layer.node.outputs, outputs))
            candidate = evaluate(graph, {}, replaced, env, upstream[position:])[output]
            explained |= mismatch & ~still_differs(candidate)
        count = int(explained.sum())
        if count:
            causes.append(Cause(rule.key, rule.title, rule.who, count, total))
            explained_any |= explained
    return sorted(causes, key=lambda cause: -cause.explains), total - int(explained_any.sum())


def nan_bits(graph: CheckedGraph, env: dict[str, np.ndarray], output: str, differs: np.ndarray,
             reference_negative: np.ndarray) -> Cause | None:
    """NaNs whose sign differs from netdsl's: explained where the reference keeps the sign of the NaN that
    the elementwise chain of layers producing ``output`` started from."""
    total = int(differs.sum())
    name = output
    while True:
        node = producer_node(graph, name)
        if node is None or node.op not in (QUANTIZE, DEQUANTIZE, DYNAMIC_QUANTIZE) \
                or (node.op is DYNAMIC_QUANTIZE and name != node.outputs[0]):
            break
        name = node.inputs[0]
    if not total or name == output:
        return None
    source = _decoded(graph, env, name)  # an elementwise chain: the output's shape
    count = int((differs & np.isnan(source) & (np.signbit(source) == reference_negative)).sum())
    return Cause(*NAN_BITS, count, total, "NaNs whose sign differs") if count else None
