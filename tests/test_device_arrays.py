"""Network.run on CuPy arrays and PyTorch tensors (docs/gpu.md, "Device arrays"): the same bits as the
NumPy backend on NumPy inputs, outputs of the caller's kind on the caller's device, the input memory
shared (no copy), errors that name the input. Skips without CuPy and a GPU (PyTorch parts: without torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl import arrays, dtypes
from tests.conftest import EXAMPLES, needs_gpu

pytestmark = needs_gpu()

MODELS = sorted(p for p in EXAMPLES.glob("*.net") if "load(" not in p.read_text())


def _torch():
    return pytest.importorskip("torch")


def _inputs(network: netdsl.Network, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: arrays.random_input(t, rng) for name, t in network.inputs.items()}


def _codes(array: np.ndarray, dtype: dtypes.DType) -> np.ndarray:
    """The raw bytes of a host result as the device keeps them (4-bit types packed)."""
    if dtype.bits == 4:
        return dtypes.pack_nibbles(dtypes.to_codes(array, dtype))
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def _cupy_input(cp, array: np.ndarray, dtype: dtypes.DType):
    if dtype.bits == 4:
        return cp.asarray(dtypes.pack_nibbles(dtypes.to_codes(array, dtype)))
    if dtype.name in ("bfloat16", "fp8", "e8m0"):
        return cp.asarray(array.view(np.uint16 if dtype.bits == 16 else np.uint8))
    return cp.asarray(array)


def _torch_input(torch, array: np.ndarray, dtype: dtypes.DType):
    if dtype.bits == 4:
        return torch.from_numpy(dtypes.pack_nibbles(dtypes.to_codes(array, dtype))).cuda()
    if dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).cuda().view(torch.bfloat16)
    if dtype.name == "fp8":
        return torch.from_numpy(array.view(np.uint8)).cuda().view(torch.float8_e4m3fn)
    if dtype.name == "e8m0":
        return torch.from_numpy(array.view(np.uint8)).cuda().view(torch.float8_e8m0fnu)
    return torch.from_numpy(array).cuda()


@pytest.mark.parametrize("path", MODELS, ids=lambda p: Path(p).stem)
def test_cupy_arrays_in_and_out(path) -> None:
    import cupy as cp

    network = netdsl.load(path)
    host = _inputs(network)
    expected = network.run(host, backend="numpy")
    given = {name: _cupy_input(cp, array, network.inputs[name].dtype) for name, array in host.items()}
    got = network.run(given)
    assert set(got) == set(expected)
    for name, array in expected.items():
        dtype = network.outputs[name].dtype
        assert isinstance(got[name], cp.ndarray), name
        assert got[name].device.id == cp.cuda.Device().id
        if dtype.bits != 4:
            assert tuple(got[name].shape) == array.shape
        raw = cp.asnumpy(got[name]).reshape(-1).view(np.uint8)
        np.testing.assert_array_equal(raw, _codes(array, dtype), err_msg=name)


@pytest.mark.parametrize("path", MODELS, ids=lambda p: Path(p).stem)
def test_torch_tensors_in_and_out(path) -> None:
    torch = _torch()
    network = netdsl.load(path)
    host = _inputs(network)
    expected = network.run(host, backend="numpy")
    given = {name: _torch_input(torch, array, network.inputs[name].dtype) for name, array in host.items()}
    got = network.run(given)
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int8": torch.int8,
             "fp8": torch.float8_e4m3fn, "e8m0": torch.float8_e8m0fnu}
    for name, array in expected.items():
        dtype = network.outputs[name].dtype
        tensor = got[name]
        assert isinstance(tensor, torch.Tensor) and tensor.is_cuda, name
        if dtype.name in names:
            assert tensor.dtype == names[dtype.name] and tuple(tensor.shape) == array.shape, name
        elif dtype == dtypes.FP4 and array.shape[-1] % 2 == 0:
            assert tensor.dtype == torch.float4_e2m1fn_x2
            assert tuple(tensor.shape) == array.shape[:-1] + (array.shape[-1] // 2,)
        raw = tensor.contiguous().view(torch.uint8).cpu().numpy().reshape(-1)
        np.testing.assert_array_equal(raw, _codes(array, dtype), err_msg=name)


def test_torch_host_tensors_give_host_tensors() -> None:
    torch = _torch()
    network = netdsl.load(EXAMPLES / "nvfp4_bf16.net")
    host = _inputs(network)
    expected = network.run(host, backend="numpy")
    got = network.run({"x": torch.from_numpy(host["x"].view(np.int16)).view(torch.bfloat16)}, backend="numpy")
    for name, array in expected.items():
        assert got[name].device.type == "cpu"
        raw = got[name].contiguous().view(torch.uint8).numpy().reshape(-1)
        np.testing.assert_array_equal(raw, _codes(array, network.outputs[name].dtype), err_msg=name)


def test_input_memory_is_shared_not_copied() -> None:
    import cupy as cp

    from netdsl.backends.cupy import external

    torch = _torch()
    network = netdsl.load(EXAMPLES / "nvfp4_bf16.net")
    t = network.inputs["x"]
    x = cp.zeros(t.shape, dtype=np.uint16)
    assert external.to_device_tensor("x", x, t).data.data.ptr == x.data.ptr
    y = torch.zeros(t.shape, dtype=torch.bfloat16, device="cuda")
    assert external.to_device_tensor("x", y, t).data.data.ptr == y.data_ptr()


def test_runs_on_the_callers_torch_stream() -> None:
    """The input is written on a side stream after a long sleep; a run on any other stream would read it
    before it is written (NaN-poisoned), so the right bits show the run was ordered on the caller's stream."""
    torch = _torch()
    network = netdsl.load(EXAMPLES / "nvfp4_bf16.net")
    host = _inputs(network)
    expected = network.run(host, backend="numpy")
    source = torch.from_numpy(host["x"].view(np.int16)).cuda().view(torch.bfloat16)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        x = torch.full(source.shape, float("nan"), dtype=torch.bfloat16, device="cuda")
        torch.cuda._sleep(100_000_000)
        x.copy_(source)
        got = network.run({"x": x})
    side.synchronize()
    raw = got["x_fp4"].contiguous().view(torch.uint8).cpu().numpy().reshape(-1)
    np.testing.assert_array_equal(raw, _codes(expected["x_fp4"], dtypes.FP4))


def test_bad_device_inputs_are_named() -> None:
    import cupy as cp

    network = netdsl.load(EXAMPLES / "nvfp4_bf16.net")
    shape = network.inputs["x"].shape
    with pytest.raises(ValueError, match="input 'x' has dtype float32, expected uint16 for bfloat16"):
        network.run({"x": cp.zeros(shape, dtype=np.float32)})
    with pytest.raises(ValueError, match=r"input 'x' has shape \[2, 2\]"):
        network.run({"x": cp.zeros((2, 2), dtype=np.uint16)})
    with pytest.raises(ValueError, match="device arrays run on the cupy backend"):
        network.run({"x": cp.zeros(shape, dtype=np.uint16)}, backend="numpy")
    with pytest.raises(ValueError, match="unknown input 'y'"):
        network.run({"y": cp.zeros(shape, dtype=np.uint16)})
    with pytest.raises(ValueError, match="the inputs mix array kinds"):
        netdsl.load(EXAMPLES / "quantize.net").run({"input1": cp.zeros((1, 1, 3, 3), np.float32),
                                                     "other": _torch().zeros(1, device="cuda")})
