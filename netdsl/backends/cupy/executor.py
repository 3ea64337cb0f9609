"""The GPU executor: runs a checked graph through the CUDA kernels of ``kernels/`` (via CuPy).

Before the first run of a graph the fusion pass (:mod:`netdsl.backends.cupy.fusion`) turns its nodes
into a schedule of steps. Tensors stay on the device between steps; each intermediate is freed after
its last use, so a run holds at most the inputs, the outputs and one tensor per live edge. The
schedule, the constants uploaded to the device and every kernel launch's fixed arguments are kept per
graph, so a repeated run pays only for its inputs, launches and downloads.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netdsl import settings
from netdsl.backends import Backend
from netdsl.backends.cupy import device, launch
from netdsl.backends.cupy.device import DeviceTensor
from netdsl.backends.cupy.fusion import NODE, QUANTIZE_DEQUANTIZE, UNARY_REDUCE, Schedule, Step, scale_resolution
from netdsl.backends.cupy.fusion import schedule as schedule_graph
from netdsl.check import CheckedGraph
from netdsl.dtypes import DType
from netdsl.ir import Node
from netdsl.ops.common import ScaleResolution, check_applied_scale
from netdsl.ops.dequantize import DEQUANTIZE
from netdsl.ops.dynamic_quantize import DYNAMIC_QUANTIZE, DynamicResolution, applied_double_quant_scale
from netdsl.ops.quantize import QUANTIZE


@dataclass
class _GraphState:
    """What the backend keeps per graph: the schedules (by fusion flag) and the constants on the device."""

    graph: weakref.ref[CheckedGraph]
    schedules: dict[bool, Schedule] = field(default_factory=dict)
    constants: dict[tuple[int, str], tuple[np.ndarray, Any]] = field(default_factory=dict)
    #: the graph's inputs and their types, listed at its first run
    input_types: list[tuple[str, DType]] | None = None


class CupyBackend(Backend):
    def __init__(self, name: str):
        super().__init__(name)
        self.fusion: bool | None = None  # None: $NETDSL_FUSION decides
        self._graphs: dict[int, _GraphState] = {}

    def available(self) -> tuple[bool, str]:
        return device.available()

    def _state(self, graph: CheckedGraph) -> _GraphState:
        state = self._graphs.get(id(graph))
        if state is None or state.graph() is not graph:
            for key in [k for k, s in self._graphs.items() if s.graph() is None]:
                del self._graphs[key]
            state = self._graphs[id(graph)] = _GraphState(weakref.ref(graph))
        return state

    def schedule(self, graph: CheckedGraph) -> Schedule:
        """The steps this backend runs for ``graph`` (cached per graph and fusion setting)."""
        fusion = settings.fusion() if self.fusion is None else self.fusion
        state = self._state(graph)
        steps = state.schedules.get(fusion)
        if steps is None:
            steps = state.schedules[fusion] = schedule_graph(graph, fusion)
        return steps

    def _constant(self, state: _GraphState, value: Any, on_device: int) -> Any:
        cached = state.constants.get((on_device, value.name))
        if cached is None or cached[0] is not value.data:
            uploaded = device.upload(value.data, value.type.dtype)
            cached = state.constants[(on_device, value.name)] = (value.data, uploaded)
        return cached[1]

    def run_device(self, graph: CheckedGraph, inputs: dict[str, Any],
                   on_node: Callable[[Node], None] | None = None) -> dict[str, Any]:
        """Run on device tensors (a :class:`DeviceTensor` for each graph input); device tensors back.
        ``on_node`` is called for each layer once its kernel is launched."""
        state = self._state(graph)
        steps = self.schedule(graph)
        on_device = device.current()
        env: dict[str, Any] = dict(inputs)
        for value in graph.constants:
            cached = state.constants.get((on_device, value.name))
            env[value.name] = cached[1] if cached is not None and cached[0] is value.data \
                else self._constant(state, value, on_device)
        impls = self.impls
        for step in steps:
            args = [env[name] for name in step.inputs]
            if step.kind == NODE:
                node = step.nodes[0]
                results = impls[node.op](node.resolution, args)
            elif step.kind == QUANTIZE_DEQUANTIZE:
                results = [_run_quantize_dequantize(step, args)]
            elif step.kind == UNARY_REDUCE:
                results = [recipe_layers.unary_reduce(step, args)]
            else:
                results = [_run_dequantize_double(step, args)]
            env.update(zip(step.outputs, results))
            if on_node is not None:
                for node in step.nodes:
                    on_node(node)
            for name in step.free:
                env.pop(name, None)
        return {name: env[name] for name in graph.outputs}

    def execute(self, graph: CheckedGraph, inputs: dict[str, np.ndarray],
                on_node: Callable[[Node], None] | None = None) -> dict[str, np.ndarray]:
        state = self._state(graph)
        typed = state.input_types
        if typed is None:
            typed = state.input_types = [(value.name, graph.type_of(value.name).dtype) for value in graph.inputs]
        device_inputs = {name: device.upload(inputs[name], dtype) for name, dtype in typed}
        results = self.run_device(graph, device_inputs, on_node)
        return {name: device.download(results[name]) for name in graph.outputs}


BACKEND = CupyBackend("cupy")


def _reshaped(tensor: Any, shape: tuple[int, ...]) -> Any:
    if tuple(tensor.shape) == tuple(shape):
        return tensor
    return DeviceTensor(dtype=tensor.dtype, shape=tuple(shape), data=tensor.data)


def _run_quantize_dequantize(step: Step, args: list[Any]) -> Any:
    quantize_node, dequantize_node = step.nodes
    q_resolution, dq_resolution = scale_resolution(quantize_node), scale_resolution(dequantize_node)
    x, q_scale, dq_scale = args
    _check_applied(q_resolution, q_scale)
    _check_applied(dq_resolution, dq_scale)
    granularity = q_resolution.granularity
    return launch.quantize_dequantize(x, _reshaped(q_scale, granularity.scale_shape), granularity.block,
                                      q_resolution.to_type, _reshaped(dq_scale, granularity.scale_shape),
                                      dq_resolution.to_type)


def _run_dequantize_double(step: Step, args: list[Any]) -> Any:
    scale_node, data_node = step.nodes
    sf_resolution, resolution = scale_resolution(scale_node), scale_resolution(data_node)
    data, codes, codes_scale = args
    _check_applied(sf_resolution, codes_scale)
    granularity = resolution.granularity
    return launch.dequantize_double(data, _reshaped(codes, granularity.scale_shape), codes_scale, granularity.block,
                                    sf_resolution.to_type, resolution.to_type)


def _scale(resolution: ScaleResolution, scale: Any) -> Any:
    """A quantize's or dequantize's scale operand, checked and in the shape of its scale grid."""
    _check_applied(resolution, scale)
    return _reshaped(scale, resolution.granularity.scale_shape)


@BACKEND.impl(QUANTIZE)
def _quantize(resolution: ScaleResolution, args: list[Any]) -> list[Any]:
    scale = _scale(resolution, args[1])
    return [launch.quantize(args[0], scale, resolution.granularity.block, resolution.to_type)]


@BACKEND.impl(DEQUANTIZE)
def _dequantize(resolution: ScaleResolution, args: list[Any]) -> list[Any]:
    scale = _scale(resolution, args[1])
    return [launch.dequantize(args[0], scale, resolution.granularity.block, resolution.to_type)]


@BACKEND.impl(DYNAMIC_QUANTIZE)
def _dynamic_quantize(resolution: DynamicResolution, args: list[Any]) -> list[Any]:
    dqs = resolution.double_quant_scale
    if resolution.applied_double_quant_scale is not None:  # computed from a recipe's weight: one value to the host
        dqs = applied_double_quant_scale(resolution, device.download(args[1]))
    return list(launch.dynamic_quantize(args[0], resolution.block, resolution.output_type, resolution.scale_type,
                                        dqs))


def _check_applied(resolution: ScaleResolution, scale: Any) -> None:
    """A scale computed from a recipe's weight is checked as a constant's would be (on the host: a scale
    is small)."""
    if resolution.applied_scale is not None:
        check_applied_scale(resolution, device.download(scale))


from netdsl.backends.cupy import recipe_layers  # noqa: E402,F401  (registers the recipe layers' impls)
