"""CPU benchmark: netdsl's NumPy backend beside its peers, one run, 2^24 float32 elements.

    python3 benchmarks/bench_cpu.py [--log2-size 24] [--repeat 15] [--out benchmarks/results-cpu.md]

Targets (issue 5): int8 per-tensor quantize within 3x of onnxruntime's QuantizeLinear (CPU provider,
graph optimizations off); fp8 and fp4 quantize at least 3x faster than ``np.clip(x / s, ...)`` followed
by ml_dtypes ``astype``. Times are medians of wall-clock runs (the backend call only, inputs prepared).
int8 is measured twice where numba is installed: through the compiled loop, and with ``NETDSL_NUMBA=0``
(NumPy only).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import ml_dtypes
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402
from netdsl.backends.numpy import BACKEND, compiled  # noqa: E402


def median_time(function, repeat: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


#: the scales measured: a power of two (netdsl multiplies by its exact reciprocal) and a general one (a true
#: division, as TensorRT and onnxruntime compute it)
SCALES = {"2^-7": "0.0078125", "1/127": "0.007874016"}


def netdsl_quantize(x: np.ndarray, to_type: str, scale: str = SCALES["1/127"], numba: str = "1"):
    net = netdsl.loads(f"input x : float32[{x.size}]\nconst s : float32[] = {scale}\n"
                       f"q = quantize(x, s, to_type={to_type})\noutput q\n")
    inputs = net.prepare_inputs({"x": x})

    def run():
        os.environ["NETDSL_NUMBA"] = numba
        return BACKEND.run(net.graph, inputs)
    return run


def ort_quantize_linear(x: np.ndarray, scale: str):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])], "q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [x.size])],
        [helper.make_tensor_value_info("q", TensorProto.INT8, [x.size])],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [float(np.float32(scale))]),
         helper.make_tensor("z", TensorProto.INT8, [], [0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    onnx.checker.check_model(model)
    return lambda: session.run(None, {"x": x})


def naive(x: np.ndarray, bound: float, dtype, scale: str):
    s = np.float32(scale)
    return lambda: np.clip(x / s, -bound, bound).astype(dtype)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log2-size", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    n = 1 << args.log2_size
    x = np.random.default_rng(0).uniform(-1, 1, n).astype(np.float32)
    # netdsl's cases first, then the peers: onnxruntime's pool threads spin on after a call (and its sessions
    # live until collected), which would slow whatever runs next
    paths = (["1"] if compiled.kernel() is not None else []) + ["0"]
    cases = [("int8", name, scale, path) for name, scale in SCALES.items() for path in paths]
    cases += [(to_type, name, scale, "1") for name, scale in SCALES.items() for to_type in ("fp8", "fp4")]
    ours = [median_time(netdsl_quantize(x, to_type, scale, path), args.repeat) for to_type, _, scale, path in cases]
    rows = []
    for (to_type, name, scale, path), time_ours in zip(cases, ours):
        if to_type == "int8":
            peer_name, peer, target = "onnxruntime QuantizeLinear", ort_quantize_linear(x, scale), "within 3x (>= 0.33)"
        else:
            bound, dtype = (448, ml_dtypes.float8_e4m3fn) if to_type == "fp8" else (6, ml_dtypes.float4_e2m1fn)
            peer_name, peer, target = "np.clip(x / s) + ml_dtypes astype", naive(x, bound, dtype, scale), ">= 3x"
        time_peer = median_time(peer, args.repeat)
        how = "" if to_type != "int8" else " (compiled loop)" if path == "1" else " (NumPy only)"
        rows.append((f"{to_type} per-tensor quantize, scale {name}{how}", time_ours, peer_name, time_peer,
                     time_peer / time_ours, target))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                            check=False).stdout.strip()
    try:
        from importlib.metadata import version
        numba = f"numba {version('numba')}"
    except Exception:
        numba = "no numba"
    lines = [f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; numpy {np.__version__}; "
             f"{numba}; "
             f"{datetime.date.today()}; commit {commit}; 2^{args.log2_size} float32 elements, median of {args.repeat}",
             "", "| op | netdsl (ms) | peer | peer (ms) | speed vs peer | target |", "|---|---|---|---|---|---|"]
    for op, ours, peer_name, peer, ratio, target in rows:
        lines.append(f"| {op} | {ours * 1e3:.1f} | {peer_name} | {peer * 1e3:.1f} | {ratio:.2f}x | {target} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
