"""Running the shards on Dask (``--workers N``, ``--scheduler ADDRESS``, ``--gpus N``): one task per output
shard, each written by its worker straight into OUTDIR (a folder every worker sees), atomically; the
client records each finished shard in the manifest. Every task runs :func:`write_shard`, the code a single
process runs, so the bytes are the same."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from netdsl.apply.plan import Plan
from netdsl.apply.run import write_shard
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


def run_on_dask(client: Any, plan: Plan, shards: list[str], outdir: str, backend: str,
                done: Callable[[str, str], None]) -> None:
    """Submit one task per shard and call ``done(shard, sha256)`` as each finishes (in any order); the first
    failure cancels the rest and is raised here."""
    from distributed import as_completed

    shared = client.scatter(plan, broadcast=True)
    futures = [client.submit(write_shard, shared, shard, outdir, backend, key=f"netdsl-apply-{i}-{shard}",
                             pure=False) for i, shard in enumerate(shards)]
    try:
        for future in as_completed(futures):
            done(*future.result())
    finally:
        client.cancel(futures)


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
