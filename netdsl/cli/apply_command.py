"""``netdsl apply RECIPE CHECKPOINT -o OUTDIR ...``: a recipe over a whole safetensors checkpoint
(docs/checkpoints.md; Dask and resuming: docs/scale.md)."""

from __future__ import annotations

import argparse
import sys

from netdsl.apply import FORMATS

EPILOG = """examples:
  netdsl apply examples/recipes/nvfp4_weights.net ./llama -o ./llama-nvfp4            # ModelOpt layout, W4A16
  netdsl apply examples/recipes/nvfp4_weights.net ./llama -o OUT --input-scales amax.json   # W4A4 NVFP4
  netdsl apply examples/recipes/int4_block128_weights.net ./llama -o OUT --format compressed-tensors
  netdsl apply examples/recipes/nvfp4_weights_reciprocal.net ./llama -o OUT --format compressed-tensors
  netdsl apply RECIPE ./llama -o OUT --workers 8        # shards on a local Dask cluster (docs/scale.md)
  netdsl apply RECIPE ./llama -o OUT --workers 8 --task-size 2G   # shards over 2 GB in several tasks"""


def add_parser(commands) -> None:
    apply = commands.add_parser(
        "apply", help="quantize a safetensors checkpoint with a recipe", epilog=EPILOG,
        description="Run a recipe (a network whose input is the weight) over every weight of a safetensors "
                    "checkpoint and write it in the layout vLLM and TensorRT-LLM load (docs/checkpoints.md).")
    apply.add_argument("recipe", help="the recipe: a .net or .yaml network with one input, the weight")
    apply.add_argument("checkpoint", help="a .safetensors file, or a folder of shards with its index")
    apply.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                       help="the output folder (new or empty, or an interrupted run's to resume it)")
    apply.add_argument("--format", choices=FORMATS, default="modelopt",
                       help="the checkpoint layout and quantization config (default: modelopt)")
    apply.add_argument("--include", action="append", default=[], metavar="GLOB",
                       help="tensors the recipe takes (default: *.weight of the recipe's rank)")
    apply.add_argument("--exclude", action="append", default=None, metavar="GLOB",
                       help="tensors left unchanged (default: embeddings, lm_head, MoE routers)")
    where = apply.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="run the shards on a local Dask cluster")
    where.add_argument("--scheduler", metavar="ADDRESS", help="run the shards on a running Dask cluster")
    where.add_argument("--gpus", type=int, metavar="N", help="one Dask worker per GPU (dask-cuda)")
    apply.add_argument("--task-size", default="auto", metavar="SIZE",
                       help="on Dask, split a shard whose input is larger than SIZE (512M, 2G) into tasks by "
                            "tensor groups; auto: 4x the largest fused group or tensor; none: one task a shard")
    apply.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto",
                       help="where the recipe runs (default: the GPU when CuPy and a device are there)")
    apply.add_argument("--input-scales", metavar="FILE.json",
                       help="calibrated activation amax per layer: writes each layer's activation scale "
                            "(input_scale; compressed-tensors: input_global_scale) and the W4A4 label")
    apply.add_argument("--no-progress", action="store_true", help="no progress bar")
    apply.add_argument("--timing", action="store_true",
                       help="print where the time went (busy seconds per phase) to stderr at the end")


def run(args: argparse.Namespace) -> int:
    if args.backend in ("auto", "cupy") and args.workers is None and args.scheduler is None and args.gpus is None:
        from netdsl.cuda_start import start_in_background

        start_in_background()  # the driver and the context start while the imports below run
    from netdsl.apply import apply
    from netdsl.diagnostics import UsageError

    for option in ("workers", "gpus"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise UsageError(f"--{option} takes a number >= 1, got {value}")
    task_size = args.task_size
    if task_size != "auto":
        from netdsl.memory import parse_size

        try:
            task_size = parse_size(task_size)
        except ValueError as error:
            raise UsageError(f"--task-size: {error}") from None
    bar = None
    if not args.no_progress:
        try:
            from tqdm import tqdm
        except ImportError:
            raise UsageError('the progress bar needs tqdm: pip install "netdsl[apply]" '
                             '(or give --no-progress)') from None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            bar = tqdm(total=total, unit="B", unit_scale=True, desc="apply", file=sys.stderr, disable=None)
        bar.update(done - bar.n)

    from time import perf_counter

    from netdsl.apply.timing import TIMING

    TIMING.reset(args.timing)
    started = perf_counter()
    try:
        plan = apply(args.recipe, args.checkpoint, args.output, format=args.format, include=args.include,
                     exclude=args.exclude, backend=args.backend, input_scales=args.input_scales,
                     workers=args.workers, scheduler=args.scheduler, gpus=args.gpus, progress=progress,
                     task_size=task_size)
    finally:
        if bar is not None:
            bar.close()
    if args.timing:
        print(TIMING.report(perf_counter() - started, plan.checkpoint.size), file=sys.stderr)
    quantized = sum(len(g.members) for g in plan.groups)
    print(f"{args.output}: {quantized} tensors quantized ({plan.scheme.kind}, {plan.format.name}), "
          f"{len(plan.shards)} shard{'s' if len(plan.shards) != 1 else ''}")
    return 0
