"""What every layer definition is made of: :class:`OpDef`, what its shape rule sees (:class:`Operand`,
:class:`InferContext`), and the registry of ops by name (:data:`OPS`), which refuses a second op of a name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netdsl.diagnostics import Loc
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


#: every op by its name (the name the languages write); filled as the op modules are imported
OPS: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    """Add ``op`` to :data:`OPS`; ValueError when an op of its name is there already."""
    if op.name in OPS:
        raise ValueError(f"op {op.name!r} is registered twice")
    OPS[op.name] = op
    return op
