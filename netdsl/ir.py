"""The graph IR both front ends lower to: tensor types, values, layer nodes, the graph, and a
deterministic printer (``netdsl check -v``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from netdsl.diagnostics import Loc
from netdsl.dtypes import DType

if TYPE_CHECKING:
    from netdsl.ops import OpDef

#: TensorRT's volume limit: every tensor holds at most 2^31 - 1 elements.
MAX_VOLUME = 2**31 - 1


@dataclass(frozen=True)
class TensorType:
    dtype: DType
    shape: tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def volume(self) -> int:
        return int(np.prod(self.shape, dtype=object)) if self.shape else 1

    def __str__(self) -> str:
        return f"{self.dtype.name}[{', '.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class LoadRef:
    """Where a constant's values came from: ``load(path)`` or ``load(path, key)``, as written."""

    path: str
    key: str | None = None


@dataclass
class Value:
    """A named tensor: a network input, a constant, or a layer output."""

    name: str
    kind: str  # "input" | "const" | "layer"
    loc: Loc
    type: TensorType | None = None  # None only for a layer output whose layer failed to check
    data: np.ndarray | None = None  # a constant's values, in the dtype's storage form
    source: LoadRef | None = None  # a constant loaded from a file
    overflow: str | None = None  # a constant's first finite value that rounded to +-Inf in its type, as written
    producer: Node | None = None
    #: a constant-rooted layer output's values (storage form), computed by the checker where a rule needs
    #: them (a scale's values); TensorRT computes them at build time, with the same bits
    folded: np.ndarray | None = None


@dataclass
class Node:
    """One layer: ``outputs = op(inputs, **attrs)``; ``plan`` is what the checker resolved."""

    op: OpDef
    inputs: list[str]
    outputs: list[str]
    attrs: Any
    loc: Loc
    input_locs: list[Loc]
    attr_locs: dict[str, Loc]
    plan: Any = None


@dataclass
class Graph:
    name: str
    file: str
    values: dict[str, Value] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    output_locs: list[Loc] = field(default_factory=list)

    @property
    def inputs(self) -> list[Value]:
        return [v for v in self.values.values() if v.kind == "input"]

    @property
    def constants(self) -> list[Value]:
        return [v for v in self.values.values() if v.kind == "const"]


def attr_items(attrs: Any) -> list[tuple[str, Any]]:
    """An attrs dataclass's fields that differ from their defaults, in declaration order."""
    return [(f.name, getattr(attrs, f.name)) for f in fields(attrs) if getattr(attrs, f.name) != f.default]


def format_attr(value: Any) -> str:
    if isinstance(value, DType):
        return value.name
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def print_graph(graph: Graph, verbose_plans: bool = True, notes: dict[str, str] | None = None) -> str:
    """A deterministic, human-readable listing of a checked graph; ``notes`` (tensor name -> text) adds a
    comment to a constant's line, and (by the layer's first output) to the start of a layer's plan line
    (``netdsl check -v``: netdsl.view.describe)."""
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
        comment += [node.plan.describe()] if verbose_plans and node.plan is not None else []
        if comment:
            lines.append(f"         # {'; '.join(comment)}")
    lines.append(f"  output {', '.join(graph.outputs)}")
    return "\n".join(lines) + "\n"
