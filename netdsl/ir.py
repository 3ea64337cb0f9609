"""The graph IR both front ends lower to: tensor types, values, layer nodes, the graph, and a
deterministic printer (``netdsl check -v``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
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
class NamedType:
    """An input's declared type whose dimensions may be names (``bfloat16[N, K]``): the network is checked
    again for each concrete shape it meets (:func:`bind`)."""

    dtype: DType
    dims: tuple[int | str, ...]

    def __str__(self) -> str:
        return f"{self.dtype.name}[{', '.join(map(str, self.dims))}]"

    def match(self, shape: tuple[int, ...], bindings: dict[str, int]) -> str | None:
        """Bind this type's names to ``shape`` (adding to ``bindings``); why it doesn't fit, or None."""
        if len(shape) != len(self.dims):
            return f"rank {len(shape)} does not fit {self}"
        for dim, extent in zip(self.dims, shape):
            if isinstance(dim, int):
                if dim != extent:
                    return f"shape {list(shape)} does not fit {self}"
            elif bindings.setdefault(dim, extent) != extent:
                return f"shape {list(shape)} does not fit {self}: {dim} is {bindings[dim]} and {extent}"
        return None


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
    #: a recipe's input: a build-time weight whose values arrive when the recipe is applied
    weight: bool = False
    #: an input whose declared dimensions include names; ``type`` is set when the network is bound
    declared: NamedType | None = None

    def declared_type(self) -> NamedType:
        """An input's type as declared: its named dimensions, or its concrete shape."""
        if self.declared is not None:
            return self.declared
        assert self.type is not None, "an input is typed unless its dimensions are names"
        return NamedType(self.type.dtype, self.type.shape)


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

    @property
    def named_dims(self) -> bool:
        """Whether an input's dimensions include names (the graph is checked per concrete shape)."""
        return any(v.declared is not None for v in self.inputs)

    def bind(self, types: dict[str, TensorType], weights: bool) -> Graph:
        """A copy with every input of the given type, unchecked (layer outputs untyped, plans unset);
        constants' arrays are shared, not copied. ``weights``: the inputs are build-time weights."""
        copy = Graph(self.name, self.file, outputs=list(self.outputs), output_locs=list(self.output_locs))
        nodes = {id(node): replace(node, plan=None) for node in self.nodes}
        copy.nodes = [nodes[id(node)] for node in self.nodes]
        for name, value in self.values.items():
            if value.kind == "input":
                copy.values[name] = replace(value, type=types[name], weight=weights, declared=None)
            elif value.kind == "const":
                copy.values[name] = value
            else:
                producer = nodes.get(id(value.producer)) if value.producer is not None else None
                copy.values[name] = replace(value, type=None, data=None, folded=None, producer=producer)
        return copy


def attr_items(attrs: Any) -> list[tuple[str, Any]]:
    """An attrs dataclass's fields that differ from their defaults, in declaration order."""
    return [(f.name, getattr(attrs, f.name)) for f in fields(attrs) if getattr(attrs, f.name) != f.default]


def format_attr(value: Any) -> str:
    if isinstance(value, DType):
        return value.name
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def print_graph(graph: Graph, verbose_plans: bool = True) -> str:
    """A deterministic, human-readable listing of a checked graph; a layer output computed only from
    constants says ``# folded`` (TensorRT computes it at build time, docs/semantics.md)."""
    from netdsl.ops import from_weight, is_constant_rooted

    lines = [f"network {graph.name}"]
    for value in graph.inputs:
        lines.append(f"  input  {value.name} : {value.declared or value.type}")
    for value in graph.constants:
        origin = f"load({value.source.path!r}" + (f", {value.source.key!r})" if value.source.key else ")") \
            if value.source else "literal"
        lines.append(f"  const  {value.name} : {value.type} = {origin}")
    for node in graph.nodes:
        outs = ", ".join(f"{o} : {graph.values[o].type or '?'}" for o in node.outputs)
        attrs = ", ".join(f"{k}={format_attr(v)}" for k, v in attr_items(node.attrs))
        args = ", ".join(node.inputs + ([attrs] if attrs else []))
        lines.append(f"  layer  {outs} = {node.op.name}({args})")
        if verbose_plans and node.plan is not None:
            folded = "folded; " if all(is_constant_rooted(graph.values[name], graph.values)
                                       and not from_weight(graph.values[name], graph.values)
                                       for name in node.inputs) else ""
            lines.append(f"         # {folded}{node.plan.describe()}")
    lines.append(f"  output {', '.join(graph.outputs)}")
    return "\n".join(lines) + "\n"
