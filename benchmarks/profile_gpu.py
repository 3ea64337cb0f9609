r"""Run a few kernels twice each (the first round warms up) for a profiler such as Nsight Compute:

    ncu --clock-control none --metrics smsp__thread_inst_executed.sum,gpu__time_duration.sum,\
smsp__issue_active.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active \
        python3 benchmarks/profile_gpu.py

(2^26 elements: thread instructions / 2^26 = instructions an element.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netdsl import dtypes  # noqa: E402
from netdsl.backends import cupy as gpu  # noqa: E402
from netdsl.backends.cupy.device import import_cupy  # noqa: E402


def main() -> None:
    cp = import_cupy()
    n, row = 1 << 26, 4096
    values = cp.random.standard_normal(n, dtype=np.float32)
    bf16 = gpu.DeviceTensor(dtypes.BFLOAT16, (n // row, row), (values.view(np.uint32) >> 16).astype(np.uint16))
    per_tensor = gpu.DeviceTensor(dtypes.FLOAT32, (1, 1), cp.full(1, 0.05, dtype=np.float32))
    block16 = gpu.DeviceTensor(dtypes.FLOAT32, (n // row, row // 16),
                                cp.full(n // 16, 0.05, dtype=np.float32))
    cases = [
        lambda: gpu.quantize(bf16, per_tensor, bf16.shape, dtypes.FP8),
        lambda: gpu.quantize(bf16, block16, (1, 16), dtypes.FP4),
        lambda: gpu.dynamic_quantize(bf16, (1, 16), dtypes.FP4, dtypes.FP8, 1.0),
        lambda: gpu.dynamic_quantize(bf16, (16, 1), dtypes.FP4, dtypes.FP8, 1.0),
    ]
    for _ in range(2):  # the first round compiles and warms up
        for case in cases:
            case()
    cp.cuda.Device().synchronize()


if __name__ == "__main__":
    main()
