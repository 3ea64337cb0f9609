"""Arrays crossing netdsl's edges: which arrays fit a tensor type, and random inputs (files are
:mod:`netdsl.files`).

An array for a tensor of type T is accepted in T's storage dtype (the ml_dtypes type), or in the
dtype ``--save`` writes for T (int8 for int4/int8; float32 for fp8, fp4, e8m0 and bfloat16) holding
values T represents exactly; float16/bfloat16 tensors also take float32, rounded to nearest even.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from netdsl import dtypes
from netdsl.ir import TensorType


class MismatchError(ValueError):
    """An array, or an .npy header, whose shape or dtype doesn't fit the declared tensor type."""


def check_fits(shape: tuple[int, ...], array_dtype: np.dtype, tensor_type: TensorType) -> None:
    """MismatchError unless an array of ``shape`` and ``array_dtype`` may hold a ``tensor_type``."""
    dtype = tensor_type.dtype
    if tuple(shape) != tensor_type.shape:
        raise MismatchError(f"has shape {list(shape)}, expected {list(tensor_type.shape)}")
    array_dtype = array_dtype.newbyteorder("=")  # a big-endian '>f4' file holds float32 too
    half = dtype.is_float and dtype.bits == 16
    if array_dtype in (dtype.storage, dtype.save_dtype) or (half and array_dtype in (np.float32, np.float16)):
        return
    accepted = sorted({dtype.storage.name, dtype.save_dtype.name} | ({"float32"} if half else set()))
    raise MismatchError(f"has dtype {array_dtype}, expected {' or '.join(accepted)} for {dtype.name}")


def coerce(array: np.ndarray, tensor_type: TensorType) -> np.ndarray:
    """``array`` as the storage form of ``tensor_type``; ValueError saying what doesn't fit
    (MismatchError for its shape or dtype)."""
    array = np.asarray(array)
    dtype = tensor_type.dtype
    check_fits(array.shape, array.dtype, tensor_type)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype == dtype.storage:
        return array
    if dtype.is_float and dtype.bits == 16 and array.dtype in (np.float32, np.float16):
        return dtypes.encode(array.astype(np.float32), dtype)
    exact = dtypes.representable(array.astype(np.float64), dtype)
    if not exact.all():
        bad = array[~exact].flat[0]
        raise ValueError(f"holds {bad}, which {dtype.name} cannot represent exactly")
    return dtypes.encode(array.astype(np.float32), dtype)


#: elements drawn at a time by :func:`random_input` (8 MiB of float64 draws)
#: inputs of at least this many elements a thread are drawn by several threads (the same values)
PARALLEL_DRAW = 1 << 22
RANDOM_CHUNK = 1 << 20


def random_input(tensor_type: TensorType, rng: np.random.Generator, low: float = -1.0,
                 high: float = 1.0) -> np.ndarray:
    """Uniform [low, high) float32 from ``rng`` (default [-1, 1), ``--val-range``), rounded to the tensor's
    type (as the CLI fills inputs).

    The values are ``rng.uniform(low, high, size).astype(float32)`` of the whole tensor, bit for bit, but
    drawn :data:`RANDOM_CHUNK` elements at a time straight into the result, so that an input takes its
    own storage and a few MiB a thread, not 12 bytes an element: ``Generator.uniform`` draws its doubles in
    order, so consecutive chunks of the flattened tensor continue one stream, and a large tensor is drawn by
    a thread per core, each from a copy of the generator advanced to its part (tests/test_memory.py checks
    both against the whole-tensor formula)."""
    dtype = tensor_type.dtype
    out = np.empty(tensor_type.shape, dtype.storage)
    flat = out.reshape(-1)

    def fill(generator: np.random.Generator, begin: int, end: int) -> None:
        for start in range(begin, end, RANDOM_CHUNK):
            draws = generator.uniform(low, high, size=min(RANDOM_CHUNK, end - start))
            target = flat[start:start + draws.size]
            if dtype == dtypes.FLOAT32:  # rounded as astype(float32) rounds; uniform draws no NaN to make canonical
                target[...] = draws
            elif dtype == dtypes.E8M0:
                target[...] = dtypes.e8m0_round_up(np.abs(draws.astype(np.float32)))
            else:
                dtypes.encode(draws.astype(np.float32), dtype, out=target, overwrite=True)

    bits = rng.bit_generator
    workers = min(os.cpu_count() or 1, flat.size // PARALLEL_DRAW)
    if workers < 2 or not isinstance(bits, np.random.PCG64):  # default_rng's; its advance() is exact
        fill(rng, 0, flat.size)
        return out
    # The same stream drawn by several threads: each double is one 64-bit step of the generator, so a copy
    # advanced by a part's start draws exactly that part's values (PCG64.advance), and the caller's
    # generator is advanced past the whole tensor afterwards, as one sequential draw would leave it.
    step = -(-flat.size // workers // RANDOM_CHUNK) * RANDOM_CHUNK
    parts = []
    for begin in range(0, flat.size, step):
        copy = np.random.PCG64()
        copy.state = bits.state
        copy.advance(begin)
        parts.append((np.random.Generator(copy), begin, min(begin + step, flat.size)))
    with ThreadPoolExecutor(max_workers=len(parts), thread_name_prefix="netdsl-random") as pool:
        for done in [pool.submit(fill, *part) for part in parts]:
            done.result()
    bits.advance(flat.size)
    return out
