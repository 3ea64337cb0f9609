"""The recipe layers on the GPU (unary, reduce, elementwise, cast, shuffle): plain CuPy array operations
in float32 (IEEE, no fast-math: a division is correctly rounded), running the ops' own rules
(:func:`netdsl.ops.reduce.compute`, :func:`netdsl.ops.elementwise.compute`) on device arrays."""

from __future__ import annotations

from typing import Any

from netdsl import dtypes
from netdsl.backends.cupy import device
from netdsl.backends.cupy.device import DeviceTensor
from netdsl.backends.cupy.executor import BACKEND
from netdsl.ops import elementwise, reduce
from netdsl.ops.cast import CAST, CastResolution
from netdsl.ops.elementwise import ELEMENTWISE, ElementwiseResolution
from netdsl.ops.reduce import REDUCE, ReduceResolution
from netdsl.ops.shuffle import SHUFFLE, ShuffleResolution
from netdsl.ops.unary import UNARY, UnaryResolution


def _float32(tensor: DeviceTensor) -> Any:
    """A float32 CuPy array of a float tensor's values (exact)."""
    cp = device.import_cupy()
    if tensor.dtype == dtypes.BFLOAT16:
        return (tensor.data.astype(cp.uint32) << 16).view(cp.float32).reshape(tensor.shape)
    return tensor.data.astype(cp.float32).reshape(tensor.shape)


def _stored(values: Any, dtype: dtypes.DType) -> DeviceTensor:
    """float32 CuPy ``values`` rounded to nearest even to a float ``dtype``, NaN canonical (the rules of
    :func:`netdsl.dtypes.encode`), as a device tensor."""
    cp = device.import_cupy()
    shape = tuple(values.shape)  # ascontiguousarray makes a 0-d array 1-d
    values = cp.ascontiguousarray(values, dtype=cp.float32).reshape(shape)
    nan = cp.isnan(values)
    if dtype == dtypes.FLOAT32:
        raw = cp.where(nan, cp.uint32(0x7FC00000), values.view(cp.uint32)).view(cp.float32)  # bits: no FTZ
    elif dtype == dtypes.FLOAT16:
        raw = values.astype(cp.float16)
        raw.view(cp.uint16)[nan] = 0x7E00
    else:
        bits = values.view(cp.uint32)
        raw = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(cp.uint16)
        raw[nan] = 0x7FC0
    return DeviceTensor(dtype, tuple(values.shape), raw.reshape(-1))


@BACKEND.impl(UNARY)
def _unary(resolution: UnaryResolution, args: list[Any]) -> list[Any]:
    # on the sign bit: CuPy's float kernels may flush subnormals to zero (abs.ftz), a bit operation can't
    bits = _float32(args[0]).view(device.import_cupy().uint32)
    signed = bits & 0x7FFFFFFF if resolution.op == "abs" else bits ^ 0x80000000
    return [_stored(signed.view(device.import_cupy().float32), resolution.dtype)]


@BACKEND.impl(REDUCE)
def _reduce(resolution: ReduceResolution, args: list[Any]) -> list[Any]:
    cupy = device.import_cupy()
    result = reduce.compute(_float32(args[0]), resolution.op, resolution.axes, resolution.keep_dims, cupy)
    return [_stored(result, resolution.dtype)]


@BACKEND.impl(ELEMENTWISE)
def _elementwise(resolution: ElementwiseResolution, args: list[Any]) -> list[Any]:
    result = elementwise.compute(_float32(args[0]), _float32(args[1]), resolution.op, device.import_cupy())
    return [_stored(result, resolution.dtype)]


@BACKEND.impl(CAST)
def _cast(resolution: CastResolution, args: list[Any]) -> list[Any]:
    return [_stored(_float32(args[0]), resolution.to_type)]


@BACKEND.impl(SHUFFLE)
def _shuffle(resolution: ShuffleResolution, args: list[Any]) -> list[Any]:
    return [DeviceTensor(args[0].dtype, resolution.shape, args[0].data)]  # flat row-major storage: a new shape
