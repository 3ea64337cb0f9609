"""The layers netdsl knows, one module each, and the registry that names them.

Each op module holds the whole definition of its layer: the attribute schema (a frozen dataclass
with TensorRT's names and defaults), the pure shape/type rule (``infer``), and the NumPy reference
(``evaluate``). Nothing about CUDA or files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from netdsl.diagnostics import Loc, OpError
from netdsl.ir import Node, TensorType, Value


@dataclass(frozen=True)
class Operand:
    """A tensor in one of a layer's input slots, as the shape rule sees it."""

    slot: str
    value: Value
    loc: Loc

    @property
    def type(self) -> TensorType:
        assert self.value.type is not None
        return self.value.type


@dataclass
class InferContext:
    attrs: Any
    operands: dict[str, Operand]  # by slot name; optional slots left out when not given
    values: dict[str, Value]  # every tensor of the graph, to follow where an operand comes from
    warnings: list[tuple[str, str | None]]

    def warn(self, message: str, where: str | None = None) -> None:
        self.warnings.append((message, where))


@dataclass(frozen=True, eq=False)
class OpDef:
    """One layer kind. ``attr_kinds`` maps each keyword to ``int``, ``shape`` or ``dtype``."""

    name: str
    attrs: type
    attr_kinds: dict[str, str]
    inputs: tuple[str, ...]
    required_inputs: int
    outputs: tuple[str, ...]
    infer: Callable[[InferContext], tuple[list[TensorType], Any]]
    evaluate: Callable[[Any, list[Any]], list[Any]]

    def __repr__(self) -> str:
        return f"<op {self.name}>"


OPS: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    if op.name in OPS:
        raise ValueError(f"op {op.name!r} is registered twice")
    OPS[op.name] = op
    return op


def require_constant(operand: Operand, what: str, values: dict[str, Value]) -> None:
    """``operand`` must be constant-rooted: a build-time tensor (docs/semantics.md, "Build-time constants")."""
    if not is_constant_rooted(operand.value, values):
        raise OpError(f"{what} must be a constant (a build-time tensor, or computed by layers only from "
                      f"build-time tensors); '{operand.value.name}' is "
                      f"{'a network input' if operand.value.kind == 'input' else 'computed from a network input'}",
                      operand.slot)


def is_constant_rooted(value: Value, values: dict[str, Value]) -> bool:
    """A constant or a recipe's weight, or computed only from those (TensorRT's build-time tensors). A walk,
    not a recursion: a chain of thousands of layers is a valid network."""
    pending, seen = [value], set()
    while pending:
        current = pending.pop()
        if current.kind == "const" or current.weight or current.name in seen:
            continue
        if current.producer is None:
            return False
        seen.add(current.name)
        pending.extend(values[name] for name in current.producer.inputs)
    return True


def constant_data(value: Value, values: dict[str, Value]) -> np.ndarray | None:
    """The values of a constant-rooted tensor, folding the layers that compute it (as TensorRT folds them
    at build time; folding runs each layer's own reference, so it never changes a bit). None where the
    tensor is computed from a recipe's weight, whose values arrive only when the recipe is applied."""
    if value.data is not None or value.kind == "const":
        return value.data
    if value.weight or value.producer is None:
        return None
    order: list[Node] = []  # the producers still to fold, each after those it reads (a walk, not a recursion)
    visited: set[int] = set()
    stack: list[tuple[Node, bool]] = [(value.producer, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for name in node.inputs:
            source = values[name]
            if source.data is not None or source.kind == "const":
                continue
            if source.weight or source.producer is None:
                return None
            stack.append((source.producer, False))
    for node in order:
        if values[node.outputs[0]].data is None:
            results = node.op.evaluate(node.plan, [values[name].data for name in node.inputs])
            for name, data in zip(node.outputs, results):
                values[name].data = data
    return value.data


def normalize_axis(axis: int, rank: int, where: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise OpError(f"axis {axis} is out of range for a rank-{rank} input (allowed {-rank}..{rank - 1})", where)
    return axis % rank


def _import_ops() -> None:
    from netdsl.ops import (  # noqa: F401  (they register themselves)
        cast,
        dequantize,
        dynamic_quantize,
        elementwise,
        quantize,
        reduce,
        shuffle,
        unary,
    )


_import_ops()
