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
    """``operand`` must be constant-rooted (docs/semantics.md, "Build-time constants")."""
    if not is_constant_rooted(operand.value, values):
        raise OpError(f"{what} must be a constant or computed only from constants (a build-time tensor); "
                      f"'{operand.value.name}' is {provenance(operand.value)}", operand.slot)


def provenance(value: Value) -> str:
    """Where a tensor that is not constant-rooted comes from, for a message."""
    if value.kind == "input":
        return "a network input"
    return "computed by a layer from a network input"


def is_constant_rooted(value: Value, values: dict[str, Value]) -> bool:
    """A constant or a recipe's weight, or computed only from those (TensorRT folds it at build time:
    weights and their scales). A walk, not a recursion: a chain of thousands of layers is a valid network."""
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


def from_weight(value: Value, values: dict[str, Value]) -> bool:
    """Whether ``value`` is a recipe's weight or computed from one (its values arrive when the recipe is
    applied, docs/checkpoints.md)."""
    pending, seen = [value], set()
    while pending:
        current = pending.pop()
        if current.weight:
            return True
        if current.name in seen or current.producer is None:
            continue
        seen.add(current.name)
        pending.extend(values[name] for name in current.producer.inputs)
    return False


def constant_data(value: Value, values: dict[str, Value]) -> np.ndarray | None:
    """The values (storage form) of a constant-rooted tensor: a constant's data, or a layer output folded
    by running its layers, in order, with their NumPy references: exactly the bits a run gives, as
    TensorRT's build-time folding does. Each folded value is kept on its ``Value`` (``folded``). None for
    a tensor computed from a recipe's weight: its values are checked when the recipe is applied."""
    if value.kind == "const":
        assert value.data is not None
        return value.data
    if from_weight(value, values):
        return None
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
        arguments = [values[name].data if values[name].kind == "const" else values[name].folded
                     for name in node.inputs]
        for name, result in zip(node.outputs, node.op.evaluate(node.plan, arguments)):
            values[name].folded = result
    assert value.folded is not None, f"'{value.name}' is not constant-rooted"
    return value.folded


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
