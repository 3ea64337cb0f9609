"""The GPU benchmark suite: every op and mode against the device's own copy rate and against peers.

    python3 benchmarks/bench_gpu.py --out benchmarks/results-gpu.md      # the whole suite, ~4 minutes

Options: --sizes 20,24,28 (log2 element counts), --types float32,bfloat16, --cases SUBSTRINGS,
--reps N, --no-peers, --budget SECONDS (peers still waiting when it is spent are listed as skipped),
--commit TEXT (recorded in the header; default: git rev-parse, where .git exists).

Method (.library/device/METHOD.md): each netdsl case runs through netdsl.backends.cupy as a user
would (output allocation included), captured into a CUDA graph (small sizes measure the GPU, not
Python's launch overhead), over enough rotating input buffers (>= 256 MiB in all, far above the
50 MB L2) that no run reads a cached input; times are CUDA-event medians after a warm-up. Bytes =
each input read once + each output written once (the minimum); GB/s = 1e9 bytes/s; % copy compares
with the best device-to-device copy (bytes read + written) measured in the same run. Peers (torch,
torch.compile, CuPy ElementwiseKernel, torchao when installed) run at 2^28 elements in the same
process, timed with CUDA events over rotated inputs, counted with the same minimum bytes. Then the
executor's host overhead per layer, a doc example end to end (upload, run, download), and the peak
device memory of a 2^28-element NVFP4 network.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netdsl import dtypes  # noqa: E402
from netdsl.backends import cupy as gpu  # noqa: E402
from netdsl.backends.cupy.device import import_cupy  # noqa: E402

ROTATION_BYTES = 256 << 20


class Traffic(NamedTuple):
    """The fewest bytes a case moves: each input read once, each output written once."""

    read: int
    write: int

    @property
    def total(self) -> int:
        return self.read + self.write

ROW = 4096
D = dtypes


# --------------------------------------------------------------------------------------------------
# Timing


def timed(cp: Any, launches: list[Callable[[], Any]], reps: int) -> tuple[float, str]:
    """Median seconds per launch (CUDA events around a graph replay of all launches), and how."""
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
        # Two rounds, the first discarded: the first case timed after new buffers (or a quiet GPU) came out
        # slow in earlier runs whichever case it was, an effect of the measurement rather than the kernel.
        for _ in range(2):
            samples = []
            for _ in range(reps):
                start.record(stream)
                run()
                end.record(stream)
                end.synchronize()
                samples.append(cp.cuda.get_elapsed_time(start, end) / 1e3 / len(launches))
    del keep
    return statistics.median(samples), method


def warm_up(cp: Any, launches: list[Callable[[], Any]], seconds: float = 0.0) -> None:
    """Run ``launches`` once (at least ``seconds`` of them, repeating), outputs discarded: compiles, fills
    the memory pool and the cached tables, touches every input buffer and raises the GPU clocks."""
    began = time.perf_counter()
    while True:
        outputs = [launch() for launch in launches]
        del outputs
        cp.cuda.Device().synchronize()
        if time.perf_counter() - began >= seconds:
            return


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
    """Device-to-device copies of 1 GiB, bytes read + written per second."""
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


_TRAFFIC_KERNEL = r"""
// Whether vector k of the index space [0, n) moves on a side of `count` vectors, and which one. Interleaved
// (a streaming kernel's order): vector (k * step) >> 32 where that index changes, step = floor(2^32 * count
// / n), so each vector moves once and the index stays below count. As a prefix: vector k where k < count.
template <bool kPrefix>
__device__ bool moves(unsigned long long k, unsigned long long n, unsigned long long count,
                      unsigned long long step, unsigned long long* index) {
  if (kPrefix) {
    *index = k;
    return k < count;
  }
  *index = (k * step) >> 32;
  return k < n && (k == 0 || (((k - 1) * step) >> 32) != *index);
}

// Reads n_in and writes n_out 16-byte vectors, coalesced, four in flight per thread.
template <bool kPrefix>
__device__ void traffic(const uint4* __restrict__ src, uint4* __restrict__ dst, unsigned long long n,
                        unsigned long long n_in, unsigned long long n_out, unsigned long long in_step,
                        unsigned long long out_step) {
  const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
  uint4 acc = make_uint4(0, 0, 0, 0);
  for (unsigned long long base = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; base < n;
       base += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      unsigned long long i;
      v[u] = moves<kPrefix>(base + u * stride, n, n_in, in_step, &i) ? src[i] : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      unsigned long long j;
      acc.x ^= v[u].x; acc.y ^= v[u].y; acc.z ^= v[u].z; acc.w ^= v[u].w;
      if (moves<kPrefix>(base + u * stride, n, n_out, out_step, &j)) dst[j] = acc;
    }
  }
}

extern "C" __global__ void traffic16(const uint4* src, uint4* dst, unsigned long long n, unsigned long long n_in,
                                     unsigned long long n_out, unsigned long long in_step,
                                     unsigned long long out_step) {
  traffic<false>(src, dst, n, n_in, n_out, in_step, out_step);
}

extern "C" __global__ void traffic16_prefix(const uint4* src, uint4* dst, unsigned long long n,
                                            unsigned long long n_in, unsigned long long n_out,
                                            unsigned long long in_step, unsigned long long out_step) {
  traffic<true>(src, dst, n, n_in, n_out, in_step, out_step);
}
"""


#: the traffic kernel's launch shapes: (CTAs per SM, threads per CTA)
TRAFFIC_SHAPES = ((4, 256), (8, 256), (16, 128), (2, 1024))


def traffic_rates(cp: Any, read_bytes: int, write_bytes: int, reps: int, random_source: bool = False
                  ) -> dict[tuple[str, int, int], float]:
    """Bytes per second of a trivial kernel that reads exactly ``read_bytes`` and writes ``write_bytes``
    (coalesced 16-byte accesses) over rotated inputs, by (order, CTAs per SM, threads): order
    'interleaved' (over the longer side, a streaming kernel's order) or 'prefix' (two prefixes of one
    index space). The sources hold a constant word, or random bits with ``random_source``."""
    kernels = {"interleaved": cp.RawKernel(_TRAFFIC_KERNEL, "traffic16"),
               "prefix": cp.RawKernel(_TRAFFIC_KERNEL, "traffic16_prefix")}
    n_in, n_out = -(-read_bytes // 16), -(-write_bytes // 16)
    n = max(n_in, n_out)
    in_step, out_step = (n_in << 32) // n, (n_out << 32) // n
    buffers = max(1, math.ceil(ROTATION_BYTES / max(1, read_bytes)))
    sources = [cp.empty(n_in * 4, dtype=np.uint32) for _ in range(buffers)]
    for source in sources:
        if random_source:
            source[...] = cp.random.randint(0, 1 << 31, n_in * 4, dtype=np.uint32)
        else:
            source[...] = 0x3F800000
    sms = cp.cuda.Device().attributes["MultiProcessorCount"]
    rates = {}
    for ctas_per_sm, threads in TRAFFIC_SHAPES:
        for order, kernel in kernels.items():
            launches = [lambda s=s, c=ctas_per_sm, t=threads, k=kernel: k(
                (sms * c,), (t,), (s, cp.empty(n_out * 4, dtype=np.uint32), np.uint64(n), np.uint64(n_in),
                                   np.uint64(n_out), np.uint64(in_step), np.uint64(out_step))) for s in sources]
            rates[(order, ctas_per_sm, threads)] = (read_bytes + write_bytes) / timed(cp, launches, reps)[0]
    del sources
    cp.get_default_memory_pool().free_all_blocks()
    return rates


# --------------------------------------------------------------------------------------------------
# Inputs


def float_data(cp: Any, n: int, dtype: dtypes.DType) -> Any:
    values = cp.random.standard_normal(n, dtype=np.float32) * cp.float32(3)
    if dtype == D.FLOAT32:
        return values
    u = values.view(np.uint32)  # bfloat16: round the float32 bits to nearest even
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def random_input(cp: Any, n: int, dtype: dtypes.DType) -> gpu.DeviceTensor:
    return gpu.DeviceTensor(dtype, (n // ROW, ROW), float_data(cp, n, dtype))


def random_codes(cp: Any, n: int, dtype: dtypes.DType) -> gpu.DeviceTensor:
    """Random codes of a quantized type; fp8 without its NaN codes (real data has none)."""
    length = n // 2 if dtype.bits == 4 else n
    codes = cp.random.randint(0, 256, length, dtype=np.uint8)
    if dtype == D.FP8:
        codes = cp.where((codes & 0x7F) == 0x7F, codes ^ 1, codes).astype(np.uint8)
    return gpu.DeviceTensor(dtype, (n // ROW, ROW), codes)


def scale_tensor(cp: Any, shape: tuple[int, ...], dtype: dtypes.DType = D.FLOAT32) -> gpu.DeviceTensor:
    values = cp.random.uniform(0.01, 1, math.prod(shape)).astype(np.float32)
    if dtype == D.FP8:  # positive fp8 codes 0x20..0x6F
        return gpu.DeviceTensor(dtype, shape, cp.random.randint(0x20, 0x70, math.prod(shape), dtype=np.uint8))
    return gpu.DeviceTensor(dtype, shape, values)


class RotatedInputs:
    """A case's rotated input buffers (>= ROTATION_BYTES in all) of one size and float type, made on first
    use and shared by the cases: kind 'x' (float tensors) or ('q', qtype) (random codes)."""

    def __init__(self, cp: Any, n: int, t: dtypes.DType):
        self.cp, self.n, self.t = cp, n, t
        self.made: dict[str, list[gpu.DeviceTensor]] = {}

    def __call__(self, kind: Any) -> list[gpu.DeviceTensor]:
        key = "x" if kind == "x" else kind[1].name
        if key not in self.made:
            bits = self.t.bits if kind == "x" else kind[1].bits
            count = max(1, math.ceil(ROTATION_BYTES / max(1, self.n * bits // 8)))
            make = (lambda: random_input(self.cp, self.n, self.t)) if kind == "x" else \
                (lambda: random_codes(self.cp, self.n, kind[1]))
            self.made[key] = [make() for _ in range(count)]
        return self.made[key]


QTYPES = (D.INT8, D.INT4, D.FP8, D.FP4)
ONE_D = {"int8": 128, "int4": 128, "fp8": 128, "fp4": 16}  # the 1-D block along the row per type
ND = (128, 128)


def granularities(rows: int, qtype: dtypes.DType):
    """(label, block, scale shape) of each granularity over a rows x ROW tensor."""
    b = ONE_D[qtype.name]
    yield "per-tensor", (rows, ROW), (1, 1)
    yield "per-channel", (1, ROW), (rows, 1)
    yield f"block 1x{b}", (1, b), (rows, ROW // b)
    yield f"block {ND[0]}x{ND[1]}", ND, (-(-rows // ND[0]), ROW // ND[1])


def cases(cp: Any, n: int, t: dtypes.DType):
    """(label, bytes moved, input kind, make(input) -> launch): 'x' inputs are float tensors of type t,
    ('q', qtype) inputs random codes; Dequantize cases write type t."""
    rows = n // ROW
    tb = t.bits // 8
    for q in QTYPES:
        for name, block, sshape in granularities(rows, q):
            scale = scale_tensor(cp, sshape)
            sbytes = 4 * math.prod(sshape)
            yield (f"Q {q} {name}", Traffic(n * tb + sbytes, n * q.bits // 8), "x",
                   lambda x, s=scale, b=block, q=q: lambda: gpu.quantize(x, s, b, q))
            yield (f"DQ {q} {name}", Traffic(n * q.bits // 8 + sbytes, n * tb), ("q", q),
                   lambda c, s=scale, b=block: lambda: gpu.dequantize(c, s, b, t))
    for q, (name, block, sshape) in [(q, next(granularities(rows, q))) for q in QTYPES] + [
            (D.INT8, list(granularities(rows, D.INT8))[1]), (D.FP4, list(granularities(rows, D.FP4))[2]),
            (D.INT4, list(granularities(rows, D.INT4))[2])]:
        scale = scale_tensor(cp, sshape)
        yield (f"Q->DQ {q} {name} (fused)", Traffic(n * tb + 4 * math.prod(sshape), n * tb), "x",
               lambda x, s=scale, b=block, q=q: lambda: gpu.quantize_dequantize(x, s, b, q))
    codes, dqs = scale_tensor(cp, (rows, ROW // 16), D.FP8), scale_tensor(cp, (1, 1))
    yield ("DQ(fp4, DQ(fp8 scale, dqs)) 1x16 (fused chain)", Traffic(n // 2 + n // 16, n * tb), ("q", D.FP4),
           lambda c: lambda: gpu.dequantize_double(c, codes, dqs, (1, 16), t, t))
    nvfp4 = Traffic(n * tb, n // 2 + n // 16)
    mxfp8 = Traffic(n * tb, n + n // 32)
    yield "DynQ NVFP4 1x16", nvfp4, "x", lambda x: lambda: gpu.dynamic_quantize(x, (1, 16), D.FP4, D.FP8, 1.0)
    yield "DynQ NVFP4 16x1", nvfp4, "x", lambda x: lambda: gpu.dynamic_quantize(x, (16, 1), D.FP4, D.FP8, 1.0)
    yield "DynQ MXFP8 1x32", mxfp8, "x", lambda x: lambda: gpu.dynamic_quantize(x, (1, 32), D.FP8, D.E8M0, None)
    yield "DynQ MXFP8 32x1", mxfp8, "x", lambda x: lambda: gpu.dynamic_quantize(x, (32, 1), D.FP8, D.E8M0, None)
    yield ("DynQ float fp8 1x128", Traffic(n * tb, n + 4 * (n // 128)), "x",
           lambda x: lambda: gpu.dynamic_quantize(x, (1, 128), D.FP8, D.FLOAT32, None))
    yield ("DynQ float int8 1x128", Traffic(n * tb, n + 4 * (n // 128)), "x",
           lambda x: lambda: gpu.dynamic_quantize(x, (1, 128), D.INT8, D.FLOAT32, None))
    yield ("DynQ float fp8 32x32", Traffic(n * tb, n + 4 * (n // 1024)), "x",
           lambda x: lambda: gpu.dynamic_quantize(x, (32, 32), D.FP8, D.FLOAT32, None))
    yield ("DynQ float fp8 128x128", Traffic(n * tb, n + 4 * (n // 16384)), "x",
           lambda x: lambda: gpu.dynamic_quantize(x, (128, 128), D.FP8, D.FLOAT32, None))
    yield ("DynQ float int8 128x128", Traffic(n * tb, n + 4 * (n // 16384)), "x",
           lambda x: lambda: gpu.dynamic_quantize(x, (128, 128), D.INT8, D.FLOAT32, None))
    yield ("DynQ float int8 1x4096", Traffic(n * tb, n + 4 * (n // ROW)), "x",
           lambda x: lambda: gpu.dynamic_quantize(x, (1, ROW), D.INT8, D.FLOAT32, None))
    yield ("DynQ float fp8 per-tensor (general path)", Traffic(n * tb, n + 4), "x",
           lambda x: lambda: gpu.dynamic_quantize(x, (rows, ROW), D.FP8, D.FLOAT32, None))


# --------------------------------------------------------------------------------------------------
# Peers (2^28 elements)

PEER_FOR = {  # netdsl case label -> the peers that do the same job
    "Q int8 per-tensor": ["torch.quantize_per_tensor (qint8)", "torch.compile int8 quantize",
                          "CuPy ElementwiseKernel int8 quantize"],
    "Q fp8 per-tensor": ["torch.compile fp8 quantize"],
    "Q->DQ int8 per-tensor (fused)": ["torch.fake_quantize_per_tensor_affine"],
    "Q->DQ int8 per-channel (fused)": ["torch.fake_quantize_per_channel_affine"],
    "DynQ MXFP8 1x32": ["torch.compile MXFP8 quantize", "torchao to_mx"],
    "DynQ NVFP4 1x16": ["torch.compile NVFP4 quantize", "torchao NVFP4"],
}


def peer_launches(torch: Any, cp: Any, inputs: list[Any], t: dtypes.DType, rows: int) -> dict[str, Any]:
    """name -> (make(x) -> launch) or an error text."""
    tdtype = torch.float32 if t == D.FLOAT32 else torch.bfloat16
    peers: dict[str, Any] = {}
    scale = 0.05

    def q_int8(x):
        return torch.clamp(torch.round(x.float() / scale), -128, 127).to(torch.int8)

    def q_fp8(x):
        return torch.clamp(x.float() / scale, -448.0, 448.0).to(torch.float8_e4m3fn)

    def mxfp8(x):
        blocks = x.float().reshape(-1, 32)
        amax = blocks.abs().amax(dim=1, keepdim=True)
        exponent = torch.clamp(torch.ceil(torch.log2(amax / 448.0)), -127, 127)
        data = torch.clamp(blocks / torch.exp2(exponent), -448.0, 448.0).to(torch.float8_e4m3fn)
        return data.reshape(x.shape), (exponent + 127).to(torch.uint8)

    def nvfp4(x):
        blocks = x.float().reshape(-1, 16)
        amax = blocks.abs().amax(dim=1, keepdim=True)
        s = (amax / 6.0).clamp(max=448.0).to(torch.float8_e4m3fn)
        q = blocks / s.float()
        a = q.abs()
        code = ((a > 0.25).to(torch.uint8) + (a >= 0.75).to(torch.uint8) + (a > 1.25).to(torch.uint8)
                + (a >= 1.75).to(torch.uint8) + (a > 2.5).to(torch.uint8) + (a >= 3.5).to(torch.uint8)
                + (a > 5.0).to(torch.uint8)) | ((q < 0).to(torch.uint8) << 3)
        pairs = code.reshape(-1, 2)
        return (pairs[:, 0] | (pairs[:, 1] << 4)), s

    def try_add(name: str, build: Callable[[], Any]) -> None:
        try:
            peers[name] = build()
        except Exception as error:  # noqa: BLE001 - a peer that cannot run is recorded, not fatal
            peers[name] = f"n/a ({type(error).__name__}: {str(error).splitlines()[0][:80] if str(error) else ''})"

    try_add("torch.quantize_per_tensor (qint8)",
            lambda: lambda x: lambda: torch.quantize_per_tensor(x, scale, 0, torch.qint8))
    try_add("torch.compile int8 quantize", lambda: _compiled(torch, q_int8))
    try_add("torch.compile fp8 quantize", lambda: _compiled(torch, q_fp8))
    try_add("torch.fake_quantize_per_tensor_affine",
            lambda: lambda x: lambda: torch.fake_quantize_per_tensor_affine(x, scale, 0, -128, 127))
    channel_scale = torch.rand(rows, device="cuda", dtype=torch.float32) * 0.1 + 0.01
    channel_zero = torch.zeros(rows, device="cuda", dtype=torch.int32)
    try_add("torch.fake_quantize_per_channel_affine",
            lambda: lambda x: lambda: torch.fake_quantize_per_channel_affine(x, channel_scale, channel_zero, 0,
                                                                             -128, 127))
    try_add("CuPy ElementwiseKernel int8 quantize", lambda: _cupy_int8(cp, t))
    try_add("torch.compile MXFP8 quantize", lambda: _compiled(torch, mxfp8))
    try_add("torch.compile NVFP4 quantize", lambda: _compiled(torch, nvfp4))
    try:
        import torchao  # noqa: F401
        has_torchao = True
    except Exception as error:  # noqa: BLE001
        has_torchao = False
        peers["torchao to_mx"] = peers["torchao NVFP4"] = f"n/a (torchao not installed: {type(error).__name__})"
    if has_torchao:
        def to_mx():  # torchao's own quantizers, compiled as torchao runs them
            from torchao.prototype.mx_formats.mx_tensor import to_mx as convert
            return _compiled(torch, lambda x: convert(x, torch.float8_e4m3fn, 32))

        def to_nvfp4():
            from torchao.prototype.mx_formats.nvfp4_tensor import nvfp4_quantize
            return _compiled(torch, lambda x: nvfp4_quantize(x, 16))
        try_add("torchao to_mx", to_mx)
        try_add("torchao NVFP4", to_nvfp4)
    del tdtype
    return peers


def _compiled(torch: Any, function: Callable[..., Any]) -> Callable[[Any], Callable[[], Any]]:
    compiled = torch.compile(function, dynamic=False)
    return lambda x: lambda: compiled(x)


def _cupy_int8(cp: Any, t: dtypes.DType) -> Callable[[Any], Callable[[], Any]]:
    """A straightforward CuPy ElementwiseKernel int8 quantize (x / s, round half even, clamp)."""
    import torch

    if t == D.FLOAT32:
        kernel = cp.ElementwiseKernel("float32 x, float32 s", "int8 q",
                                      "q = (signed char)fminf(fmaxf(rintf(x / s), -128.0f), 127.0f)", "netdsl_peer_q8")
    else:
        body = ("q = (signed char)fminf(fmaxf(rintf(__uint_as_float(((unsigned int)(unsigned short)x) << 16) / s),"
                " -128.0f), 127.0f)")
        kernel = cp.ElementwiseKernel("int16 x, float32 s", "int8 q", body, "netdsl_peer_q8_bf16")

    def make(x: Any) -> Callable[[], Any]:
        raw = cp.from_dlpack(x if t == D.FLOAT32 else x.view(torch.int16))  # zero copy
        return lambda: kernel(raw, np.float32(0.05), cp.empty(raw.shape, dtype=np.int8))
    return make


def time_torch(torch: Any, launches: list[Callable[[], Any]], reps: int) -> float:
    """Median seconds per launch: CUDA events around one pass over the rotated inputs."""
    for launch in launches:  # warm-up (torch.compile compiles here)
        launch()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for _ in range(reps):
        start.record()
        for launch in launches:
            launch()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3 / len(launches))
    return statistics.median(samples)


def run_peers(cp: Any, t: dtypes.DType, n: int, reps: int, deadline: float, case_bytes: dict[str, int],
              copy: float, results: dict[tuple[str, str], str]) -> None:
    try:
        import torch
    except Exception as error:  # noqa: BLE001
        for names in PEER_FOR.values():
            for peer in names:
                results[(peer, t.name)] = f"n/a (no torch: {type(error).__name__})"
        return
    rows = n // ROW
    buffers = max(1, math.ceil(ROTATION_BYTES / (n * t.bits // 8)))
    tdtype = torch.float32 if t == D.FLOAT32 else torch.bfloat16
    inputs = [(torch.randn(rows, ROW, device="cuda", dtype=torch.float32) * 3).to(tdtype) for _ in range(buffers)]
    peers = peer_launches(torch, cp, inputs, t, rows)
    for case, names in PEER_FOR.items():
        for name in names:
            key = (name, t.name)
            if time.monotonic() > deadline:
                results[key] = "skipped (time budget)"
                continue
            make = peers.get(name)
            if isinstance(make, str) or make is None:
                results[key] = make or "n/a"
                continue
            try:
                seconds = time_torch(torch, [make(x) for x in inputs], reps)
                rate = case_bytes[case] / seconds
                results[key] = f"{name}: {seconds * 1e6:.1f} µs, {100 * rate / copy:.0f}%"
            except Exception as error:  # noqa: BLE001
                first = str(error).splitlines()[0][:80] if str(error) else ""
                results[key] = f"{name}: n/a ({type(error).__name__}: {first})"
            print(f"  peer {t.name:8} {results[key]}", flush=True)
    del inputs, peers
    torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------------
# Host overhead, end to end, peak memory


def host_overhead(cp: Any, reps: int = 300) -> dict[str, float]:
    """Host µs per executed step of the executor on tiny tensors (kernels queue asynchronously, the
    host time is what is left): a chain of 64 quantize/dequantize layers, fused (32 steps) and not."""
    import netdsl
    from netdsl.backends.cupy import BACKEND

    layers = ["network overhead", "input x : float32[16, 64]", "const s : float32[16, 4] = "
              + str(np.full((16, 4), 0.25).tolist())]
    previous = "x"
    for i in range(32):
        layers += [f"q{i} = quantize({previous}, s, to_type=fp8)", f"y{i} = dequantize(q{i}, s, to_type=float32)"]
        previous = f"y{i}"
    layers.append(f"output {previous}")
    graph = netdsl.loads("\n".join(layers) + "\n").graph
    x = gpu.upload(np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32), D.FLOAT32)
    result = {}
    for fusion in (False, True):
        BACKEND.fusion = fusion
        steps = len(BACKEND.schedule(graph))
        samples = []
        for i in range(reps + 20):
            cp.cuda.Device().synchronize()
            start = time.perf_counter()
            BACKEND.run_device(graph, {"x": x})
            elapsed = time.perf_counter() - start
            if i >= 20:
                samples.append(elapsed)
        result["fused" if fusion else "unfused"] = statistics.median(samples) / steps * 1e6
        result["layer_fused" if fusion else "layer_unfused"] = statistics.median(samples) / 64 * 1e6
        result["steps_fused" if fusion else "steps_unfused"] = steps
    BACKEND.fusion = None
    cp.cuda.Device().synchronize()
    return result


def end_to_end(cp: Any, reps: int = 500) -> dict[str, float]:
    """examples/dynamic_quantize.net on the GPU, warm: upload the input, run, download the output.
    The calls are interleaved round by round (so that neither pays for coming first), and the pieces
    Network.run adds to the backend (prepare_inputs, get_backend) are timed on their own."""
    import netdsl
    from netdsl.backends import get_backend
    from netdsl.backends.cupy import BACKEND

    network = netdsl.load(ROOT / "examples" / "dynamic_quantize.net")
    x = np.random.default_rng(1).standard_normal((2, 32)).astype(np.float32)
    prepared = network.prepare_inputs({"input": x})
    calls = [("BACKEND.run", lambda: BACKEND.run(network.graph, prepared)),
             ("Network.run(backend='cupy')", lambda: network.run({"input": x}, backend="cupy")),
             ("prepare_inputs alone", lambda: network.prepare_inputs({"input": x})),
             ("get_backend alone", lambda: get_backend("cupy"))]
    samples: dict[str, list[float]] = {label: [] for label, _ in calls}
    for i in range(reps + 50):
        for label, call in calls if i % 2 else calls[::-1]:
            start = time.perf_counter()
            call()
            if i >= 50:
                samples[label].append(time.perf_counter() - start)
    result = {label: statistics.median(values) * 1e6 for label, values in samples.items()}
    return result


DEVICE_ARRAY_CASES = {  # label -> (the one-layer network, the kernel case of the table, its input type)
    "quantize int8 per-tensor, float32": (
        "input x : float32[{rows}, 4096]\nconst s : float32[] = 0.05\nq = quantize(x, s)\noutput q\n",
        "Q int8 per-tensor", "float32"),
    "dynamic_quantize NVFP4 1x16, bfloat16": (
        "input x : bfloat16[{rows}, 4096]\nconst dqs : float32[] = 1\n"
        "d, sc = dynamic_quantize(x, dqs, axis=1, block_size=16, output_type=fp4, scale_type=fp8)\noutput d, sc\n",
        "DynQ NVFP4 1x16", "bfloat16"),
}


def device_array_runs(cp: Any, table: dict[tuple[str, str], dict[int, tuple[float, float]]], log2: int,
                      reps: int) -> dict[str, tuple[float, float]]:
    """Seconds per ``Network.run`` on PyTorch CUDA tensors (back-to-back over rotated inputs, CUDA events on
    PyTorch's current stream) beside the kernel case's own seconds: label -> (run, kernel)."""
    import torch

    import netdsl

    result = {}
    n = 1 << log2
    for label, (text, case, type_name) in DEVICE_ARRAY_CASES.items():
        kernel = table.get((case, type_name), {}).get(log2)
        if kernel is None:
            continue
        network = netdsl.loads(text.format(rows=n // ROW))
        tdtype = torch.float32 if type_name == "float32" else torch.bfloat16
        count = max(2, math.ceil(ROTATION_BYTES / (n * (4 if type_name == "float32" else 2))))
        inputs = [(torch.randn(n // ROW, ROW, device="cuda") * 3).to(tdtype) for _ in range(count)]
        # ten passes over the rotated inputs per sample: a steady stream of runs, as a pipeline makes them
        seconds = time_torch(torch, [lambda x=x, net=network: net.run({"x": x}) for x in inputs] * 10, reps)
        result[label] = (seconds, kernel[0])
        del inputs
        torch.cuda.empty_cache()
        cp.get_default_memory_pool().free_all_blocks()
    return result


def peak_memory(cp: Any) -> dict[str, Any]:
    """A 2^28-element NVFP4 network (examples/nvfp4_bf16.net's layers on bfloat16[65536, 4096]): the
    CuPy memory pool's high-water mark (pool.total_bytes() with the pool emptied after the input was
    made; freed blocks are reused, so it is the peak of what was live at once), fused and unfused."""
    import netdsl
    from netdsl.backends.cupy import BACKEND

    text = (ROOT / "examples" / "nvfp4_bf16.net").read_text().replace("bfloat16[8, 64]", "bfloat16[65536, 4096]")
    graph = netdsl.loads(text).graph
    pool = cp.get_default_memory_pool()
    result: dict[str, Any] = {}
    for fusion in (True, False):
        BACKEND.fusion = fusion
        # x made without temporaries (bfloat16 1.5 everywhere: the values don't change what is allocated), so
        # that it fills its own pool chunk: a random x is cut from a larger chunk of its temporaries, whose free
        # rest the run's outputs would then reuse unseen
        x = gpu.DeviceTensor(D.BFLOAT16, (65536, 4096), cp.full(1 << 28, 0x3FC0, dtype=np.uint16))
        cp.cuda.Device().synchronize()
        pool.free_all_blocks()  # only x is left in the pool (a fresh process: nothing else was allocated)
        base = pool.total_bytes()
        outputs = BACKEND.run_device(graph, {"x": x})
        cp.cuda.Device().synchronize()
        result["fused" if fusion else "unfused"] = pool.total_bytes() / 2**20
        result["added_fused" if fusion else "added_unfused"] = (pool.total_bytes() - base) / 2**20
        result["base"] = base / 2**20  # x and whatever else the process still holds (CuPy's RNG buffers)
        result["input"] = x.data.nbytes / 2**20
        result["outputs"] = {name: t.data.nbytes / 2**20 for name, t in outputs.items()}
        del outputs, x
        pool.free_all_blocks()
    BACKEND.fusion = None
    return result


def peak_memory_fresh() -> dict[str, Any]:
    """peak_memory() in a fresh process: its pool holds nothing but what the network run allocates
    (in this process the timing runs leave cached blocks behind, which the run's outputs would reuse)."""
    process = subprocess.run([sys.executable, __file__, "--peak-memory-json"], capture_output=True, text=True,
                             check=True, env=dict(os.environ))
    return json.loads(process.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------
# Main


def commit_text(given: str) -> str:
    if given:
        return given
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + (" + uncommitted changes" if dirty else "")
    except Exception:  # noqa: BLE001
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20,24,28", help="log2 of the element counts")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--out", type=Path, help="write the results (markdown) here")
    parser.add_argument("--cases", default="", help="only cases whose label contains one of these (comma-separated)")
    parser.add_argument("--types", default="float32,bfloat16", help="input (Dequantize: output) types")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--budget", type=float, default=230.0, help="seconds; peers after it are skipped")
    parser.add_argument("--commit", default="")
    parser.add_argument("--defines", default="", help="kernel tuning macros, e.g. NETDSL_MIN_CTAS_PER_SM=3")
    parser.add_argument("--peak-memory-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_memory_json:
        print(json.dumps(peak_memory(import_cupy())))
        return
    began = time.monotonic()
    deadline = began + args.budget
    if args.defines:
        os.environ["NETDSL_CUDA_DEFINES"] = args.defines
    wanted = [w for w in args.cases.split(",") if w]
    ok, reason = gpu.available()
    if not ok:
        sys.exit(f"no GPU: {reason}")
    cp = import_cupy()
    started = time.monotonic()
    built = gpu.precompile()  # kernel parts missing from the disk cache, in parallel processes
    print(f"precompile: {built} kernel parts built in {time.monotonic() - started:.0f} s", flush=True)
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    copies = copy_rate(cp, args.reps)
    cp.get_default_memory_pool().free_all_blocks()
    copy = max(copies.values())
    sizes = [int(s) for s in args.sizes.split(",")]
    types = [dtypes.lookup(t) for t in args.types.split(",")]
    header = [
        "# GPU benchmark results\n",
        f"{name} ({props['multiProcessorCount']} SMs), CuPy {cp.__version__}, "
        f"{datetime.date.today().isoformat()}, commit {commit_text(args.commit)}; "
        f"`python3 benchmarks/bench_gpu.py --out benchmarks/results-gpu.md`.\n",
        "Device-to-device copy of 1 GiB (read + write): "
        + ", ".join(f"{label} {rate / 1e9:.0f} GB/s" for label, rate in copies.items())
        + f"; **% copy is against {copy / 1e9:.0f} GB/s**. Bytes are the minimum (each input read once, each "
        "output written once); CUDA-event medians of graph replays over rotated inputs (>= 256 MiB). Read-heavy "
        "kernels can pass 100%: a copy moves as many bytes each way. Q = Quantize, DQ = Dequantize (the type "
        "column is then the output type), DynQ = DynamicQuantize; scales float32; tensors [n / 4096, 4096]. "
        "The traffic-matched ceiling of a case is a trivial kernel that reads and writes exactly the case's bytes "
        "(16-byte coalesced accesses, interleaved or as two prefixes, the best of both and of four launch shapes, "
        "output allocated per call as netdsl's are), measured in the same run; target: >= 95% of it. The "
        "interleaved-order ceiling is the interleaved order alone: reads and writes spread over the run as a "
        "streaming kernel issues them.\n",
    ]
    print("".join(header), flush=True)
    table: dict[tuple[str, str], dict[int, tuple[float, float]]] = {}
    order: list[str] = []
    case_bytes: dict[tuple[str, str], int] = {}
    case_traffic: dict[tuple[str, str], Traffic] = {}  # at the largest size
    ceilings: dict[Traffic, float] = {}  # traffic-matched ceilings, bytes/s, at the largest size
    interleaved: dict[Traffic, float] = {}  # the same in the interleaved order alone (a streaming kernel's)
    out_text: list[str] = []

    def write(extra: list[str]) -> None:
        if args.out:
            args.out.write_text("\n".join(header + out_text + extra) + "\n")

    for log2 in sizes:
        n = 1 << log2
        for t in types:
            rotated = RotatedInputs(cp, n, t)
            group = []
            for label, moved, kind, make in cases(cp, n, t):
                if wanted and not any(w in label for w in wanted):
                    continue
                group.append((label, moved, make, rotated(kind)))
            # Warm every case of the group (and the GPU clocks, >= 0.3 s of work) before timing any, so
            # that the table reflects the kernels, not the order they were measured in.
            for index, (_label, _, make, inputs) in enumerate(group):
                try:
                    warm_up(cp, [make(x) for x in inputs], 0.3 if index == 0 else 0.0)
                except Exception:  # noqa: BLE001 - reported when the case is timed
                    pass
            for label, moved, make, inputs in group:
                try:
                    seconds, method = timed(cp, [make(x) for x in inputs], args.reps)
                except Exception:  # noqa: BLE001 - one failing case must not lose the others
                    print(f"{label} {t.name} 2^{log2} FAILED\n{traceback.format_exc()}", flush=True)
                    continue
                if label not in order:
                    order.append(label)
                table.setdefault((label, t.name), {})[log2] = (seconds, moved.total / seconds)
                case_bytes[(label, t.name)] = moved.total
                case_traffic[(label, t.name)] = moved
                print(f"{label:48} {t.name:>8} 2^{log2:<3} {seconds * 1e6:9.1f} us "
                      f"{moved.total / seconds / 1e9:7.0f} GB/s {100 * moved.total / seconds / copy:5.0f}%  {method}",
                      flush=True)
            # drop every reference to the group's buffers (the group list, the last case's inputs) before
            # freeing: what stays referenced stays in the pool, and would count as held in peak_memory()
            rotated = group = inputs = None
            cp.get_default_memory_pool().free_all_blocks()

    for traffic in sorted(set(case_traffic.values())):
        rates = traffic_rates(cp, traffic.read, traffic.write, args.reps)
        ceilings[traffic] = max(rates.values())
        interleaved[traffic] = max(rate for (order, *_), rate in rates.items() if order == "interleaved")
        print(f"traffic ceiling read {traffic.read >> 20} MiB write {traffic.write >> 20} MiB: "
              f"{ceilings[traffic] / 1e9:.0f} GB/s (interleaved {interleaved[traffic] / 1e9:.0f})", flush=True)

    def ceiling_share(label: str, t: dtypes.DType, of: dict[Traffic, float] = ceilings) -> float | None:
        last = table.get((label, t.name), {}).get(sizes[-1])
        traffic = case_traffic.get((label, t.name))
        return last[1] / of[traffic] if last and traffic in of else None

    def render_table(peer_results: dict[tuple[str, str], str]) -> list[str]:
        cols = [f"2^{s} µs" for s in sizes]
        lines = ["## Kernels\n", "| case | type | " + " | ".join(cols) + f" | 2^{sizes[-1]} GB/s | "
                 f"2^{sizes[-1]} % copy | traffic-matched ceiling GB/s | % of ceiling | interleaved-order "
                 f"ceiling GB/s | % of it | peers at 2^{sizes[-1]} (µs, % copy) |",
                 "|---|---|" + "---|" * (len(cols) + 7)]
        for label in order:
            for t in types:
                row = table.get((label, t.name))
                if not row:
                    continue
                last = row.get(sizes[-1])
                peers = "; ".join(peer_results.get((p, t.name), "") for p in PEER_FOR.get(label, []))
                lines.append(f"| {label} | {t.name} | " + " | ".join(
                    f"{row[s][0] * 1e6:.1f}" if s in row else "" for s in sizes)
                    + (f" | {last[1] / 1e9:.0f} | {100 * last[1] / copy:.0f}%" if last else " | | ")
                    + (f" | {ceilings[case_traffic[(label, t.name)]] / 1e9:.0f} | "
                       f"{100 * ceiling_share(label, t):.0f}%" if ceiling_share(label, t) is not None else " | | ")
                    + (f" | {interleaved[case_traffic[(label, t.name)]] / 1e9:.0f} | "
                       f"{100 * ceiling_share(label, t, interleaved):.0f}%"
                       if ceiling_share(label, t, interleaved) is not None else " | | ")
                    + f" | {peers} |")
        floors = []
        for label in order:
            for t in types:
                last = table.get((label, t.name), {}).get(sizes[-1])
                if "general path" in label and last:
                    # the block (the whole tensor) cannot stay on chip: x is read twice (amax, quantize)
                    second_read = (1 << sizes[-1]) * t.bits // 8
                    two_read = case_bytes[(label, t.name)] + second_read
                    floors.append(f"{label} {t.name}: {100 * last[1] / copy:.0f}% of the one-read floor, "
                                  f"{100 * two_read / last[0] / copy:.0f}% of the two-read floor")
        if floors:
            lines.append("\nA dynamic block too large to stay on chip must be read twice; against that floor: "
                         + "; ".join(floors) + ".")
        below = [f"{label} {t.name} {100 * share:.0f}% ({100 * ceiling_share(label, t, interleaved):.0f}% of the "
                 "interleaved order's)" for label in order for t in types
                 if (share := ceiling_share(label, t)) is not None and share < 0.95]
        lines.append(f"\nBelow 95% of the traffic-matched ceiling at 2^{sizes[-1]}: "
                     + ("; ".join(below) if below else "none") + ".")
        return lines

    out_text = render_table({})
    write([])
    extra: list[str] = []
    try:
        overhead = host_overhead(cp)
        e2e = end_to_end(cp)
        extra += ["\n## Host overhead and end to end\n",
                  f"- Executor host time (a chain of 64 quantize/dequantize layers on float32[16, 64], median of "
                  f"300 warm runs of `run_device`; kernels queue asynchronously, so this is the host's cost): "
                  f"unfused {overhead['unfused']:.1f} µs per step = per layer ({overhead['steps_unfused']} kernel "
                  f"launches); fused {overhead['fused']:.1f} µs per step ({overhead['steps_fused']} launches), "
                  f"{overhead['layer_fused']:.1f} µs per layer. Target: < 20 µs per layer.",
                  "- examples/dynamic_quantize.net end to end, warm (upload the input, run, download): "
                  + ", ".join(f"{k} {v:.0f} µs" if v >= 10 else f"{k} {v:.1f} µs" for k, v in e2e.items())
                  + ". Target: < 200 µs."]
        print("\n".join(extra), flush=True)
    except Exception:  # noqa: BLE001
        extra.append("\nhost overhead / end to end failed:\n```\n" + traceback.format_exc() + "```")
        print(extra[-1], flush=True)
    write(extra)
    try:
        device_runs = device_array_runs(cp, table, sizes[-1], args.reps)
        extra += ["\n## Network.run on device arrays\n",
                  f"`Network.run` on PyTorch CUDA tensors (outputs PyTorch tensors on the same device, no host copy), "
                  f"2^{sizes[-1]} elements, CUDA-event medians of back-to-back runs (ten passes over rotated inputs "
                  "per sample), beside the "
                  "kernel's own time from the table above (target: within 5%):\n",
                  "| network | Network.run µs | kernel µs | ratio |", "|---|---|---|---|"]
        extra += [f"| {label} | {run_s * 1e6:.1f} | {kernel_s * 1e6:.1f} | {run_s / kernel_s:.3f} |"
                  for label, (run_s, kernel_s) in device_runs.items()]
        print("\n".join(extra[-len(device_runs) - 4:]), flush=True)
    except Exception:  # noqa: BLE001
        extra.append("\ndevice-array runs failed:\n```\n" + traceback.format_exc() + "```")
        print(extra[-1], flush=True)
    write(extra)
    try:
        memory = peak_memory_fresh()
        outs = memory["outputs"]
        extra += ["\n## Peak device memory, 2^28-element NVFP4 network\n",
                  "examples/nvfp4_bf16.net's layers on x: bfloat16[65536, 4096] (dynamic_quantize -> "
                  "dequantize scale -> dequantize data; outputs x_fp4, x_scale, x_dq), CuPy pool high-water mark: "
                  f"**fused {memory['fused']:.0f} MiB**, unfused {memory['unfused']:.0f} MiB, of which "
                  f"{memory['base']:.0f} MiB were held before the run (the input x, {memory['input']:.0f} MiB; "
                  "measured in a fresh process). The run itself added "
                  f"**{memory['added_fused']:.0f} MiB fused** = the outputs "
                  + " + ".join(f"{k} {v:.0f}" for k, v in outs.items())
                  + f" = {sum(outs.values()):.0f} MiB: nothing else is live (the bfloat16 block scale, n/16 x 2 "
                  f"bytes = 32 MiB, is never stored); unfused {memory['added_unfused']:.0f} MiB, that one "
                  "intermediate being live between the two dequantizes. So the peak is inputs + outputs (+ at "
                  "most one intermediate per live edge, unfused)."]
        print(extra[-1], flush=True)
    except Exception:  # noqa: BLE001
        extra.append("\npeak memory failed:\n```\n" + traceback.format_exc() + "```")
        print(extra[-1], flush=True)
    write(extra)
    peer_results: dict[tuple[str, str], str] = {}
    if not args.no_peers and sizes[-1] == 28:
        n = 1 << 28
        for t in types:
            bytes_for = {label: case_bytes.get((label, t.name), 0) for label in PEER_FOR}
            try:
                run_peers(cp, t, n, args.reps, deadline, bytes_for, copy, peer_results)
            except Exception:  # noqa: BLE001
                print(traceback.format_exc(), flush=True)
            cp.get_default_memory_pool().free_all_blocks()
            out_text = render_table(peer_results)
            write(extra)
    elapsed = time.monotonic() - began
    extra.append(f"\nThe run took {elapsed:.0f} s.")
    out_text = render_table(peer_results)
    write(extra)
    print(f"done in {elapsed:.0f} s", flush=True)


if __name__ == "__main__":
    main()
