"""netdsl/view.py: provenance, constants in brief, the checked graph as JSON, output summaries.

Summaries are checked against plain NumPy over the values ml_dtypes decodes to float64 (an independent
decoding), for every type, with NaN and infinities, over every code of the 8-bit-or-smaller formats, and
across the piece boundaries of the chunked paths.
"""

from __future__ import annotations

import json
import math

import ml_dtypes
import numpy as np
import pytest

import netdsl
from netdsl import dtypes, view

STORAGE = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "int8": np.int8,
           "int4": ml_dtypes.int4, "fp8": ml_dtypes.float8_e4m3fn, "fp4": ml_dtypes.float4_e2m1fn,
           "e8m0": ml_dtypes.float8_e8m0fnu}


def expected_summary(array: np.ndarray) -> view.Summary:
    values = np.asarray(array).astype(np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    return view.Summary(values.size, int(np.isnan(values).sum()), int(np.isinf(values).sum()),
                        float(finite.min()) if finite.size else None, float(finite.max()) if finite.size else None,
                        float(finite.mean()) if finite.size else None)


def assert_same(got: view.Summary, want: view.Summary) -> None:
    assert (got.count, got.nan, got.inf, got.min, got.max) == (want.count, want.nan, want.inf, want.min, want.max)
    if want.mean is None:
        assert got.mean is None
    else:
        assert math.isclose(got.mean, want.mean, rel_tol=1e-12, abs_tol=1e-300)


def every_code(name: str, repeat: int) -> np.ndarray:
    """Every code of a one-byte format (the low nibble's 16 for 4-bit ones), shuffled and repeated."""
    count = 16 if dtypes.lookup(name).bits == 4 else 256
    codes = np.tile(np.arange(count, dtype=np.uint8), repeat)
    np.random.default_rng(0).shuffle(codes)
    return codes.view(STORAGE[name])


@pytest.mark.parametrize("name", ["int8", "int4", "fp8", "fp4", "e8m0"])
def test_summary_of_every_code(name: str, monkeypatch) -> None:
    monkeypatch.setattr(view, "SUMMARY_PIECE", 1000)  # several pieces, the last one partial
    array = every_code(name, 17)
    assert_same(view.summarize(array, dtypes.lookup(name)), expected_summary(array))


@pytest.mark.parametrize("name", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("specials", [False, True])
def test_summary_of_floats(name: str, specials: bool, monkeypatch) -> None:
    monkeypatch.setattr(view, "SUMMARY_PIECE", 1000)
    rng = np.random.default_rng(1)
    values = (rng.standard_normal((37, 129)) * 1000).astype(np.float32)
    if specials:
        values.reshape(-1)[[5, 1500, 2999]] = [np.nan, np.inf, -np.inf]
        values.reshape(-1)[4000] = np.nan
    array = values.astype(STORAGE[name])
    assert_same(view.summarize(array, dtypes.lookup(name)), expected_summary(array))


@pytest.mark.parametrize("name", ["int8", "fp4", "float32", "bfloat16"])
def test_summary_by_threads(name: str, monkeypatch) -> None:
    """Summarized by 3 threads, each over its part in pieces (parts and pieces ending unevenly), a summary
    is the same as NumPy's over the whole array (NaN and infinities in some parts only)."""
    monkeypatch.setattr(view, "SUMMARY_PIECE", 1000)
    monkeypatch.setattr(view, "PARALLEL_SUMMARY", 1500)
    monkeypatch.setattr(view.os, "cpu_count", lambda: 3)
    threads = []
    submit = view.ThreadPoolExecutor.submit
    monkeypatch.setattr(view.ThreadPoolExecutor, "submit", lambda pool, *a, **k: threads.append(1) or submit(pool, *a, **k))
    if dtypes.lookup(name).bits <= 8:
        array = every_code(name, 400)[:5001]
    else:
        values = (np.random.default_rng(2).standard_normal(5001) * 100).astype(np.float32)
        values[[10, 4000]] = [np.inf, np.nan]
        array = values.astype(STORAGE[name])
    assert_same(view.summarize(array, dtypes.lookup(name)), expected_summary(array))
    assert len(threads) == 3


@pytest.mark.parametrize("name", ["float32", "fp8", "e8m0"])
def test_summary_without_finite_values(name: str) -> None:
    array = np.full(300, np.nan, np.float32).astype(STORAGE[name])
    got = view.summarize(array, dtypes.lookup(name))
    assert (got.count, got.nan, got.min, got.max, got.mean) == (300, 300, None, None, None)
    assert got.describe() == "300 values: no finite values; nan 300, inf 0"


def test_summary_of_an_empty_array_and_a_view() -> None:
    assert view.summarize(np.zeros((0, 4), np.float32), dtypes.FLOAT32).count == 0
    base = np.arange(40, dtype=np.float32).reshape(5, 8)
    assert_same(view.summarize(base[:, ::2], dtypes.FLOAT32), expected_summary(base[:, ::2]))


def test_summary_describe_and_json() -> None:
    summary = view.summarize(np.array([1, np.nan, np.inf, -2], np.float32), dtypes.FLOAT32)
    assert summary.describe() == "4 values: min -2.0 max 1.0 mean -0.5; nan 1, inf 1"
    assert view.summarize(np.array([-3, 5, 7], np.int8), dtypes.INT8).describe(integral=True) == \
        "3 values: min -3 max 7 mean 3; nan 0, inf 0"
    assert view.values_json(np.array([[1, np.nan], [np.inf, -np.inf]], np.float32), dtypes.FLOAT32) == \
        [[1.0, "nan"], ["inf", "-inf"]]


CHAIN = """
network chain
input x : bfloat16[8, 64]
const dqs : float32[] = 0.01
const w : float32[2, 8] = [[1, 2, 3, 4, 5, 6, 7, 8], [-1, -2, -3, -4, -5, -6, -7, -8]]
const ws : float32[] = 0.5
wq = quantize(w, ws, to_type=int8)
d, sc = dynamic_quantize(x, dqs, axis=1, block_size=16, output_type=fp4, scale_type=fp8)
sf = dequantize(sc, dqs, to_type=bfloat16)
y = dequantize(d, sf, to_type=bfloat16)
output y, wq
"""


def test_provenance() -> None:
    kinds = view.provenance(netdsl.loads(CHAIN).graph)
    assert kinds == {"x": "input", "dqs": "constant", "w": "constant", "ws": "constant", "wq": "folded",
                     "d": "computed", "sc": "dynamic scale", "sf": "dynamic scale", "y": "computed"}


def test_check_verbose_listing() -> None:
    text = view.describe(netdsl.loads(CHAIN).graph)
    assert "  const  dqs : float32[] = literal  # [0.01]\n" in text
    assert "  const  w : float32[2, 8] = literal  # [1.0, 2.0, 3.0, 4.0, ...] (16 values, min -8.0, max 8.0)\n" in text
    assert "# folded; per-tensor, to int8\n" in text
    assert "         # d computed, sc dynamic scale; NVFP4: block [1, 16], data fp4, scale fp8" in text
    assert "# dynamic scale; per-tensor, to bfloat16\n" in text
    assert "# computed; block [1, 16], to bfloat16\n" in text


def test_graph_json() -> None:
    document = json.loads(json.dumps(view.graph_json(netdsl.loads(CHAIN).graph)))
    tensors = {t["name"]: t for t in document["tensors"]}
    assert tensors["x"] == {"name": "x", "type": "bfloat16", "shape": [8, 64], "provenance": "input"}
    assert tensors["dqs"]["values"] == 0.009999999776482582 and tensors["dqs"]["shape"] == []
    assert tensors["wq"]["provenance"] == "folded" and tensors["sc"]["type"] == "fp8"
    layers = document["layers"]
    assert [layer["op"] for layer in layers] == ["quantize", "dynamic_quantize", "dequantize", "dequantize"]
    assert layers[1]["granularity"]["kind"] == "NVFP4" and layers[1]["granularity"]["block"] == [1, 16]
    assert layers[3]["granularity"] == {"kind": "block", "axis": None, "block": [1, 16],
                                        "text": "block [1, 16], to bfloat16"}
    assert layers[0]["granularity"]["kind"] == "per-tensor"
    assert document["outputs"] == ["y", "wq"] and document["inputs"] == ["x"]


def test_graph_json_attrs_keep_their_types() -> None:
    layers = view.graph_json(netdsl.loads(CHAIN).graph)["layers"]
    assert layers[0]["attrs"] == {} and layers[2]["attrs"] == {"to_type": "bfloat16"}  # defaults left out
    assert layers[1]["attrs"] == {"axis": 1, "block_size": 16}
