"""The AST both front ends build: statements and literal expressions, each with its location.

No evaluation or checking happens here; :mod:`netdsl.frontend.lower` gives the AST its meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from netdsl.diagnostics import Loc

#: a tensor, layer, keyword or type name, in both forms (docs/language.md, "Names"); the grammar's NAME
#: terminal is the same pattern (tests/test_text_frontend.py compares them)
NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_.]*"
NAME = re.compile(NAME_PATTERN)


@dataclass(slots=True)
class Number:
    value: int | float
    text: str
    loc: Loc


@dataclass(slots=True)
class Name:
    name: str
    loc: Loc


@dataclass(slots=True)
class String:
    value: str
    loc: Loc


@dataclass(slots=True)
class BinOp:
    op: str  # + - * /
    left: Expr
    right: Expr
    loc: Loc


@dataclass(slots=True)
class Unary:
    op: str  # - +
    operand: Expr
    loc: Loc


@dataclass(slots=True)
class ListExpr:
    items: list[Expr]
    loc: Loc


@dataclass(slots=True)
class Call:
    func: Name
    args: list[Expr]
    loc: Loc
    keywords: list[Keyword] = field(default_factory=list)  # load(..., codes=true)


@dataclass(slots=True, eq=False)
class NumberBlock:
    """A bracketed literal of plain numbers (``[[1, -2.5], [0x1p-3, inf]]``, nested to any depth) that the
    text front end read without its parser, for speed (netdsl/frontend/text.py, "Large literals")."""

    values: np.ndarray  # float64, flat, in source order: exactly what the same ListExpr evaluates to
    shape: tuple[int, ...] | None  # the nesting; None when it is ragged (then it is expanded to report that)
    source: str  # the text from its '[' to its ']'
    loc: Loc  # its '['


Expr = Number | Name | String | BinOp | Unary | ListExpr | Call | NumberBlock


@dataclass(slots=True)
class TypeRef:
    dtype: Name
    dims: list[Expr]
    loc: Loc


@dataclass(slots=True)
class NetworkStmt:
    name: Name
    loc: Loc


@dataclass(slots=True)
class InputStmt:
    name: Name
    type: TypeRef
    loc: Loc


@dataclass(slots=True)
class ConstStmt:
    name: Name
    type: TypeRef
    value: Expr  # a literal, or Call(load, ...)
    loc: Loc


@dataclass(slots=True)
class OutputStmt:
    names: list[Name]
    loc: Loc


@dataclass(slots=True)
class Keyword:
    key: Name
    value: Expr
    loc: Loc


@dataclass(slots=True)
class LayerStmt:
    outputs: list[Name]
    op: Name
    args: list[Expr]
    keywords: list[Keyword]
    loc: Loc


@dataclass(slots=True)
class AliasStmt:
    """``alias NAME = "original"``: the tensor written NAME in this file is named ``original`` in the
    network (an ONNX name that is not a valid identifier, docs/onnx.md "Names")."""

    name: Name
    original: String
    loc: Loc


Statement = NetworkStmt | InputStmt | ConstStmt | OutputStmt | LayerStmt | AliasStmt


@dataclass(slots=True)
class Module:
    file: str
    statements: list[Statement] = field(default_factory=list)
