"""The launchers: Quantize, Dequantize, the fused Quantize->Dequantize and Dequantize chain, and
DynamicQuantize on device tensors (numerics: docs/semantics.md, bit for bit).

Everything about a call that its types, shapes and device fix (checks, kernel handle, grid, scale-index
table, scalar arguments) is worked out once, kept in a :class:`LaunchCache`, so that a repeated call costs
a dictionary lookup, one output allocation and the launch (the executor's per-layer host overhead;
benchmarks/bench_gpu.py measures it).

Granularity arrives pre-normalised as a full-rank ``block`` (see :mod:`netdsl.backends.cupy.geometry`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from netdsl import dtypes
from netdsl.backends.cupy import abi, device, dynamic, geometry
from netdsl.backends.cupy.device import DeviceTensor, import_cupy, storage_length
from netdsl.backends.cupy.loader import kernel
from netdsl.ops.dequantize import SCALE_TYPES
from netdsl.ops.dynamic_quantize import MODES


@dataclass(frozen=True)
class ElementwiseLaunch:
    """One elementwise kernel call (quantize.cu / dequantize.cu) as its types and shapes fix it.

    The kernel's arguments are its tensors and ``kinds`` (the scale or code kinds, interleaved as the
    kernel declares them), then ``words`` (the ScaleMap on the device), the output, ``n`` and ``step``.
    """

    function: Any  # None when there is nothing to launch (an empty tensor)
    grid: tuple[int]
    out_dtype: dtypes.DType
    out_shape: tuple[int, ...]
    out_length: int  # storage elements
    kinds: tuple[np.uint32, ...]
    words: Any  # the ScaleMap on the device; None for an empty tensor
    n: np.uint32
    step: np.uint32  # the CHUNKED map's step

    @functools.cached_property
    def _empty(self) -> Callable[[], Any]:
        # cupy.ndarray rather than cupy.empty: one call less
        return functools.partial(import_cupy().ndarray, (self.out_length,), self.out_dtype.device_storage)

    def run(self, head: tuple[Any, ...]) -> DeviceTensor:
        """Launch with ``head`` (the arguments before the output) and return the output."""
        data = self._empty()
        if self.function is not None:
            self.function(self.grid, abi.BLOCK, (*head, data, self.n, self.step))
        return DeviceTensor(self.out_dtype, self.out_shape, data)


class LaunchCache:
    """Launches by (operation, types, shapes, block, device); starts again beyond ``limit`` entries."""

    def __init__(self, limit: int = 4096):
        self.limit = limit
        self.entries: dict[tuple[Any, ...], Any] = {}

    def get(self, key: tuple[Any, ...]) -> Any:
        return self.entries.get(key)

    def remember(self, key: tuple[Any, ...], value: Any) -> Any:
        if len(self.entries) >= self.limit:
            self.entries.clear()
        self.entries[key] = value
        return value


LAUNCHES = LaunchCache()


def _tuple(block: Any) -> tuple[int, ...]:
    return block if type(block) is tuple else tuple(block)


def _check_block(x: DeviceTensor, scale: DeviceTensor, block: tuple[int, ...]) -> tuple[int, ...]:
    block = tuple(int(b) for b in block)
    if len(block) != len(x.shape) or any(b < 1 for b in block):
        raise ValueError(f"block {block} does not fit a tensor of shape {x.shape}")
    expected = geometry.scale_shape(x.shape, block)
    if tuple(scale.shape) != expected:
        raise ValueError(f"scale shape {scale.shape} != {expected} for shape {x.shape} in blocks {block}")
    return block


def _check_type(what: str, dtype: dtypes.DType, allowed: tuple[dtypes.DType, ...]) -> None:
    if dtype not in allowed:
        raise TypeError(f"{what} must be one of {', '.join(t.name for t in allowed)}, got {dtype}")


def _scale_kind(dtype: dtypes.DType) -> int:
    """ScaleKind of a type _check_type has let through as a scale."""
    assert dtype.scale_kind is not None
    return dtype.scale_kind


def _code_kind(dtype: dtypes.DType) -> int:
    """CodeKind of a type _check_type has let through as codes."""
    assert dtype.code_kind is not None
    return dtype.code_kind


def _elementwise(file: str, name: Callable[[int], str], shape: tuple[int, ...], block: tuple[int, ...],
                 out_dtype: dtypes.DType, on_device: int, kinds: tuple[int, ...]) -> ElementwiseLaunch:
    """The launch of kernel ``name(map mode)`` of ``file`` over a tensor of ``shape``."""
    n = math.prod(shape)
    length = storage_length(out_dtype, n)
    scale_kinds = tuple(np.uint32(k) for k in kinds)
    if n == 0:
        return ElementwiseLaunch(None, (1,), out_dtype, shape, length, scale_kinds, None, np.uint32(0), np.uint32(0))
    indexing = geometry.scale_indexing(shape, block)
    return ElementwiseLaunch(kernel(file, name(indexing.mode), on_device),
                             geometry.grid(-(-n // abi.CHUNK), on_device), out_dtype, shape, length, scale_kinds,
                             device.words(indexing.words), np.uint32(n), np.uint32(indexing.chunk_step))


@dataclass(frozen=True)
class _ScaledOp:
    """Quantize or Dequantize as its launcher sees it: the kernel file, the instantiation name, and the
    types of its input, scale and output."""

    name: str
    file: str
    kernel_name: Callable[[str, str, int], str]
    input_types: tuple[dtypes.DType, ...]
    scale_types: tuple[dtypes.DType, ...]
    output_types: tuple[dtypes.DType, ...]


_QUANTIZE = _ScaledOp("quantize", "quantize.cu", abi.quantize_name, dtypes.FLOAT_TYPES, dtypes.FLOAT_TYPES,
                      dtypes.QUANTIZED_TYPES)
_DEQUANTIZE = _ScaledOp("dequantize", "dequantize.cu", abi.dequantize_name, dtypes.QUANTIZED_TYPES, SCALE_TYPES,
                        dtypes.FLOAT_TYPES)


def _scaled(op: _ScaledOp, x: DeviceTensor, scale: DeviceTensor, block: tuple[int, ...],
            to_type: dtypes.DType) -> DeviceTensor:
    on_device = device.current()
    key = (op.name, x.dtype.name, x.shape, scale.dtype.name, scale.shape, _tuple(block), to_type.name, on_device)
    launch = LAUNCHES.get(key)
    if launch is None:
        _check_type(f"{op.name} input", x.dtype, op.input_types)
        _check_type(f"{op.name} scale", scale.dtype, op.scale_types)
        _check_type(f"{op.name} to_type", to_type, op.output_types)
        block = _check_block(x, scale, block)
        name = functools.partial(op.kernel_name, x.dtype.name, to_type.name)
        launch = LAUNCHES.remember(key, _elementwise(op.file, name, x.shape, block, to_type, on_device,
                                                     (_scale_kind(scale.dtype),)))
    (kind,) = launch.kinds
    return launch.run((x.data, scale.data, kind, launch.words))


def quantize(x: DeviceTensor, scale: DeviceTensor, block: tuple[int, ...], to_type: dtypes.DType) -> DeviceTensor:
    """q = saturate(round_half_even(x / scale)) in ``to_type`` (int8, int4, fp8, fp4).

    x: float32/float16/bfloat16; scale: float32/float16/bfloat16, widened exactly; the division is
    IEEE float32 (docs/semantics.md, "Quantize"). A zero scale gives +0 data (only DynamicQuantize's
    effective scales are ever 0).
    """
    return _scaled(_QUANTIZE, x, scale, block, to_type)


def dequantize(q: DeviceTensor, scale: DeviceTensor, block: tuple[int, ...], to_type: dtypes.DType) -> DeviceTensor:
    """y = round_to(to_type, fl32(float32(q) * scale)) (docs/semantics.md, "Dequantize").

    q: int8/int4/fp8/fp4; scale: float32/float16/bfloat16 or e8m0; to_type: float32/float16/bfloat16.
    """
    return _scaled(_DEQUANTIZE, q, scale, block, to_type)


def quantize_dequantize(
    x: DeviceTensor,
    scale: DeviceTensor,
    block: tuple[int, ...],
    quant_type: dtypes.DType,
    dequant_scale: DeviceTensor | None = None,
    to_type: dtypes.DType | None = None,
) -> DeviceTensor:
    """Dequantize(Quantize(x, scale, quant_type), dequant_scale, to_type) in one pass, q never stored.

    The same bits as the two ops run one after the other. ``dequant_scale`` (default: ``scale``) has
    the shape of ``scale`` (a Q -> DQ pair over the same block geometry) and any Dequantize scale type
    (float32/float16/bfloat16/e8m0); ``to_type`` defaults to x's type.
    """
    dequant_scale = scale if dequant_scale is None else dequant_scale
    to_type = x.dtype if to_type is None else to_type
    on_device = device.current()
    key = ("quantize_dequantize", x.dtype.name, x.shape, scale.dtype.name, scale.shape, _tuple(block), quant_type.name,
           dequant_scale.dtype.name, dequant_scale.shape, to_type.name, on_device)
    launch = LAUNCHES.get(key)
    if launch is None:
        _check_type("quantize_dequantize input", x.dtype, dtypes.FLOAT_TYPES)
        _check_type("quantize_dequantize scale", scale.dtype, dtypes.FLOAT_TYPES)
        _check_type("quantize_dequantize quant_type", quant_type, dtypes.QUANTIZED_TYPES)
        _check_type("quantize_dequantize dequant_scale", dequant_scale.dtype, SCALE_TYPES)
        _check_type("quantize_dequantize to_type", to_type, dtypes.FLOAT_TYPES)
        block = _check_block(x, scale, block)
        if tuple(dequant_scale.shape) != tuple(scale.shape):
            raise ValueError("quantize_dequantize: dequant_scale must have scale's shape")
        name = functools.partial(abi.quantize_dequantize_name, x.dtype.name, quant_type.name, to_type.name)
        kinds = (_scale_kind(scale.dtype), _scale_kind(dequant_scale.dtype))
        launch = LAUNCHES.remember(key, _elementwise("quantize.cu", name, x.shape, block, to_type, on_device, kinds))
    kind, dequant_kind = launch.kinds
    return launch.run((x.data, scale.data, kind, dequant_scale.data, dequant_kind, launch.words))


def dequantize_double(
    q: DeviceTensor,
    codes: DeviceTensor,
    codes_scale: DeviceTensor,
    block: tuple[int, ...],
    scale_type: dtypes.DType,
    to_type: dtypes.DType,
) -> DeviceTensor:
    """Dequantize(q, Dequantize(codes, codes_scale, scale_type), to_type) in one pass (the NVFP4 chain).

    ``codes`` (int8/int4/fp8/fp4) has the block-scale shape of q in ``block``; ``codes_scale`` is one
    element (per-tensor: the double-quantization scale, float32/float16/bfloat16/e8m0). Per block,
    S = round_to(scale_type, fl32(decode(code) * codes_scale)), exactly what the first Dequantize stores;
    y = round_to(to_type, fl32(float32(q) * S)). The intermediate is never materialised.
    """
    on_device = device.current()
    key = ("dequantize_double", q.dtype.name, q.shape, codes.dtype.name, codes.shape, codes_scale.dtype.name,
           codes_scale.shape, _tuple(block), scale_type.name, to_type.name, on_device)
    launch = LAUNCHES.get(key)
    if launch is None:
        _check_type("dequantize_double input", q.dtype, dtypes.QUANTIZED_TYPES)
        _check_type("dequantize_double codes", codes.dtype, dtypes.QUANTIZED_TYPES)
        _check_type("dequantize_double codes_scale", codes_scale.dtype, SCALE_TYPES)
        _check_type("dequantize_double scale_type", scale_type, dtypes.FLOAT_TYPES)
        _check_type("dequantize_double to_type", to_type, dtypes.FLOAT_TYPES)
        block = _check_block(q, codes, block)
        if codes_scale.size != 1:
            raise ValueError("dequantize_double: codes_scale must be per-tensor (one element)")
        name = functools.partial(abi.dequantize_double_name, q.dtype.name, to_type.name)
        kinds = (_code_kind(codes.dtype), _scale_kind(codes_scale.dtype),
                 _scale_kind(scale_type))
        launch = LAUNCHES.remember(key, _elementwise("dequantize.cu", name, q.shape, block, to_type, on_device, kinds))
    code_kind, dqs_kind, sf_kind = launch.kinds
    return launch.run((q.data, codes.data, code_kind, codes_scale.data, dqs_kind, sf_kind, launch.words))


def dynamic_quantize(
    x: DeviceTensor,
    block: tuple[int, ...],
    output_type: dtypes.DType,
    scale_type: dtypes.DType,
    double_quant_scale: float | None,
) -> tuple[DeviceTensor, DeviceTensor]:
    """(data, scale) of DynamicQuantize (docs/semantics.md): block amax (NaN ignored), the mode's scale, data.

    Modes by (output_type, scale_type): (fp4, fp8) NVFP4, needs ``double_quant_scale``; (fp8, e8m0)
    MXFP8, round-up exponent; (fp8 or int8, float32) float scale amax / 448 or amax / 127. Any block
    shape with partial edge blocks; the caller has checked the mode's block rules.
    """
    on_device = device.current()
    block = tuple(block)
    key = ("dynamic_quantize", x.dtype.name, x.shape, block, output_type.name, scale_type.name,
           double_quant_scale is None, on_device, x.data.data.ptr % 16 == 0 if x.size else True)
    launch: dynamic.DynamicLaunch | None = LAUNCHES.get(key)
    if launch is None:
        _check_type("dynamic_quantize input", x.dtype, dtypes.FLOAT_TYPES)
        mode = MODES.get((output_type, scale_type))
        if mode is None:
            raise TypeError(f"dynamic_quantize: no mode with output {output_type} and scale {scale_type}")
        if mode.double_quant_scale != (double_quant_scale is not None):
            raise ValueError("dynamic_quantize: double_quant_scale is required for NVFP4 and allowed for no other mode")
        struct = abi.DYNAMIC_MODES[(output_type.name, scale_type.name)]
        block = tuple(int(b) for b in block)
        if len(block) != len(x.shape) or any(b < 1 for b in block):
            raise ValueError(f"block {block} does not fit a tensor of shape {x.shape}")
        launch = LAUNCHES.remember(key, dynamic.choose(x, block, struct, on_device))
    cupy = import_cupy()
    nscales = math.prod(launch.scale_shape)
    scale = DeviceTensor(scale_type, launch.scale_shape, cupy.empty(nscales, dtype=scale_type.device_storage))
    dqs = np.float32(1.0 if double_quant_scale is None else double_quant_scale)
    if launch.amax is None:
        data = DeviceTensor(output_type, x.shape, cupy.empty(storage_length(output_type, x.size),
                                                             dtype=output_type.device_storage))
        if launch.function is not None:
            launch.function(launch.grid, abi.BLOCK, (x.data, data.data, scale.data, *launch.args, dqs))
        return data, scale
    amax_pass = launch.amax
    amax = cupy.empty(nscales, dtype=np.float32) if amax_pass.kind == "block" else cupy.zeros(nscales, dtype=np.float32)
    amax_pass.function(amax_pass.grid, abi.BLOCK, (x.data, amax_pass.words, amax, amax_pass.count))
    effective = DeviceTensor(dtypes.FLOAT32, launch.scale_shape, cupy.empty(nscales, dtype=np.float32))
    launch.function(launch.grid, abi.BLOCK, (amax, scale.data, effective.data, np.uint32(nscales), dqs))
    return quantize(x, effective, block, output_type), scale
