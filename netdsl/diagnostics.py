"""Source locations, diagnostics and the error types users see.

A model error is ``FILE:LINE:COL: error: MESSAGE`` (1-based line and column), a warning
``FILE:LINE:COL: warning: MESSAGE``: that one line is ``str(diagnostic)``, which scripts and conformance
suites parse. :meth:`Diagnostic.render` adds, where the source text is known, the line and a caret under
the column (the command line prints this form on stderr)::

    model.net:3:17: error: quantize's scale must be a constant
      3 | q = quantize(x, s, axis=1)
        |                 ^

The added lines start with a blank, so ``FILE:LINE:COL:`` lines stay easy to pick out. Diagnostics are
collected, never raised one at a time, so one run shows every problem in a model.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace


@dataclass(frozen=True, slots=True)
class Loc:
    """A 1-based position in a model file."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{one_line(self.file)}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class NodeLoc(Loc):
    """A place in a model that has no text lines (an ONNX file): ``what`` names it, e.g.
    ``node 'q1' (QuantizeLinear)``; ``line`` orders the diagnostics (the node's index + 1), ``col`` is 0."""

    what: str = ""

    def __str__(self) -> str:
        return f"{one_line(self.file)}: {one_line(self.what)}" if self.what else one_line(self.file)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    loc: Loc
    severity: str  # "error" | "warning"
    message: str
    #: the text of line ``loc.line`` of ``loc.file``, where it is known (for :meth:`render`)
    source_line: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.loc}: {self.severity}: {one_line(self.message)}"

    def render(self) -> str:
        """``str(self)``, then the source line and a caret under the column where the line is known."""
        if self.source_line is None:
            return str(self)
        return "\n".join([str(self), *caret_lines(self.source_line, self.loc.line, self.loc.col)])


#: a source line wider than this is shown as a window around the column
SHOWN_WIDTH = 100
_TAB = "    "


def _display(char: str) -> tuple[str, int]:
    """How a source character is shown: its text and its width in terminal columns."""
    if char == "\t":
        return _TAB, len(_TAB)
    if not char.isprintable():
        text = repr(char)[1:-1]  # a control character never reaches the terminal as itself
        return text, len(text)
    if unicodedata.combining(char):
        return char, 0
    return char, 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def caret_lines(line: str, number: int, col: int) -> list[str]:
    """Source line ``number`` and a caret under character ``col`` (1-based; past the end: just after it),
    with tabs as four blanks, unprintable characters escaped, wide characters counted as two columns,
    and a line wider than :data:`SHOWN_WIDTH` cut to a window around the caret (``...`` marks a cut)."""
    shown = [_display(c) for c in line.rstrip("\r\n")]
    index = min(max(col, 1) - 1, len(shown))
    start, end = 0, len(shown)
    if sum(width for _, width in shown) > SHOWN_WIDTH:
        start = index
        room = SHOWN_WIDTH // 3  # columns shown before the caret
        while start > 0 and room - shown[start - 1][1] >= 0:
            start -= 1
            room -= shown[start][1]
        end, room = start, SHOWN_WIDTH
        while end < len(shown) and room - shown[end][1] >= 0:
            room -= shown[end][1]
            end += 1
    before = "..." if start else ""
    after = "..." if end < len(shown) else ""
    text = before + "".join(t for t, _ in shown[start:end]) + after
    offset = len(before) + sum(width for _, width in shown[start:index])
    gutter = " " * len(str(number))
    return [f" {number} | {text}".rstrip(), f" {gutter} | {' ' * offset}^"]


#: the line breaks of each source form: the text form's lexer counts "\n", YAML counts these
_LINE_BREAKS = {"net": re.compile("\n"), "yaml": re.compile("\r\n|[\r\n\x85\u2028\u2029]")}


def source_lines(text: str, numbers: Iterable[int], form: str = "net") -> dict[int, str]:
    """Lines ``numbers`` (1-based) of ``text``, split as the front end of ``form`` counts lines."""
    wanted = sorted(set(n for n in numbers if n >= 1))
    found: dict[int, str] = {}
    if not wanted:
        return found
    line, start = 1, 0
    breaks = _LINE_BREAKS[form].finditer(text)
    for number in wanted:
        while line < number:
            match = next(breaks, None)
            if match is None:
                return found
            line, start = line + 1, match.end()
        match = _LINE_BREAKS[form].search(text, start)
        found[number] = text[start:match.start() if match else len(text)]
    return found


@dataclass
class Diagnostics:
    """An ordered collection of diagnostics, in source order when rendered. ``sources`` maps a file to
    its text and form ("net" or "yaml"), to show the lines diagnostics point at."""

    items: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)

    def error(self, loc: Loc, message: str) -> None:
        self.items.append(Diagnostic(loc, "error", message))

    def warning(self, loc: Loc, message: str) -> None:
        self.items.append(Diagnostic(loc, "warning", message))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]

    def sorted(self) -> list[Diagnostic]:
        """The diagnostics in source order, each with its source line where the file's text is known."""
        items = sorted(self.items, key=lambda d: (d.loc.file, d.loc.line, d.loc.col))
        lines = {file: source_lines(text, (d.loc.line for d in items if d.loc.file == file), form)
                 for file, (text, form) in self.sources.items()}
        return [replace(d, source_line=lines[d.loc.file].get(d.loc.line)) if d.loc.file in lines else d
                for d in items]

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ModelError(self.sorted())


class ModelError(Exception):
    """A model that does not parse or check; ``diagnostics`` holds every located message."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics if d.severity == "error"))


class OpError(Exception):
    """Raised by an op's shape/type rule; the checker attaches a location.

    ``where`` names what is wrong: an input slot name (``"input"``, ``"scale"``, ...), a keyword
    (``"axis"``), or None for the layer as a whole.
    """

    def __init__(self, message: str, where: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where


class WeightValueError(ValueError):
    """A scale computed from a recipe's weight that the layers reject (a value a constant could not have):
    the weight doesn't fit the recipe."""


class UsageError(Exception):
    """A bad command line, a missing file, an input that doesn't fit, an unavailable backend (exit 2)."""


def one_line(text: str) -> str:
    """``text`` as one printable line: line breaks, tabs and other unprintable characters (a user's file
    name, a YAML scalar, a load() path) escaped as Python writes them, so that a diagnostic is one line."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` naming the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
