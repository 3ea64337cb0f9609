"""The AST both front ends build: statements and literal expressions, each with its location.

No evaluation or checking happens here; :mod:`netdsl.frontend.lower` gives the AST its meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netdsl.diagnostics import Loc


@dataclass
class Number:
    value: int | float
    text: str
    loc: Loc


@dataclass
class Name:
    name: str
    loc: Loc


@dataclass
class String:
    value: str
    loc: Loc


@dataclass
class BinOp:
    op: str  # + - * /
    left: Expr
    right: Expr
    loc: Loc


@dataclass
class Unary:
    op: str  # - +
    operand: Expr
    loc: Loc


@dataclass
class ListExpr:
    items: list[Expr]
    loc: Loc


@dataclass
class Call:
    func: Name
    args: list[Expr]
    loc: Loc


Expr = Number | Name | String | BinOp | Unary | ListExpr | Call


@dataclass
class TypeRef:
    dtype: Name
    dims: list[Expr]
    loc: Loc


@dataclass
class NetworkStmt:
    name: Name
    loc: Loc


@dataclass
class InputStmt:
    name: Name
    type: TypeRef
    loc: Loc


@dataclass
class ConstStmt:
    name: Name
    type: TypeRef
    value: Expr  # a literal, or Call(load, ...)
    loc: Loc


@dataclass
class OutputStmt:
    names: list[Name]
    loc: Loc


@dataclass
class Keyword:
    key: Name
    value: Expr
    loc: Loc


@dataclass
class LayerStmt:
    outputs: list[Name]
    op: Name
    args: list[Expr]
    keywords: list[Keyword]
    loc: Loc


@dataclass
class AliasStmt:
    """``alias NAME = "original"``: the tensor written NAME in this file is named ``original`` in the
    network (an ONNX name that is not a valid identifier, docs/onnx.md "Names")."""

    name: Name
    original: String
    loc: Loc


Statement = NetworkStmt | InputStmt | ConstStmt | OutputStmt | LayerStmt | AliasStmt


@dataclass
class Module:
    file: str
    statements: list[Statement] = field(default_factory=list)
