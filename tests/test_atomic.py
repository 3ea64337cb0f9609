"""netdsl.atomic.write_atomically: all or nothing, and never over something that is not a regular file."""

from __future__ import annotations

from pathlib import Path

import pytest

from netdsl.atomic import FileError, write_atomically


def test_writes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    write_atomically(target, lambda stream: stream.write("one"), binary=False)
    write_atomically(target, lambda stream: stream.write(b"two"))
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def fail(stream) -> None:
        stream.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_atomically(target, fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_refuses_a_missing_folder_and_a_directory(tmp_path: Path) -> None:
    with pytest.raises(FileError, match="no such directory"):
        write_atomically(tmp_path / "missing" / "out.bin", lambda stream: None)
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileError, match="it is a directory"):
        write_atomically(tmp_path / "folder", lambda stream: None)
