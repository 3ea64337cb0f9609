"""Checkpoint formats: how a recipe's outputs become a loader's tensors and quantization config.

The recipe names its outputs for the tensors they become (``weight``, ``weight_scale``,
``weight_scale_2``: ModelOpt's names); a format stores each one under ``PREFIX.NAME`` with the dtype,
shape and packing its loaders read, and writes the config they read first. Every rule below is taken
from the writers' and loaders' sources cited in docs/checkpoints.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from netdsl import __version__, dtypes
from netdsl.apply import FORMATS
from netdsl.diagnostics import UsageError, WeightValueError
from netdsl.ir import TensorType


@dataclass(frozen=True)
class Scheme:
    """What a recipe computes, read from its outputs' types: ``kind`` is NVFP4, MXFP8, FP8_CHANNEL,
    FP8_TENSOR or INT4_GROUP; ``group_size`` the block length along the input dimension."""

    kind: str
    group_size: int | None = None

    @property
    def takes_input_scales(self) -> bool:
        """Whether activations have a static per-tensor scale (from the user's calibrated amax)."""
        return self.kind in ("NVFP4", "FP8_TENSOR")

    def input_scale(self, amax: float) -> np.float32:
        """The activation scale from its amax, one float32 division as ModelOpt's export computes it
        (``amax.float() / (maxbound * 448.0)``: maxbound 6 for fp4, 1 for fp8 per-tensor)."""
        bound = np.float32(6 * 448 if self.kind == "NVFP4" else 448)
        return np.float32(np.float32(amax) / bound)


def detect_scheme(outputs: dict[str, TensorType], weight_shape: tuple[int, ...]) -> Scheme:
    """The scheme of a recipe bound to a ``weight_shape`` input; UsageError for outputs no format knows."""
    def of(name: str) -> TensorType | None:
        return outputs.get(name)

    weight, scale = of("weight"), of("weight_scale")
    if weight is None or scale is None or weight.shape != weight_shape:
        raise UsageError(f"a recipe for a checkpoint outputs 'weight' (the weight's shape) and 'weight_scale'; "
                         f"this one outputs {', '.join(outputs)}")
    width = weight_shape[-1]
    group = width // scale.shape[-1] if scale.shape and scale.shape[-1] and scale.rank == weight.rank else None
    kind = None
    if weight.dtype == dtypes.FP4 and scale.dtype == dtypes.FP8 and of("weight_scale_2") is not None:
        kind = "NVFP4"
    elif weight.dtype == dtypes.FP8 and scale.dtype == dtypes.E8M0:
        kind = "MXFP8"
    elif weight.dtype == dtypes.FP8 and scale.dtype == dtypes.FLOAT32 and scale.shape == weight_shape[:1]:
        kind, group = "FP8_CHANNEL", None
    elif weight.dtype == dtypes.FP8 and scale.dtype == dtypes.FLOAT32 and scale.volume == 1:
        kind, group = "FP8_TENSOR", None
    elif weight.dtype == dtypes.INT4 and group is not None and scale.dtype.is_float:
        kind = "INT4_GROUP"
    if kind is None or (kind != "FP8_CHANNEL" and kind != "FP8_TENSOR" and not group):
        raise UsageError(f"the recipe's outputs ({', '.join(f'{n} {t}' for n, t in outputs.items())}) match no "
                         f"scheme a checkpoint format stores: NVFP4, MXFP8, FP8 per-channel or per-tensor, "
                         f"INT4 in groups (docs/checkpoints.md)")
    return Scheme(kind, group)


@dataclass(frozen=True)
class Stored:
    """One checkpoint tensor made from a recipe output: its name suffix, safetensors dtype tag, shape, and
    the conversion from the output's storage array to the bytes written."""

    suffix: str
    tag: str
    shape: tuple[int, ...]
    convert: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PackedCodes:
    """A 4-bit output as the GPU stores it, two codes a byte along the last axis (even element in the low
    nibble), kept packed from the device to the file: the writers take it as it is, so the codes are never
    unpacked to one a byte and packed again. Row slices (a fused group's members) stay packed."""

    packed: np.ndarray  # uint8, shape[:-1] + (shape[-1] // 2,)
    dtype: dtypes.DType

    def __getitem__(self, rows: slice) -> PackedCodes:
        return PackedCodes(self.packed[rows], self.dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.packed.shape[:-1], 2 * self.packed.shape[-1])

    def unpacked(self) -> np.ndarray:
        """One value an element, as the NumPy backend gives it."""
        codes = dtypes.unpack_nibbles(self.packed.reshape(-1), 2 * self.packed.size)
        return dtypes.from_codes(codes, self.dtype).reshape(self.shape)


def _pack_fp4(array: np.ndarray | PackedCodes) -> np.ndarray:
    """Two fp4 codes per byte along the last axis, the even element in the low nibble (ModelOpt's
    ``(q[..., 1::2] << 4) | q[..., 0::2]``; vLLM unpacks low nibble first)."""
    if isinstance(array, PackedCodes):
        return array.packed
    if array.dtype != dtypes.FP4.storage:
        raise TypeError(f"expected fp4 storage ({dtypes.FP4.storage}), got {array.dtype}")
    codes = array.view(np.uint8)
    packed = np.empty((*array.shape[:-1], array.shape[-1] // 2), np.uint8)  # one pass: high nibbles, then low
    np.left_shift(codes[..., 1::2], 4, out=packed)
    packed |= codes[..., 0::2] & np.uint8(0x0F)
    return packed


def _pack_int4_int32(array: np.ndarray | PackedCodes) -> np.ndarray:
    """compressed-tensors' ``pack_to_int32``: each code plus 8 as an unsigned nibble, eight per int32 along
    the last axis, element j of a group in bits 4j (so, little-endian, two per byte, low nibble first)."""
    if isinstance(array, PackedCodes):  # code + 8 modulo 16 is the code with its top bit flipped
        return np.ascontiguousarray(array.packed ^ np.uint8(0x88)).view("<i4")
    unsigned = (dtypes.to_codes(array, dtypes.INT4) + 8) & 0x0F
    return dtypes.pack_nibbles(unsigned).view("<i4").reshape(*array.shape[:-1], array.shape[-1] // 8)


def _same(array: np.ndarray | PackedCodes) -> np.ndarray:
    return array.unpacked() if isinstance(array, PackedCodes) else array


def _reciprocal(array: np.ndarray | PackedCodes) -> np.ndarray:
    """compressed-tensors' global scale from netdsl's (ModelOpt's) per-tensor scale: ``1 / scale`` in float32,
    as a one-element vector, which is what compressed-tensors' own ModelOpt converter writes
    (``weight_global_scale = 1 / weight_scale_2``, ``input_global_scale = 1 / input_scale``); its loaders
    take the reciprocal again (docs/checkpoints.md says when that gives the scale back exactly)."""
    scale = np.asarray(_same(array), dtype=np.float32).reshape(1)
    with np.errstate(over="ignore"):
        reciprocal = np.float32(1) / scale
    if not np.isfinite(reciprocal).all():
        raise WeightValueError(f"the per-tensor scale {scale[0]!r} has no finite float32 reciprocal, which "
                               f"compressed-tensors stores as its global scale")
    return reciprocal


def _storage_tag(tensor_type: TensorType) -> str:
    from netdsl.apply.safetensors_io import TAGS

    if tensor_type.dtype == dtypes.E8M0:
        return "U8"  # vLLM's MXFP8_SCALE_DTYPE is torch.uint8 (the e8m0 bits)
    return TAGS[tensor_type.dtype.storage]


class Format:
    """A checkpoint format: ``stored`` maps each recipe output, ``configs`` writes the configs."""

    name = ""

    def check(self, scheme: Scheme, input_scales: bool) -> None:
        raise NotImplementedError

    def stored(self, scheme: Scheme, name: str, tensor_type: TensorType) -> list[Stored]:
        raise NotImplementedError

    def input_scale(self) -> Stored:
        """How the activation scale (``--input-scales``, a float32 scalar) is stored."""
        return Stored("input_scale", "F32", (), _same)

    def configs(self, scheme: Scheme, ignore: list[str], input_scales: bool) -> tuple[dict | None, dict]:
        """(``hf_quant_config.json`` or None, ``config.json``'s ``quantization_config``)."""
        raise NotImplementedError


class ModelOpt(Format):
    """ModelOpt's Hugging Face export, as vLLM's ``modelopt.py`` and TensorRT-LLM load it."""

    name = "modelopt"

    def algo(self, scheme: Scheme, input_scales: bool) -> str:
        return {"NVFP4": "NVFP4" if input_scales else "W4A16_NVFP4", "MXFP8": "MXFP8",
                "FP8_CHANNEL": "FP8_PER_CHANNEL_PER_TOKEN", "FP8_TENSOR": "FP8"}[scheme.kind]

    def check(self, scheme: Scheme, input_scales: bool) -> None:
        if scheme.kind == "INT4_GROUP":
            raise UsageError("--format modelopt: vLLM's ModelOpt loader has no INT4 weight-only algorithm "
                             "(its QUANT_ALGOS); write INT4 groups with --format compressed-tensors")
        if scheme.kind == "FP8_TENSOR" and not input_scales:
            raise UsageError("--format modelopt: FP8 per-tensor weights are ModelOpt's W8A8 'FP8', whose loaders "
                             "need each layer's input_scale: give --input-scales FILE")
        if input_scales and not scheme.takes_input_scales:
            raise UsageError(f"--input-scales: {self.algo(scheme, False)} quantizes activations at run time; it "
                             f"takes no input scales")

    def stored(self, scheme: Scheme, name: str, tensor_type: TensorType) -> list[Stored]:
        if tensor_type.dtype == dtypes.FP4:
            shape = tensor_type.shape
            return [Stored(name, "U8", (*shape[:-1], shape[-1] // 2), _pack_fp4)]
        return [Stored(name, _storage_tag(tensor_type), tensor_type.shape, _same)]

    def configs(self, scheme: Scheme, ignore: list[str], input_scales: bool) -> tuple[dict | None, dict]:
        algo = self.algo(scheme, input_scales)
        producer = {"name": "netdsl", "version": __version__}
        quantization: dict[str, Any] = {"quant_algo": algo, "kv_cache_quant_algo": None, "exclude_modules": ignore}
        if scheme.group_size is not None:
            quantization["group_size"] = scheme.group_size
        hf_quant_config = {"producer": producer, "quantization": quantization}
        # config.json's form: ModelOpt's convert_hf_quant_config_format (vLLM reads quant_algo and ignore)
        weights: dict[str, Any] = {"dynamic": False, "num_bits": 4 if scheme.kind == "NVFP4" else 8, "type": "float"}
        if scheme.group_size is not None:
            weights["group_size"] = scheme.group_size
        if scheme.kind == "FP8_CHANNEL":
            weights["strategy"] = "channel"
        group: dict[str, Any] = {"weights": weights, "targets": ["Linear"]}
        if input_scales:
            group["input_activations"] = dict(weights)
        quantization_config: dict[str, Any] = {"config_groups": {"group_0": group}, "ignore": ignore,
                                               "quant_algo": algo, "producer": producer, "quant_method": "modelopt"}
        if scheme.group_size is not None:
            quantization_config["group_size"] = scheme.group_size
        return hf_quant_config, quantization_config


class CompressedTensors(Format):
    """compressed-tensors' formats, as its compressors write them and vLLM's ``compressed_tensors`` loads
    them: ``float-quantized`` (FP8 per channel), ``pack-quantized`` (INT4 groups) and
    ``nvfp4-pack-quantized`` (NVFP4, weight-only or with static activation global scales)."""

    name = "compressed-tensors"

    def check(self, scheme: Scheme, input_scales: bool) -> None:
        if scheme.kind not in ("FP8_CHANNEL", "INT4_GROUP", "NVFP4"):
            why = {"MXFP8": "vLLM's compressed-tensors loader reads no MXFP8 weights",
                   "FP8_TENSOR": "per-tensor FP8 needs static activation scales this writer doesn't emit"}
            raise UsageError(f"--format compressed-tensors: {why[scheme.kind]}; use --format modelopt")
        if input_scales and not scheme.takes_input_scales:
            raise UsageError("--input-scales: the compressed-tensors schemes written here quantize activations "
                             "at run time (FP8 per token) or not at all (INT4 weight-only)")

    def input_scale(self) -> Stored:
        return Stored("input_global_scale", "F32", (1,), _reciprocal)

    def stored(self, scheme: Scheme, name: str, tensor_type: TensorType) -> list[Stored]:
        shape = tensor_type.shape
        if name == "weight" and tensor_type.dtype == dtypes.INT4:
            if shape[-1] % 8:
                raise UsageError(f"compressed-tensors packs eight int4 values per int32: the input extent "
                                 f"{shape[-1]} is not a multiple of 8")
            return [Stored("weight_packed", "I32", (*shape[:-1], shape[-1] // 8), _pack_int4_int32),
                    Stored("weight_shape", "I64", (len(shape),),
                           lambda array: np.asarray(array.shape, dtype=np.int64))]
        if name == "weight" and tensor_type.dtype == dtypes.FP4:  # the same bytes as ModelOpt's "weight"
            return [Stored("weight_packed", "U8", (*shape[:-1], shape[-1] // 2), _pack_fp4)]
        if name == "weight_scale_2":
            return [Stored("weight_global_scale", "F32", (1,), _reciprocal)]
        if name == "weight_scale" and scheme.kind == "FP8_CHANNEL":
            return [Stored(name, "F32", (shape[0], 1), lambda array: array.reshape(-1, 1))]
        return [Stored(name, _storage_tag(tensor_type), shape, _same)]

    def configs(self, scheme: Scheme, ignore: list[str], input_scales: bool) -> tuple[dict | None, dict]:
        group: dict[str, Any]
        if scheme.kind == "FP8_CHANNEL":
            form = "float-quantized"
            group = {
                "weights": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel",
                            "group_size": None, "dynamic": False},
                "input_activations": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "token",
                                      "group_size": None, "dynamic": True},
            }
        elif scheme.kind == "NVFP4":  # compressed-tensors' NVFP4A16 / NVFP4 presets (quant_scheme.py)
            form = "nvfp4-pack-quantized"
            weights = {"num_bits": 4, "type": "float", "symmetric": True, "group_size": scheme.group_size,
                       "strategy": "tensor_group", "dynamic": False, "scale_dtype": "torch.float8_e4m3fn"}
            group = {"weights": weights,
                     "input_activations": {**weights, "dynamic": "local", "observer": "static_minmax"}
                     if input_scales else None}
        else:
            form = "pack-quantized"
            group = {"weights": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group",
                                 "group_size": scheme.group_size, "dynamic": False},
                     "input_activations": None}
        group["output_activations"] = None
        group["targets"] = ["Linear"]
        return None, {"quant_method": "compressed-tensors", "format": form, "quantization_status": "compressed",
                      "config_groups": {"group_0": group}, "ignore": ignore, "kv_cache_scheme": None}


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise UsageError(f"unknown format '{name}' (choose {' or '.join(FORMATS)})")
    return ModelOpt() if name == "modelopt" else CompressedTensors()
