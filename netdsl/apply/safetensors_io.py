"""Reading safetensors headers and writing shards as a stream.

A safetensors file is an 8-byte little-endian header length, a JSON header (``{name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {...}}``, padded with spaces to a multiple of 8 bytes)
and the tensors' raw bytes, contiguous and in offset order. The ``safetensors`` package reads a tensor
through ``safe_open`` (memory-mapped), but writes only whole files from tensors held in memory
(``save_file``/``serialize`` take every tensor at once), so shards are written here: the header first
(every output's dtype and shape is known before its values are), then each tensor's bytes as it is
computed, through a temporary file renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from netdsl import settings
from netdsl.apply.timing import TIMING
from netdsl.dtypes import storage_dtype
from netdsl.files import SAFETENSORS_TAGS

#: safetensors dtype tag -> bytes per element, for the whole-byte tags (netdsl/files.py holds the format's
#: tags; a sub-byte tag's tensors are copied as they are, never written by a recipe)
ITEM_SIZES = {tag: bits // 8 for tag, (bits, _) in SAFETENSORS_TAGS.items() if bits % 8 == 0}
#: NumPy storage dtype -> safetensors tag, for the dtypes recipe outputs are stored in
TAGS: dict[np.dtype, str] = {storage_dtype(name): tag for tag, (bits, name) in SAFETENSORS_TAGS.items()
                             if name is not None and bits % 8 == 0 and not tag.endswith("FNUZ")}
#: the safetensors header is at most 100 MB (the format's own limit)
MAX_HEADER = 100_000_000
COPY_CHUNK = 1 << 26
#: how far the SHA-256 of a shard may fall behind its writing, in bytes (the pieces not yet hashed are held):
#: more than a fused group's outputs, so that it runs on while the next group is read and quantized (the
#: H100 run of 2026-12-07 16:03 UTC: with one piece behind, the shard threads waited 2.2 s for it)
HASH_AHEAD = 1 << 27
#: a shard's bytes are handed to the disk every WRITEBACK bytes as they are written (asynchronously), so the
#: fsync that ends the shard waits only for the last piece
WRITEBACK = 1 << 26
#: the threads that hand written bytes to the disk (posix_fadvise, which waits while the disk's queue is full:
#: on the H100 machine's disk the shard threads spent 7.3 of their 18.6 busy seconds there for a 24 GB
#: checkpoint, benchmarks/results-apply.md); made on first use, shared by every writer of the process
_WRITEBACK: list[ThreadPoolExecutor] = []
_WRITEBACK_LOCK = threading.Lock()


def _writeback_pool() -> ThreadPoolExecutor:
    with _WRITEBACK_LOCK:
        if not _WRITEBACK:
            _WRITEBACK.append(ThreadPoolExecutor(max_workers=2, thread_name_prefix="netdsl-writeback"))
        return _WRITEBACK[0]


class CheckpointError(Exception):
    """A checkpoint that can't be read as it claims to be (a missing shard, a tensor an index names that
    isn't there, a header that isn't safetensors): one line naming the file and tensor."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a shard: its dtype tag, shape and byte range in the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute file offsets
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str] | None]:
    """The tensors of a safetensors file (in offset order) and its ``__metadata__``; CheckpointError when
    the file isn't a well-formed safetensors file."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as stream:
            prefix = stream.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"'{path}' is not a safetensors file (shorter than 8 bytes)")
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER or 8 + length > size:
                raise CheckpointError(f"'{path}' is not a safetensors file (header length {length})")
            header = json.loads(stream.read(length))
    except OSError as error:
        raise CheckpointError(f"cannot read '{path}': {error.strerror or error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"'{path}' is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"'{path}' is not a safetensors file (its header is not a JSON object)")
    metadata = header.pop("__metadata__", None)
    base = 8 + length
    tensors = []
    for name, entry in header.items():
        try:
            begin, end = (int(v) for v in entry["data_offsets"])
            shape = tuple(int(d) for d in entry["shape"])
            info = TensorInfo(name, str(entry["dtype"]), shape, base + begin, base + end)
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"'{path}': tensor '{name}' has a malformed header entry") from None
        expected = int(np.prod(info.shape, dtype=np.int64)) * ITEM_SIZES.get(info.dtype, 0)
        if info.dtype in ITEM_SIZES and (info.nbytes != expected or begin < 0 or info.end > size):
            raise CheckpointError(f"'{path}': tensor '{name}' ({info.dtype}{list(info.shape)}) has "
                                  f"{info.nbytes} bytes at [{begin}, {end}), not {expected} inside the file")
        tensors.append(info)
    tensors.sort(key=lambda t: t.begin)
    return {t.name: t for t in tensors}, metadata


@dataclass(frozen=True)
class OutputTensor:
    """One tensor of a shard being written: its header entry; the bytes come from the writer's caller."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * ITEM_SIZES[self.dtype]


def header_bytes(tensors: Iterable[OutputTensor], metadata: dict[str, str] | None) -> bytes:
    """The length prefix and the JSON header (offsets in the given order), padded to 8 bytes."""
    entries: dict[str, Any] = {}
    if metadata is not None:
        entries["__metadata__"] = metadata
    offset = 0
    for tensor in tensors:
        entries[tensor.name] = {"dtype": tensor.dtype, "shape": list(tensor.shape),
                                "data_offsets": [offset, offset + tensor.nbytes]}
        offset += tensor.nbytes
    text = json.dumps(entries, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


class ShardWriter:
    """Writes one safetensors file as a stream: ``write(tensor, chunks)`` in the header's order, then
    ``commit()`` renames the finished file into place (``abort()`` removes it). The SHA-256 of the final
    bytes is computed on the way. ``commit()`` is ``finish()`` (every byte written and hashed: the SHA-256)
    then ``durable()`` (fsync, close, rename), which another thread may do while the writer's goes on."""

    def __init__(self, path: Path, tensors: list[OutputTensor], metadata: dict[str, str] | None,
                 header: bool = True):
        self.path = path
        self.tensors = tensors
        self.temporary = path.with_name(f".{path.name}.partial")
        self.stream: IO[bytes] = open(self.temporary, "wb")
        self.hash = hashlib.sha256()
        self.next = 0
        self.written = self.handed = 0  # bytes written, and handed to the disk
        self.writeback = settings.apply_fsync()
        # SHA-256 in a thread of its own, up to HASH_AHEAD bytes behind the writing (hashlib lets go of the GIL),
        # so that it goes on while the next group is read, quantized and downloaded
        self.hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netdsl-hash")
        self.hashing: deque[tuple[Future[None], int]] = deque()
        self.unhashed = 0
        self.handing: deque[Future[None]] = deque()  # the writeback handoffs not yet done
        if header:  # without: the tensors' bytes only (a part of a shard, docs/scale.md)
            self._put(header_bytes(tensors, metadata))

    def _put(self, data: bytes | memoryview) -> None:
        size = len(data)
        with TIMING.phase("write", size):
            self.stream.write(data)
            self.written += size
            if self.written - self.handed >= WRITEBACK and self.writeback == "early" and hasattr(os, "posix_fadvise"):
                self.stream.flush()
                while self.handing and self.handing[0].done():
                    self.handing.popleft().result()
                self.handing.append(_writeback_pool().submit(self._hand, self.handed, self.written - self.handed))
                self.handed = self.written
        with TIMING.phase("wait hash"):
            while self.hashing and self.unhashed + size > HASH_AHEAD:
                self._hashed()
        self.hashing.append((self.hasher.submit(self._hash, data), size))
        self.unhashed += size

    def _hand(self, offset: int, length: int) -> None:
        """Start the writeback of bytes [offset, offset + length) without waiting for it to end (Linux:
        WB_SYNC_NONE; it waits only while the disk's queue is full); the pages are dropped from the page
        cache once clean, as nothing reads them again."""
        with TIMING.phase("writeback", length):
            os.posix_fadvise(self.stream.fileno(), offset, length, os.POSIX_FADV_DONTNEED)

    def _handed(self) -> None:
        while self.handing:
            self.handing.popleft().result()

    def _hashed(self) -> None:
        """Wait for the oldest piece's SHA-256 (the thread hashes the pieces in order)."""
        future, size = self.hashing.popleft()
        future.result()
        self.unhashed -= size

    def _hash(self, data: bytes | memoryview) -> None:
        with TIMING.phase("hash", len(data)):
            self.hash.update(data)

    def write(self, name: str, chunks: Iterable[bytes | memoryview | np.ndarray]) -> None:
        tensor = self.tensors[self.next]
        if tensor.name != name:
            raise RuntimeError(f"shard writer: expected '{tensor.name}', got '{name}'")
        written = 0
        for chunk in chunks:
            view = np.ascontiguousarray(chunk).reshape(-1).view(np.uint8).data \
                if isinstance(chunk, np.ndarray) else chunk
            self._put(view)
            written += len(view)
        if written != tensor.nbytes:
            raise RuntimeError(f"shard writer: '{name}' got {written} bytes, its header says {tensor.nbytes}")
        self.next += 1

    def commit(self) -> str:
        """Flush, fsync and rename into place; returns the file's SHA-256 (hex)."""
        digest = self.finish()
        self.durable()
        return digest

    def finish(self) -> str:
        """Every tensor written, hashed and flushed to the file (not yet durable, nor in place); returns the
        file's SHA-256 (hex)."""
        if self.next != len(self.tensors):
            raise RuntimeError(f"shard writer: {len(self.tensors) - self.next} tensors not written")
        with TIMING.phase("wait hash"):
            while self.hashing:
                self._hashed()
        self.hasher.shutdown()
        self.stream.flush()
        return self.hash.hexdigest()

    def durable(self) -> None:
        """After :meth:`finish`: fsync (as $NETDSL_APPLY_FSYNC says), close and rename into place; where that
        fails, the temporary file is removed (:meth:`abort`)."""
        try:
            self._handed()
            if self.writeback != "none":
                with TIMING.phase("fsync"):
                    os.fsync(self.stream.fileno())
            self.stream.close()
            os.replace(self.temporary, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self.hasher.shutdown(wait=True, cancel_futures=True)
        for handoff in self.handing:  # none may use the file once it is closed
            handoff.cancel() or handoff.exception()
        self.stream.close()
        self.temporary.unlink(missing_ok=True)


def copy_range(path: Path, begin: int, end: int) -> Iterator[bytes]:
    """The bytes [begin, end) of a file, in chunks (a tensor copied byte for byte)."""
    with open(path, "rb") as stream:
        stream.seek(begin)
        remaining = end - begin
        while remaining:
            chunk = stream.read(min(COPY_CHUNK, remaining))
            if not chunk:
                raise CheckpointError(f"'{path}' ends early (a tensor's bytes are missing)")
            remaining -= len(chunk)
            yield chunk


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(COPY_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
