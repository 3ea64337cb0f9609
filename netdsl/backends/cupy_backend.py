"""The GPU executor: runs a checked graph through the CUDA kernels of ``kernels/`` (via CuPy).

Before the first run of a graph a planning pass (:func:`plan_graph`, plain Python: it imports without
CuPy) turns its nodes into steps, fusing two patterns into one kernel each without changing a bit:

- ``quantize -> dequantize``: q = Quantize(x) is not a graph output and its only consumer is a
  Dequantize (as that layer's input) over the same block geometry (equal ``block`` and
  ``scale_shape``): one ``cuda.quantize_dequantize`` call, q never stored;
- the NVFP4 chain ``sf = dequantize(codes, dqs)`` (per-tensor) then ``y = dequantize(data, sf)``
  where sf is not an output and that is its only use: one ``cuda.dequantize_double`` call computing
  y = round_to(to_type, fl32(float32(q) * S)) with S = round_to(sf's type, fl32(decode(code) * dqs)),
  sf never stored.

Set ``NETDSL_FUSION=0`` (or ``BACKEND.fusion = False``) to run every node on its own: the bits are the
same either way (tests/test_gpu_fusion.py). Tensors stay on the device between steps; each
intermediate is freed after its last use, so a run holds at most the inputs, the outputs and one
tensor per live edge. The plan, the constants uploaded to the device and every kernel launch's
fixed arguments are kept per graph, so a repeated run pays only for its inputs, launches and
downloads.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netdsl import dtypes
from netdsl.backends import Backend, cuda  # cuda imports without CuPy (it loads CuPy lazily)
from netdsl.ir import Graph, Node
from netdsl.ops import elementwise, reduce
from netdsl.ops.cast import CAST, CastPlan
from netdsl.ops.dequantize import DEQUANTIZE
from netdsl.ops.dynamic_quantize import DYNAMIC_QUANTIZE, DynamicPlan, applied_double_quant_scale
from netdsl.ops.elementwise import ELEMENTWISE, ElementwisePlan
from netdsl.ops.quantize import QUANTIZE, ScalePlan, check_applied_scale
from netdsl.ops.reduce import REDUCE, ReducePlan
from netdsl.ops.shuffle import SHUFFLE, ShufflePlan
from netdsl.ops.unary import UNARY, UnaryPlan

# --------------------------------------------------------------------------------------------------
# The planning pass (no CuPy)

NODE, QUANTIZE_DEQUANTIZE, DEQUANTIZE_DOUBLE = "node", "quantize_dequantize", "dequantize_double"


@dataclass(frozen=True)
class Step:
    """One kernel call (or one node's calls): ``nodes`` are the graph layers it covers, in order;
    ``inputs`` the tensors it reads; ``outputs`` those it writes; ``free`` the tensors that are dead
    after it (no later step reads them and they are not graph outputs)."""

    kind: str  # NODE, QUANTIZE_DEQUANTIZE or DEQUANTIZE_DOUBLE
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    free: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The covered layers by their (first) output names, e.g. ('q', 'y') for a fused pair."""
        return tuple(node.outputs[0] for node in self.nodes)


_FUSION_WORDS: dict[str, bool] = {}  # $NETDSL_FUSION's text -> its meaning (read every run, parsed once)


def fusion_enabled() -> bool:
    """False when $NETDSL_FUSION is 0/false/no/off."""
    text = os.environ.get("NETDSL_FUSION", "1")
    enabled = _FUSION_WORDS.get(text)
    if enabled is None:
        enabled = _FUSION_WORDS[text] = text.strip().lower() not in ("0", "false", "no", "off")
    return enabled


def _consumers(graph: Graph) -> dict[str, list[tuple[int, int]]]:
    """tensor -> [(node index, input slot)] for every layer input that reads it."""
    uses: dict[str, list[tuple[int, int]]] = {}
    for index, node in enumerate(graph.nodes):
        for slot, name in enumerate(node.inputs):
            uses.setdefault(name, []).append((index, slot))
    return uses


def _only_use(graph: Graph, uses: dict[str, list[tuple[int, int]]], name: str, index: int, slot: int) -> bool:
    return name not in graph.outputs and uses.get(name, []) == [(index, slot)]


def plan_graph(graph: Graph, fusion: bool = True) -> list[Step]:
    """The checked graph's nodes as steps, with the fusable patterns fused (see the module docstring).

    A fused step takes the place of the later node, so everything it reads has been computed by then.
    """
    nodes = graph.nodes
    uses = _consumers(graph)
    producer = {name: index for index, node in enumerate(nodes) for name in node.outputs}
    absorbed: set[int] = set()  # earlier nodes folded into a later one's step
    fused: dict[int, Step] = {}
    if fusion:
        for index, node in enumerate(nodes):
            if node.op is not DEQUANTIZE:
                continue
            data, scale = node.inputs[0], node.inputs[1]
            first = producer.get(data)
            if (first is not None and first not in absorbed and nodes[first].op is QUANTIZE
                    and _only_use(graph, uses, data, index, 0)):
                q_plan: ScalePlan = nodes[first].plan
                dq_plan: ScalePlan = node.plan
                if (q_plan.granularity.block == dq_plan.granularity.block
                        and q_plan.granularity.scale_shape == dq_plan.granularity.scale_shape):
                    x, q_scale = nodes[first].inputs[0], nodes[first].inputs[1]
                    absorbed.add(first)
                    fused[index] = Step(QUANTIZE_DEQUANTIZE, (nodes[first], node), (x, q_scale, scale),
                                        tuple(node.outputs))
                    continue
            first = producer.get(scale)
            if (first is not None and first not in absorbed and first not in fused and nodes[first].op is DEQUANTIZE
                    and _only_use(graph, uses, scale, index, 1)
                    and nodes[first].plan.granularity.kind == "per-tensor"):
                codes, codes_scale = nodes[first].inputs[0], nodes[first].inputs[1]
                absorbed.add(first)
                fused[index] = Step(DEQUANTIZE_DOUBLE, (nodes[first], node), (data, codes, codes_scale),
                                    tuple(node.outputs))
    steps = []
    for index, node in enumerate(nodes):
        if index in absorbed:
            continue
        steps.append(fused.get(index) or Step(NODE, (node,), tuple(node.inputs), tuple(node.outputs)))
    # Liveness: a tensor is freed after the last step that reads it, unless it is a graph output.
    last: dict[str, int] = {}
    for position, step in enumerate(steps):
        for name in step.inputs:
            last[name] = position
    keep = set(graph.outputs)
    dead: dict[int, list[str]] = {}
    for name, position in last.items():
        if name not in keep:
            dead.setdefault(position, []).append(name)
    for position, step in enumerate(steps):
        # Outputs nobody reads and nobody asked for die at once, too.
        unused = [o for o in step.outputs if o not in last and o not in keep]
        free = tuple(sorted(set(dead.get(position, [])) | set(unused)))
        steps[position] = Step(step.kind, step.nodes, step.inputs, step.outputs, free)
    return steps


# --------------------------------------------------------------------------------------------------
# The executor


@dataclass
class _GraphState:
    """What the backend keeps per graph: the plans (by fusion flag) and the constants on the device."""

    graph: weakref.ref[Graph]
    plans: dict[bool, list[Step]] = field(default_factory=dict)
    constants: dict[tuple[int, str], tuple[np.ndarray, Any]] = field(default_factory=dict)
    #: the graph's constant values and typed inputs, listed with its first plan (like the plan, they
    #: assume the checked graph is not edited afterwards)
    constant_values: list[Any] | None = None
    input_values: list[tuple[str, Any]] | None = None


class CupyBackend(Backend):
    def __init__(self, name: str):
        super().__init__(name)
        self.fusion: bool | None = None  # None: $NETDSL_FUSION decides
        self._graphs: dict[int, _GraphState] = {}

    def available(self) -> tuple[bool, str]:
        return cuda.available()

    def _state(self, graph: Graph) -> _GraphState:
        state = self._graphs.get(id(graph))
        if state is None or state.graph() is not graph:
            for key in [k for k, s in self._graphs.items() if s.graph() is None]:
                del self._graphs[key]
            state = self._graphs[id(graph)] = _GraphState(weakref.ref(graph))
        return state

    def plan(self, graph: Graph) -> list[Step]:
        """The steps this backend runs for ``graph`` (cached per graph and fusion setting)."""
        fusion = fusion_enabled() if self.fusion is None else self.fusion
        state = self._state(graph)
        steps = state.plans.get(fusion)
        if steps is None:
            steps = state.plans[fusion] = plan_graph(graph, fusion)
        return steps

    def _constant(self, state: _GraphState, value: Any, device: int) -> Any:
        cached = state.constants.get((device, value.name))
        if cached is None or cached[0] is not value.data:
            cached = state.constants[(device, value.name)] = (value.data, cuda.upload(value.data, value.type.dtype))
        return cached[1]

    def run_device(self, graph: Graph, inputs: dict[str, Any]) -> dict[str, Any]:
        """Run on device tensors (``cuda.DeviceTensor`` for each graph input); device tensors back."""
        state = self._state(graph)
        steps = self.plan(graph)
        device = cuda._device()
        env: dict[str, Any] = dict(inputs)
        constants = state.constant_values
        if constants is None:
            constants = state.constant_values = graph.constants
        for value in constants:
            cached = state.constants.get((device, value.name))
            env[value.name] = cached[1] if cached is not None and cached[0] is value.data \
                else self._constant(state, value, device)
        impls = self.impls
        for step in steps:
            args = [env[name] for name in step.inputs]
            if step.kind == NODE:
                node = step.nodes[0]
                results = impls[node.op](node.plan, args)
            elif step.kind == QUANTIZE_DEQUANTIZE:
                results = [_run_quantize_dequantize(step, args)]
            else:
                results = [_run_dequantize_double(step, args)]
            env.update(zip(step.outputs, results))
            for name in step.free:
                env.pop(name, None)
        return {name: env[name] for name in graph.outputs}

    def run(self, graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        state = self._state(graph)
        typed = state.input_values
        if typed is None:
            typed = state.input_values = [(value.name, value.type.dtype) for value in graph.inputs
                                          if value.type is not None]  # a checked graph types every input
        device_inputs = {name: cuda.upload(inputs[name], dtype) for name, dtype in typed}
        results = self.run_device(graph, device_inputs)
        return {name: cuda.download(results[name]) for name in graph.outputs}


BACKEND = CupyBackend("cupy")


def _reshaped(tensor: Any, shape: tuple[int, ...]) -> Any:
    if tuple(tensor.shape) == tuple(shape):
        return tensor
    return cuda.DeviceTensor(dtype=tensor.dtype, shape=tuple(shape), data=tensor.data)


def _run_quantize_dequantize(step: Step, args: list[Any]) -> Any:
    quantize_node, dequantize_node = step.nodes
    q_plan: ScalePlan = quantize_node.plan
    dq_plan: ScalePlan = dequantize_node.plan
    x, q_scale, dq_scale = args
    _check_applied(q_plan, q_scale)
    _check_applied(dq_plan, dq_scale)
    granularity = q_plan.granularity
    return cuda.quantize_dequantize(x, _reshaped(q_scale, granularity.scale_shape), granularity.block,
                                    q_plan.to_type, _reshaped(dq_scale, granularity.scale_shape), dq_plan.to_type)


def _run_dequantize_double(step: Step, args: list[Any]) -> Any:
    scale_node, data_node = step.nodes
    sf_plan: ScalePlan = scale_node.plan
    plan: ScalePlan = data_node.plan
    data, codes, codes_scale = args
    _check_applied(sf_plan, codes_scale)
    granularity = plan.granularity
    return cuda.dequantize_double(data, _reshaped(codes, granularity.scale_shape), codes_scale, granularity.block,
                                  sf_plan.to_type, plan.to_type)


@BACKEND.impl(QUANTIZE)
def _quantize(plan: ScalePlan, args: list[Any]) -> list[Any]:
    _check_applied(plan, args[1])
    granularity = plan.granularity
    scale = _reshaped(args[1], granularity.scale_shape)
    return [cuda.quantize(args[0], scale, granularity.block, plan.to_type)]


@BACKEND.impl(DEQUANTIZE)
def _dequantize(plan: ScalePlan, args: list[Any]) -> list[Any]:
    _check_applied(plan, args[1])
    granularity = plan.granularity
    scale = _reshaped(args[1], granularity.scale_shape)
    return [cuda.dequantize(args[0], scale, granularity.block, plan.to_type)]


@BACKEND.impl(DYNAMIC_QUANTIZE)
def _dynamic_quantize(plan: DynamicPlan, args: list[Any]) -> list[Any]:
    dqs = plan.double_quant_scale
    if plan.applied_double_quant_scale is not None:  # computed from a recipe's weight: one value to the host
        dqs = applied_double_quant_scale(plan, cuda.download(args[1]))
    return list(cuda.dynamic_quantize(args[0], plan.block, plan.output_type, plan.scale_type, dqs))


def _check_applied(plan: ScalePlan, scale: Any) -> None:
    """A scale computed from a recipe's weight is checked as a constant's would be (on the host: a scale
    is small)."""
    if plan.applied_scale is not None:
        check_applied_scale(plan, cuda.download(scale))


# --- the recipe layers: plain CuPy array operations on float32 (IEEE, no fast-math), the ops' own rules


def _float32(tensor: Any) -> Any:
    """A float32 CuPy array of a float tensor's values (exact)."""
    cp = cuda._cupy()
    if tensor.dtype == dtypes.BFLOAT16:
        return (tensor.data.astype(cp.uint32) << 16).view(cp.float32).reshape(tensor.shape)
    return tensor.data.astype(cp.float32).reshape(tensor.shape)


def _stored(values: Any, dtype: dtypes.DType) -> Any:
    """float32 CuPy ``values`` rounded to nearest even to a float ``dtype``, NaN canonical (dtypes.encode's
    rules), as a device tensor."""
    cp = cuda._cupy()
    values = cp.ascontiguousarray(values, dtype=cp.float32)
    nan = cp.isnan(values)
    if dtype == dtypes.FLOAT32:
        raw = cp.where(nan, cp.float32(np.nan), values)
    elif dtype == dtypes.FLOAT16:
        raw = values.astype(cp.float16)
        raw.view(cp.uint16)[nan] = 0x7E00
    else:
        bits = values.view(cp.uint32)
        raw = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(cp.uint16)
        raw[nan] = 0x7FC0
    return cuda.DeviceTensor(dtype, tuple(values.shape), raw.reshape(-1))


@BACKEND.impl(UNARY)
def _unary(plan: UnaryPlan, args: list[Any]) -> list[Any]:
    x32 = _float32(args[0])
    return [_stored(cuda._cupy().abs(x32) if plan.op == "abs" else -x32, plan.dtype)]


@BACKEND.impl(REDUCE)
def _reduce(plan: ReducePlan, args: list[Any]) -> list[Any]:
    return [_stored(reduce.compute(_float32(args[0]), plan.op, plan.axes, plan.keep_dims, cuda._cupy()),
                    plan.dtype)]


@BACKEND.impl(ELEMENTWISE)
def _elementwise(plan: ElementwisePlan, args: list[Any]) -> list[Any]:
    return [_stored(elementwise.compute(_float32(args[0]), _float32(args[1]), plan.op, cuda._cupy()), plan.dtype)]


@BACKEND.impl(CAST)
def _cast(plan: CastPlan, args: list[Any]) -> list[Any]:
    return [_stored(_float32(args[0]), plan.to_type)]


@BACKEND.impl(SHUFFLE)
def _shuffle(plan: ShufflePlan, args: list[Any]) -> list[Any]:
    return [cuda.DeviceTensor(args[0].dtype, plan.shape, args[0].data)]  # flat row-major storage: a new shape
