"""The text front end: a cached lark LALR parser whose rules build AST nodes as they are reduced.

Memory and time stay linear in the model's size with small constants (docs/language.md, "Limits"):

- no parse tree is built: the grammar's rules are applied while parsing (lark's inline transformer);
- no terminal is matched with a repeated group, which Python's ``re`` pays for per repetition;
- large literals of plain numbers are read before parsing, a list at a time with ``str.split`` and
  ``float`` ("Large literals" below), and every literal's element count is checked while it is read,
  so a literal over :data:`MAX_LITERAL_ELEMENTS` is refused before it is materialised.
"""

from __future__ import annotations

import contextvars
import functools
import math
import os
import re
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

import lark
import numpy as np
from lark import Token, Transformer

from netdsl.diagnostics import Diagnostics, Loc, did_you_mean
from netdsl.frontend import ast
from netdsl.resources import resource_dir

#: a constant literal may hold at most this many elements (larger data belongs in a load()ed file)
MAX_LITERAL_ELEMENTS = 1 << 20
LITERAL_LIMIT_MESSAGE = (f"a literal may hold at most {MAX_LITERAL_ELEMENTS} elements; "
                         f"load() larger constants from a file")

_TOKEN_DESCRIPTIONS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "BLOCK": "a list",
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
_OPENING = {"LPAR": "RPAR", "LSQB": "RSQB"}
_CLOSING = {"RPAR", "RSQB"}


@dataclass
class _Parse:
    """The state of one parse (lark's parser is shared, so this travels in a context variable)."""

    file: str
    diagnostics: Diagnostics
    line_offset: int = 0
    col_offset: int = 0
    blocks: list[tuple[np.ndarray, tuple[int, ...] | None, int, int]] = field(default_factory=list)
    text: str = ""  # the text as written (blocks are read from it)
    next_block: int = 0
    open_brackets: list[Token] = field(default_factory=list)
    _line: int = 0
    _file_line: int = 0

    def loc(self, line: int, col: int) -> Loc:
        if line != self._line:  # one int object per line, shared by the line's locations
            self._line, self._file_line = line, line + self.line_offset
        return Loc(self.file, self._file_line, col + (self.col_offset if line == 1 else 0))


_CURRENT: contextvars.ContextVar[_Parse] = contextvars.ContextVar("netdsl_parse")


#: brackets open at once; deeper is an error (a literal needs at most a tensor's rank, 8)
MAX_BRACKET_DEPTH = 64


class _TooDeep(Exception):
    """More than MAX_BRACKET_DEPTH brackets open; ``offset``: the one over the limit."""

    def __init__(self, offset: int):
        super().__init__(offset)
        self.offset = offset


class _LiteralTooLarge(Exception):
    """A literal with more than MAX_LITERAL_ELEMENTS elements; ``offset``: its outermost '['."""

    def __init__(self, offset: int):
        super().__init__(LITERAL_LIMIT_MESSAGE)
        self.offset = offset


class _StrayNul(Exception):
    """A NUL written in the model (the lexer's BLOCK token stands for a literal read ahead, and a model holding
    a NUL has none); ``offset``: where."""

    def __init__(self, offset: int):
        super().__init__(offset)
        self.offset = offset


class _PostLexer:
    """Drops newlines while a ( or [ is open, so a statement may continue over several lines; keeps the
    open brackets (to report one that is never closed) and counts a literal's elements as they come."""

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        state = _CURRENT.get()
        stack = state.open_brackets
        elements = 0  # the leaves of the outermost bracket group being read
        item_started = False  # whether the innermost open '[' list's current item has begun
        for token in stream:
            kind = token.type
            if kind == "BLOCK" and not state.blocks:
                raise _StrayNul(token.start_pos or 0)
            if kind == "_NL":
                if stack:
                    continue
            elif kind in _CLOSING:
                if stack and _OPENING[stack[-1].type] == kind:
                    stack.pop()
                item_started = True
                if not stack:
                    elements = 0
            elif kind == "COMMA":
                item_started = False
            else:
                if stack and stack[-1].type == "LSQB" and not item_started:
                    item_started = True  # an item begins: a leaf unless it is a list
                    if kind == "BLOCK":
                        values = state.blocks[state.next_block][0]
                        token = Token.new_borrow_pos("BLOCK", str(state.next_block), token)
                        state.next_block += 1
                        elements += values.size
                    elif kind != "LSQB":
                        elements += 1
                    if elements > MAX_LITERAL_ELEMENTS:
                        outer = next(t for t in stack if t.type == "LSQB")
                        raise _LiteralTooLarge(outer.start_pos or 0)
                if kind in _OPENING:
                    if len(stack) == MAX_BRACKET_DEPTH:
                        raise _TooDeep(token.start_pos or 0)
                    stack.append(token)
                    item_started = False
            yield token


def _parser_cache() -> str | bool:
    """Where lark keeps the built parser between processes (building it takes ~0.1 s, loading it ~5 ms): a
    folder of the user's own cache (``$XDG_CACHE_HOME/netdsl``, else ``~/.cache/netdsl``) that only the user
    can write, never a shared temporary folder (the cache is a pickle). Lark checks a hash of the grammar,
    its options and lark's and Python's versions on every load and rebuilds a stale or damaged cache.
    False (no cache) where that folder can't be made."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "netdsl")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if os.stat(folder).st_uid != os.getuid() or not os.access(folder, os.W_OK):
            return False
    except (OSError, AttributeError):  # no home, a read-only file system; os.getuid is POSIX-only
        return False
    return os.path.join(folder, f"grammar-lark{lark.__version__}-py{sys.version_info[0]}{sys.version_info[1]}.cache")


@functools.cache
def _parser() -> lark.Lark:
    grammar = (resource_dir("grammar") / "netdsl.lark").read_text(encoding="utf-8")
    return lark.Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        start=["start", "type_only"],
        postlex=_PostLexer(),
        transformer=_Builder(),
        maybe_placeholders=False,
        cache=_parser_cache(),
    )


@functools.cache
def number_regex() -> re.Pattern[str]:
    """The grammar's NUMBER terminal: both forms, and the fast path, read numbers by the one rule."""
    return re.compile(_parser().get_terminal("NUMBER").pattern.to_regexp())


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
        return int(text.lstrip("0") or "0")
    except (OverflowError, ValueError):  # past float64, or an integer too long to convert: +Inf
        return math.inf


def number_value(text: str) -> float:
    """The float64 a numeric literal stands for in a constant: :func:`parse_number`, rounded once."""
    value = parse_number(text)
    try:
        return float(value)
    except OverflowError:  # an integer past float64's range rounds to inf, as 1e999 does
        return math.inf


#: inf and nan, which a literal takes in any letter case
SPECIAL_NUMBERS = {"inf": math.inf, "nan": math.nan}


# --- building the AST as rules are reduced -------------------------------------------------------


def _loc(token: Token) -> Loc:
    return _CURRENT.get().loc(token.line or 1, token.column or 1)


def _name(token: Token) -> ast.Name:
    return ast.Name(sys.intern(str(token)), _loc(token))  # names repeat: one string each


def _binop(op: str):
    """The rule building ``left op right``, located at ``left``."""
    def build(self, children):
        left, right = children
        return ast.BinOp(op, left, right, left.loc)
    return build


class _Builder(Transformer):
    def start(self, children):
        return [c for c in children if c is not None]

    def command(self, children):
        keyword, *names = children
        keyword_name = _name(keyword)
        item = ("command", keyword_name, [_name(n) for n in names], keyword_name.loc)
        return _statement(item, _CURRENT.get().diagnostics)

    def declaration(self, children):
        keyword, name, type_ref, *value = children
        keyword_name = _name(keyword)
        item = ("declaration", keyword_name, _name(name), type_ref, value[0] if value else None, keyword_name.loc)
        return _statement(item, _CURRENT.get().diagnostics)

    def alias(self, children):
        keyword, name, original = children
        keyword_name = _name(keyword)
        item = ("alias", keyword_name, _name(name), self.string([original]), keyword_name.loc)
        return _statement(item, _CURRENT.get().diagnostics)

    def layer(self, children):
        *outputs, op = [c for c in children if isinstance(c, Token)]
        arguments = [c for c in children if not isinstance(c, Token)]
        args = [a for a in arguments if not isinstance(a, ast.Keyword)]
        keywords = [a for a in arguments if isinstance(a, ast.Keyword)]
        names = [_name(o) for o in outputs]
        return ast.LayerStmt(names, _name(op), args, keywords, names[0].loc)

    def keyword(self, children):
        key, value = children
        key_name = _name(key)
        return ast.Keyword(key_name, value, key_name.loc)

    def type(self, children):
        dtype, dims = children
        if isinstance(dims, ast.NumberBlock):
            dims = expand_block(dims)
        dtype_name = _name(dtype)
        return ast.TypeRef(dtype_name, dims.items, dtype_name.loc)

    def type_only(self, children):
        return children[0]

    def number(self, children):
        (token,) = children
        text = sys.intern(str(token))
        return ast.Number(parse_number(text), text, _loc(token))

    def name(self, children):
        return _name(children[0])

    def string(self, children):
        (token,) = children
        return ast.String(unescape(str(token)[1:-1]), _loc(token))

    add, sub, mul, div = _binop("+"), _binop("-"), _binop("*"), _binop("/")

    def neg(self, children):
        sign, operand = children
        return ast.Unary("-", operand, _loc(sign))

    def pos(self, children):
        sign, operand = children
        return ast.Unary("+", operand, _loc(sign))

    def list(self, children):
        bracket, *items = children
        return ast.ListExpr(list(items), _loc(bracket))

    def block(self, children):
        bracket, index = children
        state = _CURRENT.get()
        values, shape, start, end = state.blocks[int(index)]
        return ast.NumberBlock(values, shape, state.text[start:end], _loc(bracket))

    def call(self, children):
        func, *arguments = children
        func_name = _name(func)
        args = [a for a in arguments if not isinstance(a, ast.Keyword)]
        keywords = [a for a in arguments if isinstance(a, ast.Keyword)]
        return ast.Call(func_name, args, func_name.loc, keywords)


# --- large literals ------------------------------------------------------------------------------
#
# Before parsing, every '[' outside comments and strings that starts a list of plain numbers (an optional
# sign, then a number, inf or nan), nested to any depth, with at least FAST_PATH_ELEMENTS elements, is read
# a list body at a time: str.split on commas and float() (the language's rule for decimals; hex numbers,
# inf and nan go through number_value). Its text is then replaced by '[', a NUL (the BLOCK token), blanks
# and its own line breaks, and ']': every token after it keeps its line and column. Anything else (an
# expression, a comment inside, a syntax error) is left to the parser, which reads and reports it as before.

#: lists with fewer elements are left to the parser
FAST_PATH_ELEMENTS = 16
@functools.cache
def _skipping(brackets: str) -> re.Pattern[str]:
    """Comments and strings (the grammar's COMMENT and STRING: a bracket inside them is none), or one of
    ``brackets``."""
    terminals = [_parser().get_terminal(name).pattern.to_regexp() for name in ("COMMENT", "STRING")]
    return re.compile("|".join(terminals) + f"|[{re.escape(brackets)}]")


_BLANKS = " \t\f\r\n"
_RUN = re.compile(r"[0-9A-Za-z.+\-, \t\f\r\n\[\]]*")
_BRACKET = re.compile(r"[\[\]]")
_NOT_DECIMAL = re.compile(r"[a-df-zA-DF-Z]")  # a letter that no decimal number has (hex, inf, nan)
#: a literal nested deeper than a tensor's rank is left to the parser (and bounds the rescanning)
_MAX_NESTING = 9


def _element(text: str) -> float | None:
    """One element of a plain list: [+-] then a number, inf or nan; None for anything else."""
    sign = text[:1] if text[:1] in ("+", "-") else ""
    body = text[len(sign):]
    special = SPECIAL_NUMBERS.get(body.lower())
    if special is not None:
        value = special
    elif number_regex().fullmatch(body):
        value = number_value(body)
    else:
        return None
    return -value if sign == "-" else value


def _body(body: str) -> np.ndarray | None:
    """The numbers of an innermost list's body (between its brackets), or None if it isn't plain."""
    parts = body.split(",")
    if not parts[-1].strip(_BLANKS):
        parts.pop()  # "" (an empty list) or a trailing comma
        if parts and not parts[-1].strip(_BLANKS):
            return None  # [,] or [1,,]
    if _NOT_DECIMAL.search(body):
        values = [_element(p.strip(_BLANKS)) for p in parts]
        return None if None in values else np.array(values, np.float64)
    try:  # decimal text: float() is the language's rule, and exact (it ignores the blanks around)
        return np.fromiter(map(float, parts), np.float64, len(parts))
    except ValueError:
        return None


def _separator(text: str, commas: int) -> bool:
    """Whether ``text`` between two brackets is blanks with ``commas`` commas (0 or 1) in between."""
    stripped = text.strip(_BLANKS)
    return stripped == "," * commas if commas else not stripped


def _block_at(text: str, start: int, end: int) -> tuple[np.ndarray, tuple[int, ...] | None, int] | None:
    """(values, shape, end) of the plain-number list whose '[' is at ``start``, or None; ``end`` is where
    the run of characters a plain list may hold, from ``start``, ends."""
    counts: list[int] = []  # items seen so far in each open list
    lengths: dict[int, int] = {}  # the length of every list at each depth (None-free while regular)
    regular, leaf_depth = True, -1
    chunks: list[np.ndarray] = []
    total = 0
    previous, previous_char = start, ""
    for match in _BRACKET.finditer(text, start, end):
        position, char = match.start(), match.group()
        between = text[previous + 1:position] if previous_char else ""
        if char == "[":
            if previous_char == "]" and not _separator(between, 1):
                return None
            if previous_char == "[" and not _separator(between, 0):
                return None
            if counts:
                counts[-1] += 1
            counts.append(0)
            if len(counts) > _MAX_NESTING:
                return None
        else:
            if previous_char == "[":  # an innermost list: its body holds the numbers
                if total + between.count(",") > MAX_LITERAL_ELEMENTS:  # a list has at least one
                    raise _LiteralTooLarge(start)  # element per comma: refused before it is read
                values = _body(between)
                if values is None:
                    return None
                chunks.append(values)
                total += len(values)
                if total > MAX_LITERAL_ELEMENTS:
                    raise _LiteralTooLarge(start)
                counts[-1] = len(values)
                depth = len(counts) - 1
                if leaf_depth < 0:
                    leaf_depth = depth
                regular = regular and leaf_depth == depth
            elif not (_separator(between, 0) or _separator(between, 1)):
                return None
            count = counts.pop()
            depth = len(counts)
            regular = regular and lengths.setdefault(depth, count) == count
            if not counts:
                if total < FAST_PATH_ELEMENTS:
                    return None
                shape = tuple(lengths[d] for d in range(len(lengths))) if regular else None
                return np.concatenate(chunks), shape, position + 1
        previous, previous_char = position, char
    return None


def _read_blocks(text: str, state: _Parse) -> str:
    """``text`` with its large plain-number literals replaced by BLOCK tokens (recorded in ``state``)."""
    if "\x00" in text or "[" not in text:
        return text
    pieces, done = [], 0
    position = run_end = 0
    scan = _skipping("[")
    while True:
        match = scan.search(text, position)
        if match is None:
            break
        position = match.end()
        if match.group() != "[":
            continue
        if match.start() >= run_end:  # every '[' of a run shares its end: find it once (no rescanning)
            run = _RUN.match(text, match.start() + 1)
            assert run is not None  # _RUN matches the empty string too
            run_end = run.end()
        block = _block_at(text, match.start(), run_end)
        if block is None:
            continue
        values, shape, end = block
        state.blocks.append((values, shape, match.start(), end))
        inner = "\n".join(" " * len(line) for line in text[match.start() + 1:end - 1].split("\n"))
        first = len(inner) - len(inner.lstrip("\n"))  # the NUL goes where no line break is
        pieces += [text[done:match.start() + 1], inner[:first], "\x00", inner[first + 1:], "]"]
        done = position = end
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


_ELEMENT_TOKEN = re.compile(r"\[|\]|[^ \t\f\r\n,\[\]]+")


def expand_block(block: ast.NumberBlock) -> ast.ListExpr:
    """The AST the parser would have built for ``block``'s text (to report where it doesn't fit, or to
    use it where a list of a few integers is expected)."""
    line, line_start = block.loc.line, -block.loc.col + 1  # offset of column 1 on the block's first line
    scanned = 0
    stack: list[ast.ListExpr] = []
    root: ast.ListExpr | None = None
    for match in _ELEMENT_TOKEN.finditer(block.source):
        offset = match.start()
        breaks = block.source.count("\n", scanned, offset)
        if breaks:
            line += breaks
            line_start = block.source.rfind("\n", scanned, offset) + 1
        scanned = offset
        loc = Loc(block.loc.file, line, offset - line_start + 1)
        token = match.group()
        if token == "[":
            new = ast.ListExpr([], loc)
            if stack:
                stack[-1].items.append(new)
            else:
                root = new
            stack.append(new)
        elif token == "]":
            stack.pop()
        else:
            sign = token[:1] if token[:1] in ("+", "-") else ""
            body = token[len(sign):]
            body_loc = Loc(loc.file, loc.line, loc.col + len(sign))
            expr: ast.Expr = ast.Name(body, body_loc) if body.lower() in SPECIAL_NUMBERS else \
                ast.Number(parse_number(body), body, body_loc)
            stack[-1].items.append(ast.Unary(sign, expr, loc) if sign else expr)
    assert root is not None
    return root


# --- string literals -----------------------------------------------------------------------------

_SIMPLE_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
                   "t": "\t", "v": "\v"}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{1,3}|N\{[^}\n]*\}|.)")


def _escape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[code]
    if code[0] in "xuU" and len(code) > 1 and int(code[1:], 16) <= 0x10FFFF:
        return chr(int(code[1:], 16))
    if code[0] in "01234567":
        return chr(int(code, 8))
    if code.startswith("N{"):
        try:
            return unicodedata.lookup(code[2:-1])
        except KeyError:
            pass
    return match.group(0)  # not an escape: kept as written, backslash and all (Python's rule, without its warning)


def unescape(body: str) -> str:
    """A string literal's body with Python's escapes decoded (``\\n``, ``\\x41``, ``\\u00e9``, ``\\udcff``...);
    a backslash that starts no escape stays (``"C:\\data"`` is ``C:\\data``), silently: Python 3.12 warns."""
    return _ESCAPE.sub(_escape, body) if "\\" in body else body


# --- parsing -------------------------------------------------------------------------------------


def _describe_expected(expected: set[str]) -> str:
    names = sorted({_TOKEN_DESCRIPTIONS.get(e, repr(e) if len(e) == 1 else e.lower()) for e in expected})
    if len(names) > 6:
        return ""
    return "; expected " + " or ".join(names) if names else ""


def _never_closed(text: str, open_brackets: list[Token]) -> Token | None:
    """The innermost of ``open_brackets`` (open when the parser stopped) that no bracket of ``text``
    closes, if any: a missing ']' or ')' is reported there, not where the parser noticed."""
    if not open_brackets:
        return None
    pairs = {"(": ")", "[": "]"}
    stack: list[int] = []
    unclosed: set[int] = set()
    for match in _skipping("[]()").finditer(text):
        char = match.group()
        if char in pairs:
            stack.append(match.start())
        elif char in ")]":
            if stack and pairs[text[stack[-1]]] == char:
                stack.pop()
    unclosed.update(stack)
    for token in reversed(open_brackets):
        if token.start_pos in unclosed:
            return token
    return None


def _syntax_error(error: lark.exceptions.UnexpectedInput, state: _Parse) -> tuple[Loc, str]:
    text = state.text
    if isinstance(error, lark.exceptions.UnexpectedToken) and error.token.type not in _CLOSING:
        bracket = _never_closed(text, state.open_brackets)
        if bracket is not None:
            return state.loc(bracket.line or 1, bracket.column or 1), f"'{bracket}' is never closed"
    line = getattr(error, "line", -1)
    col = getattr(error, "column", -1)
    at_end = isinstance(error, lark.exceptions.UnexpectedToken) and error.token.type == "$END"
    if line is None or line < 1 or at_end:  # unexpected end of input: point just past the text
        last = text.rstrip("\n")
        line, col = last.count("\n") + 1, len(last) - (last.rfind("\n") + 1) + 1
    loc = state.loc(line, col)
    if isinstance(error, lark.exceptions.UnexpectedCharacters):
        position = error.pos_in_stream or 0
        char = text[position] if position < len(text) else ""
        return loc, f"unexpected character {char!r}"
    if isinstance(error, lark.exceptions.UnexpectedToken):
        token = error.token
        if token.type == "$END":
            what = "end of file"
        elif token.type == "_NL":
            what = "end of line"
        elif token.type == "BLOCK":
            what = "list" if state.blocks else "character '\\x00'"  # no literal read ahead: a NUL as written
        else:
            what = repr(str(token))
        return loc, f"unexpected {what}{_describe_expected(set(error.expected))}"
    return loc, "unexpected end of file" + _describe_expected(set(getattr(error, "expected", ()) or ()))


def _parse(text: str, start: str, state: _Parse):
    """The rules' result for ``text`` from rule ``start``, or None after reporting a syntax error."""
    state.text = text
    diagnostics = state.diagnostics
    token = _CURRENT.set(state)
    try:
        return _parser().parse(_read_blocks(text, state), start=start)
    except (_LiteralTooLarge, _TooDeep, _StrayNul) as error:
        line_start = text.rfind("\n", 0, error.offset) + 1
        message = LITERAL_LIMIT_MESSAGE if isinstance(error, _LiteralTooLarge) else \
            "unexpected character '\\x00'" if isinstance(error, _StrayNul) else \
            f"the model is nested too deeply (more than {MAX_BRACKET_DEPTH} brackets open)"
        diagnostics.error(state.loc(text.count("\n", 0, error.offset) + 1, error.offset - line_start + 1), message)
    except lark.exceptions.UnexpectedInput as error:
        diagnostics.error(*_syntax_error(error, state))
    except RecursionError:
        diagnostics.error(Loc(state.file, 1, 1), "the model is nested too deeply")
    finally:
        _CURRENT.reset(token)
    return None


def parse_text(text: str, file: str, diagnostics: Diagnostics) -> ast.Module | None:
    """Parse a .net text into an AST, or report a syntax error and return None."""
    if not text.endswith("\n"):
        text += "\n"
    statements = _parse(text, "start", _Parse(file, diagnostics))
    if statements is None:
        return None
    return ast.Module(file, statements)


def parse_type(text: str, file: str, line: int, col: int, diagnostics: Diagnostics) -> ast.TypeRef | None:
    """Parse a type written on its own (the YAML form's ``float32[1, 3]``) at a known position."""
    return _parse(text, "type_only", _Parse(file, diagnostics, line - 1, col - 1))


_STATEMENT_KINDS = ("network", "input", "const", "output", "alias")


def _statement(item, diagnostics: Diagnostics) -> ast.Statement | None:
    """The statement a command (``network``, ``output``), declaration (``input``, ``const``) or alias is."""
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
