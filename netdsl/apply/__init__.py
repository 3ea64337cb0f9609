"""``netdsl apply``: a recipe over a whole safetensors checkpoint (docs/checkpoints.md, docs/scale.md).

:func:`apply` checks everything it can before writing (the checkpoint's shards and index, the tensors the
recipe takes, every distinct shape against the recipe, the format's rules), then writes the output shards
one at a time, in this process or on Dask, and the index, configs and other files last.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from netdsl.diagnostics import UsageError

if TYPE_CHECKING:
    from netdsl.apply.plan import Plan

#: the checkpoint layouts ``--format`` takes (netdsl.apply.formats writes them); here, without NumPy, for the
#: command line's parser
FORMATS = ("modelopt", "compressed-tensors")


def apply(recipe: str | Path, checkpoint: str | Path, outdir: str | Path, format: str = "modelopt",
          include: list[str] | None = None, exclude: list[str] | None = None, backend: str = "auto",
          input_scales: str | Path | None = None, workers: int | None = None, scheduler: str | None = None,
          gpus: int | None = None, progress: Callable[[int, int], None] | None = None,
          task_size: int | str | None = "auto") -> Plan:
    """Apply ``recipe`` to every tensor of ``checkpoint`` it takes, writing ``outdir``; returns the plan.

    ``progress(done_bytes, total_bytes)`` is called as the checkpoint is read. On Dask, ``task_size`` bounds
    one task's input in bytes: a larger shard is split into tasks by tensor groups (docs/scale.md); "auto"
    is 4 x the largest fused group or tensor, None never splits. Raises UsageError (bad options, a
    checkpoint or tensor the recipe can't take), ModelError (a shape the recipe's layers reject, located in
    the recipe)."""
    try:
        import safetensors  # noqa: F401  (read here: a missing extra is a usage error before any work)
    except ImportError:
        raise UsageError('netdsl apply needs safetensors: pip install "netdsl[apply]"') from None
    from netdsl.apply.timing import TIMING

    started = time.perf_counter()
    on_dask = workers is not None or scheduler is not None or gpus is not None
    # imported here, not with the package: the command line lists `apply` without loading ml_dtypes
    from netdsl.apply.checkpoint import open_checkpoint
    from netdsl.apply.plan import make_plan, read_input_scales
    from netdsl.apply.run import Manifest, finish, write_shards
    from netdsl.apply.safetensors_io import CheckpointError

    if backend in ("cupy", "auto") and not on_dask:  # CUDA made ready in a thread while the checkpoint is planned
        threading.Thread(target=_gpu_start, name="netdsl-cuda-warm-up", daemon=True).start()
    try:
        source = open_checkpoint(Path(checkpoint))
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    scales = read_input_scales(Path(input_scales)) if input_scales is not None else None
    plan = make_plan(Path(recipe), source, format, list(include or []), exclude, scales)
    if backend != "numpy":
        from netdsl.backends import get_backend

        backend = get_backend(backend).name  # a usage error now, not in a worker
    from netdsl import settings

    # a bad $NETDSL_APPLY_SHARDS, $NETDSL_APPLY_FSYNC or $NETDSL_APPLY_READ is a usage error before OUTDIR is made
    settings.apply_shards()
    settings.apply_fsync()
    settings.apply_read()
    out = Path(outdir)
    if task_size != "auto" and not on_dask:
        raise UsageError("--task-size splits shards into Dask tasks: give it with --workers, --scheduler or --gpus")
    task_bytes: int | None
    if task_size == "auto":
        task_bytes = plan.default_task_bytes()
    elif task_size is None or isinstance(task_size, int) and task_size > 0:
        task_bytes = task_size
    else:
        raise UsageError(f"--task-size takes a size > 0, auto or none; got {task_size!r}")
    if on_dask:
        from netdsl.apply.scheduler import dask_client, run_on_dask
    try:
        with dask_client(workers, scheduler, gpus) if on_dask else nullcontext() as client:
            manifest = Manifest.open(out, plan.settings)
            todo = [shard for shard in plan.shards if not manifest.finished(shard, out)]
            total = source.size
            done = [total - sum(plan.input_bytes(s) for s in todo)]

            def advance(nbytes: int) -> None:
                done[0] += nbytes
                if progress:
                    progress(done[0], total)

            advance(0)
            TIMING.add("plan", time.perf_counter() - started)
            manifest.complete = False
            if todo:
                manifest.save()
            try:
                if on_dask:
                    run_on_dask(client, plan, todo, out, backend, manifest, advance, task_bytes)
                else:
                    write_shards(plan, todo, str(out), backend, advance, manifest.record)
            except CheckpointError as error:
                raise UsageError(str(error)) from None
        with TIMING.phase("finish"):
            finish(plan, out)
            manifest.complete = True
            manifest.save()
    except OSError as error:  # the output's disk (full, read-only, gone) or a file that went away mid-run
        where = error.filename if error.filename is not None else out
        raise UsageError(f"{error.strerror or error}: '{where}' (the shards already in place are kept: the "
                         f"same command started again resumes)") from None
    return plan


def _gpu_start() -> None:
    """The GPU made ready for the first shard's launches (netdsl.backends.cupy.device.make_ready), counted by
    ``--timing`` as "gpu start". Started once :func:`apply` has imported its own modules, not before: CuPy's
    import calls the driver with the GIL held, so beside the driver's start (netdsl.cuda_start) it stalled
    every thread (plan 0.18 s became 0.88 s on the H100 machine, benchmarks/results-apply.md)."""
    from netdsl.apply.timing import TIMING

    with TIMING.phase("gpu start"):
        from netdsl.backends.cupy.device import make_ready

        make_ready()


__all__ = ["FORMATS", "apply"]
