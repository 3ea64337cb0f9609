"""The CPU backend: each layer's NumPy reference, in cache-sized pieces on a thread per core
(:mod:`~netdsl.backends.numpy.executor`), with numba's compiled loop for per-tensor int8/int4 Quantize
where numba is installed (:mod:`~netdsl.backends.numpy.compiled`)."""

from __future__ import annotations

from netdsl.backends.numpy.executor import BACKEND

__all__ = ["BACKEND"]
