"""``netdsl import MODEL.onnx -o OUT.net|OUT.yaml``: an ONNX model's quantization part as a netdsl model,
its constants in ``OUT.npz`` beside it (docs/onnx.md, "Import")."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from netdsl import arrays
from netdsl.cli.common import add_input_shape_option, load_model, write_atomically
from netdsl.diagnostics import UsageError
from netdsl.ir import LoadRef
from netdsl.model import Network

FORMATS = {".net": "net", ".yaml": "yaml", ".yml": "yaml"}


def add_parser(commands) -> None:
    command = commands.add_parser("import", help="write an ONNX model's quantization part as a netdsl model")
    command.add_argument("model", metavar="MODEL.onnx")
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
    write_with_constants(load_model(args.model, args.input_shape), target, form)
    return 0


def write_with_constants(network: Network, target: Path, form: str) -> None:
    """``network`` as a ``form`` model at ``target``, its constants in ``target`` with suffix ``.npz`` (keys:
    the written names), which the model ``load()``s; each file written atomically."""
    from netdsl.frontend.writer import write_model, written_names

    graph = network.graph
    constants_file = target.with_suffix(".npz")
    keys = written_names([value.name for value in graph.constants])
    saved = {}
    for value in graph.constants:
        assert value.type is not None and value.data is not None
        saved[keys[value.name]] = arrays.for_saving(value.data, value.type.dtype)
        value.source = LoadRef(constants_file.name, keys[value.name])
    text = write_model(graph, form, target.parent, target.parent)
    try:
        if saved:
            write_atomically(str(constants_file), lambda stream: np.savez(stream, **saved))  # type: ignore[arg-type]
        write_atomically(str(target), lambda stream: stream.write(text), binary=False)
    except OSError as error:
        raise UsageError(f"cannot write '{target}': {error.strerror or error}") from None
