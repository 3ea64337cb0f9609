"""The recipe layers' kernels (kernels/recipe.cu) on the GPU, against a read-only kernel and a copy of the same
bytes measured in the same run.

    python3 benchmarks/bench_recipe_layers.py [--reps 30]     # about 20 s on an H100, compile included

Each case runs through netdsl.backends.cupy.recipe_layers as the executor calls it (output allocation and
every launch included), over rotating inputs (>= 256 MiB in all, far above the 50 MB L2); time = median of
CUDA-event timings after a warm-up; GB/s = bytes read + written once (1e9 bytes/s). The ceilings: a
read-only kernel (16-byte loads, grid-stride; for the reductions, which read only) and CuPy's
device-to-device copy (read + write). Then the first call's compile time with an empty kernel cache (two
NVRTC programs, built in this process) and the same call with the cubins on disk, each in a fresh process.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netdsl import dtypes  # noqa: E402
from netdsl.backends.cupy import abi, recipe_layers  # noqa: E402
from netdsl.backends.cupy.device import DeviceTensor, import_cupy  # noqa: E402

ROTATION_BYTES = 256 << 20
READ_SOURCE = r"""
extern "C" __global__ void read_all(const uint4* __restrict__ p, unsigned long long n, unsigned* out) {
  unsigned acc = 0;
  for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
       i += (unsigned long long)gridDim.x * blockDim.x) {
    uint4 v = __ldg(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9E3779B9u) out[0] = acc;  // never in practice; keeps the loads
}
"""


def timed(run: Callable[[Any], Any], inputs: list[Any], reps: int) -> float:
    """Median seconds of run(input) over reps calls, the inputs in rotation, CUDA events."""
    cp = import_cupy()
    for x in inputs:
        run(x)
    cp.cuda.Device().synchronize()
    times = []
    for rep in range(reps):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        run(inputs[rep % len(inputs)])
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)
    return statistics.median(times)


def bf16_tensors(shape: tuple[int, ...], rng: np.random.Generator) -> list[DeviceTensor]:
    cp = import_cupy()
    count = math.prod(shape)
    rotation = max(2, -(-ROTATION_BYTES // (2 * count)))
    base = cp.asarray(rng.standard_normal(count, dtype=np.float32))
    return [DeviceTensor(dtypes.BFLOAT16, shape, ((base * (k + 1)).view(cp.uint32) >> 16).astype(cp.uint16))
            for k in range(rotation)]


def row(name: str, seconds: float, bytes_moved: int, ceiling: float) -> str:
    rate = bytes_moved / seconds / 1e9
    return f"| {name} | {bytes_moved / 1e6:.1f} | {seconds * 1e6:.1f} | {rate:.0f} | {100 * rate / ceiling:.0f}% |"


def compile_seconds(cache: str) -> float:
    code = ("import time; t = time.perf_counter(); from netdsl.backends.cupy import loader; "
            "[loader.module('recipe.cu', p, 0) for p in range(len(loader.parts('recipe.cu')))]; "
            "print(time.perf_counter() - t)")
    env = dict(os.environ, NETDSL_KERNEL_CACHE=cache,
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return float(result.stdout)


def amax(axes: tuple[int, ...]) -> Callable[[DeviceTensor], DeviceTensor]:
    def run(x: DeviceTensor) -> DeviceTensor:
        return recipe_layers.reduce(x, "max", axes, tuple(d for i, d in enumerate(x.shape) if i not in axes),
                                    abi.SIGN_ABS)
    return run


def abs_then_max(x: DeviceTensor) -> DeviceTensor:
    return recipe_layers.reduce(recipe_layers.unary_cast(x, dtypes.BFLOAT16, abi.SIGN_ABS), "max", (0,), ())


def to_float32(x: DeviceTensor) -> DeviceTensor:
    return recipe_layers.unary_cast(x, dtypes.FLOAT32, abi.SIGN_KEEP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    cp = import_cupy()
    rng = np.random.default_rng(0)
    device = cp.cuda.Device()
    print(f"device: {cp.cuda.runtime.getDeviceProperties(device.id)['name'].decode()}, cupy {cp.__version__}")

    with tempfile.TemporaryDirectory() as cache:
        cold, warm = compile_seconds(cache), compile_seconds(cache)
    print(f"recipe.cu first call: {cold:.2f} s with an empty kernel cache, {warm:.3f} s with the cubins on disk "
          f"({len(abi.KERNEL_NAMES['recipe.cu'])} kernels)\n")

    big = [cp.empty(64 << 20, cp.uint16) for _ in range(2)]  # the ceilings, on 128 MiB
    reader = cp.RawKernel(READ_SOURCE, "read_all")
    sink = cp.zeros(1, cp.uint32)
    grid = (device.attributes["MultiProcessorCount"] * 8,)
    read_rate = big[0].nbytes / timed(lambda b: reader(grid, (256,), (b, np.uint64(b.nbytes // 16), sink)), big,
                                      args.reps) / 1e9
    pairs = [(b, cp.empty_like(b)) for b in big]
    copy_rate = 2 * big[0].nbytes / timed(lambda pair: pair[1].__setitem__(Ellipsis, pair[0]), pairs, args.reps) / 1e9
    print(f"ceilings at 128 MiB: read-only kernel {read_rate:.0f} GB/s, "
          f"CuPy copy {copy_rate:.0f} GB/s (read + write)\n")
    pairs = big = []

    print("| case | MB moved | µs | GB/s | % of ceiling (reductions: read-only; others: copy) |")
    print("|---|---|---|---|---|")
    reductions = [
        ("amax (abs folded into max) of bfloat16[2^26], whole tensor", (1 << 26,), (0,)),
        ("amax of bfloat16[10986, 4096] (90 MB), whole tensor", (10986, 4096), (0, 1)),
        ("amax per row of bfloat16[16384, 4096] (FP8 per channel)", (16384, 4096), (1,)),
        ("amax per 128-block of bfloat16[16384, 32, 128] (INT4 block 128)", (16384, 32, 128), (2,)),
        ("max of abs over axis 0 of bfloat16[8192, 8192]", (8192, 8192), (0,)),
    ]
    for name, shape, axes in reductions:
        xs = bf16_tensors(shape, rng)
        print(row(name, timed(amax(axes), xs, args.reps), xs[0].data.nbytes, read_rate))
    xs = bf16_tensors((1 << 26,), rng)
    print(row("unary abs, then reduce max (unfused) of bfloat16[2^26]", timed(abs_then_max, xs, args.reps),
              3 * xs[0].data.nbytes, copy_rate))
    print(row("cast bfloat16[2^26] to float32", timed(to_float32, xs, args.reps), 3 * xs[0].data.nbytes, copy_rate))
    wide = [to_float32(x) for x in xs]
    xs = []
    operands = [(wide[0], wide[1]), (wide[1], wide[0])]
    print(row("elementwise div float32[2^26] / float32[2^26]",
              timed(lambda ab: recipe_layers.binary(ab[0], ab[1], "div"), operands, args.reps),
              3 * wide[0].data.nbytes, copy_rate))
    scale = DeviceTensor(dtypes.FLOAT32, (1,), cp.asarray(np.array([448], np.float32)))
    print(row("elementwise div float32[2^26] / float32[1]",
              timed(lambda a: recipe_layers.binary(a, scale, "div"), wide, args.reps), 2 * wide[0].data.nbytes,
              copy_rate))
    wide = operands = []

    small = DeviceTensor(dtypes.BFLOAT16, (4096,), cp.zeros(4096, cp.uint16))
    run = amax((0,))
    for _ in range(10):
        run(small)
    device.synchronize()
    start = time.perf_counter()
    for _ in range(1000):
        run(small)
    host = (time.perf_counter() - start) / 1000
    device.synchronize()
    print(f"\nhost time per reduce call (bfloat16[4096], one launch): {host * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
