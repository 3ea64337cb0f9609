"""``netdsl convert MODEL --to net|yaml [-o FILE]``: write a model in the other form."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from netdsl.atomic import write_atomically
from netdsl.cli.common import add_input_shape_option, load_model
from netdsl.diagnostics import UsageError

EPILOG = """examples:
  netdsl convert examples/quantize.net --to yaml            # the YAML form on stdout
  netdsl convert model.yaml --to net -o model.net"""


def add_parser(commands) -> None:
    convert = commands.add_parser(
        "convert", help="write a model in the other form", epilog=EPILOG,
        description="Write a checked model as text (.net) or YAML; converting back gives the same graph "
                    "(comments and literal expressions are not kept).")
    convert.add_argument("model", help="the model: a .net, .yaml or .onnx file")
    convert.add_argument("--to", choices=("net", "yaml"), required=True, help="the form to write")
    convert.add_argument("-o", "--output", metavar="FILE",
                         help="write to FILE (atomically) instead of stdout; load() paths are rewritten "
                              "relative to FILE's folder")
    add_input_shape_option(convert)


def run(args: argparse.Namespace) -> int:
    from netdsl.frontend.writer import write_model

    network = load_model(args.model, args.input_shape)
    if args.model.lower().endswith(".onnx"):  # as netdsl import: the constants go to a file beside the output
        from netdsl.cli.import_command import write_with_constants

        if not args.output:
            raise UsageError("converting an ONNX model writes its constants beside the model: give -o FILE")
        write_with_constants(network, Path(args.output), args.to)
        return 0
    target_dir = Path(args.output).parent if args.output else Path.cwd()
    text = write_model(network.graph, args.to, Path(args.model).parent, target_dir)
    if args.output:
        try:
            write_atomically(args.output, lambda stream: stream.write(text), binary=False)
        except OSError as error:
            raise UsageError(f"cannot write '{args.output}': {error.strerror or error}") from None
    else:
        sys.stdout.write(text)
    return 0
