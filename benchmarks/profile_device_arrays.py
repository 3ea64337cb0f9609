"""Where Network.run on PyTorch CUDA tensors spends host time, and whether any step waits for the GPU.

    python3 benchmarks/profile_device_arrays.py [--log2 28]

Each step runs while the GPU is kept busy by a long ``torch.cuda._sleep``: a step that synchronises
with the device shows the sleep's length (~100 ms) instead of its own host time. Then whole runs,
back to back: their rate against the kernel alone (``run_device`` on DeviceTensors).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import netdsl  # noqa: E402
from netdsl import memory  # noqa: E402
from netdsl.backends.cupy import BACKEND, external  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log2", type=int, default=28)
    args = parser.parse_args()
    rows = (1 << args.log2) // 4096
    network = netdsl.loads(f"input x : bfloat16[{rows}, 4096]\nconst dqs : float32[] = 1\n"
                           "d, sc = dynamic_quantize(x, dqs, axis=1, block_size=16, output_type=fp4, scale_type=fp8)\n"
                           "output d, sc\n")
    x = (torch.randn(rows, 4096, device="cuda") * 3).to(torch.bfloat16)
    for _ in range(3):
        network.run({"x": x})
    torch.cuda.synchronize()
    inputs = {"x": x}
    kind = external.kind_of(inputs.values())
    ordinal, stream = external.current_stream(kind, inputs.values())
    tensor = external.to_device_tensor("x", x, network.inputs["x"])
    results = BACKEND.run_device(network.graph, {"x": tensor})
    steps = {
        "kind_of": lambda: external.kind_of(inputs.values()),
        "current_stream": lambda: external.current_stream(kind, inputs.values()),
        "memory.check": lambda: memory.check(network.graph, "cupy", "auto", inputs_held=True, host=False),
        "to_device_tensor": lambda: external.to_device_tensor("x", x, network.inputs["x"]),
        "run_device": lambda: BACKEND.run_device(network.graph, {"x": tensor}),
        "from_device_tensor": lambda: [external.from_device_tensor(t, kind) for t in results.values()],
        "Network.run": lambda: network.run(inputs),
    }
    print("step: host µs with the GPU busy (a step that waits for the GPU shows ~100000)")
    for label, step in steps.items():
        samples = []
        for _ in range(5):
            torch.cuda._sleep(200_000_000)
            began = time.perf_counter()
            step()
            samples.append((time.perf_counter() - began) * 1e6)
            torch.cuda.synchronize()
        print(f"  {label:20} {statistics.median(samples):10.1f}")
    for label, call in (("run_device", lambda: BACKEND.run_device(network.graph, {"x": tensor})),
                        ("Network.run", lambda: network.run(inputs))):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        samples = []
        for _ in range(10):
            start.record()
            for _ in range(10):
                call()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) * 100)
        print(f"{label}: {statistics.median(samples):.1f} µs per run, back to back")
    del ordinal, stream


if __name__ == "__main__":
    main()
