"""``netdsl apply --format compressed-tensors`` for NVFP4 (``nvfp4-pack-quantized``, docs/checkpoints.md).

The codes and block scales are TensorRT's (checked against tests/oracle.py); compressed-tensors stores the
reciprocal of the per-tensor scale, and its loaders invert it again. What is checked here:

- names, dtypes, shapes, packing and config keys as compressed-tensors' NVFP4 compressor writes them and
  vLLM's CompressedTensorsW4A16Fp4 / CompressedTensorsW4A4Fp4 read them (cited in docs/checkpoints.md);
- the loaders' dequantize, written out here from their sources (no netdsl code), against TensorRT's
  dequantize of the same codes (tests/oracle.py): exact where the docs say it is, and where not, by how much;
- where compressed-tensors itself is installed (it needs torch; CI's test extra doesn't pull torch in, so
  those tests skip there): its own config parser, its own NVFP4 decompressor, and its own ModelOpt -> CT
  converter applied to netdsl's ModelOpt output, which must give netdsl's compressed-tensors output.
"""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from netdsl.apply import apply
from netdsl.diagnostics import UsageError
from tests import oracle
from tests.conftest import backends
from tests.test_apply import ATTN, FP8, MLP, NVFP4, QUANTIZED, RECIPES, make_checkpoint, oracle_nvfp4, tensors

FP8_POSITIVE = FP8[1:].astype(np.float32)  # every finite fp8 E4M3 value > 0 (a block scale a loader can meet)
FP4_VALUES = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)


def reciprocal(x: np.float32) -> np.float32:
    return np.float32(np.float32(1) / np.float32(x))


def unpack(packed: bytes, rows: int) -> np.ndarray:
    """fp4 values from the packed bytes, the low nibble first (compressed-tensors' unpack_fp4_from_uint8)."""
    raw = np.frombuffer(packed, np.uint8).reshape(rows, -1)
    codes = np.stack([raw & 0x0F, raw >> 4], axis=-1).reshape(rows, -1)
    return FP4_VALUES[codes]


def tensorrt_dequantize(values: np.ndarray, scale_bytes: bytes, gs: np.float32) -> np.ndarray:
    """TensorRT's two-level dequantize of NVFP4 codes (tests/oracle.py): fl32(code * fl32(s * gs))."""
    rows = values.shape[0]
    s = FP8[np.frombuffer(scale_bytes, np.uint8) & 0x7F].reshape(rows, -1)
    effective = np.vectorize(oracle.f32_mul)(s, float(gs))
    return oracle.dequantize(values, effective, block_shape=[1, 16])


def decompressor_dequantize(values: np.ndarray, scale_bytes: bytes, global_scale: np.float32) -> np.ndarray:
    """compressed-tensors' NVFP4PackedCompressor.decompress written out (nvfp4/base.py, forward_helpers.py
    ``_dequantize``): scale = bf16(fp8 s) / global_scale in float32 (a [1] float32 global scale promotes),
    then code * scale in float32, then bfloat16."""
    rows = values.shape[0]
    s = FP8[np.frombuffer(scale_bytes, np.uint8) & 0x7F].reshape(rows, -1).astype(np.float32)
    scale = (s / global_scale).astype(np.float32)
    return (values * np.repeat(scale, 16, axis=1)).astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)


def bf16(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)


def read_config(out: Path) -> dict:
    return json.loads((out / "config.json").read_text())["quantization_config"]


# --- names, dtypes, shapes, values, config ---------------------------------------------------------------

@pytest.mark.parametrize("input_scales", [False, True])
def test_nvfp4_compressed_tensors_layout(input_scales: bool, tmp_path: Path) -> None:
    weights = make_checkpoint(tmp_path / "ckpt")
    amax = {module: 1.5 + i / 4 for i, module in enumerate(QUANTIZED)}
    (tmp_path / "amax.json").write_text(json.dumps(amax))
    out = tmp_path / "out"
    apply(NVFP4, tmp_path / "ckpt", out, format="compressed-tensors", backend="numpy",
          input_scales=tmp_path / "amax.json" if input_scales else None)
    written = tensors(out)
    groups = [[ATTN + "q_proj", ATTN + "k_proj", ATTN + "v_proj"], [ATTN + "o_proj"],
              [MLP + "gate_proj", MLP + "up_proj"], [MLP + "down_proj"]]
    for group in groups:
        for module, (packed, scale_bytes, gs) in zip(group, oracle_nvfp4([weights[m + ".weight"] for m in group])):
            rows, cols = weights[module + ".weight"].shape
            # vLLM CompressedTensorsW4A16Fp4.create_weights: weight_packed uint8 [out, in // 2], weight_scale
            # float8_e4m3fn [out, in // 16], weight_global_scale float32, one per fused member; compressed-
            # tensors' initialize.py registers it as torch.empty(1) (a [1] tensor, which vLLM's
            # PerTensorScaleParameter takes: "compressed-tensors scales do have a shape")
            assert written[module + ".weight_packed"] == ("U8", [rows, cols // 2], packed.astype(np.uint8).tobytes())
            assert written[module + ".weight_scale"] == ("F8_E4M3", [rows, cols // 16], scale_bytes.tobytes())
            assert written[module + ".weight_global_scale"] == ("F32", [1], reciprocal(gs).tobytes())
            assert module + ".weight" not in written and module + ".weight_scale_2" not in written
            if input_scales:  # one per fused layer: the members' largest amax, 1 / fl32(amax / 2688)
                layer_amax = max(amax[m] for m in group)
                input_scale = np.float32(np.float32(layer_amax) / np.float32(2688))
                assert written[module + ".input_global_scale"] == ("F32", [1], reciprocal(input_scale).tobytes())
            else:
                assert module + ".input_global_scale" not in written
    assert not (out / "hf_quant_config.json").exists()
    config = read_config(out)
    assert config["quant_method"] == "compressed-tensors" and config["format"] == "nvfp4-pack-quantized"
    assert config["quantization_status"] == "compressed" and config["ignore"] == ["lm_head", "model.embed_tokens"]
    group = config["config_groups"]["group_0"]
    # what vLLM's CompressedTensorsConfig._is_fp4a16_nvfp4 / _is_fp4a4_nvfp4 test, and compressed-tensors'
    # NVFP4A16 / NVFP4 presets (quant_scheme.py) as its QuantizationConfig.model_dump writes them
    weights_args = {"num_bits": 4, "type": "float", "symmetric": True, "group_size": 16, "strategy": "tensor_group",
                    "dynamic": False, "scale_dtype": "torch.float8_e4m3fn"}
    assert group["weights"] == weights_args and group["targets"] == ["Linear"]
    if input_scales:
        assert group["input_activations"] == {**weights_args, "dynamic": "local", "observer": "static_minmax"}
    else:
        assert group["input_activations"] is None


def test_compressed_tensors_refusals(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    make_checkpoint(folder)
    with pytest.raises(UsageError, match="vLLM's compressed-tensors loader reads no MXFP8 weights"):
        apply(RECIPES / "mxfp8_weights.net", folder, tmp_path / "a", format="compressed-tensors", backend="numpy")
    (tmp_path / "amax.json").write_text(json.dumps({m: 1.0 for m in QUANTIZED}))
    with pytest.raises(UsageError, match="--input-scales: the compressed-tensors schemes"):
        apply(RECIPES / "fp8_per_channel_weights.net", folder, tmp_path / "b", format="compressed-tensors",
              backend="numpy", input_scales=tmp_path / "amax.json")
    assert not any((tmp_path / name).exists() and any((tmp_path / name).glob("*.safetensors")) for name in "ab")


def test_a_global_scale_without_a_finite_reciprocal_names_the_tensor(tmp_path: Path) -> None:
    """A weight whose amax is so small that fl32(amax / 2688) is below 2^-128: 1 / it overflows float32."""
    w = np.zeros((2, 16), np.float32)
    w[0, 0] = 2.0**-128 * 2000  # gs = fl32(amax / 2688) < 2^-128 (subnormal), so 1 / gs is Inf in float32
    save_file({"tiny.weight": w.astype(ml_dtypes.bfloat16)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(UsageError, match="tensor 'tiny.weight_global_scale' can't be stored in --format "
                                         "compressed-tensors: the per-tensor scale .* has no finite float32 reciprocal"):
        apply(NVFP4, tmp_path / "m.safetensors", tmp_path / "out", format="compressed-tensors", backend="numpy")
    assert not list((tmp_path / "out").glob("*.safetensors"))


# --- the loaders' dequantize against TensorRT's --------------------------------------------------------

def global_scale_kinds() -> dict[str, float]:
    """A bfloat16 amax in [1, 2) of each kind (found by enumeration, IEEE float32 arithmetic only), with
    gs = fl32(amax / 2688) and G = fl32(1 / gs): 'exact' (fl32(s / G) == fl32(s * gs) for every fp8 s, so
    compressed-tensors' decompressor is exact too), 'vllm' (fl32(1 / G) == gs only), 'neither'."""
    kinds: dict[str, float] = {}
    for k in range(128):
        amax = np.float32(1 + k / 128)
        gs = np.float32(amax / np.float32(2688))
        global_scale = reciprocal(gs)
        vllm = reciprocal(global_scale) == gs
        every = bool(((FP8_POSITIVE / global_scale).astype(np.float32) == (FP8_POSITIVE * gs).astype(np.float32)).all())
        kinds.setdefault("exact" if every else "vllm" if vllm else "neither", float(amax))
    return kinds


@pytest.fixture
def three_kinds(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """One weight per kind of global scale, each with its block scales spread over the fp8 range."""
    rng = np.random.default_rng(7)
    weights = {}
    for kind, amax in global_scale_kinds().items():
        w = rng.standard_normal((8, 64)).astype(np.float32) * 10.0 ** rng.integers(-4, 0, (8, 4)).repeat(16, axis=1) / 8
        w[0, 0] = amax
        weights[f"{kind}.weight"] = w.astype(ml_dtypes.bfloat16)
    save_file(weights, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    return tmp_path / "model.safetensors", weights


def test_the_loaders_dequantize_as_tensorrt(three_kinds, tmp_path: Path) -> None:
    """vLLM's compressed-tensors NVFP4 schemes invert the stored global scale once
    (``1.0 / layer.weight_global_scale.max()``) and then run as on a ModelOpt checkpoint: exact wherever
    fl32(1 / fl32(1 / gs)) == gs. compressed-tensors' own decompressor divides each block scale by it: exact
    per block where fl32(s / G) == fl32(s * gs). Both are checked against TensorRT's dequantize (the oracle)."""
    checkpoint, weights = three_kinds
    assert set(global_scale_kinds()) == {"exact", "vllm", "neither"}
    apply(NVFP4, checkpoint, tmp_path / "ct", format="compressed-tensors", backend="numpy")
    apply(NVFP4, checkpoint, tmp_path / "mo", backend="numpy")
    ct, mo = tensors(tmp_path / "ct"), tensors(tmp_path / "mo")
    for kind in ("exact", "vllm", "neither"):
        gs = np.frombuffer(mo[f"{kind}.weight_scale_2"][2], np.float32)[0]
        global_scale = np.frombuffer(ct[f"{kind}.weight_global_scale"][2], np.float32)[0]
        packed, scale_bytes = ct[f"{kind}.weight_packed"][2], ct[f"{kind}.weight_scale"][2]
        assert packed == mo[f"{kind}.weight"][2] and scale_bytes == mo[f"{kind}.weight_scale"][2]
        values = unpack(packed, 8)
        truth = tensorrt_dequantize(values, scale_bytes, gs)
        # vLLM: weight_global_scale := fl32(1 / G), then used as ModelOpt's weight_scale_2
        vllm_gs = reciprocal(global_scale)
        vllm = tensorrt_dequantize(values, scale_bytes, vllm_gs)
        if kind == "neither":  # no float32 G has fl32(1 / G) == gs: the loader's scale is gs's neighbour
            assert vllm_gs != gs and abs(int(vllm_gs.view(np.int32)) - int(gs.view(np.int32))) == 1
        else:
            assert vllm_gs == gs and np.array_equal(vllm, truth), kind
        decompressed = decompressor_dequantize(values, scale_bytes, global_scale)
        s = FP8[np.frombuffer(scale_bytes, np.uint8) & 0x7F].reshape(8, -1).astype(np.float32)
        block_exact = (s / global_scale).astype(np.float32) == (s * gs).astype(np.float32)
        element_exact = np.repeat(block_exact, 16, axis=1)
        assert np.array_equal(decompressed[element_exact], bf16(truth)[element_exact]), kind
        if kind == "exact":
            assert element_exact.all()
        else:  # the blocks whose scale quotient is an ulp off (the test's weights have some of them)
            assert not block_exact.all()


def test_reciprocal_exactness_over_every_float32_significand() -> None:
    """The numbers docs/checkpoints.md quotes, over all 2^23 float32 values gs in [1, 2) (the same for every
    binade away from the subnormal and overflow ends): G = fl32(1 / gs) gives fl32(1 / G) == gs for
    6949350, and no other float32 G does it for any further gs (none of the three on either side;
    fl32(1 / G) is monotonic in G); fl32(s / G) == fl32(s * gs) for every fp8
    s (the eight significands 1, 1.125, .., 1.875) holds for 1541389. And every float32 reciprocal inverts
    back exactly, which examples/recipes/nvfp4_weights_reciprocal.net relies on."""
    gs = (np.arange(2**23, dtype=np.uint32) | np.uint32(127 << 23)).view(np.float32)
    global_scale = (np.float32(1) / gs).astype(np.float32)
    vllm = (np.float32(1) / global_scale) == gs
    assert int(vllm.sum()) == 6949350
    for step in (-3, -2, -1, 1, 2, 3):  # fl32(1 / G) is monotonic in G: farther ones are farther still
        neighbour = (global_scale.view(np.int32) + step).view(np.float32)
        assert not ((np.float32(1) / neighbour == gs) & ~vllm).any()
    # every float32 reciprocal r = fl32(1 / G) comes back: fl32(1 / fl32(1 / r)) == r (the reciprocal recipe)
    inverted = (np.float32(1) / gs).astype(np.float32)  # gs runs over every G in [1, 2) here
    assert np.array_equal((np.float32(1) / (np.float32(1) / inverted).astype(np.float32)).astype(np.float32), inverted)
    every = np.ones(gs.size, bool)
    for significand in np.float32(1) + np.arange(8, dtype=np.float32) / 8:
        every &= (significand / global_scale).astype(np.float32) == (significand * gs).astype(np.float32)
    assert int(every.sum()) == 1541389


def test_the_reciprocal_recipe_is_exact_in_vllm_for_every_layer(three_kinds, tmp_path: Path) -> None:
    """examples/recipes/nvfp4_weights_reciprocal.net computes gs = fl32(1 / fl32(2688 / amax)), a float32
    reciprocal, so the stored G = fl32(1 / gs) inverts back to gs for every layer (the 'neither' layer
    included); codes and block scales are TensorRT's with that gs (tests/oracle.py)."""
    checkpoint, weights = three_kinds
    apply(RECIPES / "nvfp4_weights_reciprocal.net", checkpoint, tmp_path / "ct", format="compressed-tensors",
          backend="numpy")
    ct = tensors(tmp_path / "ct")
    for kind in ("exact", "vllm", "neither"):
        x = weights[f"{kind}.weight"].astype(np.float32)
        amax = np.float32(np.abs(x).max())
        gs = reciprocal(np.float32(np.float32(2688) / amax))
        global_scale = np.frombuffer(ct[f"{kind}.weight_global_scale"][2], np.float32)[0]
        assert global_scale == reciprocal(gs) and reciprocal(global_scale) == gs, kind
        data, scale = oracle.dynamic_quantize(x, gs, axis=1, block_size=16)
        values = unpack(ct[f"{kind}.weight_packed"][2], 8)
        assert np.array_equal(values, data) and np.array_equal(np.signbit(values), np.signbit(data)), kind
        scale_bytes = ct[f"{kind}.weight_scale"][2]
        assert np.array_equal(FP8[np.frombuffer(scale_bytes, np.uint8) & 0x7F].reshape(scale.shape), scale), kind
        assert np.array_equal(tensorrt_dequantize(values, scale_bytes, reciprocal(global_scale)),
                              tensorrt_dequantize(values, scale_bytes, gs)), kind


# --- compressed-tensors itself --------------------------------------------------------------------------

def test_compressed_tensors_reads_it(three_kinds, tmp_path: Path) -> None:
    """compressed-tensors' QuantizationConfig parses the config into its NVFP4 preset; its own NVFP4
    decompressor dequantizes the written tensors as TensorRT does (bfloat16, where the docs say exactly);
    its own ModelOpt -> compressed-tensors converter, given netdsl's ModelOpt output, gives netdsl's
    compressed-tensors output value for value."""
    pytest.importorskip("torch", reason="compressed-tensors needs torch, which the test extra doesn't install")
    pytest.importorskip("compressed_tensors", reason="compressed-tensors is not installed")
    import torch
    from compressed_tensors.compressors.nvfp4.base import NVFP4PackedCompressor
    from compressed_tensors.entrypoints.convert.converters.modelopt_nvfp4 import ModelOptNvfp4Converter
    from compressed_tensors.quantization import QuantizationConfig, preset_name_to_scheme
    from safetensors.torch import load_file

    checkpoint, weights = three_kinds
    apply(NVFP4, checkpoint, tmp_path / "ct", format="compressed-tensors", backend="numpy")
    apply(NVFP4, checkpoint, tmp_path / "mo", backend="numpy")
    config = QuantizationConfig.model_validate(read_config(tmp_path / "ct"))
    scheme = config.config_groups["group_0"]
    assert scheme == preset_name_to_scheme("NVFP4A16", ["Linear"])
    assert config.format == "nvfp4-pack-quantized"
    ct = load_file(str(tmp_path / "ct" / "model.safetensors"))
    mo = tensors(tmp_path / "mo")
    for kind in ("exact", "vllm", "neither"):
        state = {name: ct[f"{kind}.{name}"] for name in ("weight_packed", "weight_scale", "weight_global_scale")}
        decompressed = NVFP4PackedCompressor.decompress(state, scheme)["weight"]
        assert decompressed.dtype == torch.bfloat16
        gs = np.frombuffer(mo[f"{kind}.weight_scale_2"][2], np.float32)[0]
        truth = bf16(tensorrt_dequantize(unpack(mo[f"{kind}.weight"][2], 8), mo[f"{kind}.weight_scale"][2], gs))
        got = decompressed.float().numpy().astype(np.float64)
        global_scale = np.frombuffer(state["weight_global_scale"].numpy().tobytes(), np.float32)[0]
        assert np.array_equal(got, decompressor_dequantize(unpack(mo[f"{kind}.weight"][2], 8),
                                                           mo[f"{kind}.weight_scale"][2], global_scale))
        if kind == "exact":
            assert np.array_equal(got, truth)
    modelopt = load_file(str(tmp_path / "mo" / "model.safetensors"))
    converted = ModelOptNvfp4Converter(targets=["re:.*"]).process(dict(modelopt))
    assert sorted(converted) == sorted(ct)
    for name, tensor in ct.items():
        other = converted[name]
        assert tensor.dtype == other.dtype and tensor.numel() == other.numel(), name
        assert tensor.reshape(-1).view(torch.uint8).equal(other.reshape(-1).contiguous().view(torch.uint8)), name


@pytest.mark.parametrize("backend", backends()[1:])
def test_every_backend_writes_the_same_compressed_tensors_bytes(backend: str, tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    make_checkpoint(folder)
    (tmp_path / "amax.json").write_text(json.dumps({m: 2.0 for m in QUANTIZED}))
    for name in ("numpy", backend):
        apply(NVFP4, folder, tmp_path / name, format="compressed-tensors", backend=name,
              input_scales=tmp_path / "amax.json")
    for path in sorted((tmp_path / "numpy").glob("*.safetensors")):
        assert path.read_bytes() == (tmp_path / backend / path.name).read_bytes(), path.name
