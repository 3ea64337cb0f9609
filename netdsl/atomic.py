"""Writing a file atomically: through a temporary file in the destination folder, then a rename. Every
file netdsl writes (``--save``, ``netdsl convert``'s output, the kernel cache) goes through here."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netdsl.diagnostics import UsageError


def write_atomically(path: str | os.PathLike[str], write: Callable[[Any], object], binary: bool = True) -> None:
    """Call ``write`` with a stream open on a temporary file beside ``path``, then rename it to ``path``:
    on any error the destination is untouched and no partial file remains. UsageError when the folder
    is missing or ``path`` is something other than a regular file; OSError as writing raises it."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"cannot write '{path}': no such directory '{folder}'")
    if target.exists() and not target.is_file():  # a rename would replace a device, FIFO or directory
        raise UsageError(f"cannot write '{path}': it is {'a directory' if target.is_dir() else 'not a regular file'}")
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb" if binary else "w") as stream:
            write(stream)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
