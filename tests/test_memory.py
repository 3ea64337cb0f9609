"""The memory budget (docs/reliability.md, "Memory"): a run's peak estimated from the checked graph and
refused before anything is allocated when it can't fit; MemoryError is exit 2, never 3; random inputs
drawn in chunks with the same values; blocks larger than the tensor never size a buffer."""

from __future__ import annotations

import os
import resource
import tracemalloc

import ml_dtypes
import numpy as np
import pytest

import netdsl
from netdsl import arrays, dtypes, memory
from netdsl.cli import main
from netdsl.ir import TensorType
from tests.conftest import gpu_reason

GiB = 1 << 30


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------------------------
# random inputs: chunked, float32, the same values as the documented formula


@pytest.mark.parametrize("type_name", ["float32", "float16", "bfloat16", "int8", "int4", "fp8", "fp4", "e8m0"])
@pytest.mark.parametrize("shape", [(), (0, 5), (7,), (3, 5, 2)])
def test_random_input_chunks_continue_one_stream(type_name: str, shape: tuple[int, ...], monkeypatch) -> None:
    """Drawn 4 elements at a time, the values are docs/language.md's formula on the whole tensor:
    default_rng(seed).uniform(-1, 1, shape) rounded to float32, then to the type."""
    monkeypatch.setattr(arrays, "RANDOM_CHUNK", 4)
    dtype = dtypes.lookup(type_name)
    got = arrays.random_input(TensorType(dtype, shape), np.random.default_rng(5))
    whole = np.random.default_rng(5).uniform(-1.0, 1.0, size=shape).astype(np.float32)
    expected = dtypes.e8m0_round_up(np.abs(whole)) if type_name == "e8m0" else whole.astype(dtype.storage) \
        if type_name in ("float32", "float16", "bfloat16") else None
    assert got.shape == shape and got.dtype == dtype.storage
    if expected is None:  # quantized types: the float32 values rounded by the type's rule
        expected = dtypes.encode(whole, dtype)
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("type_name", ["float32", "bfloat16", "fp4", "e8m0"])
@pytest.mark.parametrize("size", [37, 64, 1000])
def test_random_input_drawn_by_threads_is_one_stream(type_name: str, size: int, monkeypatch) -> None:
    """Drawn by several threads (each a copy of the generator advanced to its part), the values are the
    whole-tensor formula's, and the caller's generator continues where one sequential draw leaves it."""
    monkeypatch.setattr(arrays, "RANDOM_CHUNK", 4)
    monkeypatch.setattr(arrays, "PARALLEL_DRAW", 8)
    monkeypatch.setattr(arrays.os, "cpu_count", lambda: 3)
    dtype = dtypes.lookup(type_name)
    rng = np.random.default_rng(9)
    got = arrays.random_input(TensorType(dtype, (size,)), rng)
    reference = np.random.default_rng(9)
    whole = reference.uniform(-1.0, 1.0, size=size).astype(np.float32)
    expected = dtypes.e8m0_round_up(np.abs(whole)) if type_name == "e8m0" else dtypes.encode(whole, dtype)
    assert got.tobytes() == expected.tobytes()
    assert rng.uniform(-1.0, 1.0, 3).tolist() == reference.uniform(-1.0, 1.0, 3).tolist()


def test_random_input_values_are_unchanged() -> None:
    """The first values of seed 1 (the CLI's default), written down before the chunking: chunking must not
    change what `netdsl run` draws."""
    got = arrays.random_input(TensorType(dtypes.FLOAT32, (4,)), np.random.default_rng(1))
    reference = np.random.default_rng(1).uniform(-1.0, 1.0, size=4)
    assert got.tolist() == reference.astype(np.float32).tolist()
    assert got.view(np.uint32).tolist() == [0x3CC1AF7D, 0x3F66A32D, 0xBF3630B6, 0x3F65B561]


def test_random_input_takes_its_storage_and_a_few_mib() -> None:
    """A 2^24-element float32 input used to take 12 bytes an element at its peak (the float64 draws
    and their float32 copy); now its own 4 and one chunk's draws per drawing thread."""
    tensor_type = TensorType(dtypes.FLOAT32, (1 << 24,))
    threads = max(1, min(os.cpu_count() or 1, (1 << 24) // arrays.PARALLEL_DRAW))
    tracemalloc.start()
    try:
        arrays.random_input(tensor_type, np.random.default_rng(0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (4 << 24) + threads * (24 << 20)


# --------------------------------------------------------------------------------------------------
# blocks larger than the tensor


@pytest.fixture
def small_heap():
    """Allocations past 256 MiB beyond the current data segment fail (RLIMIT_DATA) instead of paging."""
    with open("/proc/self/status") as status:
        used = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmData:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (used + (256 << 20), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def test_dynamic_quantize_block_larger_than_the_tensor(small_heap) -> None:
    """dynamic_quantize(x, block_shape=[2147483647, 1]) on a 3x4 input asked for 32 GiB (the input
    padded to a whole block); the block is one column: scale = column amax / 127."""
    network = netdsl.loads("input x : float32[3, 4]\nd, s = dynamic_quantize(x, block_shape=[2147483647, 1], "
                           "output_type=int8, scale_type=float32)\noutput d, s\n")
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = network.run({"x": x}, backend="numpy")
    expected_scale = np.array([[8, 9, 10, 11]], np.float32) / np.float32(127)
    assert out["s"].tobytes() == expected_scale.tobytes()
    assert out["d"][2].tolist() == [127, 127, 127, 127]
    assert "block [3, 1]" in network.describe()


def test_quantize_block_larger_than_the_tensor(small_heap) -> None:
    network = netdsl.loads("input x : float32[3, 4]\nconst s : float32[1, 2] = [[0.5, 2]]\n"
                           "q = quantize(x, s, block_shape=[2147483647, 2])\noutput q\n")
    out = network.run({"x": np.full((3, 4), 3.0, np.float32)}, backend="numpy")["q"]
    assert out.tolist() == [[6, 6, 2, 2]] * 3  # 3 / 0.5 and 3 / 2 = 1.5, a tie, to 2


# --------------------------------------------------------------------------------------------------
# the estimate


@pytest.mark.parametrize("text", [
    "input x : float32[1024, 1024]\nconst s : float32[] = 0.25\nq = quantize(x, s)\ny = dequantize(q, s)\noutput y\n",
    "input x : bfloat16[1024, 1024]\nconst g : float32[] = 1\nd, s = dynamic_quantize(x, g, axis=1, block_size=16, "
    "output_type=fp4, scale_type=fp8)\ns32 = dequantize(s, g)\ny = dequantize(d, s32, to_type=bfloat16)\noutput y\n",
    "input x : float16[1024, 1024]\nd, s = dynamic_quantize(x, block_shape=[-1, -1], output_type=fp8, "
    "scale_type=float32)\noutput d, s\n",
    "input x : int8[2048, 512]\nconst s : float32[2, 512] = load(\"s.npy\")\ny = dequantize(x, s, to_type=bfloat16, "
    "block_shape=[1024, 1])\noutput y\n",
])
def test_numpy_estimate_bounds_the_traced_peak(text: str, tmp_path) -> None:
    """The estimate is at least the traced peak of inputs, constants and the run, and not far above it."""
    np.save(tmp_path / "s.npy", np.full((2, 512), 0.5, np.float32))
    network = netdsl.loads(text, base_dir=tmp_path)
    rng = np.random.default_rng(0)
    inputs = {name: arrays.random_input(t, rng) for name, t in network.inputs.items()}
    resident = sum(a.nbytes for a in inputs.values()) + sum(v.data.nbytes for v in network.graph.constants)
    network.run(inputs, backend="numpy")  # the first run fills the per-thread work buffers
    tracemalloc.start()
    try:
        network.run(inputs, backend="numpy", memory_limit=None)
        peak = tracemalloc.get_traced_memory()[1] + resident
    finally:
        tracemalloc.stop()
    estimate = memory.estimate_numpy(network.graph, inputs_held=True).peak - memory.OVERHEAD
    assert peak <= estimate <= 3 * peak


def test_cupy_estimate_follows_the_schedule() -> None:
    """Device bytes (no GPU needed: the schedule is plain Python): x (4 MiB) and the fused
    quantize->dequantize output y (4 MiB); q is never stored; then the 4-bit z, packed."""
    network = netdsl.loads("input x : float32[1024, 1024]\nconst s : float32[] = 0.5\nq = quantize(x, s)\n"
                           "y = dequantize(q, s)\nz = quantize(y, s, to_type=fp4)\noutput z\n")
    assert memory.estimate_cupy(network.graph).peak in (
        4 * 2**20 + 4 + 4 * 2**20,  # fused: x and y live together (z is 0.5 MiB later, after x is freed)
        4 * 2**20 + 4 + 2**20 + 4 * 2**20)  # NETDSL_FUSION=0: x, q (1 MiB) and y


def test_cupy_estimate_bounds_the_pool() -> None:
    """On a GPU: what the run adds to CuPy's pool (it caches what it frees, so its growth is the run's
    peak, in 512-byte units) stays within the estimate, give or take the kernels' small argument arrays."""
    reason = gpu_reason()
    if reason is not None:
        pytest.skip(f"no GPU: {reason}")
    import cupy

    network = netdsl.loads("input x : float32[1024, 1024]\nconst s : float32[] = 0.5\nq = quantize(x, s)\n"
                           "y = dequantize(q, s)\nz = quantize(y, s, to_type=fp4)\noutput z\n")
    x = np.ones((1024, 1024), np.float32)
    network.run({"x": x}, backend="cupy")  # compiles and caches the kernels and the constant
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    before = pool.total_bytes()
    network.run({"x": x}, backend="cupy")
    grown = pool.total_bytes() - before
    estimate = memory.estimate_cupy(network.graph).peak
    assert estimate // 2 <= grown <= estimate + (1 << 20), (grown, estimate)


# --------------------------------------------------------------------------------------------------
# refusing a run


BIG = "input x : float32[2147483647]\nconst s : float32[] = 1\nq = quantize(x, s)\noutput q\n"


def test_run_over_the_limit_is_refused_before_allocating(tmp_path, capsys) -> None:
    """A 2^31-1-element input (8 GiB, 45 GB at its peak before) with --memory-limit 4G: exit 2 at once,
    naming the size and the largest tensor; nothing near its size is allocated."""
    model = tmp_path / "big.net"
    model.write_text(BIG)
    tracemalloc.start()
    try:
        code, out, err = run_cli(["run", str(model), "--backend", "numpy", "--memory-limit", "4G"], capsys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 2 and out == ""
    assert err.startswith("netdsl: error: this run needs about 10.") and err.count("\n") == 1, err
    assert "over the memory limit of 4.0 GiB; its largest tensor is 'x', float32[2147483647], 8.0 GiB" in err
    assert peak < 16 << 20


def test_default_limit_is_the_available_memory(tmp_path, capsys, monkeypatch) -> None:
    model = tmp_path / "big.net"
    model.write_text(BIG)
    monkeypatch.setattr(memory, "available_host", lambda: 3 * GiB)
    code, _, err = run_cli(["run", str(model), "--backend", "numpy"], capsys)
    assert code == 2 and "over 3.0 GiB of host memory available" in err, err


def test_limit_none_and_sizes(tmp_path, capsys, monkeypatch) -> None:
    model = tmp_path / "small.net"
    model.write_text("input x : float32[4]\nconst s : float32[] = 1\nq = quantize(x, s)\noutput q\n")
    monkeypatch.setattr(memory, "available_host", lambda: 0)  # nothing available: only "none" runs it
    assert run_cli(["run", str(model), "--backend", "numpy"], capsys)[0] == 2
    assert run_cli(["run", str(model), "--backend", "numpy", "--memory-limit", "none"], capsys)[0] == 0
    assert run_cli(["run", str(model), "--backend", "numpy", "--memory-limit", "1.5g"], capsys)[0] == 0
    code, _, err = run_cli(["run", str(model), "--memory-limit", "lots"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--memory-limit" in err and "'lots'" in err


@pytest.mark.parametrize("text,size", [("1024", 1024), ("8G", 8 * GiB), ("8GiB", 8 * GiB), ("8 gb", 8 * GiB),
                                       ("1.5M", 3 << 19), ("512k", 512 << 10), ("2T", 2 << 40), ("none", None)])
def test_parse_size(text: str, size: int | None) -> None:
    assert memory.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "-1G", "8X", "G", "1e9", "8 G B"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="a size takes"):
        memory.parse_size(text)


def test_api_memory_limit() -> None:
    network = netdsl.loads("input x : float32[1024]\nconst s : float32[] = 1\nq = quantize(x, s)\noutput q\n")
    x = np.zeros(1024, np.float32)
    with pytest.raises(MemoryError, match="over the memory limit of 1.0 KiB; its largest tensor is 'x'"):
        network.run({"x": x}, backend="numpy", memory_limit=1024)
    assert network.run({"x": x}, backend="numpy", memory_limit=None)["q"].shape == (1024,)
    assert network.run({"x": x}, backend="numpy", memory_limit="1G")["q"].shape == (1024,)


# --------------------------------------------------------------------------------------------------
# MemoryError anywhere: exit 2, one line


def test_memory_error_is_exit_2(tmp_path, capsys, monkeypatch) -> None:
    """Running out of memory was exit 3 ("internal error"); it is the machine's limit, not a bug."""
    from netdsl.backends import get_backend

    def exhausted(graph, inputs, on_node=None):
        raise MemoryError("Unable to allocate 32.0 GiB for an array with shape (2147483647, 4) and data type float32")

    model = tmp_path / "m.net"
    model.write_text("input x : float32[4]\nconst s : float32[] = 1\nq = quantize(x, s)\noutput q\n")
    monkeypatch.setattr(get_backend("numpy"), "run", exhausted)
    code, out, err = run_cli(["run", str(model), "--backend", "numpy"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("netdsl: error: out of memory (") and "Traceback" not in err


def test_bfloat16_storage_is_two_bytes() -> None:
    assert memory.host_bytes(TensorType(dtypes.BFLOAT16, (3,))) == 3 * np.dtype(ml_dtypes.bfloat16).itemsize == 6
    assert memory.device_bytes(TensorType(dtypes.FP4, (3,))) == 2
