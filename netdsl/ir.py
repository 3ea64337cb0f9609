"""The graph IR both front ends lower to: tensor types, values, layer nodes and the graph, as written
(the checker, netdsl/check.py, turns a graph into a typed and resolved CheckedGraph without changing it).

Nothing here depends on the ops: a node's op is anything with the :class:`OpSchema` fields (in practice a
:class:`netdsl.ops.base.OpDef`), and its attributes are any dataclass.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields, replace
from typing import Any, ClassVar, Protocol

import numpy as np

from netdsl.diagnostics import Loc
from netdsl.dtypes import DType

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
    again for each concrete shape it meets (docs/checkpoints.md)."""

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
    """Where a constant's values came from: ``load(path)`` or ``load(path, key)``, as written; ``codes``:
    the file holds raw codes (``load(path, codes=true)``)."""

    path: str
    key: str | None = None
    codes: bool = False


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
    #: an input whose declared dimensions include names; ``type`` is set when the recipe is bound
    declared: NamedType | None = None

    def declared_type(self) -> NamedType:
        """An input's type as declared: its named dimensions, or its concrete shape."""
        if self.declared is not None:
            return self.declared
        assert self.type is not None, "an input is typed unless its dimensions are names"
        return NamedType(self.type.dtype, self.type.shape)


class OpSchema(Protocol):
    """What the IR knows of a layer kind: its name and its input and output slots."""

    @property
    def name(self) -> str: ...

    @property
    def inputs(self) -> tuple[str, ...]: ...

    @property
    def outputs(self) -> tuple[str, ...]: ...


class Attrs(Protocol):
    """A layer's attributes: an instance of its op's frozen attrs dataclass."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]


@dataclass
class Node:
    """One layer as written: ``outputs = op(inputs, **attrs)``."""

    op: OpSchema
    inputs: list[str]
    outputs: list[str]
    attrs: Attrs
    loc: Loc
    input_locs: list[Loc]
    attr_locs: dict[str, Loc]


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

    def bind(self, types: dict[str, TensorType]) -> Graph:
        """This graph with every input of the given type and a build-time weight (a recipe bound to one
        shape, docs/checkpoints.md); layers and constants shared, not copied."""
        values = {name: replace(value, type=types[name], weight=True, declared=None) if value.kind == "input"
                  else value for name, value in self.values.items()}
        return Graph(self.name, self.file, values, self.nodes, self.outputs, self.output_locs)


def attr_items(attrs: Attrs) -> list[tuple[str, Any]]:
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
