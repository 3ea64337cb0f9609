"""Compiled CPU loops, used when numba is installed (``pip install "netdsl[cpu]"``).

Per-tensor quantization to int8/int4 in NumPy takes five vector passes per piece (divide, clamp, a NaN
test, the rounding add, the narrowing copy); this loop does the IEEE float32 division, the clamp, the
round-to-nearest-even and the NaN rule in one pass, and releases the GIL, so the NumPy backend's threads
run it side by side. The bits are the NumPy path's (tests/test_compiled.py checks both against values
written by hand and against each other).

It is taken for contiguous pieces of at least :data:`MIN_ELEMENTS` elements. Loading it (numba's import
and the loop from its on-disk cache; compiled on a machine's first use, about 1 s) costs about 0.4 s once
per process, more than it saves in one run of any network (a 2^28-element tensor: about 30 ms). So by
default a process loads it once it has quantized :data:`BREAK_EVEN_ELEMENTS` elements this way with
NumPy, about as long as the load takes (the ski-rental rule: never much more than twice the better
choice's time); ``NETDSL_NUMBA=1`` (:mod:`netdsl.settings`) loads it at the first such piece,
``NETDSL_NUMBA=0`` never.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from netdsl import settings
from netdsl.dtypes import DType
from netdsl.ops.quantize import normal_powers_of_two

#: smallest piece for the compiled loop (the backend's pieces are at most 2^19 elements)
MIN_ELEMENTS = 1 << 16

_SIGNATURE = "void(float32[::1], float32, boolean, float32, float32, int32, uint8[::1])"
_lock = threading.Lock()
_loaded: list[Callable[..., None] | None] = []


def _quantize_integer(x: Any, factor: Any, multiply: Any, low: Any, high: Any, mask: Any, out: Any) -> None:
    """out[i] = the two's complement code of clamp(RNE(x[i] / scale), low, high) & mask; NaN -> 0.
    ``factor``: the scale, or (``multiply``) its exact reciprocal when the scale is a power of two."""
    for i in range(x.size):
        # the float32 product or quotient, correctly rounded (were numba to work in float64, rounding that
        # to float32 gives the same bits: float64 holds the product exactly, and 53 >= 2 * 24 + 2 bits
        # make a double-rounded quotient correct)
        q = np.float32(x[i] * factor) if multiply else np.float32(x[i] / factor)
        if q != q:
            out[i] = 0
            continue
        if q < low:
            q = low
        elif q > high:
            q = high
        out[i] = np.uint8(np.int32(np.rint(q)) & mask)


#: per-tensor int8/int4 elements quantized with NumPy before the loop is loaded, by default: about
#: 0.4 s of NumPy work (0.2 ns an element on 2 cores), what the load costs
BREAK_EVEN_ELEMENTS = 1 << 31
_seen = [0]


def _wanted(elements: int) -> bool:
    """Whether to use (loading if need be) the loop for a piece of ``elements``."""
    mode = settings.numba()
    if mode == "off":
        return False
    if mode == "on" or _loaded:
        return True
    with _lock:
        _seen[0] += elements
        return _seen[0] > BREAK_EVEN_ELEMENTS


def _build() -> Callable[..., None] | None:
    try:
        import numba
    except ImportError:
        return None
    try:
        return numba.njit(_SIGNATURE, cache=True, nogil=True, error_model="numpy")(_quantize_integer)
    except RuntimeError:  # no writable cache directory: compile in memory
        return numba.njit(_SIGNATURE, cache=False, nogil=True, error_model="numpy")(_quantize_integer)


def kernel() -> Callable[..., None] | None:
    """The compiled loop, or None without numba; built once per process, thread-safely."""
    if not _loaded:
        with _lock:
            if not _loaded:
                _loaded.append(_build())
    return _loaded[0]


def quantize_per_tensor(x: np.ndarray, scale: np.ndarray, to_type: DType, out: np.ndarray) -> bool:
    """Quantize float32 ``x`` by the one-element ``scale`` into ``out`` (int8/int4 storage, ``x``'s
    shape); False (``out`` untouched) where the compiled loop does not apply."""
    if (to_type.int_range is None or x.dtype != np.float32 or x.size < MIN_ELEMENTS or scale.size != 1
            or not (x.flags.c_contiguous and out.flags.c_contiguous) or not _wanted(x.size)):
        return False
    loop = kernel()
    if loop is None:
        return False
    low, high = to_type.int_range
    mask = (1 << to_type.bits) - 1  # the two's complement code in int8 / int4 storage
    scale32 = np.asarray(scale, np.float32).reshape(-1)
    # x / 2**k and x * 2**-k round the same real number: the reciprocal spares the divider
    multiply = normal_powers_of_two(scale32)
    factor = np.float32(1) / scale32[0] if multiply else scale32[0]
    loop(x.reshape(-1), factor, multiply, np.float32(low), np.float32(high), np.int32(mask),
         out.reshape(-1).view(np.uint8))
    return True
