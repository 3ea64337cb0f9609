"""Writing a file atomically, and the error of a file that can't be read or written: every file netdsl
writes (``--save``, ``convert``/``import``/``export`` outputs, ``compare --json``, the kernel cache) goes
through :func:`write_atomically` (docs/reliability.md, "Saving"); :mod:`netdsl.files` reads tensor files
and raises the same :class:`FileError`.

The target is checked first (:func:`check_target`): a non-empty name that fits the file system, an existing
writable folder, no directory, FIFO or device, no read-only file, none of the files the command reads.
Then a new temporary file in the target's folder (``.~`` + random + the name, cut to the file system's
name limit; created 0666 less the umask, as any new file) is written, fsynced, renamed over the target,
and the folder fsynced. On any error, and on SIGTERM, SIGHUP or SIGINT meanwhile (signal handlers around
the write, restored after, the signal then delivered again), the temporary file is removed and the target
untouched.
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import signal
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class FileError(ValueError):
    """A file that can't be read or written; the message is one line in our own words (without the path:
    the caller says which file)."""


def stat_reason(path: str | os.PathLike, error: OSError) -> str:
    """An OSError about ``path`` in our words (no such file, permission denied, ...)."""
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, PermissionError):
        return "permission denied"
    if error.errno == errno.ENOTDIR:
        return "no such file (a part of the path is not a directory)"
    if error.errno == errno.ENAMETOOLONG:
        return "the name is too long"
    if error.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    return (error.strerror or "cannot be read").lower()



def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def check_target(path: str | os.PathLike, protect: Iterable[str | os.PathLike] = ()) -> Path:
    """``path`` checked as a file to write, before any work is done: a non-empty name that fits the
    file system, an existing writable folder, no existing non-regular file or read-only file, and none
    of ``protect`` (the model and input files): FileError saying which. Returns ``path`` as a Path."""
    text = os.fspath(path)
    if not text:
        raise FileError("the file name is empty")
    target = Path(text)
    if text.endswith(os.sep) or target.name in ("", ".", ".."):
        raise FileError("it names a directory, not a file")
    folder = target.parent
    try:
        name_bytes = len(os.fsencode(target.name))
    except UnicodeEncodeError:
        raise FileError("the file name can't be encoded for this file system") from None
    if not folder.is_dir():
        raise FileError(f"no such directory '{folder}'")
    if name_bytes > _name_max(folder):
        raise FileError(f"the file name is {name_bytes} bytes long; this file system allows {_name_max(folder)}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FileError(f"the directory '{folder}' is not writable")
    try:
        status = os.stat(target)
    except FileNotFoundError:
        status = None
    except OSError as error:
        raise FileError(stat_reason(target, error)) from None
    if status is not None:
        if stat.S_ISDIR(status.st_mode):
            raise FileError("it is a directory")
        if not stat.S_ISREG(status.st_mode):
            raise FileError("it is not a regular file")
        if not status.st_mode & 0o222 or not os.access(target, os.W_OK):  # mode bits too: root may write anything
            raise FileError("it is read-only")
        for other in protect:
            try:
                same = os.path.samefile(target, other)
            except (OSError, ValueError):
                same = False
            if same:
                raise FileError(f"it is '{os.fspath(other)}', which this command reads: netdsl never replaces its "
                                f"own inputs")
    return target


_signal_lock = threading.Lock()
#: the signals that remove a temporary file being written before the process ends
CLEANUP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, name))


class _Interrupted(KeyboardInterrupt):
    """A cleanup signal during a write (a KeyboardInterrupt, should one escape the write: netdsl's
    "interrupted")."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextmanager
def _signals_raise() -> Iterator[None]:
    """While writing: SIGTERM, SIGHUP and SIGINT raise, so the temporary file is removed; the previous
    handlers come back afterwards and the signal is delivered again to them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Interrupted(signum)

    with _signal_lock:
        previous = {sig: signal.signal(sig, handler) for sig in CLEANUP_SIGNALS}
    caught = None
    try:
        yield
    except _Interrupted as interrupted:
        caught = interrupted.signum
    finally:
        with _signal_lock:
            for sig, old in previous.items():
                signal.signal(sig, old)
    if caught is not None:
        signal.raise_signal(caught)
        raise KeyboardInterrupt  # a handler that returned: stop all the same


def _temporary_name(target: Path) -> bytes:
    """A fresh name in ``target``'s folder, ``.~`` + random + the target's name, no longer (in bytes) than
    the file system allows (truncated where the target's own name is near the limit)."""
    name = os.fsencode(target.name)
    limit = max(_name_max(target.parent if str(target.parent) else Path(".")), 16)
    return (b".~" + secrets.token_hex(4).encode() + b"~" + name)[:limit]


def write_atomically(path: str | os.PathLike, write: Callable[[Any], object], binary: bool = True,
                     protect: Iterable[str | os.PathLike] = ()) -> None:
    """Write ``path`` through ``write(stream)`` (a binary stream, or UTF-8 text unless ``binary``): into a new
    temporary file in the same folder (permissions 0666 less the umask), fsynced, renamed over ``path``, the
    folder fsynced. On any error, or SIGTERM, SIGHUP or SIGINT meanwhile, the temporary file is removed and
    ``path`` is untouched. FileError for a target :func:`check_target` refuses (``protect``: the files the
    command reads); OSError from the file system."""
    target = check_target(path, protect)
    folder = target.parent
    folder_bytes = os.fsencode(folder)
    temporary = None
    with _signals_raise():
        try:
            for _ in range(100):
                candidate = os.path.join(folder_bytes, _temporary_name(target))
                try:
                    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
                except FileExistsError:
                    continue
                temporary = candidate
                break
            else:
                raise FileError("no temporary name is free in the target's folder")
            with os.fdopen(fd, "wb") as stream:
                if binary:
                    write(stream)
                else:
                    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
                    write(text)
                    text.flush()
                    text.detach()
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
            temporary = None
            _fsync_folder(folder_bytes)
        finally:
            if temporary is not None:
                try:
                    os.unlink(temporary)
                except OSError:
                    pass


def _fsync_folder(folder: bytes) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems can't fsync a folder; the rename is done all the same
        pass
    finally:
        os.close(fd)
