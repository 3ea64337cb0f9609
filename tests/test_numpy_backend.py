"""The NumPy backend's pieces: any chunking gives the bits of the whole-tensor reference."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import netdsl
from netdsl import dtypes
from netdsl.backends.numpy import executor as numpy_executor
from netdsl.backends.numpy.executor import pieces
from netdsl.ops import quantize
from tests import oracle

MODELS = [
    "input x : float32[37, 45]\nconst s : float32[10, 15] = load('s.npy')\n"
    "q = quantize(x, s, block_shape=[4, 3], to_type=fp4)\ny = dequantize(q, s, block_shape=[4, 3])\noutput q, y\n",
    "input x : bfloat16[3, 48, 64]\nconst g : float32[] = 0.75\n"
    "d, s = dynamic_quantize(x, g, axis=1, block_size=16, output_type=fp4, scale_type=fp8)\n"
    "sf = dequantize(s, g)\ny = dequantize(d, sf, to_type=bfloat16)\noutput d, s, y\n",
    "input x : float32[6, 33, 64]\nd, s = dynamic_quantize(x, axis=-1, block_size=32, output_type=fp8, scale_type=e8m0)\n"
    "y = dequantize(d, s)\noutput d, s, y\n",
    "input x : float16[2, 9, 10, 11]\nd, s = dynamic_quantize(x, block_shape=[1, 4, -1, 3], output_type=int8, "
    "scale_type=float32)\noutput d, s\n",
    "input x : float32[50, 70]\nconst s : float32[70] = load('c.npy')\nq = quantize(x, s, axis=1, to_type=int4)\n"
    "y = dequantize(q, s, axis=1, to_type=float16)\noutput q, y\n",
]


@pytest.mark.parametrize("target", [1, 7, 64, 1000, 1 << 20])
@pytest.mark.parametrize("model", MODELS)
def test_chunking_never_changes_a_bit(tmp_path, monkeypatch, model: str, target: int) -> None:
    rng = np.random.default_rng(target)
    np.save(tmp_path / "s.npy", rng.uniform(0.01, 1, (10, 15)).astype(np.float32))
    np.save(tmp_path / "c.npy", rng.uniform(0.01, 1, 70).astype(np.float32))
    net = netdsl.loads(model, base_dir=tmp_path)
    inputs = {}
    for name, tensor_type in net.inputs.items():
        x = rng.standard_normal(tensor_type.shape) * 3
        x.reshape(-1)[::17] = np.nan
        x.reshape(-1)[::29] = -0.0
        inputs[name] = x.astype(np.float32).astype(tensor_type.dtype.storage)
    whole = {}
    env = dict(net.prepare_inputs(inputs))
    env.update({v.name: v.data for v in net.graph.constants})
    for node in net.graph.nodes:  # the references on whole tensors, no pieces
        env.update(zip(node.outputs, node.op.evaluate(node.resolution, [env[n] for n in node.inputs])))
    whole = {name: env[name] for name in net.graph.outputs}
    monkeypatch.setattr(numpy_executor, "PIECE_ELEMENTS", target)
    monkeypatch.setattr(numpy_executor.pieces, "__defaults__", (target,))
    chunked = net.run(inputs, backend="numpy")
    for name in whole:
        assert chunked[name].dtype == whole[name].dtype
        assert chunked[name].tobytes() == whole[name].tobytes(), name


@pytest.mark.parametrize("shape,block,aligned", [
    ((37, 45), (4, 3), (True, True)),
    ((5, 7, 9), (1, 7, 2), (False, True, True)),
    ((1000,), (1000,), (False,)),
    ((3, 0, 4), (1, 1, 1), (True, True, True)),
])
@pytest.mark.parametrize("target", [1, 10, 100, 10**6])
def test_pieces_tile_the_tensor_on_block_edges(shape, block, aligned, target) -> None:
    covered = np.zeros(shape, np.int32)
    for box in pieces(shape, block, aligned, target):
        covered[box] += 1
        for part, b, a in zip(box, block, aligned):
            assert not a or part.start % b == 0
    assert (covered == 1).all()


def test_bfloat16_storage_survives_pieces() -> None:
    net = netdsl.loads("input x : float32[300, 300]\nconst s : float32[] = 0.5\nq = quantize(x, s, to_type=fp8)\n"
                       "y = dequantize(q, s, to_type=bfloat16)\noutput y\n")
    y = net.run({"x": np.ones((300, 300), np.float32)}, backend="numpy")["y"]
    assert y.dtype == ml_dtypes.bfloat16 and float(y[299, 299]) == 1.0


def _hostile_float32(rng: np.random.Generator, n: int) -> np.ndarray:
    """Normals of every magnitude, subnormals, ties, NaNs with payloads, infinities and signed zeros."""
    bits = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32).copy()
    x[: n // 4] = rng.integers(-600, 600, n // 4) / np.float32(2)  # ties after a power-of-two scale
    specials = np.array([0x7FC000AB, 0xFFC00001, 0x7F800001, 0x7F800000, 0xFF800000, 0x80000000, 0, 1,
                         0x807FFFFF, 0x00400000], np.uint32).view(np.float32)
    x[n // 4 : n // 4 + specials.size] = specials
    return x


@pytest.mark.parametrize("scale", [2.0 ** -126, 2.0 ** -7, 0.5, 1.0, 2.0 ** 20, 2.0 ** 127, 2.0 ** -127, 0.1])
@pytest.mark.parametrize("to_type", ["int8", "int4", "fp8", "fp4"])
def test_power_of_two_scales_multiply_to_the_same_bits(scale: float, to_type: str) -> None:
    # A normal power-of-two scale is applied as a multiplication by its exact reciprocal; a subnormal one
    # (2^-127, whose reciprocal overflows) and others divide. The oracle divides element by element in Python.
    x = _hostile_float32(np.random.default_rng(int(np.log2(scale)) + 200), 3000)
    net = netdsl.loads(f"input x : float32[{x.size}]\nconst s : float32[] = {scale!r}\n"
                       f"q = quantize(x, s, to_type={to_type})\ny = dequantize(q, s)\noutput q, y\n")
    got = net.run({"x": x}, backend="numpy")["q"]
    expected = oracle.quantize(x, np.float32(scale), to_type)
    got_values = got.astype(np.float64)
    both_nan = np.isnan(got_values) & np.isnan(expected)
    assert np.array_equal(np.signbit(got_values[~both_nan]), np.signbit(expected[~both_nan]))
    assert np.array_equal(got_values[~both_nan], expected[~both_nan])


def test_mixed_block_scales_take_the_division_path() -> None:
    # per-channel scales: all powers of two (multiplied), or one not (every channel divided)
    x = _hostile_float32(np.random.default_rng(5), 64 * 40).reshape(64, 40)
    for scales in (np.full(40, 0.25, np.float32), np.array([0.25] * 39 + [0.3], np.float32)):
        got = quantize.reference(x, scales.reshape(1, 40), (64, 1), dtypes.INT8)
        expected = oracle.quantize(x, scales, "int8", axis=1)
        assert np.array_equal(got.astype(np.float64), expected)
