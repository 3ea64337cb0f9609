"""``netdsl run MODEL ...``: check, then execute a model, save its outputs, then print them."""

from __future__ import annotations

import argparse

from netdsl import files, memory
from netdsl.cli.common import (
    add_input_options,
    add_input_shape_option,
    add_model_arguments,
    bind_recipe,
    check_save_target,
    emit,
    format_output,
    gather_inputs,
    input_files,
    load_model_or_recipe,
    writing,
)
from netdsl.diagnostics import UsageError, WeightValueError
from netdsl.model import Recipe


def add_parser(commands) -> None:
    run = commands.add_parser("run", help="check and execute a model")
    add_model_arguments(run)
    add_input_options(run)
    run.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto")
    run.add_argument("--save", metavar="OUT", help="write the outputs to OUT.npz, OUT.safetensors or OUT.json "
                                                   "(Polygraphy's format)")
    run.add_argument("--codes", action="store_true",
                     help="quantized and bfloat16 tensors as raw codes: in --save, and uint8/uint16 input arrays")
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


def run(args: argparse.Namespace) -> int:
    if args.save is not None:
        check_save_target(args.save, args)
    network = load_model_or_recipe(args.model, args.input_shape, args.trust_paths)
    if isinstance(network, Recipe):
        network = bind_recipe(network, args)
    from netdsl.backends import get_backend

    backend = get_backend(args.backend)
    memory.check(network.graph, backend.name, args.memory_limit)  # before any input is read or drawn
    inputs = gather_inputs(network, args)
    try:
        results = backend.run(network.graph, inputs)
    except WeightValueError as error:
        raise UsageError(f"the recipe's input doesn't fit it: {error}") from None
    types = network.outputs
    if args.save is not None:  # before anything is printed: a closed or full stdout can't lose the file
        with writing(args.save):
            files.write_tensors(args.save, results, {name: types[name].dtype for name in results}, args.codes,
                                protect=input_files(args))
    for name, array in results.items():
        emit(format_output(name, array, types[name].dtype))
    return 0
