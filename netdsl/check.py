"""The checker: runs every layer's shape/type rule in order, attaching each failure to the source
location of what is wrong (the tensor argument, the keyword, or the layer)."""

from __future__ import annotations

from netdsl.diagnostics import Diagnostics, Loc, OpError
from netdsl.ir import MAX_VOLUME, Graph, Node
from netdsl.ops import InferContext, Operand


def check(graph: Graph, diagnostics: Diagnostics) -> None:
    """Type every layer output and resolve every layer's plan; errors go to ``diagnostics``."""
    for node in graph.nodes:
        values = [graph.values[name] for name in node.inputs]
        if any(v.type is None for v in values):
            continue  # an input's layer failed: its error is already reported
        operands = {slot: Operand(slot, value, loc)
                    for slot, value, loc in zip(node.op.inputs, values, node.input_locs)}
        context = InferContext(node.attrs, operands, graph.values, [])
        try:
            types, node.plan = node.op.infer(context)
        except OpError as error:
            diagnostics.error(_locate(node, error.where), error.message)
            continue
        finally:
            for message, where in context.warnings:
                diagnostics.warning(_locate(node, where), message)
        for name, tensor_type in zip(node.outputs, types):
            graph.values[name].type = tensor_type
            if tensor_type.volume > MAX_VOLUME:
                diagnostics.error(graph.values[name].loc, f"'{name}' would be {tensor_type}, "
                                  f"{tensor_type.volume} elements, over TensorRT's limit of 2^31-1")


def _locate(node: Node, where: str | None) -> Loc:
    if where in node.op.inputs:
        index = node.op.inputs.index(where)
        if index < len(node.input_locs):
            return node.input_locs[index]
    if where in node.attr_locs:
        return node.attr_locs[where]
    return node.loc
