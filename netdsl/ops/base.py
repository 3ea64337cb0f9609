"""What every layer definition is made of: :class:`OpDef`, what its shape rule sees (:class:`Operand`,
:class:`InferContext`), and the registry of ops by name (:data:`OPS`), which refuses a second op of a name.

An op is generic in its attributes (``A``, a frozen dataclass with TensorRT's names and defaults) and in
its resolution (``R``: what its shape rule resolves for the backends, e.g. the scale's granularity).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from netdsl.diagnostics import Loc
from netdsl.ir import TensorType, Value


class Resolved(Protocol):
    """What a shape rule resolves for a layer: printed by ``netdsl check -v``."""

    def describe(self) -> str: ...


A = TypeVar("A", covariant=True)
R = TypeVar("R", bound=Resolved)


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


@dataclass(frozen=True)
class InferContext(Generic[A]):
    """What a shape rule sees: the layer's attributes, its operands by slot (optional slots left out when
    not given), every typed tensor of the graph so far (to follow where an operand comes from), a list
    to add warnings to, and ``fold``: the values (storage form) of a constant-rooted tensor, which the
    checker computes as TensorRT does at build time (ops.common.constant_data)."""

    attrs: A
    operands: dict[str, Operand]
    values: Mapping[str, Value]
    warnings: list[tuple[str, str | None]]
    fold: Callable[[Value], np.ndarray]

    def warn(self, message: str, where: str | None = None) -> None:
        self.warnings.append((message, where))


@dataclass(frozen=True, eq=False)
class OpDef(Generic[A, R]):
    """One layer kind. ``attr_kinds`` maps each keyword to ``int``, ``shape`` or ``dtype``; ``infer`` is
    the shape/type rule (the output types and the resolution, or OpError); ``evaluate`` the NumPy
    reference on a resolution and the input arrays."""

    name: str
    attrs: type[A]
    attr_kinds: dict[str, str]
    inputs: tuple[str, ...]
    required_inputs: int
    outputs: tuple[str, ...]
    infer: Callable[[InferContext[A]], tuple[list[TensorType], R]]
    evaluate: Callable[[R, list[Any]], list[Any]]

    def __repr__(self) -> str:
        return f"<op {self.name}>"


#: every op by its name (the name the languages write); filled as the op modules are imported
OPS: dict[str, OpDef[Any, Any]] = {}


def register(op: OpDef[A, R]) -> OpDef[A, R]:
    """Add ``op`` to :data:`OPS`; ValueError when an op of its name is there already."""
    if op.name in OPS:
        raise ValueError(f"op {op.name!r} is registered twice")
    OPS[op.name] = op
    return op
