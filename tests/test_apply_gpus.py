"""``netdsl apply --gpus N``: one Dask worker per GPU with dask-cuda's LocalCUDACluster (docs/scale.md).

The byte comparison needs dask-cuda and a GPU, so it runs on the device machine (benchmarks/gpu_tests.sh)
and skips elsewhere, CI included; the refusals need only dask-cuda (they are checked before any cluster
or CUDA context starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netdsl.apply import apply
from netdsl.diagnostics import UsageError
from tests.conftest import needs_gpu
from tests.test_apply import NVFP4, SHARD1, SHARD2, make_checkpoint


def dask_cuda() -> None:
    pytest.importorskip("distributed", reason='Dask is the "dask" extra')
    pytest.importorskip("dask_cuda", reason='dask-cuda is the "dask-cuda" extra')


@needs_gpu()
def test_one_gpu_worker_writes_the_bytes_of_one_process_and_of_numpy(tmp_path: Path) -> None:
    """--gpus 1 (the shards on a dask-cuda worker, the recipe on its GPU) against the same run in this
    process on the GPU and on the CPU (NumPy): every output file, byte for byte."""
    dask_cuda()
    folder = tmp_path / "ckpt"
    make_checkpoint(folder)
    apply(NVFP4, folder, tmp_path / "numpy", backend="numpy")
    apply(NVFP4, folder, tmp_path / "cupy", backend="cupy")
    apply(NVFP4, folder, tmp_path / "gpus", backend="cupy", gpus=1)
    names = sorted(path.name for path in (tmp_path / "numpy").iterdir())
    assert names == sorted(path.name for path in (tmp_path / "gpus").iterdir())
    assert {SHARD1, SHARD2} <= set(names)
    for name in names:
        expected = (tmp_path / "numpy" / name).read_bytes()
        assert (tmp_path / "cupy" / name).read_bytes() == expected, name
        assert (tmp_path / "gpus" / name).read_bytes() == expected, name


def test_more_gpus_than_visible_is_a_usage_error(tmp_path: Path, monkeypatch) -> None:
    dask_cuda()
    folder = tmp_path / "ckpt"
    make_checkpoint(folder)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(UsageError, match=r"^--gpus 2: only 1 GPU visible \(CUDA_VISIBLE_DEVICES\)$"):
        apply(NVFP4, folder, tmp_path / "out", backend="numpy", gpus=2)
    assert not (tmp_path / "out").exists()


def test_gpus_without_a_gpu_is_a_usage_error(tmp_path: Path, monkeypatch) -> None:
    """Where NVML finds no driver (this machine without a GPU), a one-line usage error, not a traceback."""
    dask_cuda()
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("NVML works here (a GPU machine)")
    folder = tmp_path / "ckpt"
    make_checkpoint(folder)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(UsageError, match=r"^--gpus 1: no NVIDIA GPU found \(NVML: .+\)$"):
        apply(NVFP4, folder, tmp_path / "out", backend="numpy", gpus=1)
    assert not (tmp_path / "out").exists()
