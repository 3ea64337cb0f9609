"""Source locations, diagnostics and the error types users see.

Model errors render as ``FILE:LINE:COL: error: MESSAGE`` (1-based line and column), warnings as
``FILE:LINE:COL: warning: MESSAGE``; they are collected, never raised one at a time, so one run shows
every problem in a model.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Loc:
    """A 1-based position in a model file."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{one_line(self.file)}:{self.line}:{self.col}"


@dataclass(frozen=True)
class NodeLoc(Loc):
    """A place in a model that has no text lines (an ONNX file): ``what`` names it, e.g.
    ``node 'q1' (QuantizeLinear)``; ``line`` orders the diagnostics (the node's index + 1), ``col`` is 0."""

    what: str = ""

    def __str__(self) -> str:
        return f"{one_line(self.file)}: {one_line(self.what)}" if self.what else one_line(self.file)


@dataclass(frozen=True)
class Diagnostic:
    loc: Loc
    severity: str  # "error" | "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.loc}: {self.severity}: {one_line(self.message)}"


@dataclass
class Diagnostics:
    """An ordered collection of diagnostics, in source order when rendered."""

    items: list[Diagnostic] = field(default_factory=list)

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
        return sorted(self.items, key=lambda d: (d.loc.file, d.loc.line, d.loc.col))

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
