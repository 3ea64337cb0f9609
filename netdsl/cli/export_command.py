"""``netdsl export MODEL -o OUT.onnx``: write a model as ONNX (docs/onnx.md, "Export")."""

from __future__ import annotations

import argparse

from netdsl.cli.common import add_input_shape_option, load_model, write_atomically
from netdsl.diagnostics import UsageError


def add_parser(commands) -> None:
    export = commands.add_parser("export", help="write a model as an ONNX file")
    export.add_argument("model")
    export.add_argument("-o", "--output", metavar="OUT.onnx", required=True)
    add_input_shape_option(export)


def run(args: argparse.Namespace) -> int:
    from netdsl.interop.onnx import export_model, require_onnx

    if not args.output.lower().endswith(".onnx"):
        raise UsageError(f"export writes an .onnx file, not '{args.output}'")
    require_onnx()
    network = load_model(args.model, args.input_shape)
    data = export_model(network.graph).SerializeToString()
    try:
        write_atomically(args.output, lambda stream: stream.write(data))
    except OSError as error:
        raise UsageError(f"cannot write '{args.output}': {error.strerror or error}") from None
    return 0
