"""``netdsl import MODEL.onnx -o OUT.net|OUT.yaml``: an ONNX model's quantization part as a netdsl model,
its constants in ``OUT.npz`` beside it (docs/onnx.md, "Import")."""

from __future__ import annotations

import argparse
from pathlib import Path

from netdsl import files
from netdsl.cli.common import add_input_shape_option, add_model_arguments, load_model, writing
from netdsl.diagnostics import UsageError
from netdsl.ir import LoadRef
from netdsl.model import Network

FORMATS = {".net": "net", ".yaml": "yaml", ".yml": "yaml"}


EPILOG = """examples:
  netdsl import model.onnx -o model.net        # model.net, its constants in model.npz beside it
  netdsl import model.onnx -o model.yaml --input-shape x:1,64"""


def add_parser(commands) -> None:
    command = commands.add_parser(
        "import", help="write an ONNX model's quantization part as a netdsl model", epilog=EPILOG,
        description="Read an ONNX model's Quantize/Dequantize part and write it as a netdsl model "
                    "(docs/onnx.md, \"Import\").")
    add_model_arguments(command, "MODEL.onnx", "the ONNX model to read")
    command.add_argument("-o", "--output", metavar="OUT.net", required=True,
                         help="the model to write (.net or .yaml); its constants go to OUT.npz beside it")
    add_input_shape_option(command)


def run(args: argparse.Namespace) -> int:
    if not args.model.lower().endswith(".onnx"):
        raise UsageError(f"import reads an .onnx model, not '{args.model}' (convert reads .net and .yaml)")
    target = Path(args.output)
    form = FORMATS.get(target.suffix.lower())
    if form is None:
        raise UsageError(f"import writes a .net or .yaml model, not '{args.output}'")
    check_targets(target, args.model)
    write_with_constants(load_model(args.model, args.input_shape, args.trust_paths), target, form, [args.model])
    return 0


def check_targets(target: Path, model: str) -> None:
    """The model file and its constants file, checked before the model is read (netdsl/files.py)."""
    for path in (str(target), str(target.with_suffix(".npz"))):
        with writing(path):
            files.check_target(path, [model])


def write_with_constants(network: Network, target: Path, form: str, protect: list[str]) -> None:
    """``network`` as a ``form`` model at ``target``, its constants in ``target`` with suffix ``.npz`` (keys:
    the written names), which the model ``load()``s; each file written atomically, never over ``protect``."""
    from netdsl.frontend.writer import write_model, written_names

    graph = network.graph
    constants_file = target.with_suffix(".npz")
    keys = written_names([value.name for value in graph.constants])
    saved, types = {}, {}
    for value in graph.constants:
        assert value.type is not None and value.data is not None
        saved[keys[value.name]], types[keys[value.name]] = value.data, value.type.dtype
        value.source = LoadRef(constants_file.name, keys[value.name])
    data = write_model(graph, form, target.parent, target.parent).encode("utf-8")
    if saved:
        with writing(str(constants_file)):
            files.write_tensors(constants_file, saved, types, protect=protect)
    with writing(str(target)):
        files.write_atomically(target, lambda stream: stream.write(data), protect=protect)
