"""``netdsl import MODEL.onnx -o OUT.net|OUT.yaml``: an ONNX model's quantization part as a netdsl model,
its constants in ``OUT.npz`` beside it (docs/onnx.md, "Import")."""

from __future__ import annotations

import argparse
from pathlib import Path

from netdsl import files
from netdsl.cli.common import add_input_shape_option, add_model_arguments, load_model, writing
from netdsl.diagnostics import UsageError
from netdsl.ir import LoadRef

FORMATS = {".net": "net", ".yaml": "yaml", ".yml": "yaml"}


def add_parser(commands) -> None:
    command = commands.add_parser("import", help="write an ONNX model's quantization part as a netdsl model")
    add_model_arguments(command, "MODEL.onnx")
    command.add_argument("-o", "--output", metavar="OUT.net", required=True,
                         help="the model to write (.net or .yaml); its constants go to OUT.npz beside it")
    add_input_shape_option(command)


def run(args: argparse.Namespace) -> int:
    from netdsl.frontend.writer import write_model, written_names

    if not args.model.lower().endswith(".onnx"):
        raise UsageError(f"import reads an .onnx model, not '{args.model}' (convert reads .net and .yaml)")
    target = Path(args.output)
    form = FORMATS.get(target.suffix.lower())
    if form is None:
        raise UsageError(f"import writes a .net or .yaml model, not '{args.output}'")
    constants_file = target.with_suffix(".npz")
    for path in (args.output, str(constants_file)):
        with writing(path):
            files.check_target(path, [args.model])
    network = load_model(args.model, args.input_shape, args.trust_paths)
    graph = network.graph
    keys = written_names([value.name for value in graph.constants])
    saved, types = {}, {}
    for value in graph.constants:
        assert value.type is not None and value.data is not None
        saved[keys[value.name]], types[keys[value.name]] = value.data, value.type.dtype
        value.source = LoadRef(constants_file.name, keys[value.name])
    data = write_model(graph, form, target.parent, target.parent).encode("utf-8")
    if saved:
        with writing(str(constants_file)):
            files.write_tensors(constants_file, saved, types, protect=[args.model])
    with writing(args.output):
        files.write_atomically(args.output, lambda stream: stream.write(data), [args.model])
    return 0
