"""The recipe layers on the GPU (unary, reduce, elementwise, cast, shuffle): plain CuPy array operations
in float32 (IEEE, no fast-math: a division is correctly rounded), running the ops' own rules
(:func:`netdsl.ops.reduce.compute`, :func:`netdsl.ops.elementwise.compute`) on device arrays."""

from __future__ import annotations

import functools
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


#: CuPy's own float kernels flush subnormals to zero (abs, +, *, / on the H100 give 0 for 2^-149); the
#: recipe layers' arithmetic is compiled without it, as the netdsl kernels are (docs/semantics.md)
_EXACT_OPTIONS = ("--ftz=false", "--prec-div=true", "--fmad=false")
_NAN = "__int_as_float(0x7fc00000)"
_BINARY = {"add": "c = a + b", "subtract": "c = a - b", "multiply": "c = a * b", "divide": "c = a / b",
           "maximum": f"c = (a != a || b != b) ? {_NAN} : (a > b ? a : b)",
           "minimum": f"c = (a != a || b != b) ? {_NAN} : (a < b ? a : b)"}
_REDUCE = {"max": (f"(a != a || b != b) ? {_NAN} : (a > b ? a : b)", "__int_as_float(0xff800000)"),
           "min": (f"(a != a || b != b) ? {_NAN} : (a < b ? a : b)", "__int_as_float(0x7f800000)")}


class _Exact:
    """CuPy for :func:`netdsl.ops.reduce.compute` and :func:`netdsl.ops.elementwise.compute`, its float
    arithmetic and comparisons compiled without flushing subnormals (the rest is CuPy's own: where, any,
    signbit and the dtypes move bits, never round them)."""

    def __init__(self) -> None:
        self._cupy = device.import_cupy()
        self._kernels: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name in _BINARY:
            return self._binary(name)
        if name in _REDUCE:
            return self._reduction(name)
        return getattr(self._cupy, name)

    def _binary(self, name: str) -> Any:
        kernel = self._kernels.get(name)
        if kernel is None:
            kernel = self._kernels[name] = self._cupy.ElementwiseKernel(
                "float32 a, float32 b", "float32 c", _BINARY[name], f"netdsl_exact_{name}", options=_EXACT_OPTIONS)
        return lambda a, b, dtype=None: kernel(a, b)

    def _reduction(self, name: str) -> Any:
        kernel = self._kernels.get(name)
        if kernel is None:
            expression, identity = _REDUCE[name]
            kernel = self._kernels[name] = self._cupy.ReductionKernel(
                "float32 x", "float32 y", "x", expression, "y = a", identity, f"netdsl_exact_{name}",
                options=_EXACT_OPTIONS)
        return lambda x, axis=None, keepdims=False: kernel(x, axis=axis, keepdims=keepdims)


@functools.cache
def _exact() -> _Exact:
    return _Exact()


@BACKEND.impl(REDUCE)
def _reduce(resolution: ReduceResolution, args: list[Any]) -> list[Any]:
    result = reduce.compute(_float32(args[0]), resolution.op, resolution.axes, resolution.keep_dims, _exact())
    return [_stored(result, resolution.dtype)]


@BACKEND.impl(ELEMENTWISE)
def _elementwise(resolution: ElementwiseResolution, args: list[Any]) -> list[Any]:
    result = elementwise.compute(_float32(args[0]), _float32(args[1]), resolution.op, _exact())
    return [_stored(result, resolution.dtype)]


@BACKEND.impl(CAST)
def _cast(resolution: CastResolution, args: list[Any]) -> list[Any]:
    return [_stored(_float32(args[0]), resolution.to_type)]


@BACKEND.impl(SHUFFLE)
def _shuffle(resolution: ShuffleResolution, args: list[Any]) -> list[Any]:
    return [DeviceTensor(args[0].dtype, resolution.shape, args[0].data)]  # flat row-major storage: a new shape
