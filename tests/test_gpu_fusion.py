"""Graph-level fusion in the GPU executor (netdsl/backends/cupy/fusion.py and executor.py).

- The fusion pass itself, on the CPU (no CuPy, no GPU needed): which nodes fuse and which don't
  (an intermediate that is a graph output or has a second consumer, different block geometry,
  NETDSL_FUSION=0), and what each step frees.
- On the GPU (skipped with the reason without one): fused and unfused runs give identical bits on
  random networks, with NaN, +-Inf, subnormal and -0 inputs, and both match the NumPy backend; where
  fusion must not apply the results still match NumPy.
"""

from __future__ import annotations

import zlib

import ml_dtypes
import numpy as np
import pytest

import netdsl
from netdsl import settings
from netdsl.backends.cupy import BACKEND as CUPY
from netdsl.backends.cupy.fusion import DEQUANTIZE_DOUBLE, NODE, QUANTIZE_DEQUANTIZE, UNARY_REDUCE, schedule
from netdsl.backends.numpy import BACKEND as NUMPY
from tests.conftest import needs_gpu

gpu = needs_gpu()


def kinds(text: str, fusion: bool = True) -> list[tuple[str, tuple[str, ...]]]:
    graph = netdsl.loads(text).graph
    return [(step.kind, step.names) for step in schedule(graph, fusion)]


# --------------------------------------------------------------------------------------------------
# The fusion pass (CPU only)

PAIR = """
network pair
input x : float32[4, 32]
const s : float32[] = 0.05
q = quantize(x, s, to_type=fp8)
y = dequantize(q, s, to_type=float32)
output y
"""

NVFP4_CHAIN = """
network chain
input x : bfloat16[8, 64]
const dqs : float32[] = 0.01
d, s = dynamic_quantize(x, dqs, axis=1, block_size=16, output_type=fp4, scale_type=fp8)
sf = dequantize(s, dqs, to_type=bfloat16)
y = dequantize(d, sf, to_type=bfloat16)
output y
"""


def test_quantize_dequantize_pair_fuses() -> None:
    assert kinds(PAIR) == [(QUANTIZE_DEQUANTIZE, ("q", "y"))]
    assert kinds(PAIR, fusion=False) == [(NODE, ("q",)), (NODE, ("y",))]


def test_pair_with_another_scale_and_output_type_fuses() -> None:
    text = """
network other
input x : float16[3, 64]
const s : float32[3, 4] = [[0.5, 0.25, 1, 2], [1, 1, 1, 1], [0.125, 3, 0.75, 1.5]]
const t : bfloat16[3, 4] = [[0.5, 0.25, 1, 2], [2, 2, 2, 2], [0.125, 3, 0.75, 1.5]]
q = quantize(x, s, to_type=fp4)
y = dequantize(q, t, to_type=bfloat16)
output y
"""
    assert kinds(text) == [(QUANTIZE_DEQUANTIZE, ("q", "y"))]


def test_no_fusion_when_q_is_an_output() -> None:
    text = PAIR.replace("output y", "output q, y")
    assert kinds(text) == [(NODE, ("q",)), (NODE, ("y",))]


def test_no_fusion_when_q_has_two_consumers() -> None:
    text = PAIR.replace("output y", "z = dequantize(q, s, to_type=bfloat16)\noutput y, z")
    assert kinds(text) == [(NODE, ("q",)), (NODE, ("y",)), (NODE, ("z",))]


def test_no_fusion_across_block_geometries() -> None:
    text = """
network geometry
input x : float32[4, 32]
const s : float32[] = 0.05
const t : float32[4, 2] = [[1, 2], [3, 4], [5, 6], [7, 8]]
q = quantize(x, s, to_type=int8)
y = dequantize(q, t, to_type=float32)
output y
"""
    assert kinds(text) == [(NODE, ("q",)), (NODE, ("y",))]


def test_nvfp4_chain_fuses() -> None:
    assert kinds(NVFP4_CHAIN) == [(NODE, ("d",)), (DEQUANTIZE_DOUBLE, ("sf", "y"))]
    assert kinds(NVFP4_CHAIN, fusion=False) == [(NODE, ("d",)), (NODE, ("sf",)), (NODE, ("y",))]


def test_no_chain_fusion_when_sf_is_an_output_or_shared() -> None:
    as_output = NVFP4_CHAIN.replace("output y", "output sf, y")
    assert kinds(as_output) == [(NODE, ("d",)), (NODE, ("sf",)), (NODE, ("y",))]
    shared = NVFP4_CHAIN.replace("output y", "z = dequantize(d, sf, to_type=float32)\noutput y, z")
    assert kinds(shared) == [(NODE, ("d",)), (NODE, ("sf",)), (NODE, ("y",)), (NODE, ("z",))]


AMAX = """
network amax
input w : bfloat16[8, 64]
m = unary(w, op=abs)
amax = reduce(m, op=max, axes=[0, 1])
output amax
"""


def test_unary_reduce_fuses() -> None:
    assert kinds(AMAX) == [(UNARY_REDUCE, ("m", "amax"))]
    assert kinds(AMAX.replace("op=abs", "op=neg").replace("op=max", "op=min")) == [(UNARY_REDUCE, ("m", "amax"))]
    assert kinds(AMAX, fusion=False) == [(NODE, ("m",)), (NODE, ("amax",))]
    steps = schedule(netdsl.loads(AMAX).graph)
    assert steps[0].inputs == ("w",) and steps[0].free == ("w",)


def test_no_unary_reduce_fusion_when_the_unary_is_an_output_or_shared() -> None:
    assert kinds(AMAX.replace("output amax", "output m, amax")) == [(NODE, ("m",)), (NODE, ("amax",))]
    shared = AMAX.replace("output amax", "low = reduce(m, op=min, axes=[1])\noutput amax, low")
    assert kinds(shared) == [(NODE, ("m",)), (NODE, ("amax",)), (NODE, ("low",))]


def test_both_patterns_in_one_graph_and_liveness() -> None:
    text = """
network both
input x : float32[8, 32]
const dqs : float32[] = 0.5
const s : float32[8, 1] = [[1], [2], [3], [4], [5], [6], [7], [8]]
d, sc = dynamic_quantize(x, dqs, axis=1, block_size=16, output_type=fp4, scale_type=fp8)
sf = dequantize(sc, dqs, to_type=float32)
a = dequantize(d, sf, to_type=float32)
q = quantize(a, s, axis=0, to_type=int8)
y = dequantize(q, s, axis=0, to_type=float16)
output y
"""
    graph = netdsl.loads(text).graph
    steps = schedule(graph)
    assert [(step.kind, step.names) for step in steps] == [
        (NODE, ("d",)), (DEQUANTIZE_DOUBLE, ("sf", "a")), (QUANTIZE_DEQUANTIZE, ("q", "y"))]
    # d and sc die after the chain step, a after the pair; the constants' last uses free them too.
    assert set(steps[1].free) >= {"d", "sc"} and "a" in steps[2].free
    assert all("y" not in step.free for step in steps)


def test_fusion_switch(monkeypatch) -> None:
    graph = netdsl.loads(PAIR).graph
    monkeypatch.setenv("NETDSL_FUSION", "0")
    assert not settings.fusion()
    assert [step.kind for step in CUPY.schedule(graph)] == [NODE, NODE]
    monkeypatch.setenv("NETDSL_FUSION", "1")
    assert [step.kind for step in CUPY.schedule(graph)] == [QUANTIZE_DEQUANTIZE]
    CUPY.fusion = False
    try:
        assert [step.kind for step in CUPY.schedule(graph)] == [NODE, NODE]
    finally:
        CUPY.fusion = None


def test_fusion_pass_imports_without_cupy() -> None:
    """The fusion pass and the backend package must import on machines without CuPy."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['cupy'] = None\n"
            "import netdsl\n"
            "from netdsl.backends.cupy.fusion import schedule\n"
            "from netdsl.backends.cupy import abi, device, dynamic, executor, geometry, launch, loader\n"
            "assert device.available() == (False, 'CuPy not installed')\n"
            f"print(len(schedule(netdsl.loads({PAIR!r}).graph)))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "1"


# --------------------------------------------------------------------------------------------------
# On the GPU: fused == unfused == NumPy, bit for bit

FLOAT_NAMES = ("float32", "float16", "bfloat16")
STORAGE = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def literal(values: np.ndarray) -> str:
    """A nested-list literal of float32-exact values."""
    if values.ndim == 0:
        return repr(float(values))
    return "[" + ", ".join(literal(v) for v in values) + "]"


def representable(values: np.ndarray, type_name: str) -> np.ndarray:
    return np.asarray(values).astype(STORAGE[type_name]).astype(np.float32)


def special_input(shape: tuple[int, ...], type_name: str, rng: np.random.Generator) -> np.ndarray:
    """Random magnitudes over many binades with NaN, +-Inf, subnormals (of the type) and signed zeros."""
    x = rng.standard_normal(shape) * np.exp(rng.uniform(-12, 8, shape))
    pick = rng.random(shape)
    x[pick < 0.02] = np.nan
    x[(pick >= 0.02) & (pick < 0.03)] = np.inf
    x[(pick >= 0.03) & (pick < 0.04)] = -np.inf
    x[(pick >= 0.04) & (pick < 0.06)] = 0.0
    x[(pick >= 0.06) & (pick < 0.08)] = -0.0
    tiny = {"float32": 1e-40, "float16": 1e-6, "bfloat16": 1e-40}[type_name]
    sub = (pick >= 0.08) & (pick < 0.10)
    x[sub] = rng.standard_normal(int(sub.sum())) * tiny
    return x.astype(STORAGE[type_name])


def granularity_text(shape: tuple[int, int], kind: str, rng: np.random.Generator):
    """(scale shape, the attrs text) for a rank-2 input."""
    rows, cols = shape
    if kind == "per-tensor":
        return (), ""
    if kind == "per-channel":
        axis = int(rng.integers(0, 2))
        return (shape[axis],), f", axis={axis}"
    if kind == "block-rows":  # blocks along the last axis
        block = int(rng.choice([c for c in (2, 4, 8, 16, 32) if cols % c == 0]))
        return (rows, cols // block), ""
    block = [int(rng.integers(1, 5)), int(rng.integers(1, 9))]  # N-D with partial edge blocks
    return (-(-rows // block[0]), -(-cols // block[1])), f", block_shape=[{block[0]}, {block[1]}]"


def random_pair_network(rng: np.random.Generator) -> tuple[str, str, tuple[int, int]]:
    in_type = str(rng.choice(FLOAT_NAMES))
    shape = (int(rng.integers(1, 9)), int(rng.choice([16, 32, 48, 64, 96])))
    kind = str(rng.choice(["per-tensor", "per-channel", "block-rows", "block-nd"]))
    scale_shape, attrs = granularity_text(shape, kind, rng)
    q_type = str(rng.choice(["int8", "int4", "fp8", "fp4"]))
    limit = {"int8": 127, "int4": 7, "fp8": 448, "fp4": 6}[q_type]
    s_type = str(rng.choice(FLOAT_NAMES))
    s = representable(np.exp(rng.uniform(-6, 3, scale_shape)) / limit, s_type)
    # The dequantize scale: the same tensor, or another one of any float type (or e8m0).
    t_type = str(rng.choice(["same", "float32", "float16", "bfloat16"]))
    out_type = str(rng.choice(FLOAT_NAMES))
    lines = ["network random_pair", f"input x : {in_type}[{shape[0]}, {shape[1]}]",
             f"const s : {s_type}[{', '.join(map(str, scale_shape))}] = {literal(s)}"]
    t_name = "s"
    if t_type != "same":
        t = representable(np.exp(rng.uniform(-4, 4, scale_shape)), t_type)
        lines.append(f"const t : {t_type}[{', '.join(map(str, scale_shape))}] = {literal(t)}")
        t_name = "t"
    lines += [f"q = quantize(x, s{attrs}, to_type={q_type})",
              f"y = dequantize(q, {t_name}{attrs}, to_type={out_type})",
              "output y"]
    return "\n".join(lines) + "\n", in_type, shape


def random_chain_network(rng: np.random.Generator) -> tuple[str, str, tuple[int, int]]:
    """NVFP4 DynamicQuantize along either axis, its fp8 scale dequantized per-tensor (with the double
    quantization scale or another constant of any float type) to any float type, then the data."""
    in_type = str(rng.choice(FLOAT_NAMES))
    axis = int(rng.integers(0, 2))
    if axis == 0:
        rows, cols = int(rng.integers(1, 5)) * 16, int(rng.integers(1, 9)) * 4
    else:
        rows, cols = int(rng.integers(1, 9)), int(rng.integers(1, 7)) * 16
    sf_type, out_type = str(rng.choice(FLOAT_NAMES)), str(rng.choice(FLOAT_NAMES))
    dqs_type, g_type = str(rng.choice(FLOAT_NAMES)), str(rng.choice(FLOAT_NAMES))
    dqs = representable(np.exp(rng.uniform(-12, 2)), dqs_type)
    g = representable(np.exp(rng.uniform(-6, 6)), g_type)
    first_scale = str(rng.choice(["dqs", "g"]))
    text = (f"network random_chain\ninput x : {in_type}[{rows}, {cols}]\n"
            f"const dqs : {dqs_type}[] = {literal(dqs)}\n"
            f"const g : {g_type}[1] = [{literal(g)}]\n"
            f"d, sc = dynamic_quantize(x, dqs, axis={axis}, block_size=16, output_type=fp4, scale_type=fp8)\n"
            f"sf = dequantize(sc, {first_scale}, to_type={sf_type})\n"
            f"y = dequantize(d, sf, to_type={out_type})\noutput y\n")
    return text, in_type, (rows, cols)


def bits(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    return array.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[array.dtype.itemsize])


def run_three_ways(text: str, inputs: dict[str, np.ndarray], expect_fused: str | None) -> None:
    network = netdsl.loads(text)
    graph = network.graph
    prepared = network.prepare_inputs(inputs)
    want = NUMPY.run(graph, prepared)
    try:
        CUPY.fusion = True
        step_kinds = [step.kind for step in CUPY.schedule(graph)]
        fused = CUPY.run(graph, prepared)
        CUPY.fusion = False
        unfused = CUPY.run(graph, prepared)
    finally:
        CUPY.fusion = None
    if expect_fused is None:
        assert set(step_kinds) == {NODE}, step_kinds
    else:
        assert expect_fused in step_kinds, (step_kinds, text)
    for name in graph.outputs:
        assert fused[name].dtype == want[name].dtype and fused[name].shape == want[name].shape
        differ = bits(fused[name]) != bits(unfused[name])
        assert not differ.any(), f"fused != unfused in {int(differ.sum())} elements of {name}\n{text}"
        differ = bits(fused[name]) != bits(want[name])
        assert not differ.any(), f"GPU != NumPy in {int(differ.sum())} elements of {name}\n{text}"


@gpu
@pytest.mark.parametrize("trial", range(60))
def test_random_pairs_fused_equals_unfused(trial: int) -> None:
    rng = np.random.default_rng(zlib.crc32(b"pair%d" % trial))
    text, in_type, shape = random_pair_network(rng)
    run_three_ways(text, {"x": special_input(shape, in_type, rng)}, QUANTIZE_DEQUANTIZE)


@gpu
@pytest.mark.parametrize("trial", range(30))
def test_random_chains_fused_equals_unfused(trial: int) -> None:
    rng = np.random.default_rng(zlib.crc32(b"chain%d" % trial))
    text, in_type, shape = random_chain_network(rng)
    run_three_ways(text, {"x": special_input(shape, in_type, rng)}, DEQUANTIZE_DOUBLE)


@gpu
def test_chain_with_huge_and_tiny_double_quant_scales() -> None:
    """Scales that overflow float16/bfloat16 (Inf, then 0 * Inf = NaN) or underflow to subnormals."""
    rng = np.random.default_rng(11)
    for dqs in ("1e30", "3e-38", "65000", "1e-8"):
        for sf_type in FLOAT_NAMES:
            text = f"""
network extreme
input x : float32[4, 64]
const dqs : float32[] = {dqs}
d, sc = dynamic_quantize(x, dqs, axis=1, block_size=16, output_type=fp4, scale_type=fp8)
sf = dequantize(sc, dqs, to_type={sf_type})
y = dequantize(d, sf, to_type=float16)
output y
"""
            run_three_ways(text, {"x": special_input((4, 64), "float32", rng)}, DEQUANTIZE_DOUBLE)


@gpu
def test_no_fusion_cases_still_match_numpy() -> None:
    rng = np.random.default_rng(5)
    x = special_input((4, 32), "float32", rng)
    run_three_ways(PAIR.replace("output y", "output q, y"), {"x": x}, None)
    run_three_ways(PAIR.replace("output y", "z = dequantize(q, s, to_type=bfloat16)\noutput y, z"), {"x": x}, None)
    xb = special_input((8, 64), "bfloat16", rng)
    run_three_ways(NVFP4_CHAIN.replace("output y", "output sf, y"), {"x": xb}, None)
    run_three_ways(NVFP4_CHAIN.replace("output y", "z = dequantize(d, sf, to_type=float32)\noutput y, z"),
                   {"x": xb}, None)


@gpu
def test_examples_end_to_end_fused() -> None:
    """The doc's NVFP4 example and the bfloat16 one run fused and match NumPy."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "examples"
    rng = np.random.default_rng(3)
    for name, shape, in_type in [("dynamic_quantize.net", (2, 32), "float32"), ("nvfp4_bf16.net", (8, 64), "bfloat16")]:
        network = netdsl.load(root / name)
        inputs = {network.graph.inputs[0].name: special_input(shape, in_type, rng)}
        text = (root / name).read_text()
        run_three_ways(text, inputs, DEQUANTIZE_DOUBLE)
