"""``netdsl run MODEL ...``: check, then execute a model and print (and save) its outputs."""

from __future__ import annotations

import argparse

import numpy as np

from netdsl import arrays, memory
from netdsl.atomic import write_atomically
from netdsl.cli.common import (
    add_input_options,
    add_input_shape_option,
    bind_recipe,
    format_output,
    gather_inputs,
    load_model_or_recipe,
)
from netdsl.diagnostics import UsageError, WeightValueError
from netdsl.model import Recipe


def add_parser(commands) -> None:
    run = commands.add_parser("run", help="check and execute a model")
    run.add_argument("model")
    add_input_options(run)
    run.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto")
    run.add_argument("--save", metavar="OUT.npz")
    run.add_argument("--codes", action="store_true", help="save quantized outputs as raw uint8 codes")
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
    network = load_model_or_recipe(args.model, args.input_shape)
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
    for name, array in results.items():
        print(format_output(name, array, types[name].dtype))
    if args.save:
        saved = {name: arrays.for_saving(array, types[name].dtype, args.codes) for name, array in results.items()}
        try:
            write_atomically(args.save, lambda stream: np.savez(stream, **saved))  # type: ignore[arg-type]
        except OSError as error:
            raise UsageError(f"cannot write '{args.save}': {error.strerror or error}") from None
    return 0
