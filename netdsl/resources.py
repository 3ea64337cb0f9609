"""Where the grammar and the CUDA kernels are: inside the installed package (the wheel maps the
top-level ``grammar/`` and ``kernels/`` into ``netdsl/``), or at the root of a source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """The directory ``name`` (``grammar`` or ``kernels``), installed or in a source checkout."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"netdsl's {name}/ directory is missing from {_PACKAGE} and {_PACKAGE.parent}")
