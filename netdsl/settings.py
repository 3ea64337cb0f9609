"""Every environment variable netdsl reads, parsed here and nowhere else (docs/settings.md lists them too).

=========================  ===================================================================================
``NETDSL_FUSION``          ``0``/``false``/``no``/``off``: the GPU backend runs every layer on its own instead of
                           fusing Quantize->Dequantize pairs and NVFP4 Dequantize chains (the bits are the same).
                           Read at every run.
``NETDSL_NUMBA``           ``1``/``true``/``yes``/``on``: the NumPy backend loads numba's compiled loop at the first
                           per-tensor int8/int4 Quantize piece; ``0``/``false``/``no``/``off``: never; unset or
                           anything else: once the process has done about its load time in NumPy work.
``NETDSL_CUDA_DEFINES``    words ``NAME=VALUE`` compiled into the CUDA kernels as ``-D`` macros: the tuning knobs
                           ``NETDSL_MIN_CTAS_PER_SM``, ``NETDSL_AHEAD``, ``NETDSL_SCALE_AHEAD``,
                           ``NETDSL_STORE_CS``, ``NETDSL_CHUNK_MAP``, ``NETDSL_TILE_CTAS``,
                           ``NETDSL_TILE16_BF16_VEC``, ``NETDSL_TILE_PREFETCH``, ``NETDSL_CTA16_PASSES``,
                           ``NETDSL_CTA_CTAS``, ``NETDSL_CTA_PACKED_MAX``, ``NETDSL_CTA_SHARED_RCP``
                           (netdsl/backends/cupy/abi.py:
                           TUNING_DEFAULTS). The launch geometry reads the tile and CTA knobs once, when the GPU
                           backend is imported.
``NETDSL_APPLY_SHARDS``    a whole number >= 1: how many shards ``netdsl apply`` writes at once in one process
                           (default: 4 with the GPU, 1 with NumPy).
``NETDSL_APPLY_FSYNC``     ``early`` (default): ``netdsl apply`` starts each output file's writeback every 64 MiB
                           as it writes and fsyncs the file when complete; ``commit``: fsync only when complete;
                           ``none``: no fsync of shards (a power loss may lose them; a resumed run re-hashes).
``NETDSL_APPLY_READ``      ``staging`` (default): ``netdsl apply --backend cupy`` reads weights through pinned
                           buffers; ``register``: pins the page cache's own pages of a weight (a read-only map,
                           cudaHostRegister) and the GPU copies them (slower on the H100 machine: scale.md).
``NETDSL_KERNEL_CACHE``    the folder of compiled kernels (default ``$XDG_CACHE_HOME/netdsl/kernels``, that is
                           ``~/.cache/netdsl/kernels``).
=========================  ===================================================================================

The test suite reads one more, ``NETDSL_FUZZ_EXAMPLES`` (examples per fuzz property, tests/test_fuzz.py).
"""

from __future__ import annotations

import os
from pathlib import Path

_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"0", "false", "no", "off"})

_fusion_words: dict[str, bool] = {}  # $NETDSL_FUSION's text -> its meaning (read every run, parsed once)


def fusion() -> bool:
    """$NETDSL_FUSION: False when it is 0/false/no/off (any case, spaces around ignored), else True."""
    text = os.environ.get("NETDSL_FUSION", "1")
    enabled = _fusion_words.get(text)
    if enabled is None:
        enabled = _fusion_words[text] = text.strip().lower() not in _OFF
    return enabled


def numba() -> str:
    """$NETDSL_NUMBA as "on" (1/true/yes/on), "off" (0/false/no/off) or "auto" (anything else, unset)."""
    value = os.environ.get("NETDSL_NUMBA", "").strip().lower()
    return "on" if value in _ON else "off" if value in _OFF else "auto"


def cuda_defines() -> tuple[str, ...]:
    """The words of $NETDSL_CUDA_DEFINES (``NAME=VALUE`` macros for the CUDA kernels)."""
    return tuple(os.environ.get("NETDSL_CUDA_DEFINES", "").split())


def cuda_define(name: str) -> int | None:
    """The value $NETDSL_CUDA_DEFINES gives the macro ``name``, or None where it gives none."""
    for word in cuda_defines():
        key, _, value = word.partition("=")
        if key == name:
            return int(value)
    return None


def kernel_cache() -> Path:
    """$NETDSL_KERNEL_CACHE, else $XDG_CACHE_HOME/netdsl/kernels (XDG_CACHE_HOME defaulting to ~/.cache)."""
    configured = os.environ.get("NETDSL_KERNEL_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "netdsl" / "kernels"


def _one_of(name: str, choices: tuple[str, ...]) -> str:
    """$``name`` as one of ``choices`` (any case, spaces around ignored; unset or empty: the first);
    UsageError otherwise."""
    text = os.environ.get(name, "").strip().lower() or choices[0]
    if text not in choices:
        from netdsl.diagnostics import UsageError

        words = ", ".join(choices[:-1]) + f" or {choices[-1]}"
        raise UsageError(f"{name} must be {words}, not '{text}'")
    return text


def apply_fsync() -> str:
    """$NETDSL_APPLY_FSYNC: ``early`` (default), ``commit`` or ``none``; UsageError otherwise."""
    return _one_of("NETDSL_APPLY_FSYNC", ("early", "commit", "none"))


def apply_read() -> str:
    """$NETDSL_APPLY_READ: ``staging`` (default) or ``register``; UsageError otherwise."""
    return _one_of("NETDSL_APPLY_READ", ("staging", "register"))


def apply_shards() -> int | None:
    """$NETDSL_APPLY_SHARDS as a whole number >= 1, or None where it is unset; UsageError otherwise."""
    text = os.environ.get("NETDSL_APPLY_SHARDS", "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        from netdsl.diagnostics import UsageError

        raise UsageError(f"NETDSL_APPLY_SHARDS must be a whole number >= 1, not '{text}'")
    return int(text)
