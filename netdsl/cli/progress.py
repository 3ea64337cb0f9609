"""A progress bar for long runs (tqdm): shown on a terminal, for runs estimated to take a while, never with
--quiet. The work is counted in elements: the inputs, each layer's outputs, the outputs summarised."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from netdsl.check import CheckedGraph
from netdsl.ir import Node

#: runs touching fewer elements than this (inputs + every layer output + printed outputs) show no bar: about
#: a second of NumPy work
LONG_RUN_ELEMENTS = 1 << 27

Tick = Callable[[str, int], None]


def node_elements(node: Node, graph: CheckedGraph) -> int:
    """The elements a layer writes: the volumes of its outputs."""
    return sum(graph.type_of(name).volume for name in node.outputs)


def estimate(graph: CheckedGraph) -> int:
    """The elements a run of ``graph`` touches: its inputs (read or drawn), every layer output, every output
    summarised."""
    inputs = sum(graph.type_of(value.name).volume for value in graph.inputs)
    outputs = sum(graph.type_of(name).volume for name in graph.outputs)
    return inputs + sum(node_elements(node, graph) for node in graph.nodes) + outputs


@contextmanager
def progress(total: int, quiet: bool) -> Iterator[Tick]:
    """A ``tick(what, elements)`` to call as work is done; a bar on stderr only where it is a terminal, the
    run is long (``total`` >= :data:`LONG_RUN_ELEMENTS`) and not ``quiet``, else a tick that does nothing."""
    if quiet or total < LONG_RUN_ELEMENTS or not sys.stderr.isatty():
        yield lambda what, elements: None
        return
    from tqdm import tqdm

    with tqdm(total=total, leave=False, file=sys.stderr, dynamic_ncols=True,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}") as bar:
        def tick(what: str, elements: int) -> None:
            bar.set_description_str(what, refresh=False)
            bar.update(elements)

        yield tick
