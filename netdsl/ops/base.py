"""The layers netdsl knows, one module each, and the registry that names them.

Each op module holds the whole definition of its layer: the attribute schema (a frozen dataclass
with TensorRT's names and defaults), the pure shape/type rule (``infer``), and the NumPy reference
(``evaluate``). Nothing about CUDA or files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netdsl.diagnostics import Loc, OpError
from netdsl.ir import TensorType, Value


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


def require_constant(operand: Operand, what: str) -> None:
    if operand.value.kind != "const":
        raise OpError(f"{what} must be a constant (a build-time tensor); '{operand.value.name}' is "
                      f"{'a network input' if operand.value.kind == 'input' else 'computed by a layer'}",
                      operand.slot)


def is_constant_rooted(value: Value, values: dict[str, Value]) -> bool:
    """A constant, or computed only from constants (TensorRT's weights). A walk, not a recursion: a chain
    of thousands of layers is a valid network."""
    pending, seen = [value], set()
    while pending:
        current = pending.pop()
        if current.kind == "const" or current.name in seen:
            continue
        if current.producer is None:
            return False
        seen.add(current.name)
        pending.extend(values[name] for name in current.producer.inputs)
    return True


def normalize_axis(axis: int, rank: int, where: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise OpError(f"axis {axis} is out of range for a rank-{rank} input (allowed {-rank}..{rank - 1})", where)
    return axis % rank


def _import_ops() -> None:
    from netdsl.ops import dequantize, dynamic_quantize, quantize  # noqa: F401  (they register themselves)


_import_ops()
