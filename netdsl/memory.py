"""The memory budget of a run (docs/reliability.md, "Memory"): estimated from the checked graph before
anything is allocated, and compared with what the machine has, so that a run that can't fit is refused
at once (exit 2 from the command line) instead of failing half-way or being killed by the kernel.

The checker knows every shape, so the estimate is arithmetic on the graph:

- NumPy backend (host memory): the inputs, the constants and every layer output (the executor keeps
  every tensor until the run ends), plus the largest scratch one layer takes while it runs: each worker
  thread holds a few float32 buffers the size of the piece it works on (:data:`SCRATCH_PER_ELEMENT`,
  measured with tracemalloc; a piece is a cache-sized box of whole blocks, so a block that spans the
  whole tensor makes one piece of the whole tensor).
- CuPy backend (device memory): the fusion and liveness schedule the executor runs
  (``fusion.schedule``): inputs and constants on the device, each step's outputs while they are live, and a
  DynamicQuantize's per-block amax and effective-scale buffers; 4-bit tensors take half a byte per element.

The default limit is what is available now: the host's MemAvailable (``/proc/meminfo``, and the
cgroup's limit where one is set), or the device's free memory plus CuPy's cached pool. ``--memory-limit
SIZE|none`` (API: ``memory_limit=``) overrides it. ``tests/test_memory.py`` checks the estimate against
traced peaks.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netdsl import dtypes, settings
from netdsl.check import CheckedGraph, CheckedNode
from netdsl.ir import TensorType
from netdsl.ops.base import OpDef
from netdsl.ops.cast import CAST
from netdsl.ops.common import ScaleResolution
from netdsl.ops.dequantize import DEQUANTIZE
from netdsl.ops.dynamic_quantize import DYNAMIC_QUANTIZE, DynamicResolution
from netdsl.ops.elementwise import ELEMENTWISE
from netdsl.ops.quantize import QUANTIZE
from netdsl.ops.reduce import REDUCE
from netdsl.ops.shuffle import SHUFFLE
from netdsl.ops.unary import UNARY

#: scratch bytes per element of the piece a NumPy worker thread processes, by op: the float32 quotient
#: or product, a scale expanded to the piece, the encoders' temporaries (peaks measured with tracemalloc
#: on one-piece tensors: quantize 4-8.3, dequantize 5-15, dynamic_quantize 5-13.7), and a float32 copy of
#: a float16/bfloat16 input
SCRATCH_PER_ELEMENT: dict[OpDef[Any, Any], int] = {QUANTIZE: 8, DEQUANTIZE: 8, DYNAMIC_QUANTIZE: 12}
#: scratch bytes per element of the recipe layers (docs/semantics.md, "Recipe layers"), which run on the
#: whole tensor, not in pieces: the float32 widening of their inputs (reduce, in slices; elementwise, both
#: inputs and the result; cast and its encoder) and unary's bit masks; shuffle is a view
WHOLE_TENSOR_SCRATCH: dict[OpDef[Any, Any], int] = {UNARY: 3, REDUCE: 1, ELEMENTWISE: 12, CAST: 8, SHUFFLE: 0}
#: extra scratch per piece element where the input is float16/bfloat16 (its float32 copy), or the output
#: bfloat16 (its encoder's temporaries)
HALF_INPUT_EXTRA, BFLOAT16_OUTPUT_EXTRA = 4, 8
#: what a run needs besides its tensors: the random-input chunks, NumPy's and the threads' own buffers
OVERHEAD = 64 << 20

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class MemoryLimitError(MemoryError):
    """A run whose estimated peak is over the memory limit; raised before anything is allocated."""


@dataclass(frozen=True)
class Estimate:
    """A run's estimated peak in bytes of ``where`` ("host memory" or "device memory"), its largest
    tensor, and the bytes of it already held before the run starts (constants, inputs given)."""

    peak: int
    largest: str
    largest_type: TensorType
    largest_bytes: int
    held: int
    where: str


def format_size(size: float) -> str:
    """``size`` bytes in binary units: 512 B, 1.5 KiB, 32.0 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def parse_size(text: str) -> int | None:
    """A size as the user writes it: bytes, or with K/M/G/T (binary: 1K = 1024; KiB, KB and k all mean
    the same), fractions allowed (``1.5G``); ``none`` means no limit (None). ValueError otherwise."""
    cleaned = text.strip().lower()
    if cleaned == "none":
        return None
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?", cleaned)
    if not match:
        raise ValueError(f"a size takes a number with an optional K, M, G or T (8G, 512M, 1.5GiB), or none; "
                         f"got '{text}'")
    return int(float(match[1]) * _UNITS[match[2]])


def host_bytes(tensor_type: TensorType) -> int:
    """A tensor's bytes in the NumPy backend: one storage element per value."""
    return tensor_type.volume * tensor_type.dtype.storage.itemsize


def device_bytes(tensor_type: TensorType) -> int:
    """A tensor's bytes on the GPU: 4-bit types packed two per byte."""
    from netdsl.backends.cupy.device import storage_length

    dtype = tensor_type.dtype
    return storage_length(dtype, tensor_type.volume) * dtype.device_storage.itemsize


def _typed(graph: CheckedGraph, name: str) -> TensorType:
    tensor_type = graph.values[name].type
    assert tensor_type is not None, "the estimate takes a checked graph"
    return tensor_type


def _largest(graph: CheckedGraph, size) -> tuple[str, TensorType, int]:
    name = max(graph.values, key=lambda n: size(_typed(graph, n)))
    return name, _typed(graph, name), size(_typed(graph, name))


def _numpy_scratch(node: CheckedNode, graph: CheckedGraph, workers: int) -> int:
    """The scratch the NumPy backend's workers hold while running ``node``."""
    from netdsl.backends.numpy.executor import pieces

    x = _typed(graph, node.inputs[0])
    if node.op in WHOLE_TENSOR_SCRATCH:
        volume = max(_typed(graph, name).volume for name in node.inputs + node.outputs)
        return volume * WHOLE_TENSOR_SCRATCH[node.op]
    resolution = node.resolution
    if isinstance(resolution, DynamicResolution):
        block, aligned = resolution.block, (True,) * x.rank
    else:
        assert isinstance(resolution, ScaleResolution)
        granularity = resolution.granularity
        block, aligned = granularity.block, tuple(c > 1 for c in granularity.scale_shape)
    boxes = list(itertools.islice(pieces(x.shape, block, aligned), workers + 1))
    piece = max((math.prod(s.stop - s.start for s in box) for box in boxes), default=0)
    per_element = SCRATCH_PER_ELEMENT[node.op]
    if x.dtype in (dtypes.FLOAT16, dtypes.BFLOAT16):
        per_element += HALF_INPUT_EXTRA
    if any(_typed(graph, o).dtype == dtypes.BFLOAT16 for o in node.outputs):
        per_element += BFLOAT16_OUTPUT_EXTRA
    return min(len(boxes), workers) * piece * per_element


def estimate_numpy(graph: CheckedGraph, inputs_held: bool = False) -> Estimate:
    """The NumPy backend's peak host memory for a run of ``graph``: every tensor (it keeps them all until
    the run ends) plus the largest layer scratch. ``inputs_held``: the inputs exist already."""
    workers = os.cpu_count() or 1
    tensors = sum(host_bytes(_typed(graph, name)) for name in graph.values)
    scratch = max((_numpy_scratch(node, graph, workers) for node in graph.nodes), default=0)
    held = sum(host_bytes(_typed(graph, v.name)) for v in graph.constants)
    if inputs_held:
        held += sum(host_bytes(_typed(graph, v.name)) for v in graph.inputs)
    return Estimate(tensors + scratch + OVERHEAD, *_largest(graph, host_bytes), held, "host memory")


def estimate_host_of_gpu_run(graph: CheckedGraph, inputs_held: bool = False) -> Estimate:
    """The host memory of a CuPy run: the inputs, the constants and the outputs it downloads."""
    kept = {v.name for v in graph.values.values() if v.kind in ("input", "const")} | set(graph.outputs)
    held = sum(host_bytes(_typed(graph, v.name)) for v in graph.constants)
    if inputs_held:
        held += sum(host_bytes(_typed(graph, v.name)) for v in graph.inputs)
    return Estimate(sum(host_bytes(_typed(graph, name)) for name in kept) + OVERHEAD,
                    *_largest(graph, host_bytes), held, "host memory")


def estimate_cupy(graph: CheckedGraph) -> Estimate:
    """The CuPy backend's peak device memory for a run of ``graph``, following its step schedule (with
    fusion as the backend runs it): the inputs and constants, each step's outputs until their last use,
    a DynamicQuantize's block buffers."""
    from netdsl.backends.cupy.executor import BACKEND
    from netdsl.backends.cupy.fusion import schedule

    fusion = settings.fusion() if BACKEND.fusion is None else BACKEND.fusion
    live = sum(device_bytes(_typed(graph, v.name)) for v in graph.values.values() if v.kind in ("input", "const"))
    peak = live
    for step in schedule(graph, fusion):
        live += sum(device_bytes(_typed(graph, name)) for name in step.outputs)
        scratch = 0
        for node in step.nodes:
            if isinstance(node.resolution, DynamicResolution):  # float32 amax and effective scale per block
                scratch += 8 * math.prod(node.resolution.scale_shape)
        peak = max(peak, live + scratch)
        live -= sum(device_bytes(_typed(graph, name)) for name in step.free)
    held = sum(device_bytes(_typed(graph, v.name)) for v in graph.constants)
    return Estimate(peak, *_largest(graph, device_bytes), held, "device memory")


def _cgroup_room() -> int | None:
    """What the cgroup (v2) this process runs in still allows, where it sets a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()), 0)
    except (OSError, ValueError):
        return None


def available_host() -> int | None:
    """Physical memory available now (MemAvailable, else free pages; the cgroup's room if smaller), or
    None where neither can be read."""
    room = None
    try:
        match = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
        room = int(match[1]) * 1024 if match else None
    except OSError:
        pass
    if room is None:
        try:
            room = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            room = None
    cgroup = _cgroup_room()
    return cgroup if room is None else room if cgroup is None else min(room, cgroup)


def available_device() -> int | None:
    """The current GPU's free memory, counting what CuPy's pool holds unused."""
    from netdsl.backends.cupy.device import import_cupy

    try:
        cupy = import_cupy()
        free = int(cupy.cuda.runtime.memGetInfo()[0])
        return free + int(cupy.get_default_memory_pool().free_bytes())
    except Exception:  # noqa: BLE001 - no answer means no check, never a failed run
        return None


#: runs whose estimated peak is below this are not measured against the memory available: asking the system
#: costs more than such a run (a MemoryError is still exit 2)
SMALL_RUN = 64 << 20

_ESTIMATES: dict[tuple[int, str, bool, bool, bool | None], tuple[weakref.ref[CheckedGraph], list[Estimate]]] = {}


def _estimates(graph: CheckedGraph, backend: str, inputs_held: bool, host: bool) -> list[Estimate]:
    """The estimates of a run (cached per graph: a checked graph is not edited afterwards)."""
    fusion = None
    if backend == "cupy":
        from netdsl.backends.cupy.executor import BACKEND

        fusion = settings.fusion() if BACKEND.fusion is None else BACKEND.fusion
    key = (id(graph), backend, inputs_held, host, fusion)
    cached = _ESTIMATES.get(key)
    if cached is not None and cached[0]() is graph:
        return cached[1]
    if backend == "cupy":
        estimates = ([estimate_host_of_gpu_run(graph, inputs_held)] if host else []) + [estimate_cupy(graph)]
    else:
        estimates = [estimate_numpy(graph, inputs_held)]
    if len(_ESTIMATES) > 256:
        _ESTIMATES.clear()
    _ESTIMATES[key] = (weakref.ref(graph), estimates)
    return estimates


def check(graph: CheckedGraph, backend: str, limit: int | str | None = "auto", inputs_held: bool = False,
          host: bool = True) -> Estimate:
    """Refuse (MemoryLimitError) a run of ``graph`` on ``backend`` ("numpy" or "cupy") whose estimated peak
    is over ``limit``: bytes, a size text (:func:`parse_size`, ValueError if it isn't one), None or "none"
    (no limit), or "auto" (what is available now, plus what the run holds already). With "cupy" the host
    (inputs, constants, outputs; unless ``host`` is False: device arrays in and out) and the device are both
    checked. Returns the last estimate."""
    if isinstance(limit, str) and limit != "auto":
        limit = parse_size(limit)
    estimates = _estimates(graph, backend, inputs_held, host)
    for estimate in estimates:
        if limit is None:
            break
        if limit == "auto":
            if estimate.peak < SMALL_RUN:
                continue
            room = available_host() if estimate.where == "host memory" else available_device()
            if room is None:
                continue
            allowed, what = room + estimate.held, f"{format_size(room)} of {estimate.where} available"
        else:
            allowed, what = int(limit), f"the memory limit of {format_size(int(limit))}"
        if estimate.peak > allowed:
            raise MemoryLimitError(
                f"this run needs about {format_size(estimate.peak)} of {estimate.where}, over {what}; its largest "
                f"tensor is '{estimate.largest}', {estimate.largest_type}, {format_size(estimate.largest_bytes)} "
                f"(--memory-limit SIZE or none, memory_limit= in Python, runs it anyway)")
    return estimates[-1]
