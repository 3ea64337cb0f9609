"""``netdsl graph MODEL -o FILE``: draw a model (SVG, PNG, HTML or DOT, by FILE's extension)."""

from __future__ import annotations

import argparse
from pathlib import Path

from netdsl import files
from netdsl.cli.common import add_mark_option, add_model_arguments, emit, load_model, mark, writing

EPILOG = """examples:
  netdsl graph examples/nvfp4_bf16.net -o nvfp4.svg     # open in a browser
  netdsl graph examples/mxfp8.net -o mxfp8.html         # the SVG in a page, with a legend of the formats
  netdsl graph MODEL -o model.dot                       # Graphviz source only (no 'dot' program needed)

Needs the graphviz package (pip install "netdsl[graph]") and, except for .dot, Graphviz's 'dot' program."""


def add_parser(commands) -> None:
    graph = commands.add_parser(
        "graph", help="draw a model: layers and tensors, coloured by number format", epilog=EPILOG,
        description="Draw a checked model: each tensor with its type[shape] and provenance, filled with the "
                    "colour of its number format; each layer with its op, granularity and block shape.")
    add_model_arguments(graph)
    graph.add_argument("-o", "--output", metavar="FILE", required=True,
                       help="where to write the picture; the extension picks the format: .svg, .png, .html, "
                            ".dot/.gv")
    add_mark_option(graph, "draw layer output NAME (or every layer output: all) as an output (repeatable)")


def run(args: argparse.Namespace) -> int:
    from netdsl.render import render

    network = mark(load_model(args.model, trust_paths=args.trust_paths), args.mark)
    image = render(network.graph, Path(args.output).suffix.lower())
    with writing(args.output):
        files.write_atomically(args.output, lambda stream: stream.write(image), protect=[args.model])
    emit(f"wrote {args.output}")
    return 0
