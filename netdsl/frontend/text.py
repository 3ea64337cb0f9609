"""The text front end: a cached lark LALR parser and a transformer that only builds AST nodes."""

from __future__ import annotations

import ast as python_ast
import functools
import math
from collections.abc import Iterator

import lark
from lark import Token, Transformer, v_args

from netdsl.diagnostics import Diagnostics, Loc, did_you_mean
from netdsl.frontend import ast
from netdsl.resources import resource_dir

_TOKEN_DESCRIPTIONS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "_NL": "end of line",
    "$END": "end of file",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "COLON": "':'",
    "EQUAL": "'='",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
}


class _NewlinesInBrackets:
    """Drops newlines while a ( or [ is open, so a statement may continue over several lines."""

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        for token in stream:
            if token.type in ("LPAR", "LSQB"):
                depth += 1
            elif token.type in ("RPAR", "RSQB"):
                depth = max(depth - 1, 0)
            elif token.type == "_NL" and depth:
                continue
            yield token


@functools.cache
def _parser() -> lark.Lark:
    grammar = (resource_dir("grammar") / "netdsl.lark").read_text(encoding="utf-8")
    return lark.Lark(
        grammar,
        parser="lalr",
        start=["start", "type_only"],
        propagate_positions=True,
        postlex=_NewlinesInBrackets(),
        maybe_placeholders=False,
    )


def parse_number(text: str) -> int | float:
    """A numeric literal of the language: decimal integers stay int; decimals, exponents and hex
    floats (``0x1p-7``) become the exactly rounded float64."""
    lowered = text.lower()
    try:
        if lowered.startswith("0x"):
            if "." in lowered or "p" in lowered:
                return float.fromhex(text)
            return int(text, 16)
        if any(c in lowered for c in ".e"):
            return float(text)
        return int(text)
    except (OverflowError, ValueError):  # past float64, or an integer too long to convert: +Inf
        return math.inf


def _binop(op: str):
    """The transformer method building ``left op right``."""
    def build(self, meta, children):
        left, right = children
        return ast.BinOp(op, left, right, self._meta_loc(meta))
    return build


@v_args(meta=True)
class _Builder(Transformer):
    def __init__(self, file: str, line_offset: int = 0, col_offset: int = 0):
        super().__init__()
        self.file = file
        self.line_offset = line_offset
        self.col_offset = col_offset

    def _loc(self, line: int, col: int) -> Loc:
        return Loc(self.file, line + self.line_offset, col + (self.col_offset if line == 1 else 0))

    def _meta_loc(self, meta) -> Loc:
        return self._loc(meta.line, meta.column)

    def _name(self, token: Token) -> ast.Name:
        return ast.Name(str(token), self._loc(token.line or 1, token.column or 1))

    def start(self, meta, children):
        return children

    def command(self, meta, children):
        keyword, *names = children
        return ("command", self._name(keyword), [self._name(n) for n in names], self._meta_loc(meta))

    def declaration(self, meta, children):
        keyword, name, type_ref, *value = children
        return ("declaration", self._name(keyword), self._name(name), type_ref,
                value[0] if value else None, self._meta_loc(meta))

    def alias(self, meta, children):
        keyword, name, original = children
        string = self.string(meta, [original])
        string.loc = self._loc(original.line or 1, original.column or 1)
        return ("alias", self._name(keyword), self._name(name), string, self._meta_loc(meta))

    def layer(self, meta, children):
        *outputs, op = [c for c in children if isinstance(c, Token)]
        arguments = [c for c in children if not isinstance(c, Token)]
        args = [a for a in arguments if not isinstance(a, ast.Keyword)]
        keywords = [a for a in arguments if isinstance(a, ast.Keyword)]
        return ast.LayerStmt([self._name(o) for o in outputs], self._name(op), args, keywords,
                             self._meta_loc(meta))

    def keyword(self, meta, children):
        key, value = children
        return ast.Keyword(self._name(key), value, self._meta_loc(meta))

    def type(self, meta, children):
        dtype, dims = children
        return ast.TypeRef(self._name(dtype), dims.items, self._meta_loc(meta))

    def type_only(self, meta, children):
        return children[0]

    def number(self, meta, children):
        (token,) = children
        return ast.Number(parse_number(str(token)), str(token), self._meta_loc(meta))

    def name(self, meta, children):
        return self._name(children[0])

    def string(self, meta, children):
        text = str(children[0])
        try:
            value = python_ast.literal_eval(text)
        except (ValueError, SyntaxError):  # an escape Python rejects: keep the text as written
            value = text[1:-1]
        return ast.String(value, self._meta_loc(meta))

    add, sub, mul, div = _binop("+"), _binop("-"), _binop("*"), _binop("/")

    def neg(self, meta, children):
        return ast.Unary("-", children[0], self._meta_loc(meta))

    def pos(self, meta, children):
        return ast.Unary("+", children[0], self._meta_loc(meta))

    def list(self, meta, children):
        return ast.ListExpr(list(children), self._meta_loc(meta))

    def call(self, meta, children):
        func, *args = children
        return ast.Call(self._name(func), list(args), self._meta_loc(meta))


def _describe_expected(expected: set[str]) -> str:
    names = sorted({_TOKEN_DESCRIPTIONS.get(e, repr(e) if len(e) == 1 else e.lower()) for e in expected})
    if len(names) > 6:
        return ""
    return "; expected " + " or ".join(names) if names else ""


def _syntax_error(error: lark.exceptions.UnexpectedInput, file: str, text: str,
                  line_offset: int = 0, col_offset: int = 0) -> tuple[Loc, str]:
    line = getattr(error, "line", -1)
    col = getattr(error, "column", -1)
    at_end = isinstance(error, lark.exceptions.UnexpectedToken) and error.token.type == "$END"
    if line is None or line < 1 or at_end:  # unexpected end of input: point just past the text
        lines = text.rstrip("\n").split("\n")
        line, col = len(lines), len(lines[-1]) + 1
    loc = Loc(file, line + line_offset, col + (col_offset if line == 1 else 0))
    if isinstance(error, lark.exceptions.UnexpectedCharacters):
        position = error.pos_in_stream or 0
        char = text[position] if position < len(text) else ""
        return loc, f"unexpected character {char!r}"
    if isinstance(error, lark.exceptions.UnexpectedToken):
        token = error.token
        if token.type == "$END":
            what = "end of file (is a '(' or '[' left open?)"
        elif token.type == "_NL":
            what = "end of line"
        else:
            what = repr(str(token))
        return loc, f"unexpected {what}{_describe_expected(set(error.expected))}"
    return loc, "unexpected end of file" + _describe_expected(set(getattr(error, "expected", ()) or ()))


def parse_text(text: str, file: str, diagnostics: Diagnostics) -> ast.Module | None:
    """Parse a .net text into an AST, or report a syntax error and return None."""
    if not text.endswith("\n"):
        text += "\n"
    try:
        tree = _parser().parse(text, start="start")
    except lark.exceptions.UnexpectedInput as error:
        diagnostics.error(*_syntax_error(error, file, text))
        return None
    except RecursionError:
        diagnostics.error(Loc(file, 1, 1), "the model is nested too deeply")
        return None
    try:
        items = _Builder(file).transform(tree)
    except RecursionError:
        diagnostics.error(Loc(file, 1, 1), "the model is nested too deeply")
        return None
    statements = [_statement(item, diagnostics) for item in items if item is not None]
    return ast.Module(file, [s for s in statements if s is not None])


def parse_type(text: str, file: str, line: int, col: int, diagnostics: Diagnostics) -> ast.TypeRef | None:
    """Parse a type written on its own (the YAML form's ``float32[1, 3]``) at a known position."""
    try:
        tree = _parser().parse(text, start="type_only")
    except lark.exceptions.UnexpectedInput as error:
        diagnostics.error(*_syntax_error(error, file, text, line - 1, col - 1))
        return None
    return _Builder(file, line - 1, col - 1).transform(tree)


_STATEMENT_KINDS = ("network", "input", "const", "output", "alias")


def _statement(item, diagnostics: Diagnostics) -> ast.Statement | None:
    if isinstance(item, ast.LayerStmt):
        return item
    kind = item[0]
    keyword: ast.Name = item[1]
    if kind == "alias":
        if keyword.name == "alias":
            return ast.AliasStmt(item[2], item[3], item[4])
    elif kind == "command":
        names, loc = item[2], item[3]
        if keyword.name == "network" and len(names) == 1:
            return ast.NetworkStmt(names[0], loc)
        if keyword.name == "output":
            return ast.OutputStmt(names, loc)
        if keyword.name == "network":
            diagnostics.error(names[1].loc, "a network has one name")
            return None
    else:
        _, _, name, type_ref, value, loc = item
        if keyword.name == "input":
            if value is not None:
                diagnostics.error(value.loc, "an input takes no value; use 'const' for a constant")
                return None
            return ast.InputStmt(name, type_ref, loc)
        if keyword.name == "const":
            if value is None:
                diagnostics.error(loc, f"constant '{name.name}' needs a value: const {name.name} : TYPE = VALUE")
                return None
            return ast.ConstStmt(name, type_ref, value, loc)
    expected = {"command": "'network' or 'output'", "declaration": "'input' or 'const'",
                "alias": "'alias'"}[kind]
    diagnostics.error(keyword.loc, f"unknown statement '{keyword.name}'; expected {expected}"
                      + did_you_mean(keyword.name, _STATEMENT_KINDS))
    return None
