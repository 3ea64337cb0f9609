"""Device tensors and transfers: the GPU side of a netdsl tensor, CuPy's import, the current device.

CuPy is imported lazily (:func:`import_cupy`): this module, like the whole package, imports without it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from netdsl import dtypes


@dataclass(frozen=True)
class DeviceTensor:
    """A tensor on the GPU.

    ``data`` is 1-D raw storage of ``dtype.device_storage``: float32 / float16 as themselves, bfloat16
    as uint16 bits, int8 / fp8 / e8m0 one uint8 byte each, int4 / fp4 packed two per byte (the flattened
    row-major tensor, element 2k in the low nibble of byte k, the last byte's high nibble 0 when the
    count is odd).
    """

    dtype: dtypes.DType
    shape: tuple[int, ...]
    data: Any  # cupy.ndarray

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def make_ready() -> None:
    """CUDA made ready for the first launches: CuPy imported, the driver and the current device's context
    started, the device and pinned pools' first blocks allocated and the kernels already in the disk cache
    loaded. Each step waits in the driver with the GIL let go, so other threads' work runs beside it
    (``netdsl apply`` runs it in a thread while it plans). Errors are left for the first real use to
    report, with its context."""
    try:
        cupy = import_cupy()
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return
        cupy.cuda.runtime.free(0)  # the context
        cupy.empty(1, dtype=np.uint8)
        cupy.cuda.alloc_pinned_memory(1)
        from netdsl.backends.cupy import loader

        loader.load_cached(current())
    except Exception:  # noqa: BLE001 - reported by the first real use
        pass


def storage_length(dtype: dtypes.DType, count: int) -> int:
    """Raw storage elements of ``count`` values of ``dtype`` (4-bit types: two a byte)."""
    return (count + 1) // 2 if dtype.bits == 4 else count


@functools.cache
def import_cupy() -> Any:
    """The cupy module, imported on first use."""
    import cupy

    return cupy


def empty_pinned(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A host array in page-locked memory from CuPy's pinned pool (reused once the array is dropped), which
    the GPU's DMA reads and writes where it is. What ``cupyx.empty_pinned`` does, without importing cupyx
    (which imports SciPy: 0.44 s on the H100 machine)."""
    dtype = np.dtype(dtype)
    memory = import_cupy().cuda.alloc_pinned_memory(math.prod(shape) * dtype.itemsize)
    return np.ndarray(shape, dtype=dtype, buffer=memory)


_AVAILABLE: tuple[bool, str] | None = None  # a positive answer, kept: Network.run asks on every call


def available() -> tuple[bool, str]:
    """(True, "") when CuPy is installed and sees a CUDA device, else (False, the reason). A positive
    answer is remembered for the process; a negative one is asked again next time."""
    global _AVAILABLE
    if _AVAILABLE is not None:
        return _AVAILABLE
    try:
        module = import_cupy()
    except ImportError:
        return False, "CuPy not installed"
    try:
        count = module.cuda.runtime.getDeviceCount()
    except module.cuda.runtime.CUDARuntimeError as error:
        return False, f"no CUDA device ({error})"
    if count == 0:
        return False, "no CUDA device"
    _AVAILABLE = (True, "")
    return _AVAILABLE


def upload(array: np.ndarray, dtype: dtypes.DType) -> DeviceTensor:
    """Copy a one-element-per-value ``dtype.storage`` array (ml_dtypes) to the device."""
    array = np.asarray(array)
    if array.dtype != dtype.storage:
        raise TypeError(f"upload: a {dtype} tensor needs {dtype.storage} storage, got {array.dtype}")
    if dtype.bits == 4:
        raw = dtypes.pack_nibbles(dtypes.to_codes(array, dtype))
    else:
        raw = np.ascontiguousarray(array).reshape(-1).view(dtype.device_storage)
    return DeviceTensor(dtype, tuple(array.shape), import_cupy().asarray(raw))


def download(t: DeviceTensor) -> np.ndarray:
    """The tensor back on the host as a one-element-per-value ``dtype.storage`` array."""
    raw = import_cupy().asnumpy(t.data)
    if t.dtype.bits == 4:
        return dtypes.from_codes(dtypes.unpack_nibbles(raw, t.size), t.dtype).reshape(t.shape)
    return raw.view(t.dtype.storage).reshape(t.shape)


_get_device: Callable[[], int] | None = None  # cupy.cuda.runtime.getDevice, bound on first use


def current() -> int:
    """The current CUDA device's ordinal (cheaper than cupy.cuda.Device().id)."""
    global _get_device
    if _get_device is None:
        _get_device = import_cupy().cuda.runtime.getDevice
    return int(_get_device())


@functools.cache
def multiprocessors(device: int) -> int:
    """The SM count of ``device``."""
    return int(import_cupy().cuda.Device(device).attributes["MultiProcessorCount"])


_words: dict[tuple[int, tuple[int, ...]], Any] = {}


def words(table: tuple[int, ...]) -> Any:
    """A small uint32 table on the current device (cached: the same geometry is reused call after call)."""
    key = (current(), table)
    on_device = _words.get(key)
    if on_device is None:
        on_device = _words[key] = import_cupy().asarray(np.array(table, dtype=np.uint32))
    return on_device
