"""Running the shards on Dask (``--workers N``, ``--scheduler ADDRESS``, ``--gpus N``): one task per output
shard, or, for a shard whose input is over the task bound, one task per run of its tensor groups whose
parts a last task assembles into the shard (docs/scale.md). Each is written by its worker straight into
OUTDIR (a folder every worker sees), atomically; the client records each finished shard and part in the
manifest. Every task runs the code a single process runs, so the bytes are the same."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from netdsl.apply.plan import Plan
from netdsl.apply.run import Manifest, assemble_shard, part_name, write_part, write_shard
from netdsl.diagnostics import UsageError


@contextmanager
def dask_client(workers: int | None, address: str | None, gpus: int | None) -> Iterator[Any]:
    """A Dask client: a local cluster of ``workers`` processes (one thread each), one worker per GPU with
    dask-cuda, or the running scheduler at ``address``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError('--workers, --gpus and --scheduler need Dask: pip install "netdsl[dask]"') from None
    if address is not None:
        try:
            client = Client(address, timeout="30s")
        except (OSError, TimeoutError) as error:
            raise UsageError(f"cannot reach the Dask scheduler at '{address}': {error}") from None
        with client:
            yield client
        return
    if gpus is not None:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise UsageError('--gpus needs dask-cuda: pip install "netdsl[dask-cuda]"') from None
        _check_gpus(gpus)
        cluster = LocalCUDACluster(n_workers=gpus, threads_per_worker=1, dashboard_address=None)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, Client(cluster) as client:
        yield client


def run_on_dask(client: Any, plan: Plan, shards: list[str], outdir: Path, backend: str, manifest: Manifest,
                advance: Callable[[int], None], task_bytes: int | None) -> None:
    """Submit the shards' tasks and record each in ``manifest`` as it finishes (in any order), calling
    ``advance(input bytes)`` for the work done. A shard whose input is over ``task_bytes`` is split into
    parts (:meth:`Plan.parts`), each a task; a last task, which Dask starts when they are done, assembles
    the shard from them. Parts an earlier run finished (in the manifest, intact) are not run again. The
    first failure cancels the rest and is raised here."""
    from distributed import as_completed

    shared = client.scatter(plan, broadcast=True)
    tasks: dict[Any, tuple[str, str, tuple[int, int] | None]] = {}  # future -> (kind, shard, part)
    for i, shard in enumerate(shards):
        parts = plan.parts(shard, task_bytes)
        if len(parts) == 1:
            future = client.submit(write_shard, shared, shard, str(outdir), backend, key=f"netdsl-apply-{i}-{shard}",
                                   pure=False)
            tasks[future] = ("shard", shard, None)
            continue
        running = []
        for part in parts:
            name = part_name(shard, part)
            if manifest.part_finished(name, outdir):
                advance(plan.part_input_bytes(shard, part))
                continue
            future = client.submit(write_part, shared, shard, part, str(outdir), backend,
                                   key=f"netdsl-apply-{i}-{name}", pure=False)
            tasks[future] = ("part", shard, part)
            running.append(future)
        future = client.submit(assemble_shard, shared, shard, parts, str(outdir), *running,
                               key=f"netdsl-apply-{i}-{shard}-assemble", pure=False)
        tasks[future] = ("assembled", shard, None)
    try:
        for future in as_completed(list(tasks)):
            kind, shard, piece = tasks[future]
            name, sha256 = future.result()
            if piece is not None:
                manifest.record_part(name, sha256)
                advance(plan.part_input_bytes(shard, piece))
            else:
                manifest.record(name, sha256)
                if kind == "shard":
                    advance(plan.input_bytes(shard))
    finally:
        client.cancel(list(tasks))


def _check_gpus(gpus: int) -> None:
    """A usage error, before any cluster starts, when fewer than ``gpus`` GPUs are visible (dask-cuda counts
    CUDA_VISIBLE_DEVICES when set, else asks NVML, as LocalCUDACluster does)."""
    import pynvml  # dask-cuda's own dependency (nvidia-ml-py)
    from dask_cuda.utils import get_n_gpus

    try:
        visible = get_n_gpus()
    except pynvml.NVMLError as error:
        raise UsageError(f"--gpus {gpus}: no NVIDIA GPU found (NVML: {error})") from None
    if gpus > visible:
        where = " (CUDA_VISIBLE_DEVICES)" if "CUDA_VISIBLE_DEVICES" in os.environ else ""
        raise UsageError(f"--gpus {gpus}: only {visible} GPU{'' if visible == 1 else 's'} visible{where}")
