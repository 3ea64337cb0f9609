"""``netdsl convert MODEL --to net|yaml [-o FILE]``: write a model in the other form."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from netdsl.atomic import write_atomically
from netdsl.cli.common import add_input_shape_option, load_model_or_recipe
from netdsl.diagnostics import UsageError
from netdsl.model import Network


def add_parser(commands) -> None:
    convert = commands.add_parser("convert", help="write a model in the other form")
    convert.add_argument("model")
    convert.add_argument("--to", choices=("net", "yaml"), required=True)
    convert.add_argument("-o", "--output", metavar="FILE")
    add_input_shape_option(convert)


def run(args: argparse.Namespace) -> int:
    from netdsl.frontend.writer import write_model

    network = load_model_or_recipe(args.model, args.input_shape)
    if args.model.lower().endswith(".onnx"):  # as netdsl import: the constants go to a file beside the output
        from netdsl.cli.import_command import write_with_constants

        if not args.output:
            raise UsageError("converting an ONNX model writes its constants beside the model: give -o FILE")
        assert isinstance(network, Network)  # an ONNX model has fixed shapes
        write_with_constants(network, Path(args.output), args.to)
        return 0
    target_dir = Path(args.output).parent if args.output else Path.cwd()
    # a recipe's graph as written (unchecked): the writer reads only what it shares with a checked graph
    text = write_model(network.graph, args.to, Path(args.model).parent, target_dir)  # type: ignore[arg-type]
    if args.output:
        try:
            write_atomically(args.output, lambda stream: stream.write(text), binary=False)
        except OSError as error:
            raise UsageError(f"cannot write '{args.output}': {error.strerror or error}") from None
    else:
        sys.stdout.write(text)
    return 0
