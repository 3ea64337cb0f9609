"""A picture of a checked network (``netdsl graph``, docs/cli.md): tensors and layers laid out by Graphviz.

Tensors are drawn with their type[shape] and provenance, filled with the colour of their number format;
layers with their op, granularity and block shape. The `graphviz` Python package writes the DOT source and
Graphviz's ``dot`` program lays it out and renders SVG or PNG; HTML is the SVG inside a page. A legend shows the
colour of each number format the network uses.
"""

from __future__ import annotations

import html
from typing import Any

from netdsl.check import CheckedGraph
from netdsl.diagnostics import UsageError
from netdsl.view import BRIEF_VALUES, constant_brief, granularity, provenance

#: fill colour of each number format (tensors), also shown in the legend
FORMAT_COLOURS: dict[str, str] = {
    "float32": "#8ecae6",
    "float16": "#b5e48c",
    "bfloat16": "#ffd166",
    "int8": "#f4a261",
    "int4": "#e76f51",
    "fp8": "#c77dff",
    "fp4": "#ff70a6",
    "e8m0": "#2a9d8f",
}
#: a line break inside a DOT label (an escape that dot reads, not a newline in the source)
NEWLINE = "\\n"
#: output formats by file extension: what ``dot`` renders (None: the DOT source itself; "html": a page)
FORMATS = {".svg": "svg", ".png": "png", ".dot": None, ".gv": None, ".html": "html"}

_MISSING_PACKAGE = 'netdsl graph needs the graphviz package: pip install "netdsl[graph]"'
_MISSING_DOT = ("netdsl graph needs Graphviz's 'dot' program for {kind} (Debian/Ubuntu: apt-get install graphviz; "
                "macOS: brew install graphviz); .dot output needs no program")


def _graphviz() -> Any:
    try:
        import graphviz
    except ImportError:
        raise UsageError(_MISSING_PACKAGE) from None
    return graphviz


def to_dot(graph: CheckedGraph) -> Any:
    """The network as a ``graphviz.Digraph``: a box per layer, an ellipse per tensor, edges in data order."""
    graphviz = _graphviz()
    kinds = provenance(graph)
    dot = graphviz.Digraph(graph.name, graph_attr={"rankdir": "TB", "fontname": "Helvetica", "label": graph.name,
                                                    "labelloc": "t"},
                           node_attr={"fontname": "Helvetica", "fontsize": "11"},
                           edge_attr={"color": "#555555"})
    outputs = set(graph.outputs)
    for value in graph.values.values():
        if value.type is None:
            continue
        role = "output, " if value.name in outputs else ""
        label = NEWLINE.join([value.name, str(value.type), role + kinds[value.name]])
        if value.data is not None and value.data.size <= BRIEF_VALUES:
            label += f"{NEWLINE}= {constant_brief(value.data, value.type.dtype)}"
        dot.node(f"tensor.{value.name}", label, shape="ellipse", style="filled",
                 fillcolor=FORMAT_COLOURS[value.type.dtype.name], penwidth="2.5" if role else "1")
    for index, node in enumerate(graph.nodes):
        found = granularity(node)
        lines = [node.op.name, found["text"]]
        if found["kind"] == "per-channel":
            lines.append(f"block shape [{', '.join(map(str, found['block']))}]")
        layer = f"layer.{index}"
        dot.node(layer, NEWLINE.join(lines), shape="box", style="rounded,filled", fillcolor="#ffffff")
        for name in node.inputs:
            dot.edge(f"tensor.{name}", layer)
        for name in node.outputs:
            dot.edge(layer, f"tensor.{name}")
    used = [name for name in FORMAT_COLOURS if any(v.type is not None and v.type.dtype.name == name
                                                   for v in graph.values.values())]
    cells = "".join(f'<TD BGCOLOR="{FORMAT_COLOURS[name]}">{name}</TD>' for name in used)
    dot.node("legend", f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="2"><TR>{cells}</TR></TABLE>>',
             shape="plaintext")
    return dot


def render(graph: CheckedGraph, suffix: str) -> bytes:
    """The picture in the format named by a file extension (:data:`FORMATS`); UsageError for an unknown one
    or when the graphviz package or the ``dot`` program is missing."""
    if suffix not in FORMATS:
        raise UsageError(f"netdsl graph writes {', '.join(FORMATS)} files; got '{suffix or 'no extension'}'")
    dot = to_dot(graph)
    kind = FORMATS[suffix]
    if kind is None:
        return dot.source.encode()
    graphviz = _graphviz()
    try:
        image = dot.pipe(format="svg" if kind == "html" else kind)
    except graphviz.ExecutableNotFound:
        raise UsageError(_MISSING_DOT.format(kind=kind.upper())) from None
    except graphviz.CalledProcessError as error:
        raise UsageError(f"Graphviz's dot failed: {error.stderr.decode(errors='replace').strip()}") from None
    return image if kind != "html" else _page(graph, image.decode())


def _page(graph: CheckedGraph, svg: str) -> bytes:
    """A self-contained HTML page holding the SVG inline."""
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and DOCTYPE: inline SVG in HTML has none
    title = html.escape(graph.name)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family:Helvetica,sans-serif;margin:1em">
{svg}</body></html>
""".encode()
