"""``netdsl convert MODEL --to net|yaml [-o FILE]``: write a model in the other form."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from netdsl import files
from netdsl.cli.common import add_input_shape_option, add_model_arguments, emit, load_model_or_recipe, writing
from netdsl.diagnostics import UsageError
from netdsl.model import Network

EPILOG = """examples:
  netdsl convert examples/quantize.net --to yaml            # the YAML form on stdout
  netdsl convert model.yaml --to net -o model.net"""


def add_parser(commands) -> None:
    convert = commands.add_parser(
        "convert", help="write a model in the other form", epilog=EPILOG,
        description="Write a checked model as text (.net) or YAML; converting back gives the same graph "
                    "(comments and literal expressions are not kept).")
    add_model_arguments(convert)
    convert.add_argument("--to", choices=("net", "yaml"), required=True, help="the form to write")
    convert.add_argument("-o", "--output", metavar="FILE",
                         help="write to FILE (atomically) instead of stdout; load() paths are rewritten "
                              "relative to FILE's folder")
    add_input_shape_option(convert)


def run(args: argparse.Namespace) -> int:
    from netdsl.frontend.writer import write_model

    onnx = args.model.lower().endswith(".onnx")
    if onnx and not args.output:
        raise UsageError("converting an ONNX model writes its constants beside the model: give -o FILE")
    if args.output is not None:
        if onnx:
            from netdsl.cli.import_command import check_targets

            check_targets(Path(args.output), args.model)
        else:
            with writing(args.output):
                files.check_target(args.output, [args.model])
    network = load_model_or_recipe(args.model, args.input_shape, args.trust_paths)
    if onnx:  # as netdsl import: the constants go to a file beside the output
        from netdsl.cli.import_command import write_with_constants

        assert isinstance(network, Network)  # an ONNX model has fixed shapes
        write_with_constants(network, Path(args.output), args.to, [args.model])
        return 0
    target_dir = Path(args.output).parent if args.output else Path.cwd()
    # a recipe's graph as written (unchecked): the writer reads only what it shares with a checked graph
    text = write_model(network.graph, args.to, Path(args.model).parent, target_dir)  # type: ignore[arg-type]
    outside = []  # the written model reads its files from its own folder
    for value in network.graph.constants:
        if value.source is not None and value.source.path not in outside:
            try:
                files.confined(Path(args.model).parent.resolve() / value.source.path, target_dir)
            except files.FileError:
                outside.append(value.source.path)
    if outside:
        print(f"netdsl: warning: the written model's load() reads {', '.join(map(repr, outside))} from outside its "
              f"folder: run it with --trust-paths, or move the files beside it", file=sys.stderr)
    if args.output is not None:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise UsageError(f"cannot write '{args.output}': the model holds text that is not valid Unicode "
                             f"({error.object[error.start:error.end]!r}), such as a load() path that is not "
                             f"UTF-8") from None
        with writing(args.output):
            files.write_atomically(args.output, lambda stream: stream.write(data), protect=[args.model])
    else:
        emit(text, end="")
    return 0
