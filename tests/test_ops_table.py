"""The op table: every op x type x granularity x shape, run on every backend, against the independent
oracle (tests/oracle.py, written from docs/semantics.md alone), bit for bit on the decoded values.

Inputs mix random values with the hard cases: NaN, +-Inf, -0, float32 subnormals, exact rounding ties
(x = (k + 1/2) * scale), values just past saturation.
"""

from __future__ import annotations

import zlib

import ml_dtypes
import numpy as np
import pytest

import netdsl
from tests import oracle
from tests.conftest import backends

STORAGE = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
TIES = {"int8": np.arange(-130, 130) + 0.5, "int4": np.arange(-10, 10) + 0.5,
        "fp8": np.array([0.5 * (a + b) for a, b in zip([0, 2**-9, 1, 1.125, 240, 256, 416],
                                                        [2**-9, 2**-8, 1.125, 1.25, 256, 288, 448])] + [464, 480]),
        "fp4": np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 6.5, 7])}


def hard_values(rng: np.random.Generator, n: int, to_type: str, scale: float) -> np.ndarray:
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, -1e-40, 3e38, -3e38], np.float64)
    ties = np.concatenate([TIES[to_type], -TIES[to_type]]) * scale
    randoms = rng.standard_normal(n) * scale * {"int8": 60, "int4": 4, "fp8": 200, "fp4": 3}[to_type]
    values = np.concatenate([specials, ties, randoms])
    return rng.permutation(values)[:n] if values.size > n else np.resize(values, n)


def literal(values: np.ndarray) -> str:
    return np.array2string(np.asarray(values, np.float64), separator=", ", threshold=10**9,
                           floatmode="unique", max_line_width=10**9)


def same_bits(actual, expected) -> None:
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    mismatch = ~((actual == expected) & (np.signbit(actual) == np.signbit(expected))
                 | (np.isnan(actual) & np.isnan(expected)))
    assert not mismatch.any(), f"{mismatch.sum()} differ; first at {np.argwhere(mismatch)[0]}: " \
                               f"{actual[mismatch][0]!r} vs oracle {expected[mismatch][0]!r}"


# (granularity name, x shape, scale shape, attrs text, oracle kwargs)
GRANULARITIES = [
    ("per-tensor", (3, 17), (), "", {}),
    ("per-tensor-1", (1, 2, 3, 5), (1,), ", axis=3", {"axis": 3}),
    ("per-channel-0", (6, 9), (6,), ", axis=0", {"axis": 0}),
    ("per-channel-last", (2, 3, 7), (7,), ", axis=-1", {"axis": -1}),
    ("block-rows", (8, 6), (2, 6), "", {}),
    ("block-cols", (3, 32), (3, 2), "", {}),
    ("block-shape-partial", (9, 10), (3, 4), ", block_shape=[4, 3]", {"block_shape": [4, 3]}),
    ("block-shape-3d", (2, 5, 7), (1, 2, 7), ", block_shape=[-1, 4, 1]", {"block_shape": [-1, 4, 1]}),
    ("block-1d", (10,), (3,), ", block_shape=[4]", {"block_shape": [4]}),
]


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("granularity", GRANULARITIES, ids=lambda g: g[0])
@pytest.mark.parametrize("to_type", ["int8", "int4", "fp8", "fp4"])
@pytest.mark.parametrize("x_type", ["float32", "float16", "bfloat16"])
def test_quantize_dequantize(backend, granularity, to_type, x_type) -> None:
    _, shape, scale_shape, attrs, kwargs = granularity
    rng = np.random.default_rng(zlib.crc32(f"{granularity[0]}/{to_type}/{x_type}".encode()))
    scale = np.exp2(rng.integers(-8, 4, size=scale_shape)).astype(np.float32) * \
        rng.choice([1, 1.5, 1.25, 0.875], size=scale_shape).astype(np.float32)
    if scale.size > 1:
        scale.reshape(-1)[0] = 2.0**-130  # a float32-subnormal scale
    scale_at = oracle.scale_lookup(shape, scale, kwargs.get("axis"), kwargs.get("block_shape"))
    per_element = np.array([scale_at(index) for index in np.ndindex(shape)]).reshape(shape)
    # ties and saturation bounds land exactly on each element's own scale
    x = hard_values(rng, int(np.prod(shape)), to_type, 1.0).reshape(shape) * per_element
    with np.errstate(over="ignore"):
        x = x.astype(np.float32).astype(STORAGE[x_type])
    scale_type = "float32[" + ", ".join(map(str, scale_shape)) + "]"
    scale_text = literal(scale) if scale.ndim else repr(float(scale))
    text = (f"input x : {x_type}[{', '.join(map(str, shape))}]\nconst s : {scale_type} = {scale_text}\n"
            f"q = quantize(x, s, to_type={to_type}{attrs})\n"
            f"y = dequantize(q, s, to_type={x_type}{attrs})\noutput q, y\n")
    net = netdsl.loads(text)
    out = net.run({"x": x}, backend=backend)
    expected_q = oracle.quantize(x, scale, to_type=to_type, **kwargs)
    same_bits(out["q"], expected_q)
    same_bits(out["y"], oracle.dequantize(expected_q, scale, to_type=x_type, **kwargs))


DYNAMIC = [
    # (name, x shape, attrs, oracle kwargs, dqs)
    ("nvfp4-last", (3, 48), "axis=1, block_size=16, output_type=fp4, scale_type=fp8", {"axis": 1, "block_size": 16}, 1.0),
    ("nvfp4-dqs", (2, 3, 32), "axis=-1, block_size=16, output_type=fp4, scale_type=fp8", {"axis": -1, "block_size": 16}, 0.03125),
    ("nvfp4-second-last", (32, 5), "axis=0, block_size=16, output_type=fp4, scale_type=fp8", {"axis": 0, "block_size": 16}, 2.0),
    ("nvfp4-nd", (2, 4, 32), "block_shape=[1, 1, 16], output_type=fp4, scale_type=fp8", {"block_shape": [1, 1, 16]}, 1.0),
    ("mxfp8-last", (3, 64), "axis=1, block_size=32, output_type=fp8, scale_type=e8m0", {"axis": 1, "block_size": 32}, None),
    ("mxfp8-nd", (2, 64, 3), "block_shape=[1, 32, 1], output_type=fp8, scale_type=e8m0", {"block_shape": [1, 32, 1]}, None),
    ("fp8-float-1d", (4, 24), "axis=1, block_size=8, output_type=fp8, scale_type=float32", {"axis": 1, "block_size": 8}, None),
    ("int8-float-1d", (6, 10), "axis=0, block_size=3, output_type=int8, scale_type=float32", {"axis": 0, "block_size": 3}, None),
    ("fp8-float-2d-partial", (8, 8), "block_shape=[4, 3], output_type=fp8, scale_type=float32", {"block_shape": [4, 3]}, None),
    ("int8-float-4d", (2, 3, 5, 6), "block_shape=[1, -1, 2, 4], output_type=int8, scale_type=float32", {"block_shape": [1, -1, 2, 4]}, None),
    ("fp8-float-whole", (5, 7), "block_shape=[-1, -1], output_type=fp8, scale_type=float32", {"block_shape": [-1, -1]}, None),
]


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("case", DYNAMIC, ids=lambda c: c[0])
@pytest.mark.parametrize("x_type", ["float32", "float16", "bfloat16"])
def test_dynamic_quantize(backend, case, x_type) -> None:
    name, shape, attrs, kwargs, dqs = case
    rng = np.random.default_rng(zlib.crc32(f"{name}/{x_type}".encode()))
    x = (rng.standard_normal(shape) * np.exp2(rng.integers(-20, 10, size=shape[:1] + (1,) * (len(shape) - 1))))
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, size=flat.size // 10, replace=False)] = rng.choice(
        [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-42, 448 * 6, 1e-39], size=flat.size // 10)
    x.reshape(-1, shape[-1])[0] = 0.0  # an amax = 0 block
    x.reshape(-1, shape[-1])[1] = np.nan  # an all-NaN block
    with np.errstate(over="ignore"):
        x = x.astype(np.float32).astype(STORAGE[x_type])
    dqs_line = f"const g : float32[] = {dqs!r}\n" if dqs is not None else ""
    text = f"input x : {x_type}[{', '.join(map(str, shape))}]\n{dqs_line}" \
           f"d, s = dynamic_quantize(x{', g' if dqs is not None else ''}, {attrs})\noutput d, s\n"
    out = netdsl.loads(text).run({"x": x}, backend=backend)
    output_type, scale_type = [part.split("=")[1] for part in attrs.split(", ") if "type" in part]
    data, scale = oracle.dynamic_quantize(x, dqs, output_type=output_type, scale_type=scale_type, **kwargs)
    same_bits(out["s"], scale)
    same_bits(out["d"], data)
