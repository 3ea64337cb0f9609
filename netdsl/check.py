"""The checker: runs every layer's shape/type rule in order, attaching each failure to the source
location of what is wrong (the tensor argument, the keyword, or the layer), and returns the graph as a
:class:`CheckedGraph`: every tensor typed, every layer resolved. The graph it is given is left as it is.

Validate once, then trust: the executors (netdsl/backends) take only a CheckedGraph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from netdsl.diagnostics import Diagnostics, Loc, OpError
from netdsl.ir import MAX_VOLUME, Graph, Node, TensorType, Value, attr_items, format_attr
from netdsl.ops.base import InferContext, OpDef, Operand
from netdsl.ops.cast import CastAttrs, CastResolution
from netdsl.ops.common import ScaleResolution
from netdsl.ops.dequantize import DequantizeAttrs
from netdsl.ops.dynamic_quantize import DynamicQuantizeAttrs, DynamicResolution
from netdsl.ops.elementwise import ElementwiseAttrs, ElementwiseResolution
from netdsl.ops.quantize import QuantizeAttrs
from netdsl.ops.reduce import ReduceAttrs, ReduceResolution
from netdsl.ops.shuffle import ShuffleAttrs, ShuffleResolution
from netdsl.ops.unary import UnaryAttrs, UnaryResolution

#: what the checker resolves for a layer, by op: Quantize and Dequantize a ScaleResolution,
#: DynamicQuantize a DynamicResolution, each recipe layer its own
Resolution = (ScaleResolution | DynamicResolution | UnaryResolution | ReduceResolution | ElementwiseResolution
              | CastResolution | ShuffleResolution)
#: a layer's attributes, by op
LayerAttrs = (QuantizeAttrs | DequantizeAttrs | DynamicQuantizeAttrs | UnaryAttrs | ReduceAttrs | ElementwiseAttrs
              | CastAttrs | ShuffleAttrs)


@dataclass(eq=False)
class CheckedNode(Node):
    """A layer that passed its shape rule: the layer as written, its op a registered OpDef and its
    attributes its op's, and what the rule resolved (``resolution``, which the backends run)."""

    op: OpDef[Any, Any]
    attrs: LayerAttrs
    resolution: Resolution


@dataclass(frozen=True, eq=False)
class CheckedGraph:
    """A graph that passed the checker: ``values`` holds every tensor typed (a layer output as a typed
    copy of the graph's value, whose ``producer`` is the CheckedNode), ``nodes`` every layer checked, in
    order."""

    name: str
    file: str
    values: Mapping[str, Value]
    nodes: tuple[CheckedNode, ...]
    outputs: tuple[str, ...]
    output_locs: tuple[Loc, ...]
    inputs: tuple[Value, ...]
    constants: tuple[Value, ...]

    def type_of(self, name: str) -> TensorType:
        """The type of tensor ``name``."""
        tensor_type = self.values[name].type
        assert tensor_type is not None  # a checked graph types every tensor
        return tensor_type

    def producer(self, name: str) -> CheckedNode | None:
        """The checked layer that computes tensor ``name`` (None for an input or a constant)."""
        producer = self.values[name].producer
        assert producer is None or isinstance(producer, CheckedNode)
        return producer


def check(graph: Graph, diagnostics: Diagnostics) -> CheckedGraph | None:
    """Type every layer output and resolve every layer; errors and warnings go to ``diagnostics``.
    The checked graph, or None when there was an error."""
    values: dict[str, Value] = dict(graph.values)
    nodes: list[CheckedNode] = []
    failed = False

    def fold(value: Value) -> np.ndarray:
        return _fold(value, values)

    for node in graph.nodes:
        inputs = [values[name] for name in node.inputs]
        if any(v.type is None for v in inputs):
            failed = True
            continue  # an input's layer failed: its error is already reported
        op = node.op
        if not isinstance(op, OpDef):
            raise TypeError(f"layer {node.outputs} has op {op!r}, not a netdsl.ops.base.OpDef")
        operands = {slot: Operand(slot, value, loc) for slot, value, loc in zip(op.inputs, inputs, node.input_locs)}
        context: InferContext[Any] = InferContext(node.attrs, operands, values, [], fold)
        try:
            types, resolution = op.infer(context)
        except OpError as error:
            diagnostics.error(_locate(node, error.where), error.message)
            failed = True
            continue
        finally:
            for message, where in context.warnings:
                diagnostics.warning(_locate(node, where), message)
        assert isinstance(node.attrs, LayerAttrs)
        checked = CheckedNode(op, node.inputs, node.outputs, node.attrs, node.loc, node.input_locs, node.attr_locs,
                              resolution)
        nodes.append(checked)
        for name, tensor_type in zip(node.outputs, types):
            values[name] = dataclasses.replace(graph.values[name], type=tensor_type, producer=checked)
            if tensor_type.volume > MAX_VOLUME:
                failed = True
                diagnostics.error(graph.values[name].loc, f"'{name}' would be {tensor_type}, "
                                  f"{tensor_type.volume} elements, over TensorRT's limit of 2^31-1")
    if failed:
        return None
    return CheckedGraph(graph.name, graph.file, values, tuple(nodes), tuple(graph.outputs), tuple(graph.output_locs),
                        tuple(v for v in values.values() if v.kind == "input"),
                        tuple(v for v in values.values() if v.kind == "const"))


def _fold(value: Value, values: Mapping[str, Value]) -> np.ndarray:
    """The values (storage form) of constant-rooted layer output ``value``: its layers run, in order,
    with their NumPy references, exactly the bits a run gives (TensorRT folds them at build time). Each
    folded value is kept on its (typed, checker-owned) ``Value``, as ``folded``."""
    order: list[Node] = []  # the producers to run, each after the producers of its inputs
    pending: list[tuple[Value, bool]] = [(value, False)]
    queued: set[str] = set()
    ordered: set[int] = set()
    while pending:
        current, expanded = pending.pop()
        node = current.producer
        if current.kind == "const" or current.folded is not None or node is None:
            continue
        if expanded:
            if id(node) not in ordered:
                ordered.add(id(node))
                order.append(node)
            continue
        if current.name in queued:
            continue
        queued.add(current.name)
        pending.append((current, True))
        pending.extend((values[name], False) for name in node.inputs)
    for node in order:
        assert isinstance(node, CheckedNode)  # a typed value's producer
        arguments = [values[name].data if values[name].kind == "const" else values[name].folded
                     for name in node.inputs]
        for name, result in zip(node.outputs, node.op.evaluate(node.resolution, arguments)):
            values[name].folded = result
    assert value.folded is not None, f"'{value.name}' is not constant-rooted"
    return value.folded


def _locate(node: Node, where: str | None) -> Loc:
    if where in node.op.inputs:
        index = node.op.inputs.index(where)
        if index < len(node.input_locs):
            return node.input_locs[index]
    if where is not None and where in node.attr_locs:
        return node.attr_locs[where]
    return node.loc


def print_graph(graph: CheckedGraph, resolutions: bool = True, notes: Mapping[str, str] | None = None) -> str:
    """A deterministic, human-readable listing of a checked graph, each layer followed by what the checker
    resolved for it unless ``resolutions`` is False. ``notes`` (tensor name -> text) adds a comment to a
    constant's line and, by a layer's first output, to the start of the layer's comment line: ``netdsl
    check -v`` (netdsl.view.describe) notes each constant's values and each layer's provenance, e.g.
    ``# folded; ...`` for a layer computed only from constants (TensorRT computes it at build time,
    docs/semantics.md)."""
    notes = notes or {}
    lines = [f"network {graph.name}"]
    for value in graph.inputs:
        lines.append(f"  input  {value.name} : {value.type}")
    for value in graph.constants:
        origin = f"load({value.source.path!r}" + (f", {value.source.key!r})" if value.source.key else ")") \
            if value.source else "literal"
        note = f"  # {notes[value.name]}" if value.name in notes else ""
        lines.append(f"  const  {value.name} : {value.type} = {origin}{note}")
    for node in graph.nodes:
        outs = ", ".join(f"{o} : {graph.values[o].type}" for o in node.outputs)
        attrs = ", ".join(f"{k}={format_attr(v)}" for k, v in attr_items(node.attrs))
        args = ", ".join(node.inputs + ([attrs] if attrs else []))
        lines.append(f"  layer  {outs} = {node.op.name}({args})")
        comment = [notes[node.outputs[0]]] if node.outputs[0] in notes else []
        comment += [node.resolution.describe()] if resolutions else []
        if comment:
            lines.append(f"         # {'; '.join(comment)}")
    lines.append(f"  output {', '.join(graph.outputs)}")
    return "\n".join(lines) + "\n"
