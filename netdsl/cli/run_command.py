"""``netdsl run MODEL ...``: check, then execute a model and print (and save) its outputs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from netdsl import arrays, memory
from netdsl.atomic import write_atomically
from netdsl.cli.common import (
    add_input_options,
    add_input_shape_option,
    format_output,
    gather_inputs,
    load_model,
    write_json,
)
from netdsl.cli.progress import estimate, node_elements, progress
from netdsl.diagnostics import UsageError

EPILOG = """examples:
  netdsl run examples/quantize.net                         # random inputs, uniform in [-1, 1), seed 1
  netdsl run examples/quantize.net --input input1=x.npy --save out.npz
  netdsl run examples/nvfp4_bf16.net --mark all            # intermediates too, the same bits
  netdsl run MODEL --val-range [-4,4] x:[0,448] --save-inputs used.npz
  netdsl run MODEL --json - --quiet                        # outputs as JSON only"""


def add_parser(commands) -> None:
    run = commands.add_parser(
        "run", help="check and execute a model", epilog=EPILOG,
        description="Check a model, run it with TensorRT's numerics and print each output: name, type[shape], "
                    "and its values (a summary when it has more than 256).")
    run.add_argument("model", help="the model: a .net, .yaml or .onnx file")
    add_input_options(run)
    run.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto",
                     help="auto (default): the GPU through CuPy when there is one, else NumPy; the same bits")
    run.add_argument("--mark", action="append", default=[], metavar="NAME|all",
                     help="make layer output NAME (or every layer output: all) an output too, "
                          "without changing a bit of any result (repeatable)")
    run.add_argument("--save", metavar="OUT.npz", help="write the outputs, one entry per output, atomically")
    run.add_argument("--save-inputs", metavar="FILE.npz",
                     help="write the inputs the run used (given or random), in --save's format")
    run.add_argument("--codes", action="store_true",
                     help="save quantized tensors as raw uint8 codes (4-bit types packed two per byte)")
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


def save_tensors(path: str, tensors: dict[str, np.ndarray], types: dict[str, Any], codes: bool) -> None:
    saved = {name: arrays.for_saving(array, types[name].dtype, codes) for name, array in tensors.items()}
    try:
        write_atomically(path, lambda stream: np.savez(stream, **saved))  # type: ignore[arg-type]
    except OSError as error:
        raise UsageError(f"cannot write '{path}': {error.strerror or error}") from None


def outputs_json(results: dict[str, np.ndarray], types: dict[str, Any]) -> dict[str, Any]:
    from netdsl import view

    document = {}
    for name, array in results.items():
        dtype = types[name].dtype
        entry: dict[str, Any] = {"dtype": dtype.name, "shape": list(array.shape),
                                 "summary": view.summary_json(view.summarize(array, dtype))}
        if array.size <= view.PRINT_LIMIT:
            entry["values"] = view.values_json(array, dtype)
        document[name] = entry
    return {"outputs": document}


def run(args: argparse.Namespace) -> int:
    network = load_model(args.model, args.input_shape)
    if args.mark:
        try:
            network = network.marked(args.mark)
        except ValueError as error:
            raise UsageError(f"--mark: {error}") from None
    from netdsl.backends import get_backend

    backend = get_backend(args.backend)
    memory.check(network.graph, backend.name, args.memory_limit)  # before any input is read or drawn
    graph, types = network.graph, network.outputs
    with progress(estimate(graph), args.quiet) as tick:
        inputs = gather_inputs(network, args)
        tick("inputs", sum(array.size for array in inputs.values()))
        if args.save_inputs:
            save_tensors(args.save_inputs, inputs, network.inputs, args.codes)
        results = backend.run(graph, inputs, on_node=lambda node: tick(node.outputs[0], node_elements(node, graph)))
        if args.json:
            write_json(args.json, outputs_json(results, types))
        text = []
        for name, array in results.items():
            if args.json != "-":
                text.append(format_output(name, array, types[name].dtype))
            tick("summary", array.size)
    for line in text:
        print(line)
    sys.stdout.flush()
    if args.save:
        save_tensors(args.save, results, types, args.codes)
    return 0
