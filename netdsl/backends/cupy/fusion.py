"""The GPU executor's fusion pass: a checked graph's nodes as a :data:`Schedule` of steps (plain Python:
it imports without CuPy), three patterns fused into one kernel each without changing a bit:

- ``quantize -> dequantize``: q = Quantize(x) is not a graph output and its only consumer is a
  Dequantize (as that layer's input) over the same block geometry (equal ``block`` and
  ``scale_shape``): one ``launch.quantize_dequantize`` call, q never stored;
- the NVFP4 chain ``sf = dequantize(codes, dqs)`` (per-tensor) then ``y = dequantize(data, sf)``
  where sf is not an output and that is its only use: one ``launch.dequantize_double`` call computing
  y = round_to(to_type, fl32(float32(q) * S)) with S = round_to(sf's type, fl32(decode(code) * dqs)),
  sf never stored;
- ``unary -> reduce``: m = unary(x) (abs or neg) is not a graph output and its only consumer is a reduce:
  one reduction of x with the sign operation folded into its loads (``recipe_layers.unary_reduce``: an
  amax reads the weight once), m never stored.

Set ``NETDSL_FUSION=0`` (:mod:`netdsl.settings`; or ``BACKEND.fusion = False``) to run every node on its
own: the bits are the same either way (tests/test_gpu_fusion.py). Each step lists the tensors dead after
it, so that the executor frees every intermediate after its last use.
"""

from __future__ import annotations

from dataclasses import dataclass

from netdsl.check import CheckedGraph, CheckedNode
from netdsl.ops.common import ScaleResolution
from netdsl.ops.dequantize import DEQUANTIZE
from netdsl.ops.quantize import QUANTIZE
from netdsl.ops.reduce import REDUCE
from netdsl.ops.unary import UNARY

NODE, QUANTIZE_DEQUANTIZE, DEQUANTIZE_DOUBLE, UNARY_REDUCE = ("node", "quantize_dequantize", "dequantize_double",
                                                              "unary_reduce")


@dataclass(frozen=True)
class Step:
    """One kernel call (or one node's calls): ``nodes`` are the graph layers it covers, in order;
    ``inputs`` the tensors it reads; ``outputs`` those it writes; ``free`` the tensors that are dead
    after it (no later step reads them and they are not graph outputs)."""

    kind: str  # NODE, QUANTIZE_DEQUANTIZE, DEQUANTIZE_DOUBLE or UNARY_REDUCE
    nodes: tuple[CheckedNode, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    free: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The covered layers by their (first) output names, e.g. ('q', 'y') for a fused pair."""
        return tuple(node.outputs[0] for node in self.nodes)


def scale_resolution(node: CheckedNode) -> ScaleResolution:
    """The resolution of a Quantize or Dequantize layer."""
    resolution = node.resolution
    assert isinstance(resolution, ScaleResolution), node.op
    return resolution


def _consumers(graph: CheckedGraph) -> dict[str, list[tuple[int, int]]]:
    """tensor -> [(node index, input slot)] for every layer input that reads it."""
    uses: dict[str, list[tuple[int, int]]] = {}
    for index, node in enumerate(graph.nodes):
        for slot, name in enumerate(node.inputs):
            uses.setdefault(name, []).append((index, slot))
    return uses


def _only_use(graph: CheckedGraph, uses: dict[str, list[tuple[int, int]]], name: str, index: int, slot: int) -> bool:
    return name not in graph.outputs and uses.get(name, []) == [(index, slot)]


#: the steps the executor runs for a graph, in order
Schedule = tuple[Step, ...]


def schedule(graph: CheckedGraph, fusion: bool = True) -> Schedule:
    """The checked graph's nodes as steps, with the fusable patterns fused (see the module docstring).

    A fused step takes the place of the later node, so everything it reads has been computed by then.
    """
    nodes = graph.nodes
    uses = _consumers(graph)
    producer = {name: index for index, node in enumerate(nodes) for name in node.outputs}
    absorbed: set[int] = set()  # earlier nodes folded into a later one's step
    fused: dict[int, Step] = {}
    if fusion:
        for index, node in enumerate(nodes):
            if node.op is REDUCE:
                first = producer.get(node.inputs[0])
                if first is not None and nodes[first].op is UNARY and _only_use(graph, uses, node.inputs[0], index, 0):
                    absorbed.add(first)
                    fused[index] = Step(UNARY_REDUCE, (nodes[first], node), tuple(nodes[first].inputs),
                                        tuple(node.outputs))
                continue
            if node.op is not DEQUANTIZE:
                continue
            data, scale = node.inputs[0], node.inputs[1]
            first = producer.get(data)
            if (first is not None and first not in absorbed and nodes[first].op is QUANTIZE
                    and _only_use(graph, uses, data, index, 0)):
                q_granularity = scale_resolution(nodes[first]).granularity
                dq_granularity = scale_resolution(node).granularity
                if (q_granularity.block == dq_granularity.block
                        and q_granularity.scale_shape == dq_granularity.scale_shape):
                    x, q_scale = nodes[first].inputs[0], nodes[first].inputs[1]
                    absorbed.add(first)
                    fused[index] = Step(QUANTIZE_DEQUANTIZE, (nodes[first], node), (x, q_scale, scale),
                                        tuple(node.outputs))
                    continue
            first = producer.get(scale)
            if (first is not None and first not in absorbed and first not in fused and nodes[first].op is DEQUANTIZE
                    and _only_use(graph, uses, scale, index, 1)
                    and scale_resolution(nodes[first]).granularity.kind == "per-tensor"):
                codes, codes_scale = nodes[first].inputs[0], nodes[first].inputs[1]
                absorbed.add(first)
                fused[index] = Step(DEQUANTIZE_DOUBLE, (nodes[first], node), (data, codes, codes_scale),
                                    tuple(node.outputs))
    steps: list[Step] = []
    for index, node in enumerate(nodes):
        if index in absorbed:
            continue
        steps.append(fused.get(index) or Step(NODE, (node,), tuple(node.inputs), tuple(node.outputs)))
    # Liveness: a tensor is freed after the last step that reads it, unless it is a graph output.
    last: dict[str, int] = {}
    for position, step in enumerate(steps):
        for name in step.inputs:
            last[name] = position
    keep = set(graph.outputs)
    dead: dict[int, list[str]] = {}
    for name, position in last.items():
        if name not in keep:
            dead.setdefault(position, []).append(name)
    for position, step in enumerate(steps):
        # Outputs nobody reads and nobody asked for die at once, too.
        unused = [o for o in step.outputs if o not in last and o not in keep]
        free = tuple(sorted(set(dead.get(position, [])) | set(unused)))
        steps[position] = Step(step.kind, step.nodes, step.inputs, step.outputs, free)
    return tuple(steps)
