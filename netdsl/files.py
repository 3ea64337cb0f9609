"""Tensor files: the one module that reads and writes arrays at netdsl's edges (docs/files.md).

Reading (``load()``, ``--input``, ``--inputs``, reference outputs): ``.npy`` and ``.npz`` (standard
dtypes, or ``ml_dtypes`` arrays as ``np.save`` writes them: bfloat16 as ``<V2``, fp8/e8m0/fp4/int4 as
``<V1``, one element per byte, the declared tensor type saying what the raw bytes hold), raw codes when
told (``codes=True``: uint8, uint16 for bfloat16, 4-bit types packed 1-D), ``.safetensors`` (every
dtype tag the format defines) and Polygraphy's JSON inputs/outputs. The format is told by the file's
first bytes, not its name.

Every reader treats the file as hostile: it refuses anything but a regular file before opening it for
reading, parses every header itself within bounds (an .npy header with ``ast.literal_eval`` under a
size limit, a safetensors header against the file's size, a zip member's sizes against its compressed
size), checks a header's shape and dtype against the declared type, and refuses a header that claims
more data than the file holds, all before allocating the data. Whatever goes wrong comes out as a
:class:`FileError` (or :class:`netdsl.arrays.MismatchError` for a well-formed array that doesn't fit)
with one line in our own words.

Writing (``--save`` by extension): ``.npz`` (written member by member, so any tensor name works),
``.safetensors`` (safetensors' own dtype tags; int4, and fp4 whose last dimension is odd, as packed U8
with the type and shape in the metadata) and ``.json`` (Polygraphy's ``RunResults``), always through
:func:`write_atomically`: a temporary file in the target's folder, removed on any error or on SIGTERM,
SIGHUP and SIGINT, fsynced, renamed over the target, the folder fsynced; permissions from the umask.
"""

from __future__ import annotations

import ast
import base64
import binascii
import io
import json
import math
import os
import stat
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from netdsl import dtypes
from netdsl.arrays import MismatchError, check_fits, coerce
from netdsl.atomic import FileError, check_target, stat_reason, write_atomically
from netdsl.diagnostics import one_line
from netdsl.ir import TensorType

__all__ = [
    "FileError", "KeyNotFound", "MismatchError", "SAVE_FORMATS", "check_regular", "check_target", "confined",
    "for_saving", "list_keys", "open_regular", "polygraphy_iterations", "read_array", "read_tensor",
    "read_tensors", "save_format", "write_atomically", "write_tensors",
]


class KeyNotFound(FileError):
    """A key the file doesn't hold, a key given for an .npy, or none given for a file of several arrays
    (``key`` ""): ``available`` lists the keys it holds. The message reads after the file's name
    (``'w.npz' has no array 'k'``)."""

    def __init__(self, message: str, key: str, available: list[str]):
        super().__init__(message)
        self.key = key
        self.available = available


#: the longest .npy header read (NumPy writes a few hundred bytes; its own reader stops at 10,000)
MAX_NPY_HEADER = 100_000
#: the longest safetensors header read (the safetensors library's own limit, 100 MB)
MAX_SAFETENSORS_HEADER = 100_000_000
#: deflate's largest possible compression ratio: a zip member's declared size above this many times its
#: compressed size is a lie
MAX_DEFLATE_RATIO = 1032
#: array data of at least this many bytes a core is read by a thread per core (:func:`_read_data`)
PARALLEL_READ = 32 << 20
#: a tensor has at most this many dimensions in any file we read (NumPy's own limit is 64)
MAX_DIMS = 64

_NPY_MAGIC = b"\x93NUMPY"
#: the longest name (a member, a tensor, a key) quoted in a message
_NAME_CHARS = 80
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")

# --- opening files ---------------------------------------------------------------------------------


def _name(text: str) -> str:
    """A name from a file, for a message: one printable line, cut to :data:`_NAME_CHARS` characters."""
    text = one_line(text)
    return text if len(text) <= _NAME_CHARS else text[:_NAME_CHARS - 3] + "..."


def check_regular(path: str | os.PathLike) -> os.stat_result:
    """The ``os.stat`` of ``path``, a regular file; FileError saying what it is otherwise (no such file,
    a folder, a FIFO, a device), found without opening it."""
    try:
        status = os.stat(path)
    except OSError as error:
        raise FileError(stat_reason(path, error)) from None
    except ValueError:  # an embedded NUL
        raise FileError("the name holds a NUL character") from None
    if stat.S_ISDIR(status.st_mode):
        raise FileError("it is a directory, not a file")
    if not stat.S_ISREG(status.st_mode):
        mode = status.st_mode
        kind = " (a FIFO)" if stat.S_ISFIFO(mode) else " (a device)" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
            else " (a socket)" if stat.S_ISSOCK(mode) else ""
        raise FileError(f"it is not a regular file{kind}")
    return status


@contextmanager
def open_regular(path: str | os.PathLike) -> Iterator[tuple[BinaryIO, int]]:
    """``path`` opened for binary reading with its size, refused (FileError) unless it is a regular file:
    checked before opening and again on the open descriptor, which is opened non-blocking so that a FIFO
    swapped in between can't hang the reader."""
    check_regular(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise FileError(stat_reason(path, error)) from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise FileError("it is not a regular file")
        stream = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with stream:
        yield stream, status.st_size


def _read_exactly(stream: BinaryIO, count: int, what: str) -> bytearray:
    """The next ``count`` bytes of ``stream`` (headers, JSON text); :func:`_read_data` reads array data."""
    buffer = bytearray(count)
    _fill(stream, memoryview(buffer), what)
    return buffer


def _fill(stream: BinaryIO, view: memoryview, what: str) -> None:
    done, count = 0, len(view)
    while done < count:
        got = stream.readinto(view[done:])  # type: ignore[attr-defined]
        if not got:
            raise FileError(f"{what} is truncated: {count} bytes expected, {done} found")
        done += got


def pread_full(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from byte ``offset`` of file ``fd`` (``os.preadv``, as many calls as it takes); returns
    the bytes read, fewer than ``len(view)`` only where the file ends first."""
    done, count = 0, len(view)
    while done < count:
        got = os.preadv(fd, [view[done:]], offset + done)
        if not got:
            break
        done += got
    return done


def _read_data(stream: BinaryIO, count: int, what: str) -> np.ndarray:
    """The next ``count`` bytes of ``stream`` as a uint8 array: an array's data. The buffer is NumPy's
    (not zero-filled first; the huge pages NumPy asks the kernel for large arrays), and a large read
    from a file is split among a thread per core, each reading its part with ``os.preadv`` straight into
    it, so that the copy from the page cache and the first touch of the fresh pages are shared among the
    cores (a zip member is read in order). FileError if the file ends early, even when it is cut while
    it is being read."""
    buffer = np.empty(count, np.uint8)
    view = buffer.data  # a memoryview of it
    workers = min(os.cpu_count() or 1, count // PARALLEL_READ)
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: a zip member
        workers = 0
    if not hasattr(os, "preadv"):  # Windows
        workers = 0
    if workers < 2:
        _fill(stream, view, what)
        return buffer
    start = stream.tell()
    step = -(-count // workers)

    def part(begin: int) -> None:
        end = min(begin + step, count)
        if pread_full(fd, view[begin:end], start + begin) < end - begin:
            found = min(max(os.fstat(fd).st_size - start, 0), count)
            raise FileError(f"{what} is truncated: {count} bytes expected, {found} found")

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="netdsl-read") as pool:
        for done in [pool.submit(part, begin) for begin in range(0, count, step)]:
            done.result()
    stream.seek(start + count)
    return buffer


# --- the declared type: what a file's array may be -------------------------------------------------


def has_codes(dtype: dtypes.DType) -> bool:
    """Whether a tensor of ``dtype`` may be given as raw codes: the quantized types, e8m0 and bfloat16
    (float32 and float16 are standard dtypes, read as values either way)."""
    return dtype.name not in ("float32", "float16")


def _code_layout(tensor_type: TensorType) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of ``tensor_type``'s raw codes in a file (as ``--save --codes`` writes them)."""
    dtype = tensor_type.dtype
    if dtype.bits == 4:
        return ((tensor_type.volume + 1) // 2,), np.dtype(np.uint8)
    return tensor_type.shape, np.dtype(np.uint16 if dtype.bits == 16 else np.uint8)


def _is_raw(array_dtype: np.dtype) -> bool:
    """A plain void dtype: what ``np.save`` writes for ml_dtypes arrays (``<V2``, ``<V1``)."""
    return array_dtype.type is np.void and array_dtype.fields is None and array_dtype.subdtype is None


def _raw_fits(array_dtype: np.dtype, dtype: dtypes.DType) -> bool:
    storage = dtype.storage
    return storage.kind == "V" and array_dtype.itemsize == storage.itemsize


def check_header(shape: tuple[int, ...], array_dtype: np.dtype, tensor_type: TensorType, codes: bool) -> None:
    """MismatchError unless an array of ``shape`` and ``array_dtype`` in a file may hold a ``tensor_type``:
    checked on a header, before its data is read. With ``codes``, a uint8 array (uint16 for bfloat16) holds
    raw codes (4-bit ones packed 1-D); other arrays are read as values either way."""
    dtype = tensor_type.dtype
    if _holds_codes(array_dtype, dtype, codes):
        want_shape, want_dtype = _code_layout(tensor_type)
        if tuple(shape) != want_shape:
            packed = " (4-bit codes are packed two per byte, 1-D)" if dtype.bits == 4 else ""
            raise MismatchError(f"has shape {list(shape)}, expected {list(want_shape)} for {dtype.name} codes{packed}")
        return
    if array_dtype == dtype.storage and tuple(shape) == tensor_type.shape:
        return  # an ml_dtypes array (a safetensors tag of the type's own)
    if _is_raw(array_dtype):
        if tuple(shape) != tensor_type.shape:
            raise MismatchError(f"has shape {list(shape)}, expected {list(tensor_type.shape)}")
        if not _raw_fits(array_dtype, dtype):
            raise MismatchError(f"holds raw {array_dtype.itemsize}-byte values ({_dtype_text(array_dtype)}, as np.save "
                                f"writes ml_dtypes arrays), which can't be {dtype.name}: "
                                f"{dtype.name} is {dtype.storage.itemsize} byte(s) per element")
        return
    try:
        check_fits(shape, array_dtype, tensor_type)
    except MismatchError as error:
        if has_codes(dtype) and array_dtype.newbyteorder("=") == _code_layout(tensor_type)[1]:
            raise MismatchError(f"{error} (raw codes? pass --codes, or load(..., codes=true))") from None
        raise


def _holds_codes(array_dtype: np.dtype, dtype: dtypes.DType, codes: bool) -> bool:
    return codes and has_codes(dtype) and array_dtype.newbyteorder("=") == \
        np.dtype(np.uint16 if dtype.bits == 16 else np.uint8)


def _dtype_text(array_dtype: np.dtype) -> str:
    return array_dtype.str if _is_raw(array_dtype) else str(array_dtype)


def interpret(array: np.ndarray, tensor_type: TensorType, codes: bool) -> np.ndarray:
    """A file's ``array`` (its header already checked by :func:`check_header`) as values: raw codes and
    np.save's raw bytes become ``tensor_type``'s storage array, anything else stays as the file gives it."""
    dtype = tensor_type.dtype
    if _holds_codes(array.dtype, dtype, codes):
        raw = np.asarray(array, order="C").astype(array.dtype.newbyteorder("="))
        if dtype.bits == 16:
            return raw.view(dtype.storage)
        if dtype.bits == 4:
            raw = dtypes.unpack_nibbles(raw, tensor_type.volume).reshape(tensor_type.shape)
        return dtypes.from_codes(raw, dtype)
    if _is_raw(array.dtype):
        raw = np.asarray(array, order="C")
        if dtype.bits == 4:
            bytes_ = raw.view(np.uint8)
            if np.any(bytes_ > 0x0F):
                index = int(np.argmax(bytes_.reshape(-1) > 0x0F))
                raise ValueError(f"holds byte {int(bytes_.reshape(-1)[index]):#04x} at flat index {index}, not a "
                                 f"4-bit {dtype.name} code (np.save of an ml_dtypes {dtype.storage.name} array "
                                 f"writes one code per byte)")
        return raw.view(dtype.storage)
    return array


def decode(array: np.ndarray, tensor_type: TensorType, codes: bool) -> np.ndarray:
    """A file's ``array`` (its header already checked by :func:`check_header`) as ``tensor_type``'s
    storage array; ValueError saying which value doesn't fit."""
    return coerce(interpret(array, tensor_type, codes), tensor_type)


def _finish(array: np.ndarray, tensor_type: TensorType | None, codes: bool, convert: bool) -> np.ndarray:
    """A reader's last step: as stored (no type), as the file's values (:func:`interpret`), or as the
    type's storage array (:func:`decode`)."""
    if tensor_type is None:
        return array
    return decode(array, tensor_type, codes) if convert else interpret(array, tensor_type, codes)


# --- .npy ------------------------------------------------------------------------------------------


@dataclass
class NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    available: int  # the bytes that follow the header

    def check_size(self) -> None:
        """FileError unless the data the header declares is there (before it is allocated)."""
        if self.nbytes > self.available:
            raise FileError(f"its .npy header declares {self.nbytes} bytes of data ({list(self.shape)} x "
                            f"{self.dtype.itemsize} bytes), but only {max(self.available, 0)} follow")

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_npy_header(stream: BinaryIO, available: int) -> NpyHeader:
    """The header of the .npy at ``stream``'s position (which holds ``available`` bytes from there),
    parsed without NumPy's parser and checked: a dict of exactly descr/fortran_order/shape, a plain
    dtype (no objects, no structures), non-negative dimensions (:meth:`NpyHeader.check_size` checks that
    the data is there). Leaves ``stream`` at the first data byte."""
    start = _read_exactly_or(stream, 8, available, "the .npy header")
    if start[:6] != _NPY_MAGIC:
        raise FileError("it is not an .npy file (no .npy magic bytes)")
    major, minor = start[6], start[7]
    if (major, minor) not in ((1, 0), (2, 0), (3, 0)):
        raise FileError(f"its .npy format version {major}.{minor} is not one NumPy writes (1.0, 2.0, 3.0)")
    size_bytes = 2 if major == 1 else 4
    length = int.from_bytes(_read_exactly_or(stream, size_bytes, available - 8, "the .npy header"), "little")
    used = 8 + size_bytes
    if length > MAX_NPY_HEADER:
        raise FileError(f"its .npy header claims {length} bytes (netdsl reads headers of at most {MAX_NPY_HEADER})")
    raw = _read_exactly_or(stream, length, available - used, "the .npy header")
    used += length
    try:
        text = raw.decode("utf-8" if major == 3 else "latin-1")
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, UnicodeDecodeError):
        raise FileError("its .npy header is not a valid Python dict literal") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise FileError("its .npy header is not a dict of exactly 'descr', 'fortran_order' and 'shape'")
    shape, descr, fortran = header["shape"], header["descr"], header["fortran_order"]
    if not isinstance(shape, tuple) or len(shape) > MAX_DIMS or \
            not all(type(d) is int and d >= 0 for d in shape):
        raise FileError(f"its .npy header's shape is not a tuple of at most {MAX_DIMS} non-negative integers")
    if not isinstance(fortran, bool):
        raise FileError("its .npy header's fortran_order is not True or False")
    if not isinstance(descr, str):
        raise FileError("it holds a structured array (a list dtype), not a tensor")
    return NpyHeader(shape, _plain_dtype(descr), fortran, available - used)


def _read_exactly_or(stream: BinaryIO, count: int, available: int, what: str) -> bytearray:
    if count > available:
        raise FileError(f"{what} is truncated")
    return _read_exactly(stream, count, what)


def _plain_dtype(descr: str) -> np.dtype:
    if len(descr) > 64:
        raise FileError("its dtype is not one NumPy knows")
    try:
        array_dtype = np.dtype(descr)
    except Exception:  # noqa: BLE001 - NumPy raises TypeError, ValueError, SyntaxError... for odd strings
        if descr.lstrip("<>=|") == "f1":
            raise FileError("it holds ml_dtypes float8_e5m2 values (np.save writes them as '<f1'): netdsl has "
                            "no E5M2 type") from None
        raise FileError(f"its dtype {descr!r} is not one NumPy knows") from None
    if array_dtype.hasobject:
        raise FileError("it holds Python objects (a pickle), which netdsl never reads: they can run code")
    if array_dtype.kind == "V" and not _is_raw(array_dtype):
        raise FileError("it holds a structured array, not a tensor")
    if array_dtype.itemsize == 0:
        raise FileError("its dtype has zero-byte elements")
    return array_dtype


def _read_npy_data(stream: BinaryIO, header: NpyHeader) -> np.ndarray:
    data = _read_data(stream, header.nbytes, "the array data")
    array = np.frombuffer(data, header.dtype)
    if header.fortran_order:
        return np.asarray(array.reshape(header.shape[::-1]).transpose(), order="C")
    return array.reshape(header.shape)


def _read_npy(stream: BinaryIO, available: int, tensor_type: TensorType | None, codes: bool) -> np.ndarray:
    """The array of the .npy at ``stream``'s position, its header checked against ``tensor_type`` (when
    given) before the data is read; as stored (:func:`decode` makes it the type's storage array)."""
    header = read_npy_header(stream, available)
    if tensor_type is not None:
        check_header(header.shape, header.dtype, tensor_type, codes)
    header.check_size()
    return _read_npy_data(stream, header)


def _npy_bytes(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array(stream, np.asarray(array, order="C"), allow_pickle=False)
    return stream.getvalue()


# --- .npz ------------------------------------------------------------------------------------------


class _Npz:
    """An open .npz archive: its members checked against the archive's size before any is read."""

    def __init__(self, stream: BinaryIO, size: int):
        try:
            self.zip = zipfile.ZipFile(stream)
            infos = self.zip.infolist()
        except Exception as error:  # noqa: BLE001 - zipfile raises a dozen types for a damaged archive
            raise FileError(_zip_reason(error)) from None
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            self.members.setdefault(key, info)
        self.size = size

    def keys(self) -> list[str]:
        return list(self.members)

    def read(self, key: str, tensor_type: TensorType | None, codes: bool, convert: bool = True) -> np.ndarray:
        info = self.members[key]
        if info.flag_bits & 0x1:
            raise FileError(f"member '{_name(info.filename)}' is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise FileError(f"member '{_name(info.filename)}' uses a compression NumPy never writes (method "
                            f"{info.compress_type}; np.savez stores, np.savez_compressed deflates)")
        limit = info.compress_size * (1 if info.compress_type == zipfile.ZIP_STORED else MAX_DEFLATE_RATIO) + 64
        if info.compress_size > self.size or info.file_size > limit:
            raise FileError(f"member '{_name(info.filename)}' declares sizes its archive can't hold")
        if not info.filename.endswith(".npy"):
            raise FileError(f"member '{_name(info.filename)}' is not an .npy array")
        try:
            with self.zip.open(info) as stream:
                array = _read_npy(stream, info.file_size, tensor_type, codes)  # type: ignore[arg-type]
        except (FileError, MismatchError):
            raise
        except Exception as error:  # noqa: BLE001 - zipfile and zlib raise a dozen types for damaged data
            raise FileError(_zip_reason(error, info.filename)) from None
        return _finish(array, tensor_type, codes, convert)


def _zip_reason(error: BaseException, member: str | None = None) -> str:
    where = f" (member '{_name(member)}')" if member else ""
    if isinstance(error, zlib.error):
        return f"its compressed data is corrupt{where}"
    if isinstance(error, EOFError):
        return f"the archive is truncated{where}"
    if isinstance(error, zipfile.BadZipFile) and "CRC" in str(error):
        return f"the archive is corrupt: a checksum doesn't match{where}"
    if isinstance(error, MemoryError):
        return f"the archive does not fit in memory{where}"
    return f"it is not a readable .npz (zip) archive{where}"


# --- safetensors -----------------------------------------------------------------------------------

#: every dtype tag safetensors defines -> (bits per element, the name of the NumPy/ml_dtypes dtype netdsl
#: reads it as (:func:`netdsl.dtypes.storage_dtype`: ml_dtypes is imported only when one is read), or None
#: for a type no netdsl type holds)
SAFETENSORS_TAGS: dict[str, tuple[int, str | None]] = {
    "BOOL": (8, "bool_"),
    "U8": (8, "uint8"), "I8": (8, "int8"),
    "U16": (16, "uint16"), "I16": (16, "int16"),
    "U32": (32, "uint32"), "I32": (32, "int32"),
    "U64": (64, "uint64"), "I64": (64, "int64"),
    "F16": (16, "float16"), "BF16": (16, "bfloat16"),
    "F32": (32, "float32"), "F64": (64, "float64"),
    "C64": (64, "complex64"),
    "F8_E4M3": (8, "float8_e4m3fn"), "F8_E5M2": (8, "float8_e5m2"),
    "F8_E4M3FNUZ": (8, "float8_e4m3fnuz"),
    "F8_E5M2FNUZ": (8, "float8_e5m2fnuz"),
    "F8_E8M0": (8, "float8_e8m0fnu"),
    "F4": (4, "float4_e2m1fn"),  # two per byte, element 2k in the low nibble
    "F6_E2M3": (6, None), "F6_E3M2": (6, None),
}
#: the tag --save writes for each netdsl type (int4 has none: packed U8, see :data:`PACKED_KEY`)
SAFETENSORS_WRITE_TAGS = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int8": "I8",
                          "fp8": "F8_E4M3", "e8m0": "F8_E8M0", "fp4": "F4"}
#: the metadata key whose JSON value records the netdsl type and shape of tensors stored as packed U8:
#: ``{"NAME": {"type": "int4", "shape": [3, 5]}}``
PACKED_KEY = "netdsl.packed"


@dataclass
class _SafetensorsEntry:
    tag: str
    shape: tuple[int, ...]
    begin: int
    end: int


class _Safetensors:
    """An open .safetensors file, its header validated against the file's size before safetensors itself
    opens it."""

    def __init__(self, stream: BinaryIO, size: int, path: str | os.PathLike):
        self.stream = stream
        if size < 8:
            raise FileError("it is too short for a .safetensors file")
        stream.seek(0)
        length = int.from_bytes(_read_exactly(stream, 8, "the safetensors header"), "little")
        if length > min(size - 8, MAX_SAFETENSORS_HEADER):
            raise FileError(f"its safetensors header claims {length} bytes, but the file holds {size - 8} after "
                            f"the length")
        raw = _read_exactly(stream, length, "the safetensors header")
        try:
            header = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError, MemoryError):
            raise FileError("its safetensors header is not valid JSON") from None
        if not isinstance(header, dict):
            raise FileError("its safetensors header is not a JSON object")
        self.data_start = 8 + length
        data_size = size - self.data_start
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise FileError("its safetensors __metadata__ is not a map of strings")
        self.metadata: dict[str, str] = metadata
        self.entries: dict[str, _SafetensorsEntry] = {}
        for name, entry in header.items():
            self.entries[name] = _safetensors_entry(name, entry, data_size)
        self.packed = self._packed()
        _safetensors_library_check(path)

    def _packed(self) -> dict[str, TensorType]:
        text = self.metadata.get(PACKED_KEY)
        if text is None:
            return {}
        try:
            records = json.loads(text)
            packed = {}
            for name, record in records.items():
                shape = tuple(record["shape"])
                if len(shape) > MAX_DIMS or not all(type(d) is int and d >= 0 for d in shape):
                    raise ValueError
                packed[name] = TensorType(dtypes.lookup(record["type"]), shape)
        except Exception:  # noqa: BLE001 - any malformed record
            raise FileError(f"its metadata '{PACKED_KEY}' is not netdsl's record of packed tensors") from None
        for name, tensor_type in packed.items():
            entry = self.entries.get(name)
            if entry is None or entry.tag != "U8" or entry.shape != ((tensor_type.volume + 1) // 2,) \
                    or tensor_type.dtype.bits != 4:
                raise FileError(f"its metadata '{PACKED_KEY}' doesn't match tensor '{_name(name)}'")
        return packed

    def keys(self) -> list[str]:
        return list(self.entries)

    def read(self, key: str, tensor_type: TensorType | None, codes: bool, convert: bool = True) -> np.ndarray:
        entry = self.entries[key]
        dtype_name = SAFETENSORS_TAGS[entry.tag][1]
        if dtype_name is None:
            raise FileError(f"tensor '{_name(key)}' is {entry.tag}, which no netdsl type holds")
        array_dtype = dtypes.storage_dtype(dtype_name)
        packed = self.packed.get(key)
        if packed is not None:  # netdsl's packed 4-bit codes, typed by the metadata
            if tensor_type is not None and packed != tensor_type:
                raise MismatchError(f"holds {packed}, expected {tensor_type}")
            return interpret(self._bytes(entry, np.dtype(np.uint8), entry.shape), packed, codes=True)
        if tensor_type is not None:
            check_header(entry.shape, array_dtype, tensor_type, codes)
        if entry.tag == "F4":
            count = math.prod(entry.shape)
            raw = dtypes.unpack_nibbles(self._bytes(entry, np.dtype(np.uint8), ((count + 1) // 2,)), count)
            array = raw.reshape(entry.shape).view(array_dtype)
        else:
            array = self._bytes(entry, array_dtype, entry.shape)
        return _finish(array, tensor_type, codes, convert)

    def _bytes(self, entry: _SafetensorsEntry, array_dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        self.stream.seek(self.data_start + entry.begin)
        data = _read_data(self.stream, entry.end - entry.begin, "the tensor data")
        return np.frombuffer(data, array_dtype.newbyteorder("<")).reshape(shape)


def _safetensors_entry(name: str, entry: Any, data_size: int) -> _SafetensorsEntry:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise FileError(f"its header entry for '{_name(name)}' is not {{dtype, shape, data_offsets}}")
    tag, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(tag, str) or tag not in SAFETENSORS_TAGS:
        raise FileError(f"tensor '{_name(name)}' has dtype '{_name(str(tag))}', which safetensors doesn't define")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(type(d) is int and d >= 0 for d in shape):
        raise FileError(f"tensor '{_name(name)}' has a shape that is not a list of non-negative integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets) \
            or not 0 <= offsets[0] <= offsets[1] <= data_size:
        raise FileError(f"tensor '{_name(name)}' has data offsets outside the file's {data_size} data bytes")
    bits = SAFETENSORS_TAGS[tag][0] * math.prod(shape)
    if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
        needs = bits // 8 if bits % 8 == 0 else bits / 8
        raise FileError(f"tensor '{_name(name)}' ({tag}{shape}) needs {needs} bytes, but its offsets span "
                        f"{offsets[1] - offsets[0]}")
    return _SafetensorsEntry(tag, tuple(shape), offsets[0], offsets[1])


def _safetensors_library_check(path: str | os.PathLike) -> None:
    """safetensors' own validation of a header netdsl has already bounded (overlapping or missing data)."""
    try:
        from safetensors import safe_open
    except ImportError:
        raise FileError('reading .safetensors needs the safetensors package: pip install "netdsl[safetensors]"') \
            from None
    try:
        with safe_open(os.fspath(path), framework="np") as handle:
            handle.keys()
    except Exception as error:  # noqa: BLE001 - SafetensorError and its kin
        text = str(error).splitlines()[0] if str(error) else "invalid"
        raise FileError(f"safetensors refuses it: {text[:200]}") from None


# --- Polygraphy JSON -------------------------------------------------------------------------------

#: Polygraphy's type marker and its older form (polygraphy/json/serde.py, polygraphy/constants.py)
POLYGRAPHY_CLASS = "polygraphy_class"
_LEGACY_MARKER = "polygraphy_serialized_json_type"
_LEGACY_PREFIX = "__polygraphy_encoded_"


@dataclass
class _Iteration:
    runner: str | None
    arrays: dict[str, np.ndarray]


@dataclass
class _RunResults:
    runners: list[tuple[str, list[_Iteration]]]


def _polygraphy_hook(pairs: list[tuple[str, Any]]) -> Any:
    """json's object hook decoding Polygraphy's classes (polygraphy/json/serde.py's Decoder)."""
    dct = dict(pairs)
    kind = dct.pop(POLYGRAPHY_CLASS, None)
    for key in [k for k in dct if k.startswith(_LEGACY_PREFIX)]:
        if dct[key] == _LEGACY_MARKER:
            kind = key[len(_LEGACY_PREFIX):]
            del dct[key]
    if kind is None:
        return dct
    if kind == "ndarray":
        return _polygraphy_array(dct.get("array"))
    if kind in ("LazyArray", "LazyNumpyArray"):
        values = dct.get("values")
        if not isinstance(values, np.ndarray):
            raise FileError("a Polygraphy LazyArray in it holds no array")
        return values
    if kind == "IterationResult":
        outputs, runner = dct.get("outputs"), dct.get("runner_name")
        if not isinstance(outputs, dict) or not isinstance(runner, (str, type(None))):
            raise FileError("a Polygraphy IterationResult in it has no outputs")
        return _Iteration(runner, _array_map(outputs))
    if kind == "RunResults":
        runners = []
        items = dct.get("lst")
        if not isinstance(items, list):
            raise FileError("the Polygraphy RunResults in it has no list of runners")
        for item in items:
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str) \
                    or not isinstance(item[1], list) or not all(isinstance(i, _Iteration) for i in item[1]):
                raise FileError("the Polygraphy RunResults in it is not a list of [runner, [iterations]]")
            runners.append((item[0], item[1]))
        return _RunResults(runners)
    if kind == "Tensor":
        raise FileError("it holds a torch tensor (a torch.save pickle), which netdsl never reads: they can run "
                        "code; save NumPy arrays")
    raise FileError(f"it holds a Polygraphy '{_name(str(kind))}', not arrays")


def _polygraphy_array(text: Any) -> np.ndarray:
    if not isinstance(text, str):
        raise FileError("a Polygraphy ndarray in it has no 'array' string")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        try:
            data = text.encode("latin-1")  # Polygraphy's older encoding
        except UnicodeEncodeError:
            raise FileError("a Polygraphy ndarray in it is neither base64 nor latin-1 text") from None
    stream = io.BytesIO(data)
    if data.startswith(_ZIP_MAGICS):  # Polygraphy's decoder takes an archive's first array
        archive = _Npz(stream, len(data))
        keys = archive.keys()
        if not keys:
            raise FileError("a Polygraphy ndarray in it is an empty archive")
        return archive.read(keys[0], None, False)
    return _read_npy(stream, len(data), None, False)


def _array_map(value: Any) -> dict[str, np.ndarray]:
    if not isinstance(value, dict) or not all(isinstance(v, np.ndarray) for v in value.values()):
        raise FileError("it is not a Polygraphy file of {name: array} maps")
    return value


def read_polygraphy(stream: BinaryIO, size: int) -> list[_Iteration]:
    """Every iteration of a Polygraphy JSON file: its inputs (a list of feed dicts, as
    ``polygraphy run --save-inputs`` writes) or its outputs (``RunResults``, from ``--save-outputs``),
    each with its runner's name (None for inputs)."""
    data = _read_exactly(stream, size, "the JSON text")
    try:
        value = json.loads(data.decode("utf-8-sig"), object_pairs_hook=_polygraphy_hook)
    except FileError:
        raise
    except UnicodeDecodeError:
        raise FileError("it is not UTF-8 JSON text") from None
    except (ValueError, RecursionError, MemoryError):
        raise FileError("it is not valid JSON") from None
    if isinstance(value, _RunResults):
        return [iteration for _, iterations in value.runners for iteration in iterations]
    if isinstance(value, list):
        return [_Iteration(None, _array_map(feed)) for feed in value]
    if isinstance(value, dict):
        return [_Iteration(None, _array_map(value))]
    raise FileError("it is not a Polygraphy inputs or outputs file")


class _Json:
    def __init__(self, stream: BinaryIO, size: int):
        iterations = read_polygraphy(stream, size)
        if len(iterations) != 1:
            runners = sorted({i.runner for i in iterations if i.runner})
            of = f" of runners {', '.join(runners)}" if runners else ""
            raise FileError(f"it holds {len(iterations)} iterations{_name(of)}; netdsl reads a file of exactly one")
        self.arrays = iterations[0].arrays

    def keys(self) -> list[str]:
        return list(self.arrays)

    def read(self, key: str, tensor_type: TensorType | None, codes: bool, convert: bool = True) -> np.ndarray:
        array = self.arrays[key]
        if tensor_type is not None:
            check_header(array.shape, array.dtype, tensor_type, codes)
        return _finish(array, tensor_type, codes, convert)


# --- reading: the public functions -----------------------------------------------------------------


def _sniff(head: bytes) -> str:
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head.startswith(_ZIP_MAGICS):
        return "npz"
    if head[:1] == b"\x80":
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 40):
        return "safetensors"
    if head.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] in (b"[", b"{", b'"'):
        return "json"
    return "unknown"


_BY_EXTENSION = {".npy": "npy", ".npz": "npz", ".safetensors": "safetensors", ".json": "json"}


@contextmanager
def _open_tensors(path: str | os.PathLike) -> Iterator[tuple[str, Any]]:
    """The file at ``path`` opened as its format's reader: ("npy", (stream, size)) or ("npz" |
    "safetensors" | "json", reader with keys() and read())."""
    with open_regular(path) as (stream, size):
        try:
            head = stream.read(16)
            stream.seek(0)
        except OSError as error:
            raise FileError(stat_reason(path, error)) from None
        kind = _sniff(head)
        if kind == "unknown" and size:  # damaged beyond recognition: its name says what it was meant to be
            kind = _BY_EXTENSION.get(Path(os.fsdecode(path)).suffix.lower(), kind)
        try:
            if kind == "npy":
                yield kind, (stream, size)
            elif kind == "npz":
                yield kind, _Npz(stream, size)
            elif kind == "safetensors":
                yield kind, _Safetensors(stream, size, path)
            elif kind == "json":
                yield kind, _Json(stream, size)
            elif kind == "pickle":
                raise FileError("it is a Python pickle, which netdsl never reads: pickles can run code")
            elif size == 0:
                raise FileError("it is empty")
            else:
                raise FileError("it is not a tensor file netdsl reads (.npy, .npz, .safetensors, Polygraphy .json)")
        except OSError as error:
            raise FileError(stat_reason(path, error)) from None
        except MemoryError:
            raise FileError("it does not fit in memory") from None
        except RecursionError:
            raise FileError("it is nested too deeply") from None


def read_array(path: str | os.PathLike, tensor_type: TensorType, key: str | None = None,
               codes: bool = False) -> np.ndarray:
    """The one array of ``path`` (an .npy, or a file holding exactly one array) or its array ``key``, its
    header checked against ``tensor_type`` before its data is read, as the file gives its values (raw codes
    and np.save's raw bytes as the type's storage array; :func:`read_tensor` rounds it to the type).
    Raises FileError (unreadable), KeyNotFound or MismatchError (doesn't fit the type)."""
    with _open_tensors(path) as (kind, reader):
        if kind == "npy":
            if key is not None:
                raise KeyNotFound("holds a single array: it takes no key", key, [])
            stream, size = reader
            return interpret(_read_npy(stream, size, tensor_type, codes), tensor_type, codes)
        keys = reader.keys()
        if key is None:
            if not keys:
                raise FileError("it holds no arrays")
            if len(keys) != 1:
                listed = ", ".join(_name(k) for k in keys[:10]) + (", ..." if len(keys) > 10 else "")
                raise KeyNotFound(f"holds {len(keys)} arrays ({listed}): name one", "", keys)
            key = keys[0]
        if key not in keys:
            raise KeyNotFound(f"has no array '{_name(key)}'", key, keys)
        return reader.read(key, tensor_type, codes, convert=False)


def read_tensor(path: str | os.PathLike, tensor_type: TensorType, key: str | None = None,
                codes: bool = False) -> np.ndarray:
    """:func:`read_array` as ``tensor_type``'s storage array; ``codes``: uint8 (uint16 for bfloat16) arrays
    are raw codes. Raises FileError, KeyNotFound, MismatchError, or ValueError for a value the type can't
    hold."""
    return coerce(read_array(path, tensor_type, key, codes), tensor_type)


def read_tensors(path: str | os.PathLike, types: Mapping[str, TensorType] | None = None,
                 codes: bool = False) -> dict[str, np.ndarray | None]:
    """Every array of a multi-array file (.npz, .safetensors, Polygraphy .json), by name. With ``types``,
    each array named there is read as that type's storage array and the others come back as None, unread;
    without, every array comes back as stored."""
    with _open_tensors(path) as (kind, reader):
        if kind == "npy":
            raise FileError("it is an .npy holding a single array, not a file of named arrays")
        result: dict[str, np.ndarray | None] = {}
        for key in reader.keys():
            if types is None:
                result[key] = reader.read(key, None, False)
            elif key in types:
                try:
                    result[key] = reader.read(key, types[key], codes)
                except FileError as error:
                    raise FileError(f"array '{_name(key)}': {error}") from None
                except MismatchError as error:
                    raise MismatchError(f"'{_name(key)}' {error}") from None
                except ValueError as error:  # a value the type can't hold
                    raise ValueError(f"'{_name(key)}' {error}") from None
            else:
                result[key] = None
        return result


def polygraphy_iterations(path: str | os.PathLike) -> list[tuple[str | None, dict[str, np.ndarray]]]:
    """Every iteration of a Polygraphy JSON file, as stored: (runner name, {name: array}) for an outputs
    file (``RunResults``, every runner in order), (None, {name: array}) for an inputs file."""
    with open_regular(path) as (stream, size):
        try:
            return [(iteration.runner, iteration.arrays) for iteration in read_polygraphy(stream, size)]
        except OSError as error:
            raise FileError(stat_reason(path, error)) from None


def list_keys(path: str | os.PathLike) -> list[str]:
    """The names of the arrays in a multi-array file (an .npy has none)."""
    with _open_tensors(path) as (kind, reader):
        return [] if kind == "npy" else reader.keys()


# --- confinement -----------------------------------------------------------------------------------


def confined(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """``path`` (relative to ``root``, or absolute) resolved through every symbolic link; FileError unless
    it lies in ``root`` (itself resolved) or below. Used for the files a model names (``load()``, ONNX
    external data), which would otherwise let a downloaded model read any file of the user's
    (docs/reliability.md, "Files a model may read")."""
    try:
        base = Path(root).resolve()
        target = (base / path).resolve()
    except ValueError:
        raise FileError("the name holds a NUL character") from None
    except (OSError, RuntimeError):  # a symbolic link loop
        raise FileError("its path can't be resolved (a loop of symbolic links?)") from None
    if target != base and base not in target.parents:
        how = "an absolute path" if Path(path).is_absolute() else \
            "a symbolic link out of it" if ".." not in Path(path).parts else "a path that leaves it"
        raise FileError(f"it is outside the model's folder '{base}' ({how}): a model may only read files in its "
                        f"folder and below; for a model you trust, pass --trust-paths (trust_paths=True in "
                        f"Python)")
    return target


# --- writing ---------------------------------------------------------------------------------------

#: --save's formats by extension; any other extension writes .npz
SAVE_FORMATS = {".npz": "npz", ".safetensors": "safetensors", ".json": "json"}


def save_format(path: str | os.PathLike) -> str:
    """The format ``--save`` writes to ``path``: by its extension (.npz, .safetensors, .json); .npz for
    any other except .npy (which holds one array: FileError)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        raise FileError("an .npy file holds one array; --save writes .npz, .safetensors or .json")
    return SAVE_FORMATS.get(suffix, "npz")


def for_saving(array: np.ndarray, dtype: dtypes.DType, codes: bool = False) -> np.ndarray:
    """The array ``--save`` writes to .npz and .json: exact values in a standard dtype, or with ``codes``
    the raw codes of a quantized or e8m0 tensor (uint8; 4-bit types packed two per byte, ONNX's layout)."""
    if codes and dtype.bits <= 8:
        raw = dtypes.to_codes(array, dtype)
        return dtypes.pack_nibbles(raw) if dtype.bits == 4 else raw
    return np.asarray(array).astype(dtype.save_dtype)


def _write_npz(stream: BinaryIO, arrays: Mapping[str, np.ndarray]) -> None:
    """An .npz as ``np.savez`` writes it (stored members ``NAME.npy``), from an explicit mapping: every
    name works, ``file`` and ``allow_pickle`` included."""
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(array, order="C"), allow_pickle=False)


def _safetensors_bytes(arrays: Mapping[str, np.ndarray], types: Mapping[str, dtypes.DType], codes: bool) -> bytes:
    try:
        from safetensors import TensorSpec, serialize
    except ImportError:
        raise FileError('writing .safetensors needs the safetensors package (>= 0.8): '
                        'pip install "netdsl[safetensors]"') from None
    specs: dict[str, Any] = {}
    packed: dict[str, dict[str, Any]] = {}
    keep: list[np.ndarray] = []  # TensorSpec holds raw pointers: keep every buffer alive until serialized
    for name, array in arrays.items():
        dtype = types[name]
        array = np.asarray(array, order="C")
        shape = tuple(array.shape)
        if codes and dtype.bits <= 8 or dtype.name == "int4" or dtype.name == "fp4" and (not shape or shape[-1] % 2):
            data = for_saving(array, dtype, codes=True)
            if dtype.bits == 4:
                packed[name] = {"type": dtype.name, "shape": list(shape)}
            spec_dtype, spec_shape = "uint8", data.shape
        elif dtype.name == "fp4":
            data = dtypes.pack_nibbles(dtypes.to_codes(array, dtype))
            spec_dtype, spec_shape = "float4_e2m1fn_x2", shape[:-1] + (shape[-1] // 2,)
        else:
            data = np.asarray(array.astype(dtype.storage.newbyteorder("<")), order="C")
            spec_dtype, spec_shape = data.dtype.name, shape
        keep.append(data)
        specs[name] = TensorSpec(dtype=spec_dtype, shape=spec_shape, data_ptr=data.ctypes.data, data_len=data.nbytes)
    metadata = {PACKED_KEY: json.dumps(packed, sort_keys=True)} if packed else None
    result = bytes(serialize(specs, metadata=metadata))
    del keep
    return result


def _polygraphy_json(arrays: Mapping[str, np.ndarray], kind: str) -> bytes:
    """Polygraphy's JSON for one iteration, exactly as its ``save_json`` writes it: ``RunResults`` with one
    runner, "netdsl", for outputs; a list of one feed dict for inputs."""
    def encoded(array: np.ndarray) -> dict[str, str]:
        return {"array": base64.b64encode(_npy_bytes(array)).decode(), POLYGRAPHY_CLASS: "ndarray"}

    if kind == "inputs":
        value: Any = [{name: encoded(array) for name, array in arrays.items()}]
    else:
        iteration = {"outputs": {name: {"values": encoded(array), POLYGRAPHY_CLASS: "LazyArray"}
                                 for name, array in arrays.items()},
                     "runtime": None, "runner_name": "netdsl", POLYGRAPHY_CLASS: "IterationResult"}
        value = {"lst": [["netdsl", [iteration]]], POLYGRAPHY_CLASS: "RunResults"}
    return json.dumps(value, indent=4).encode()


def write_tensors(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], types: Mapping[str, dtypes.DType],
                  codes: bool = False, kind: str = "outputs", protect: Iterable[str | os.PathLike] = ()) -> None:
    """Write ``arrays`` (storage arrays of ``types``) to ``path`` in the format of its extension
    (:func:`save_format`), atomically (:func:`write_atomically`). ``codes``: quantized tensors as their raw
    codes; ``kind``: "outputs" or "inputs" (Polygraphy's JSON differs)."""
    fmt = save_format(path)
    if fmt == "safetensors":
        data = _safetensors_bytes(arrays, types, codes)
        write_atomically(path, lambda stream: stream.write(data), protect=protect)
        return
    saved = {name: for_saving(array, types[name], codes) for name, array in arrays.items()}
    if fmt == "json":
        text = _polygraphy_json(saved, kind)
        write_atomically(path, lambda stream: stream.write(text), protect=protect)
    else:
        write_atomically(path, lambda stream: _write_npz(stream, saved), protect=protect)

