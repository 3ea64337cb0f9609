"""Arrays of other frameworks in and out of ``Network.run`` (docs/gpu.md, "Device arrays").

``Network.run`` takes CuPy arrays, PyTorch tensors and anything with DLPack or
``__cuda_array_interface__``; device arrays run on the GPU backend without a copy through the host and
come back as the same kind, on the same device, computed on the caller's current stream (PyTorch's current
stream for tensors, CuPy's for everything else). PyTorch tensors on the host run on the NumPy backend and
come back as host tensors.

Dtypes. A device input holds its declared type's values in the framework's own dtype where it has one:
float32, float16, bfloat16 (PyTorch), int8, float8_e4m3fn and float8_e8m0fnu (PyTorch); otherwise its
raw codes, as ``--save --codes`` writes them: bfloat16 as uint16 bits, fp8 / e8m0 as uint8 codes, and
int4 / fp4 as uint8 bytes of two codes each (the flattened tensor, element 2k in the low nibble), or
PyTorch's ``float4_e2m1fn_x2`` (pairs along the last axis, the same bytes when it is even). Outputs come
back the same way: PyTorch dtypes where PyTorch has them, raw codes where it or CuPy has none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from netdsl import dtypes
from netdsl.backends.cupy import device
from netdsl.backends.cupy.device import DeviceTensor
from netdsl.ir import TensorType

NUMPY, CUPY, TORCH_DEVICE, TORCH_HOST = "numpy", "cupy", "torch-device", "torch-host"

#: PyTorch's dtype for each netdsl type, where it has one (4-bit types: see module docstring)
_TORCH_NAMES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16", "int8": "int8",
                "fp8": "float8_e4m3fn", "e8m0": "float8_e8m0fnu", "fp4": "float4_e2m1fn_x2"}


def _is_torch(array: Any) -> bool:
    return type(array).__module__.split(".")[0] == "torch"


def kind_of(arrays: Iterable[Any]) -> str:
    """The kind of a run's inputs: NUMPY (NumPy arrays, lists, scalars), CUPY (CuPy arrays and anything
    else with ``__cuda_array_interface__`` or DLPack on a GPU), TORCH_DEVICE or TORCH_HOST. ValueError
    when they mix kinds (NumPy arrays may join any kind: they are uploaded)."""
    kinds = set()
    for array in arrays:
        if isinstance(array, np.ndarray | np.generic | list | tuple | int | float):
            continue
        if _is_torch(array):
            kinds.add(TORCH_DEVICE if array.device.type == "cuda" else TORCH_HOST)
        elif hasattr(array, "__cuda_array_interface__") or (hasattr(array, "__dlpack__") and _on_gpu(array)):
            kinds.add(CUPY)
    if len(kinds) > 1:
        raise ValueError(f"the inputs mix array kinds ({', '.join(sorted(kinds))}): give all of one kind")
    return kinds.pop() if kinds else NUMPY


def _on_gpu(array: Any) -> bool:
    try:
        return int(array.__dlpack_device__()[0]) in (2, 3, 13)  # kDLCUDA, kDLCUDAHost, kDLCUDAManaged
    except Exception:  # noqa: BLE001 - an object that can't say is treated as a host array
        return False


def _torch() -> Any:
    import torch

    return torch


def _torch_dtype(dtype: dtypes.DType) -> Any:
    name = _TORCH_NAMES.get(dtype.name)
    return getattr(_torch(), name, None) if name else None


def host_tensor_to_numpy(tensor: Any) -> Any:
    """A PyTorch host tensor as the NumPy array ``Network.run`` takes (no copy where the layout allows)."""
    torch = _torch()
    tensor = tensor.detach().contiguous()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(dtypes.BFLOAT16.storage)
    for dtype in (dtypes.FP8, dtypes.E8M0):
        if tensor.dtype == _torch_dtype(dtype):
            return tensor.view(torch.uint8).numpy().view(dtype.storage)
    return tensor.numpy()


def numpy_to_host_tensor(array: np.ndarray, dtype: dtypes.DType) -> Any:
    """A NumPy output as a PyTorch host tensor of the matching dtype (raw codes where PyTorch has none)."""
    torch = _torch()
    target = _torch_dtype(dtype)
    if dtype.bits == 4:
        return torch.from_numpy(dtypes.pack_nibbles(dtypes.to_codes(array, dtype)))
    if dtype.name in ("bfloat16", "fp8", "e8m0"):
        raw = torch.from_numpy(np.ascontiguousarray(array).view(np.int16 if dtype.bits == 16 else np.uint8))
        return raw.view(target) if target is not None else raw
    return torch.from_numpy(np.ascontiguousarray(array))


def _shape_error(name: str, shape: tuple[int, ...], tensor_type: TensorType, note: str = "") -> ValueError:
    return ValueError(f"input '{name}' has shape {list(shape)}, expected {list(tensor_type.shape)}{note}")


def to_device_tensor(name: str, array: Any, tensor_type: TensorType) -> DeviceTensor:
    """A device array (or a NumPy one, uploaded) as a DeviceTensor of ``tensor_type``, sharing its memory
    where it is contiguous; ValueError naming the input when its shape or dtype doesn't fit."""
    cupy = device.import_cupy()
    dtype, shape = tensor_type.dtype, tensor_type.shape
    raw_type = dtype.device_storage
    length = device.storage_length(dtype, math.prod(shape))
    if isinstance(array, np.ndarray | np.generic | list | tuple | int | float):
        return device.upload(_coerced(name, array, tensor_type), dtype)
    if _is_torch(array):
        torch = _torch()
        tensor = array.detach()
        if dtype.bits == 4 and tensor.dtype == _torch_dtype(dtypes.FP4) and dtype == dtypes.FP4:
            if shape and shape[-1] % 2 == 0 and tuple(tensor.shape) == shape[:-1] + (shape[-1] // 2,):
                return DeviceTensor(dtype, shape, cupy.from_dlpack(tensor.contiguous().view(torch.uint8)).reshape(-1))
            raise _shape_error(name, tuple(tensor.shape), tensor_type, " (float4_e2m1fn_x2: the last axis halved)")
        expected = _torch_dtype(dtype)
        if dtype.bits != 4 and tensor.dtype != expected:
            raise ValueError(f"input '{name}' has dtype {tensor.dtype}, expected {expected} for {dtype.name}")
        if dtype.bits == 4:
            if tensor.dtype != torch.uint8:
                raise ValueError(f"input '{name}' has dtype {tensor.dtype}, expected torch.uint8 (two {dtype.name} "
                                 "codes a byte)" + (" or torch.float4_e2m1fn_x2" if dtype == dtypes.FP4 else ""))
            raw = cupy.from_dlpack(tensor.contiguous()).reshape(-1)
        else:
            if tuple(tensor.shape) != shape:
                raise _shape_error(name, tuple(tensor.shape), tensor_type)
            tensor = tensor.contiguous()
            if dtype.name in ("bfloat16", "fp8", "e8m0"):
                tensor = tensor.view(torch.int16 if dtype.bits == 16 else torch.uint8)
            raw = cupy.from_dlpack(tensor).reshape(-1).view(raw_type)
    else:
        data = cupy.asarray(array) if hasattr(array, "__cuda_array_interface__") else cupy.from_dlpack(array)
        accepted = {raw_type} | ({np.dtype(np.int8)} if dtype == dtypes.INT8 else set())
        if data.dtype not in accepted:
            raise ValueError(f"input '{name}' has dtype {data.dtype}, expected {raw_type} for {dtype.name}"
                             + (" (its raw codes)" if dtype.name not in ("float32", "float16", "int8") else ""))
        if dtype.bits != 4 and tuple(data.shape) != shape:
            raise _shape_error(name, tuple(data.shape), tensor_type)
        raw = cupy.ascontiguousarray(data).reshape(-1).view(raw_type)
    if raw.size != length:
        raise ValueError(f"input '{name}' holds {raw.size} bytes of packed codes, expected {length} for "
                         f"{tensor_type}")
    return DeviceTensor(dtype, shape, raw)


def _coerced(name: str, array: Any, tensor_type: TensorType) -> np.ndarray:
    from netdsl import arrays

    try:
        return arrays.coerce(array, tensor_type)
    except ValueError as error:
        raise ValueError(f"input '{name}' {error}") from None


def from_device_tensor(tensor: DeviceTensor, kind: str) -> Any:
    """An output DeviceTensor as the caller's kind, sharing its memory (see the module docstring)."""
    dtype, shape, raw = tensor.dtype, tensor.shape, tensor.data
    if dtype.bits == 4:
        packed_rows = bool(shape) and shape[-1] % 2 == 0
        if kind == TORCH_DEVICE:
            torch = _torch()
            data = torch.from_dlpack(raw)
            target = _torch_dtype(dtype)
            if dtype == dtypes.FP4 and target is not None and packed_rows:
                return data.view(target).reshape(shape[:-1] + (shape[-1] // 2,))
            return data
        return raw
    if dtype == dtypes.INT8:
        raw = raw.view(np.int8)
    elif dtype == dtypes.BFLOAT16 and kind == TORCH_DEVICE:
        raw = raw.view(np.int16)
    data = raw.reshape(shape)
    if kind != TORCH_DEVICE:
        return data
    torch = _torch()
    out = torch.from_dlpack(data)
    target = _torch_dtype(dtype)
    return out.view(target) if out.dtype != target and target is not None else out


def current_stream(kind: str, arrays: Iterable[Any]) -> tuple[int | None, Any]:
    """(the device ordinal the arrays live on, the stream to run on): PyTorch's current stream on that
    device for PyTorch tensors, else None (CuPy's current stream)."""
    cupy = device.import_cupy()
    ordinal = None
    for array in arrays:
        if isinstance(array, np.ndarray | np.generic | list | tuple | int | float):
            continue
        if _is_torch(array):
            here = array.device.index if array.device.index is not None else _torch().cuda.current_device()
        elif hasattr(array, "__cuda_array_interface__"):
            here = cupy.asarray(array).device.id
        else:
            here = int(array.__dlpack_device__()[1])
        if ordinal is not None and here != ordinal:
            raise ValueError(f"the inputs are on different GPUs ({ordinal} and {here}): give all on one")
        ordinal = here
    if kind == TORCH_DEVICE:
        torch = _torch()
        stream = torch.cuda.current_stream(ordinal)
        return ordinal, cupy.cuda.Stream.from_external(stream) if hasattr(cupy.cuda.Stream, "from_external") \
            else cupy.cuda.ExternalStream(stream.cuda_stream, ordinal if ordinal is not None else -1)
    return ordinal, None
