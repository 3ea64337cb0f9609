"""``netdsl run MODEL ...``: check, then execute a model, save its outputs, then print them."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from netdsl import files, memory, view
from netdsl.cli.common import (
    add_input_options,
    add_input_shape_option,
    add_mark_option,
    add_model_arguments,
    bind_recipe,
    check_save_target,
    emit,
    format_output,
    gather_inputs,
    input_files,
    load_model_or_recipe,
    mark,
    write_json,
    writing,
)
from netdsl.cli.progress import estimate, node_elements, progress
from netdsl.diagnostics import UsageError, WeightValueError
from netdsl.model import Recipe
from netdsl.view import Summary

EPILOG = """examples:
  netdsl run examples/quantize.net                         # random inputs, uniform in [-1, 1), seed 1
  netdsl run examples/quantize.net --input input1=x.npy --save out.npz
  netdsl run examples/nvfp4_bf16.net --mark all            # intermediates too, the same bits
  netdsl run MODEL --val-range [-4,4] x:[0,448] --save-inputs used.json
  netdsl run MODEL --json - --quiet                        # outputs as JSON only"""


def add_parser(commands) -> None:
    run = commands.add_parser(
        "run", help="check and execute a model", epilog=EPILOG,
        description="Check a model, run it with TensorRT's numerics, save its outputs if asked, and print each "
                    "output: name, type[shape], and its values (a summary when it has more than 256).")
    add_model_arguments(run)
    add_input_options(run)
    run.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto",
                     help="auto (default): the GPU through CuPy when there is one, else NumPy; the same bits")
    add_mark_option(run, "make layer output NAME (or every layer output: all) an output too, without changing "
                         "a bit of any result (repeatable)")
    run.add_argument("--save", metavar="OUT", help="write the outputs to OUT.npz, OUT.safetensors or OUT.json "
                                                   "(Polygraphy's format)")
    run.add_argument("--save-inputs", metavar="FILE",
                     help="write the inputs the run used (given or random) to FILE.npz, FILE.safetensors or "
                          "FILE.json (Polygraphy's --load-inputs format)")
    run.add_argument("--codes", action="store_true",
                     help="quantized and bfloat16 tensors as raw codes: in --save, and uint8/uint16 input arrays")
    run.add_argument("--json", metavar="FILE",
                     help="write the outputs as JSON (dtype, shape, summary; values when at most 256) to FILE, "
                          "or to stdout with '-' instead of the text")
    add_input_shape_option(run)
    run.add_argument("--memory-limit", metavar="SIZE|none", default="auto", type=_memory_limit,
                     help="refuse a run whose estimated peak memory is over SIZE (8G, 512M; default: the "
                          "memory available now); none: no check")


def _memory_limit(text: str) -> int | str | None:
    if text == "auto":
        return text
    try:
        return memory.parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def outputs_json(results: dict[str, np.ndarray], types: dict[str, Any],
                 summaries: dict[str, Summary]) -> dict[str, Any]:
    """``run --json``: each output's type, shape and summary, and its values when it is small."""
    document = {}
    for name, array in results.items():
        dtype = types[name].dtype
        entry: dict[str, Any] = {"dtype": dtype.name, "shape": list(array.shape),
                                 "summary": view.summary_json(summaries[name])}
        if array.size <= view.PRINT_LIMIT:
            entry["values"] = view.values_json(array, dtype)
        document[name] = entry
    return {"outputs": document}


def run(args: argparse.Namespace) -> int:
    for target in (args.save, args.save_inputs):
        if target is not None:
            check_save_target(target, args)
    network = load_model_or_recipe(args.model, args.input_shape, args.trust_paths)
    if isinstance(network, Recipe):
        network = bind_recipe(network, args)
    network = mark(network, args.mark)
    from netdsl.backends import get_backend

    backend = get_backend(args.backend)
    memory.check(network.graph, backend.name, args.memory_limit)  # before any input is read or drawn
    graph, types = network.graph, network.outputs
    with progress(estimate(graph), args.quiet) as tick:
        inputs = gather_inputs(network, args)
        tick("inputs", sum(array.size for array in inputs.values()))
        if args.save_inputs is not None:
            with writing(args.save_inputs):
                files.write_tensors(args.save_inputs, inputs, {name: t.dtype for name, t in network.inputs.items()},
                                    args.codes, kind="inputs", protect=input_files(args))
        try:
            results = backend.run(graph, inputs, on_node=lambda node: tick(node.outputs[0], node_elements(node, graph)))
        except WeightValueError as error:
            raise UsageError(f"the recipe's input doesn't fit it: {error}") from None
        if args.save is not None:  # before anything is printed: a closed or full stdout can't lose the file
            with writing(args.save):
                files.write_tensors(args.save, results, {name: types[name].dtype for name in results}, args.codes,
                                    protect=input_files(args))
        summaries: dict[str, Summary] = {}  # each computed once, for the JSON and the text, and only where one is shown
        for name, array in results.items():
            if args.json is not None or array.size > view.PRINT_LIMIT and args.json != "-":
                summaries[name] = view.summarize(array, types[name].dtype)
            tick("summary", array.size)
        if args.json is not None:
            write_json(args.json, outputs_json(results, types, summaries))
        text = [] if args.json == "-" else \
            [format_output(name, array, types[name].dtype, summaries.get(name)) for name, array in results.items()]
    for block in text:
        emit(block)
    return 0
