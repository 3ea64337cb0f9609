"""``netdsl check MODEL [-v] [--json FILE]``: validate a model and print ok."""

from __future__ import annotations

import argparse

from netdsl.cli.common import add_input_shape_option, add_model_arguments, emit, load_model_or_recipe, write_json
from netdsl.diagnostics import UsageError
from netdsl.model import Network

EPILOG = """examples:
  netdsl check examples/quantize.net            # prints ok, or FILE:LINE:COL: error: ... (exit 1)
  netdsl check -v examples/nvfp4_bf16.net       # every tensor's type, provenance, each layer's granularity
  netdsl check --json - examples/quantize.net   # the checked graph as JSON on stdout"""


def add_parser(commands) -> None:
    check = commands.add_parser(
        "check", help="validate a model and print ok", epilog=EPILOG,
        description="Parse and check a model: syntax, shapes, types and every TensorRT layer constraint.")
    add_model_arguments(check)
    check.add_argument("-v", "--verbose", action="store_true",
                       help="print the checked graph: each tensor's type[shape] and where its values come from "
                            "(input, constant, folded, dynamic scale, computed), constants in brief, and each "
                            "layer's granularity and mode")
    check.add_argument("--json", metavar="FILE",
                       help="write the checked graph as JSON (tensors with type, shape and provenance; layers "
                            "with granularity) to FILE, or to stdout with '-'")
    add_input_shape_option(check)


def run(args: argparse.Namespace) -> int:
    network = load_model_or_recipe(args.model, args.input_shape, args.trust_paths)
    if args.json:
        if not isinstance(network, Network):
            raise UsageError("--json lists a checked graph: a recipe is checked for each shape it meets "
                             "(netdsl run --input NAME=FILE.npy binds one)")
        from netdsl.view import graph_json

        write_json(args.json, graph_json(network.graph))
        if args.json == "-":
            return 0
    if args.verbose:
        emit(network.describe(), end="")
    emit("ok (a recipe: checked again for each shape it meets)" if network.recipe else "ok")
    return 0
