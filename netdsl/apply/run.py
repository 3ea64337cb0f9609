"""Writing the output: one shard at a time (in this process or on a Dask worker), a manifest of finished
shards for resuming, and the index, configs and other files last.

A shard is written to a temporary name and renamed when complete, and the manifest in OUTDIR records its
SHA-256, so a run that is killed and started again skips the shards it finished and ends with the same
bytes. The index and configs, without which no loader reads the folder, are written after every shard.
"""

from __future__ import annotations

import functools
import glob
import json
import mmap
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from netdsl import settings
from netdsl.apply.checkpoint import FLOAT_TAGS, INDEX_NAME
from netdsl.apply.formats import PackedCodes
from netdsl.apply.plan import Entry, Plan
from netdsl.apply.safetensors_io import CheckpointError, ShardWriter, TensorInfo, copy_range, file_sha256
from netdsl.apply.timing import TIMING
from netdsl.diagnostics import UsageError, WeightValueError
from netdsl.files import pread_full

MANIFEST = ".netdsl-apply.json"


#: the recipe's bind and launches run in one thread at a time (the executor's launch caches belong to the
#: process); each shard thread launches on a stream of its own and downloads its outputs outside the lock,
#: so reading, downloading and writing overlap the other threads' GPU work
_DEVICE = threading.Lock()
#: pinned staging for reads to the device (NETDSL_APPLY_READ=staging, the default, and where pinning a file's
#: pages fails): two pieces per reading thread, each filled by the kernel while the other is copied to the device
STAGE = 1 << 24
_staging = threading.local()
_streams = threading.local()
#: cudaHostRegisterReadOnly: pin pages the device only reads (a read-only file mapping's)
REGISTER_READ_ONLY = 0x08
#: whether pinning a file's mapped pages works here (settings.apply_read() "register"; False once it failed)
_register = [True]


class _FileMaps:
    """The input files mapped read-only, each once while any shard of this process is being written (not once
    per tensor: mapping and unmapping take the process's memory-map lock, behind which every other thread's
    page faults and pinning wait), with a lock per file so that no two threads pin pages of it at once
    (tensors of one file may share a page; CUDA refuses to pin a page twice)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._maps: dict[Path, tuple[mmap.mmap, np.ndarray, threading.Lock]] = {}

    def get(self, path: Path) -> tuple[np.ndarray, threading.Lock]:
        """The bytes of ``path`` (a view of its map) and the file's pinning lock."""
        with self._lock:
            entry = self._maps.get(path)
            if entry is None:
                with open(path, "rb") as stream:
                    mapped = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
                entry = self._maps[path] = (mapped, np.frombuffer(mapped, dtype=np.uint8), threading.Lock())
            return entry[1], entry[2]

    def __enter__(self) -> None:
        with self._lock:
            self._users += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._users -= 1
            if not self._users:  # the last shard of this process is out: drop the maps
                maps = [mapped for mapped, _, _ in self._maps.values()]
                self._maps.clear()  # and with it the views, which would keep a map from closing
                for mapped in maps:
                    try:
                        mapped.close()
                    except BufferError:  # a view still held (by a failure's frames): unmapped when it goes
                        pass


_MAPS = _FileMaps()


def _upload_mapped(cupy: Any, path: Path, info: TensorInfo, target: Any, stream: Any) -> bool:
    """The bytes of tensor ``info`` copied to the device straight from the page cache: the pages of the file's
    map (:class:`_FileMaps`) that hold it are pinned where they are (cudaHostRegister, read-only), copied by
    the GPU's DMA with no copy on the CPU, and unpinned. False where this platform can't pin a file's pages
    (the caller then reads through pinned staging buffers, :func:`_upload`)."""
    data, lock = _MAPS.get(path)
    if info.end > data.nbytes:
        raise CheckpointError(f"'{path}' ends early (tensor '{info.name}' is missing bytes)")
    base = data.ctypes.data
    first = (base + info.begin) // mmap.PAGESIZE * mmap.PAGESIZE
    length = -(-(base + info.end - first) // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages of the map
    with lock:
        try:
            cupy.cuda.runtime.hostRegister(first, length, REGISTER_READ_ONLY)
        except cupy.cuda.runtime.CUDARuntimeError:
            _register[0] = False
            return False
        try:
            cupy.cuda.runtime.memcpyAsync(target.data.ptr, base + info.begin, info.nbytes,
                                          cupy.cuda.runtime.memcpyHostToDevice, stream.ptr)
            stream.synchronize()
        finally:
            cupy.cuda.runtime.hostUnregister(first)
    return True


def _upload(cupy: Any, path: Path, info: TensorInfo, target: Any, stream: Any) -> None:
    """The bytes of tensor ``info`` in ``path`` into the contiguous device array ``target``: read (``preadv``)
    into two pinned buffers in turn, each copied to the device on ``stream`` while the other is filled; with
    NETDSL_APPLY_READ=register straight from the page cache where its pages can be pinned
    (:func:`_upload_mapped`: no copy by the CPU, but the slower on the H100 machine, docs/scale.md)."""
    if not info.nbytes:
        return
    if _register[0] and settings.apply_read() == "register" and _upload_mapped(cupy, path, info, target, stream):
        return
    pieces = getattr(_staging, "pieces", None)
    if pieces is None:
        from netdsl.backends.cupy.device import empty_pinned

        pieces = _staging.pieces = [(empty_pinned((STAGE,), np.uint8), cupy.cuda.Event()) for _ in range(2)]
    memcpy_async, to_device = cupy.cuda.runtime.memcpyAsync, cupy.cuda.runtime.memcpyHostToDevice
    pending = [False, False]
    fd = os.open(path, os.O_RDONLY)
    try:
        done = 0
        piece = 0
        while done < info.nbytes:
            buffer, event = pieces[piece]
            if pending[piece]:
                event.synchronize()  # the copy out of this piece has finished
            count = min(STAGE, info.nbytes - done)
            if pread_full(fd, memoryview(buffer)[:count], info.begin + done) < count:
                raise CheckpointError(f"'{path}' ends early (tensor '{info.name}' is missing bytes)")
            memcpy_async(target.data.ptr + done, buffer.ctypes.data, count, to_device, stream.ptr)
            event.record(stream)
            pending[piece] = True
            done += count
            piece ^= 1
    finally:
        os.close(fd)


def _read_group(plan: Plan, g: int, backend: str) -> Any:
    """Group ``g``'s weights stacked by rows, as the recipe takes them. With the cupy backend they are read
    straight into one device array (:func:`_upload`) on a stream of this thread's own: ``write_shard`` reads
    the next group in a thread while the current one is quantized and written, so reading and copying overlap
    the GPU's work."""
    group = plan.groups[g]
    checkpoint = plan.checkpoint
    infos = [checkpoint.shards[checkpoint.locations[m]][m] for m in group.members]
    with TIMING.phase("read", sum(i.nbytes for i in infos)):
        return _read_infos(plan, group.members, infos, backend)


def _read_infos(plan: Plan, members: list[str], infos: list[TensorInfo], backend: str) -> Any:
    checkpoint = plan.checkpoint
    first = infos[0]
    if backend == "cupy" and first.dtype in FLOAT_TAGS and all(
            i.dtype == first.dtype and i.shape[1:] == first.shape[1:] and i.shape for i in infos):
        from netdsl.backends.cupy.device import import_cupy

        cupy = import_cupy()
        storage = FLOAT_TAGS[first.dtype].device_storage
        rows = sum(i.shape[0] for i in infos)
        with cupy.cuda.Stream(non_blocking=True) as stream:
            stacked = cupy.empty((rows, *first.shape[1:]), dtype=storage)
            row = 0
            for member, info in zip(members, infos):
                _upload(cupy, checkpoint.root / checkpoint.locations[member], info,
                        stacked[row:row + info.shape[0]], stream)
                row += info.shape[0]
            stream.synchronize()
        return stacked
    weights = [checkpoint.read(checkpoint.locations[m], m) for m in members]
    return weights[0] if len(weights) == 1 else np.concatenate(weights, axis=0)


def _run_recipe(plan: Plan, stacked: Any, backend: str) -> dict[str, Any]:
    """The recipe on one group's stacked weights; host arrays out. A weight already on the device runs
    there (netdsl.backends.cupy.external: no copy) and only the outputs come back, 4-bit ones still packed
    (:class:`PackedCodes`)."""
    recipe = plan.recipe()
    name = recipe.graph.inputs[0].name
    if backend != "cupy":
        with TIMING.phase("run"):
            return recipe.run({name: stacked}, backend=backend)
    from netdsl.backends.cupy import BACKEND, device, external

    cupy = device.import_cupy()
    stream = getattr(_streams, "stream", None)
    if stream is None:
        stream = _streams.stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        with TIMING.phase("wait gpu"):
            _DEVICE.acquire()
        try:
            with TIMING.phase("run"):
                network = recipe.bind({name: tuple(stacked.shape)})
                results = BACKEND.run_device(network.graph, {
                    name: external.to_device_tensor(name, stacked, network.inputs[name])})
        finally:
            _DEVICE.release()
        outputs: dict[str, Any] = {}
        with TIMING.phase("download", sum(results[o].data.nbytes for o in network.graph.outputs)):
            for output in network.graph.outputs:
                tensor = results[output]
                if tensor.dtype.bits == 4 and tensor.shape and tensor.shape[-1] % 2 == 0:  # stays packed to the file
                    packed = _to_pinned(tensor.data, stream)
                    outputs[output] = PackedCodes(packed.reshape(*tensor.shape[:-1], tensor.shape[-1] // 2),
                                                  tensor.dtype)
                elif tensor.dtype.bits % 8 == 0:
                    outputs[output] = _to_pinned(tensor.data, stream).view(tensor.dtype.storage).reshape(tensor.shape)
                else:
                    outputs[output] = device.download(tensor)
        del results
    return outputs


def _to_pinned(array: Any, stream: Any) -> np.ndarray:
    """A device array's bytes in page-locked host memory (CuPy's pinned pool: the buffer is reused once the
    array is dropped), so the GPU's DMA writes them where they are read, with no copy through a driver
    buffer."""
    from netdsl.backends.cupy.device import empty_pinned

    if not array.size:
        return np.empty(array.shape, dtype=array.dtype)
    host = empty_pinned(array.shape, array.dtype)
    array.get(stream=stream, out=host)
    return host


def _group_outputs(plan: Plan, g: int, backend: str, stacked: Any) -> list[dict[str, np.ndarray]]:
    """The recipe run once on group ``g``'s weights stacked by rows (:func:`_read_group`); each member's
    share of every output (and its input scale), as the arrays to be written."""
    group = plan.groups[g]
    try:
        outputs = _run_recipe(plan, stacked, backend)
    except WeightValueError as error:
        what = f"tensor '{group.members[0]}'" if len(group.members) == 1 else f"fused group {', '.join(group.members)}"
        raise UsageError(f"{what} doesn't fit the recipe: {error}") from None
    del stacked
    shares: list[dict[str, np.ndarray]] = [{} for _ in group.members]
    for split in group.splits:
        array = outputs[split.name]
        start = 0
        for i, share in enumerate(shares):
            if split.rows is None:
                share[split.name] = array
            else:
                share[split.name] = array[start:start + split.rows[i]]
                start += split.rows[i]
    if plan.input_scales is not None:
        from netdsl.apply.groups import module_of

        amax = max(plan.input_scales[module_of(m)] for m in group.members)  # one per fused layer
        for share in shares:
            share[""] = np.asarray(plan.scheme.input_scale(amax), dtype=np.float32)
    return shares


def _entry_bytes(plan: Plan, entry: Entry, shares: list[dict[str, np.ndarray]]) -> np.ndarray:
    array = shares[entry.member][entry.output]
    if entry.stored is None:
        return array
    try:
        with TIMING.phase("convert"):
            return entry.stored.convert(array)
    except WeightValueError as error:
        raise UsageError(f"tensor '{entry.tensor.name}' can't be stored in --format {plan.format.name}: "
                         f"{error}") from None


class SharedGroups:
    """The fused groups whose members lie in more than one of the shards one process writes (q/k/v or
    gate/up across a shard boundary): each is read and quantized once, by the first shard thread to reach
    it, and the others take its outputs, each its own members' share. A thread waits only for a group that
    another is computing right now (which waits for nothing), so no two threads wait for each other; a group
    nobody has started is computed by whoever reaches it. Outputs are dropped once every shard took them."""

    def __init__(self, users: dict[int, int]):
        self._lock = threading.Lock()
        self._users = {g: n for g, n in users.items() if n > 1}  # group -> shards still to take it
        self._results: dict[int, Future[list[dict[str, np.ndarray]]]] = {}

    @classmethod
    def of(cls, plan: Plan, shards: list[str]) -> SharedGroups:
        users: dict[int, int] = {}
        for shard in shards:
            for g in {e.group for e in plan.shards[shard] if e.source is None}:
                users[g] = users.get(g, 0) + 1
        return cls(users)

    def started(self, g: int) -> bool:
        """Whether another shard thread has computed group ``g``, or is computing it (no need to read it)."""
        with self._lock:
            return g in self._results

    def outputs(self, g: int, compute: Callable[[], list[dict[str, np.ndarray]]]) -> list[dict[str, np.ndarray]]:
        """Group ``g``'s outputs: ``compute()``'s where no thread has started it (or ``g`` is in one shard
        only), else the other thread's (its failure raised here too)."""
        with self._lock:
            if g not in self._users:
                owner, future = True, None
            else:
                future = self._results.get(g)
                owner = future is None
                if owner:
                    future = self._results[g] = Future()
        if future is None:
            return compute()
        if owner:
            try:
                future.set_result(compute())
            except BaseException as error:
                future.set_exception(error)
                raise
        result = future.result()
        with self._lock:
            self._users[g] -= 1
            if not self._users[g]:
                del self._users[g], self._results[g]
        return result


class Cancelled(Exception):
    """A shard's writing stopped because another shard's failed (or the run was interrupted)."""


def write_shard(plan: Plan, shard: str, outdir: str, backend: str,
                progress: Callable[[int], None] | None = None,
                stop: threading.Event | None = None, shared: SharedGroups | None = None) -> tuple[str, str]:
    """Write output shard ``shard`` into ``outdir`` (atomically); returns (shard, its SHA-256). Runs the
    same in any process: a Dask worker calls it with the plan it was sent. Several shards are written at
    once by threads of one process (:func:`write_shards`); ``stop`` set makes this one give up
    (:class:`Cancelled`, its temporary file removed) before its next tensor; ``shared``: the groups this
    process's shards share (computed once)."""
    writer, digest = _shard_data(plan, shard, outdir, backend, progress, stop, shared)
    writer.durable()
    return shard, digest


def _shard_data(plan: Plan, shard: str, outdir: str, backend: str, progress: Callable[[int], None] | None,
                stop: threading.Event | None, shared: SharedGroups | None) -> tuple[ShardWriter, str]:
    """:func:`write_shard` up to its last byte written and hashed: the writer (for :meth:`ShardWriter.durable`) and
    the SHA-256."""
    entries = plan.shards[shard]
    with TIMING.phase("shard", plan.input_bytes(shard)):
        writer = ShardWriter(Path(outdir) / shard, [e.tensor for e in entries], plan.checkpoint.metadata[shard])
        return writer, _write_entries(plan, shard, entries, writer, backend, progress, stop, shared)


def part_name(shard: str, part: tuple[int, int]) -> str:
    """The file holding entries [first, end) of ``shard``'s tensors, their bytes only (hidden: a dot name)."""
    return f".{shard}.part-{part[0]}-{part[1]}"


def write_part(plan: Plan, shard: str, part: tuple[int, int], outdir: str, backend: str) -> tuple[str, str]:
    """Write the bytes of entries [first, end) of output shard ``shard`` (one Dask task of a shard split by
    tensor groups, docs/scale.md) to ``part_name(shard, part)`` in ``outdir``, atomically; returns (that
    name, its SHA-256). The bytes are those :func:`write_shard` writes for the same tensors."""
    entries = plan.shards[shard][part[0]:part[1]]
    name = part_name(shard, part)
    writer = ShardWriter(Path(outdir) / name, [e.tensor for e in entries], None, header=False)
    digest = _write_entries(plan, shard, entries, writer, backend, None, None, None)
    writer.durable()
    return name, digest


def assemble_shard(plan: Plan, shard: str, parts: list[tuple[int, int]], outdir: str,
                   *finished: Any) -> tuple[str, str]:
    """Output shard ``shard`` from its parts (``finished``: the part tasks, done, which makes Dask run this
    after them): the header, then each part's bytes, written atomically as :func:`write_shard` writes it
    (the client removes the parts once it has recorded the shard, :meth:`Manifest.record`). Returns
    (shard, its SHA-256)."""
    folder = Path(outdir)
    entries = plan.shards[shard]
    writer = ShardWriter(folder / shard, [e.tensor for e in entries], plan.checkpoint.metadata[shard])
    try:
        for part in parts:
            path, offset = folder / part_name(shard, part), 0
            for e in entries[part[0]:part[1]]:
                writer.write(e.tensor.name, copy_range(path, offset, offset + e.tensor.nbytes))
                offset += e.tensor.nbytes
        return shard, writer.commit()
    except BaseException:
        writer.abort()
        raise


def _write_entries(plan: Plan, shard: str, entries: list[Entry], writer: ShardWriter, backend: str,
                   progress: Callable[[int], None] | None, stop: threading.Event | None,
                   shared: SharedGroups | None) -> str:
    """Write ``entries`` (a run of output shard ``shard``'s tensors) through ``writer`` to its last byte
    (:meth:`ShardWriter.finish`: the caller makes it durable); returns the SHA-256 of what was written.
    ``stop`` set: give up before the next tensor (:class:`Cancelled`). A group in ``shared`` is computed once
    for all the shards that hold its members."""
    checkpoint = plan.checkpoint
    locations = checkpoint.locations
    pending: dict[int, int] = {}  # group -> entries of this shard still to write
    for e in entries:
        if e.source is None:
            pending[e.group] = pending.get(e.group, 0) + 1
    computed: dict[int, list[dict[str, np.ndarray]]] = {}
    # the groups in the order they are written: while one is quantized and written, the next is read
    order = list(dict.fromkeys(e.group for e in entries if e.source is None))
    position = {g: i for i, g in enumerate(order)}
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netdsl-read")
    ahead: dict[int, Future[Any]] = {}

    def read_ahead(index: int) -> None:
        if index < len(order) and order[index] not in ahead and not (shared and shared.started(order[index])):
            ahead[order[index]] = reader.submit(_read_group, plan, order[index], backend)

    def compute(g: int) -> list[dict[str, np.ndarray]]:
        read_ahead(position[g])
        with TIMING.phase("wait read"):
            stacked = ahead.pop(g).result()
        return _group_outputs(plan, g, backend, stacked)

    with _MAPS:  # the input files stay mapped while any shard of this process is being written
        try:
            read_ahead(0)
            for e in entries:
                if stop is not None and stop.is_set():
                    raise Cancelled(shard)
                if e.source is not None:
                    info = checkpoint.shards[locations[e.source]][e.source]
                    writer.write(e.tensor.name, copy_range(checkpoint.root / locations[e.source], info.begin, info.end))
                    if progress:
                        progress(info.nbytes)
                    continue
                if e.group not in computed:
                    g = e.group
                    computed[g] = shared.outputs(g, functools.partial(compute, g)) if shared else compute(g)
                    ahead.pop(g, None)  # read, but another shard's thread computed it first
                    read_ahead(position[g] + 1)  # bounded memory: at most the next group is read ahead
                writer.write(e.tensor.name, [_entry_bytes(plan, e, computed[e.group])])
                pending[e.group] -= 1
                if not pending[e.group]:
                    del computed[e.group]  # bounded memory: a group's results live until its last entry is out
                    if progress:
                        group = plan.groups[e.group]
                        progress(sum(checkpoint.shards[locations[m]][m].nbytes for m in group.members
                                     if locations[m] == shard))
            return writer.finish()
        except BaseException:
            writer.abort()
            raise
        finally:
            reader.shutdown(wait=True, cancel_futures=True)
            checkpoint.close()  # drop the memory maps: the pages this shard touched leave the process


def shards_at_once(backend: str, count: int) -> int:
    """How many shards one process writes at once: with the GPU, several (their reading, hashing and
    writing overlap each other and the GPU's work, which runs one group at a time); with NumPy one (its
    kernels already use every core). $NETDSL_APPLY_SHARDS overrides (docs/settings.md)."""
    wanted = settings.apply_shards()
    if wanted is None:
        wanted = min(4, os.cpu_count() or 1) if backend == "cupy" else 1
    return max(1, min(wanted, count))


def write_shards(plan: Plan, shards: list[str], outdir: str, backend: str, progress: Callable[[int], None],
                 done: Callable[[str, str], None]) -> None:
    """Write ``shards`` in this process, :func:`shards_at_once` at a time; ``done(shard, sha256)`` is called
    in this thread as each is in place. A shard's thread goes on to the next shard once the last byte is
    written: the fsync and rename are a commit thread's (at most as many shards waiting for them as are
    written at once), so the disk's writing overlaps the next shards' reading, quantizing and writing. The
    first failure (or an interrupt) stops the others before their next tensor and is raised here; no shard is
    left half-written, and only the shards in place are ``done``."""
    parallel = shards_at_once(backend, len(shards))
    shared = SharedGroups.of(plan, shards)
    lock = threading.Lock()

    def locked(nbytes: int) -> None:
        with lock:
            progress(nbytes)

    stop = threading.Event()
    slots = threading.Semaphore(parallel)  # shards written but not yet in place
    commits = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="netdsl-commit")

    def write(shard: str) -> Future[tuple[str, str]]:
        writer, digest = _shard_data(plan, shard, outdir, backend, locked, stop, shared)
        slots.acquire()

        def commit() -> tuple[str, str]:
            try:
                writer.durable()
                return shard, digest
            finally:
                slots.release()

        try:
            return commits.submit(commit)
        except BaseException:
            slots.release()
            writer.abort()
            raise

    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="netdsl-shard")
    pending: set[Future[Any]] = {pool.submit(write, shard) for shard in shards}
    try:
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                result = future.result()
                if isinstance(result, Future):  # written: its commit is under way
                    pending.add(result)
                else:
                    done(*result)
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        commits.shutdown(wait=True)  # a shard written to its end is still put in place


class Manifest:
    """OUTDIR's record of a run: its settings and each finished shard's SHA-256 (written atomically)."""

    def __init__(self, outdir: Path, settings: dict[str, Any]):
        self.path = outdir / MANIFEST
        self.settings = settings
        self.shards: dict[str, str] = {}
        self.parts: dict[str, str] = {}  # finished parts of shards split into tasks (docs/scale.md)
        self.complete = False

    @classmethod
    def open(cls, outdir: Path, settings: dict[str, Any]) -> Manifest:
        """The manifest of an earlier run with the same settings, or a new one. UsageError where OUTDIR holds
        something else (another run's output, or files that aren't a netdsl apply output)."""
        manifest = cls(outdir, settings)
        if manifest.path.is_file():
            try:
                data = json.loads(manifest.path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                raise UsageError(f"'{manifest.path}' is damaged: remove '{outdir}' and start again") from None
            if data.get("settings") != settings:
                raise UsageError(f"'{outdir}' holds the output of a run with other settings (recipe, checkpoint, "
                                 f"format or options): remove it, or choose another -o")
            manifest.shards = dict(data.get("shards", {}))
            manifest.parts = dict(data.get("parts", {}))
            manifest.complete = bool(data.get("complete"))
        elif outdir.exists() and any(outdir.iterdir()):
            raise UsageError(f"'{outdir}' is not empty and holds no netdsl apply manifest: choose an empty or new -o")
        outdir.mkdir(parents=True, exist_ok=True)
        return manifest

    def finished(self, shard: str, outdir: Path) -> bool:
        """Whether ``shard`` was written by an earlier run and is still intact."""
        path = outdir / shard
        return shard in self.shards and path.is_file() and file_sha256(path) == self.shards[shard]

    def record(self, shard: str, sha256: str) -> None:
        """``shard`` is finished: its parts, if it was written in parts, are dropped (files and records)."""
        self.shards[shard] = sha256
        prefix = f".{shard}.part-"
        self.parts = {name: digest for name, digest in self.parts.items() if not name.startswith(prefix)}
        self.save()
        for pattern in (prefix, f".{prefix}"):  # the parts, and any a killed worker left half-written
            for stale in self.path.parent.glob(glob.escape(pattern) + "*"):
                stale.unlink(missing_ok=True)

    def part_finished(self, name: str, outdir: Path) -> bool:
        """Whether part file ``name`` was written by an earlier run and is still intact."""
        path = outdir / name
        return name in self.parts and path.is_file() and file_sha256(path) == self.parts[name]

    def record_part(self, name: str, sha256: str) -> None:
        self.parts[name] = sha256
        self.save()

    def save(self) -> None:
        data: dict[str, Any] = {"settings": self.settings, "shards": dict(sorted(self.shards.items())),
                                "complete": self.complete}
        if self.parts:
            data["parts"] = dict(sorted(self.parts.items()))
        _write_text(self.path, json.dumps(data, indent=1) + "\n")


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:  # a full disk: no half-written file left behind
        temporary.unlink(missing_ok=True)
        raise


def finish(plan: Plan, outdir: Path) -> None:
    """The index, the configs and the checkpoint's other files, each written atomically, after every shard."""
    checkpoint = plan.checkpoint
    if checkpoint.index is not None:
        index = dict(checkpoint.index)
        total = 0
        for entries in plan.shards.values():
            total += sum(e.tensor.nbytes for e in entries)
        index["metadata"] = {**dict(index.get("metadata") or {}), "total_size": total}
        index["weight_map"] = plan.weight_map
        _write_text(outdir / INDEX_NAME, json.dumps(index, indent=2) + "\n")
    hf_quant_config, quantization_config = plan.format.configs(plan.scheme, plan.ignore, plan.input_scales is not None)
    if hf_quant_config is not None:
        _write_text(outdir / "hf_quant_config.json", json.dumps(hf_quant_config, indent=4) + "\n")
    for name in checkpoint.other_files:
        source, target = checkpoint.root / name, outdir / name
        if source.resolve() == outdir.resolve() or source.resolve() in outdir.resolve().parents:
            continue  # OUTDIR inside the checkpoint's folder: not one of its files
        if name == "config.json":
            try:
                config = json.loads(source.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise UsageError(f"cannot read '{source}': {error}") from None
            config["quantization_config"] = quantization_config
            _write_text(target, json.dumps(config, indent=2) + "\n")
        else:
            temporary = target.with_name(f".{name}.partial")
            try:
                if source.is_dir():
                    shutil.rmtree(temporary, ignore_errors=True)
                    shutil.copytree(source, temporary)
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    shutil.copyfile(source, temporary)
                os.replace(temporary, target)
            except BaseException:  # no half-copied file or folder left behind
                if temporary.is_dir():
                    shutil.rmtree(temporary, ignore_errors=True)
                else:
                    temporary.unlink(missing_ok=True)
                raise
