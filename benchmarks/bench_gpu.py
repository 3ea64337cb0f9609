"""Throughput of the CUDA kernels against the device's own copy rate.

    python3 benchmarks/bench_gpu.py [--sizes 20,24,28] [--reps 30] [--out FILE]

Each case runs through netdsl.backends.cuda as a user would (output allocation included), captured
into a CUDA graph (so small sizes measure the GPU, not Python's launch overhead; falls back to plain
launches if capture fails), over enough rotating input buffers (at least 256 MiB in all, far above
the 50 MB L2) that no run reads a cached input. Times are CUDA-event medians after a warm-up.
Bytes = each input read once + each output written once; GB/s = 1e9 bytes/s; % copy compares with a
device-to-device copy (bytes read + written) measured in the same run.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netdsl import dtypes  # noqa: E402
from netdsl.backends import cuda  # noqa: E402

ROTATION_BYTES = 256 << 20
ROW = 4096


def timed(cp: Any, launches: list[Callable[[], Any]], reps: int) -> tuple[float, str]:
    """Median seconds per launch, and how it was launched."""
    outputs = [launch() for launch in launches]  # warm-up: compile, memory pool, cached tables
    del outputs  # their blocks go back to the pool, so the capture below allocates nothing new
    cp.cuda.Device().synchronize()
    stream = cp.cuda.Stream(non_blocking=True)
    keep: list[Any] = []
    with stream:
        try:
            stream.begin_capture()
            try:
                keep = [launch() for launch in launches]
            finally:
                graph = stream.end_capture()
            method = "graph"

            def run() -> None:
                graph.launch(stream)
        except Exception:  # capture unsupported here: plain launches
            method = "launch"
            keep = []

            def run() -> None:
                outputs = [launch() for launch in launches]
                del outputs
        run()
        start, end = cp.cuda.Event(), cp.cuda.Event()
        samples = []
        for _ in range(reps):
            start.record(stream)
            run()
            end.record(stream)
            end.synchronize()
            samples.append(cp.cuda.get_elapsed_time(start, end) / 1e3 / len(launches))
    del keep
    return statistics.median(samples), method


_COPY_KERNEL = r"""
extern "C" __global__ void copy16(const uint4* __restrict__ src, uint4* __restrict__ dst, unsigned long long n) {
  // four 16-byte loads in flight per thread, each coalesced across the warp
  const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
  for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) if (i + k * stride < n) v[k] = src[i + k * stride];
#pragma unroll
    for (int k = 0; k < 4; ++k) if (i + k * stride < n) dst[i + k * stride] = v[k];
  }
}
"""


def copy_rate(cp: Any, reps: int) -> dict[str, float]:
    """Device-to-device copies of 1 GiB, bytes read + written per second: cudaMemcpyAsync, CuPy's copy
    kernel, and a 16-byte vector copy kernel."""
    src = cp.random.random((1 << 28,), dtype=np.float32)
    dst = cp.empty_like(src)
    vectors = src.nbytes // 16
    kernel = cp.RawKernel(_COPY_KERNEL, "copy16")
    sms = cp.cuda.Device().attributes["MultiProcessorCount"]
    variants = {
        "cudaMemcpyAsync": lambda: dst.data.copy_from_device_async(src.data, src.nbytes),
        "CuPy copy": lambda: dst.__setitem__(Ellipsis, src),
        "vector copy kernel": lambda: kernel((sms * 8,), (256,), (src, dst, np.uint64(vectors))),
    }
    return {name: 2 * src.nbytes / timed(cp, [launch], reps)[0] for name, launch in variants.items()}


def random_input(cp: Any, n: int, dtype: dtypes.DType) -> cuda.DeviceTensor:
    values = cp.random.standard_normal(n, dtype=np.float32) * cp.float32(3)
    if dtype == dtypes.FLOAT32:
        data = values
    else:  # bfloat16: round the float32 bits to nearest even
        u = values.view(np.uint32)
        data = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return cuda.DeviceTensor(dtype, (n // ROW, ROW), data)


def scale_tensor(cp: Any, shape: tuple[int, ...]) -> cuda.DeviceTensor:
    return cuda.DeviceTensor(dtypes.FLOAT32, shape, cp.random.uniform(0.01, 1, math.prod(shape)).astype(np.float32))


def cases(cp: Any, n: int, in_type: dtypes.DType):
    """(label, bytes moved, make(x) -> launch) for one size and input type."""
    rows = n // ROW
    in_bytes = n * in_type.bits // 8
    per_tensor = scale_tensor(cp, (1, 1))
    block16 = scale_tensor(cp, (rows, ROW // 16))
    yield "quantize fp8 per-tensor", in_bytes + n, lambda x: lambda: cuda.quantize(
        x, per_tensor, x.shape, dtypes.FP8)
    yield "quantize fp4 block 1x16", in_bytes + n // 2 + n // 4, lambda x: lambda: cuda.quantize(
        x, block16, (1, 16), dtypes.FP4)
    yield "quantize->dequantize fp8 per-tensor", 2 * in_bytes, lambda x: lambda: cuda.quantize_dequantize(
        x, per_tensor, x.shape, dtypes.FP8)
    yield "dynamic NVFP4 1x16", in_bytes + n // 2 + n // 16, lambda x: lambda: cuda.dynamic_quantize(
        x, (1, 16), dtypes.FP4, dtypes.FP8, 1.0)
    yield "dynamic MXFP8 1x32", in_bytes + n + n // 32, lambda x: lambda: cuda.dynamic_quantize(
        x, (1, 32), dtypes.FP8, dtypes.E8M0, None)
    yield "dynamic NVFP4 16x1 (general path)", in_bytes + n // 2 + n // 16, lambda x: lambda: cuda.dynamic_quantize(
        x, (16, 1), dtypes.FP4, dtypes.FP8, 1.0)


def dequantize_cases(cp: Any, n: int, out_type: dtypes.DType):
    rows = n // ROW
    out_bytes = n * out_type.bits // 8
    block16 = scale_tensor(cp, (rows, ROW // 16))
    codes = cp.random.randint(0, 256, n // 2, dtype=np.uint8)
    q = cuda.DeviceTensor(dtypes.FP4, (rows, ROW), codes)
    label = f"dequantize fp4 block 1x16 -> {out_type}"
    yield label, n // 2 + n // 4 + out_bytes, q, lambda q: lambda: cuda.dequantize(q, block16, (1, 16), out_type)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20,24,28", help="log2 of the element counts")
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--out", type=Path, help="also write the table here")
    parser.add_argument("--cases", default="", help="run only cases whose label contains one of these "
                        "comma-separated strings")
    parser.add_argument("--types", default="float32,bfloat16", help="input types")
    parser.add_argument("--defines", default="", help="kernel tuning macros, e.g. NETDSL_MIN_CTAS_PER_SM=3 "
                        "(sets $NETDSL_CUDA_DEFINES before the kernels compile)")
    args = parser.parse_args()
    if args.defines:
        os.environ["NETDSL_CUDA_DEFINES"] = args.defines
    wanted = [w for w in args.cases.split(",") if w]
    ok, reason = cuda.available()
    if not ok:
        sys.exit(f"no GPU: {reason}")
    cp = cuda._cupy()
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    copies = copy_rate(cp, args.reps)
    copy = max(copies.values())
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    tuning = f" [{os.environ['NETDSL_CUDA_DEFINES']}]" if os.environ.get("NETDSL_CUDA_DEFINES") else ""
    lines = [f"device: {name}{tuning}, {props['multiProcessorCount']} SMs; "
             "device-to-device copy of 1 GiB (read + write): "
             + ", ".join(f"{label} {rate / 1e9:.0f} GB/s" for label, rate in copies.items())
             + f"; % copy below is against {copy / 1e9:.0f} GB/s",
             f"{'case':40} {'input':>8} {'elements':>9} {'us':>9} {'GB/s':>7} {'% copy':>7}  launch"]
    print(lines[0], flush=True)
    print(lines[1], flush=True)
    for log2 in (int(s) for s in args.sizes.split(",")):
        n = 1 << log2
        for in_type in (dtypes.lookup(name) for name in args.types.split(",")):
            buffers = max(1, math.ceil(ROTATION_BYTES / (n * in_type.bits // 8)))
            inputs = [random_input(cp, n, in_type) for _ in range(buffers)]
            runs = [(label, moved, [make(x) for x in inputs]) for label, moved, make in cases(cp, n, in_type)
                    if not wanted or any(w in label for w in wanted)]
            for label, moved, q, make in dequantize_cases(cp, n, in_type):
                if wanted and not any(w in label for w in wanted):
                    continue
                copies = max(1, math.ceil(ROTATION_BYTES / q.data.nbytes))
                runs.append((label, moved, [make(cuda.DeviceTensor(q.dtype, q.shape, q.data.copy()))
                                            for _ in range(copies)]))
            for label, moved, launches in runs:
                seconds, method = timed(cp, launches, args.reps)
                rate = moved / seconds
                line = (f"{label:40} {in_type.name:>8} 2^{log2:<7} {seconds * 1e6:9.1f} {rate / 1e9:7.0f} "
                        f"{100 * rate / copy:6.0f}%  {method}")
                lines.append(line)
                print(line, flush=True)
            del inputs, runs
            cp.get_default_memory_pool().free_all_blocks()
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
