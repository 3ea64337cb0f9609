"""Marking intermediates as outputs (``--mark``, ``Network.marked``) changes no bit (docs/cli.md, "Seeing
inside").

The GPU executor fuses quantize -> dequantize, and the NVFP4 chain dynamic_quantize -> dequantize(scale) ->
dequantize, only while the intermediate is not an output, so marking one changes the kernels that run. The
bits must not change: for every network here, fused = unfused = marked on the GPU, and all of them equal the
NumPy backend; the marked intermediates equal the outputs of a network written by hand to end at them.
The GPU parts skip without CuPy and a device.
"""

from __future__ import annotations

import numpy as np
import pytest

import netdsl
from netdsl.backends.cupy import BACKEND as CUPY
from netdsl.backends.cupy.fusion import NODE
from netdsl.backends.cupy.fusion import schedule as plan_graph
from tests.conftest import needs_gpu
from tests.test_gpu_fusion import NVFP4_CHAIN

PAIR = """
network pair
input x : float32[8, 64]
const s : float32[8, 1] = [[0.5], [0.25], [1], [2], [0.125], [3], [0.75], [1.5]]
q = quantize(x, s, axis=0, to_type=fp8)
y = dequantize(q, s, axis=0, to_type=bfloat16)
output y
"""

INT4_BLOCKS = """
network blocks
input x : float16[6, 64]
const s : float32[6, 2] = [[1, 2], [0.5, 0.25], [3, 4], [0.125, 8], [1, 1], [2, 0.5]]
q = quantize(x, s, to_type=int4, block_shape=[1, 32])
y = dequantize(q, s, to_type=float32, block_shape=[1, 32])
output y
"""

NETWORKS = {"pair": PAIR, "nvfp4_chain": NVFP4_CHAIN, "int4_blocks": INT4_BLOCKS}

#: each network's intermediates, and the network cut short to end at them (its outputs by hand)
INTERMEDIATES = {
    "pair": (["q"], PAIR.replace("output y", "output q")),
    "nvfp4_chain": (["d", "s", "sf"], NVFP4_CHAIN.replace("output y", "output d, s, sf")),
    "int4_blocks": (["q"], INT4_BLOCKS.replace("output y", "output q")),
}

gpu = needs_gpu()


def special_input(network: netdsl.Network, seed: int) -> dict[str, np.ndarray]:
    """Values over many binades, with NaN, +-Inf, signed zeros and subnormals, in each input's type."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for name, tensor_type in network.inputs.items():
        x = rng.standard_normal(tensor_type.shape) * np.exp2(rng.integers(-30, 12, tensor_type.shape))
        flat = x.reshape(-1)
        flat[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40]
        inputs[name] = x.astype(np.float32)
    return inputs


def bits(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).view(np.uint8).tobytes()


def run(network: netdsl.Network, inputs: dict[str, np.ndarray], backend: str) -> dict[str, bytes]:
    return {name: bits(array) for name, array in network.run(inputs, backend=backend).items()}


@pytest.mark.parametrize("name", NETWORKS)
def test_marked_equals_unmarked_and_the_network_cut_short_numpy(name: str) -> None:
    network = netdsl.loads(NETWORKS[name])
    marked_names, cut_text = INTERMEDIATES[name]
    marked = network.marked(marked_names)
    assert marked.graph.outputs == network.graph.outputs + tuple(marked_names)
    for seed in range(3):
        inputs = special_input(network, seed)
        plain, seen = run(network, inputs, "numpy"), run(marked, inputs, "numpy")
        assert {k: seen[k] for k in plain} == plain
        cut = run(netdsl.loads(cut_text), inputs, "numpy")
        assert {k: seen[k] for k in cut} == cut


def test_mark_all_and_errors() -> None:
    network = netdsl.loads(NVFP4_CHAIN)
    assert network.marked(["all"]).graph.outputs == ("y", "d", "s", "sf")
    assert network.marked(["sf", "y", "sf"]).graph.outputs == ("y", "sf")
    assert network.graph.outputs == ("y",)  # the original is unchanged
    with pytest.raises(ValueError, match="'x': it is a network input"):
        network.marked(["x"])
    with pytest.raises(ValueError, match="'dqs': it is a constant"):
        network.marked(["dqs"])
    with pytest.raises(ValueError, match="'nope': no such tensor; the layer outputs are d, s, sf, y"):
        network.marked(["nope"])


@pytest.mark.parametrize("name", NETWORKS)
def test_marking_turns_fusion_off_in_the_gpu_plan(name: str) -> None:
    """Runs anywhere: the GPU plan fuses the unmarked network and runs every node alone once marked."""
    network = netdsl.loads(NETWORKS[name])
    marked = network.marked(INTERMEDIATES[name][0])
    assert any(step.kind != NODE for step in plan_graph(network.graph))
    assert all(step.kind == NODE for step in plan_graph(marked.graph))


@gpu
@pytest.mark.parametrize("name", NETWORKS)
def test_fused_equals_unfused_equals_marked_gpu(name: str) -> None:
    network = netdsl.loads(NETWORKS[name])
    marked = network.marked(INTERMEDIATES[name][0])
    for seed in range(3):
        inputs = special_input(network, seed)
        reference = run(marked, inputs, "numpy")
        CUPY.fusion = True
        try:
            fused, fused_marked = run(network, inputs, "cupy"), run(marked, inputs, "cupy")
            CUPY.fusion = False
            unfused = run(network, inputs, "cupy")
        finally:
            CUPY.fusion = None
        assert fused == unfused == {k: reference[k] for k in fused}
        assert fused_marked == reference
