"""``netdsl export MODEL -o OUT.onnx``: write a model as ONNX (docs/onnx.md, "Export")."""

from __future__ import annotations

import argparse

from netdsl import files
from netdsl.cli.common import add_input_shape_option, add_model_arguments, load_model, writing
from netdsl.diagnostics import UsageError

EPILOG = """examples:
  netdsl export examples/quantize.net -o quantize.onnx
  netdsl export examples/nvfp4_bf16.net -o nvfp4.onnx    # DynamicQuantize in TensorRT's trt domain"""


def add_parser(commands) -> None:
    export = commands.add_parser(
        "export", help="write a model as an ONNX file", epilog=EPILOG,
        description="Write a checked model as ONNX, each layer at the lowest opset that holds it "
                    "(docs/onnx.md, \"Export\").")
    add_model_arguments(export)
    export.add_argument("-o", "--output", metavar="OUT.onnx", required=True, help="the ONNX file to write")
    add_input_shape_option(export)


def run(args: argparse.Namespace) -> int:
    from netdsl.interop.onnx import export_model, require_onnx

    if not args.output.lower().endswith(".onnx"):
        raise UsageError(f"export writes an .onnx file, not '{args.output}'")
    require_onnx()
    with writing(args.output):
        files.check_target(args.output, [args.model])
    network = load_model(args.model, args.input_shape, args.trust_paths)
    data = export_model(network.graph).SerializeToString()
    with writing(args.output):
        files.write_atomically(args.output, lambda stream: stream.write(data), protect=[args.model])
    return 0
