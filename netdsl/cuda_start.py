"""The CUDA driver started early, in a thread, through its C API (ctypes; no CuPy, no NumPy).

``netdsl apply`` on the GPU spends its first half second in Python importing NumPy, CuPy and netdsl, then
about as long again in the driver: its start (``cuInit``) and the device's primary context, the one CuPy's
runtime uses. Both driver steps wait in C with the GIL let go, so started in a thread before the imports they
run beside them; CuPy later finds the driver started and the context there. Nothing here is needed for
correctness: where there is no driver or device, or a step fails, it does nothing and CuPy reports the
failure as it would have.
"""

from __future__ import annotations

import ctypes
import threading


def _start(device: int) -> None:
    try:
        driver = ctypes.CDLL("libcuda.so.1")
        if driver.cuInit(0) != 0:
            return
        handle = ctypes.c_int()
        if driver.cuDeviceGet(ctypes.byref(handle), device) != 0:
            return
        context = ctypes.c_void_p()
        driver.cuDevicePrimaryCtxRetain(ctypes.byref(context), handle)  # kept until the process ends
    except (OSError, AttributeError):  # no driver here (or not this platform's): nothing to start
        pass


def start_in_background(device: int = 0) -> threading.Thread:
    """Start the CUDA driver and ``device``'s primary context in a daemon thread; returns the thread."""
    thread = threading.Thread(target=_start, args=(device,), name="netdsl-cuda-start", daemon=True)
    thread.start()
    return thread
