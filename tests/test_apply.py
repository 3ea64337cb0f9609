"""``netdsl apply``: the output's codes and scales against an independent NumPy implementation of each
format written here from docs/semantics.md (no netdsl code), the names, dtypes, shapes, packing and
config keys the loaders read (vLLM's modelopt.py and compressed_tensors, docs/checkpoints.md; vLLM
itself needs torch and CUDA and is not installed here), resuming, and every bad-checkpoint error."""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from netdsl import ModelError
from netdsl.apply import apply
from netdsl.cli import main
from netdsl.diagnostics import UsageError
from tests.conftest import EXAMPLES, backends

RECIPES = EXAMPLES / "recipes"
NVFP4 = RECIPES / "nvfp4_weights.net"
SHARD1, SHARD2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
H, INTER = 64, 128


# --- an independent implementation of the formats (docs/semantics.md), float64 comparisons only ----------

def fp8_values() -> np.ndarray:
    """Every non-negative finite E4M3 value, by code 0..126 (exponent bias 7, 3 mantissa bits)."""
    values = []
    for code in range(127):
        exponent, mantissa = code >> 3, code & 7
        values.append(mantissa / 8 * 2.0**-6 if exponent == 0 else (1 + mantissa / 8) * 2.0 ** (exponent - 7))
    return np.array(values)


FP8 = fp8_values()
FP4 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6])


def round_to_table(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Codes of |x| in a sorted table of non-negative values, nearest, ties to the even code, saturating;
    the sign goes to the format's sign bit by the caller."""
    magnitude = np.minimum(np.abs(x.astype(np.float64)), table[-1])
    upper = np.clip(np.searchsorted(table, magnitude), 1, len(table) - 1)
    lower = upper - 1
    below, above = magnitude - table[lower], table[upper] - magnitude
    pick_upper = (above < below) | ((above == below) & (upper % 2 == 0))
    return np.where(pick_upper, upper, lower)


def fp8_encode(x: np.ndarray) -> np.ndarray:
    return (round_to_table(x, FP8) | (np.signbit(x) << 7)).astype(np.uint8)


def fp4_codes(x: np.ndarray) -> np.ndarray:
    return (round_to_table(x, FP4) | (np.signbit(x) << 3)).astype(np.uint8)


def oracle_nvfp4(weights: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.float32]]:
    """(packed codes, fp8 scale bytes, global scale) per member of a fused group: gs = fl32(amax / 2688)
    over the whole group; s = fp8(fl32(fl32(block_amax / 6) / gs)); codes = fp4(fl32(x / fl32(s * gs))),
    +0 where s * gs is 0; two codes per byte, the even element in the low nibble."""
    amax = max(np.abs(w.astype(np.float32)).max() for w in weights)
    gs = np.float32(np.float32(amax) / np.float32(2688))
    results = []
    for w in weights:
        x = w.astype(np.float32)
        rows, cols = x.shape
        block_amax = np.abs(x).reshape(rows, cols // 16, 16).max(axis=2)
        scale_bytes = fp8_encode((block_amax / np.float32(6)).astype(np.float32) / gs)
        scale_values = FP8[scale_bytes & 0x7F].astype(np.float32)
        effective = (scale_values * gs).astype(np.float32)
        per_element = np.repeat(effective, 16, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            quotient = (x / per_element).astype(np.float32)
        quotient[per_element == 0] = 0
        codes = fp4_codes(quotient)
        results.append((codes[:, 0::2] | (codes[:, 1::2] << 4), scale_bytes, gs))
    return results


# --- synthetic checkpoints ---------------------------------------------------------------------------

def bf16(rng: np.random.Generator, *shape: int) -> np.ndarray:
    scale = 10.0 ** rng.integers(-3, 2, (shape[0],) + (1,) * (len(shape) - 1))
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(ml_dtypes.bfloat16)


def make_checkpoint(folder: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Two shards, q/k in the first and v in the second (a fused group across shards), gate/up, an
    embedding and lm_head left alone, a norm of rank 1, config.json and a tokenizer file."""
    rng = np.random.default_rng(seed)
    first = {"model.embed_tokens.weight": bf16(rng, 100, H), "model.layers.0.self_attn.q_proj.weight": bf16(rng, H, H),
             "model.layers.0.self_attn.k_proj.weight": bf16(rng, 32, H),
             "model.layers.0.input_layernorm.weight": bf16(rng, H)}
    second = {"model.layers.0.self_attn.v_proj.weight": bf16(rng, 32, H),
              "model.layers.0.self_attn.o_proj.weight": bf16(rng, H, H),
              "model.layers.0.mlp.gate_proj.weight": bf16(rng, INTER, H), "model.layers.0.mlp.up_proj.weight": bf16(rng, INTER, H),
              "model.layers.0.mlp.down_proj.weight": bf16(rng, H, INTER), "lm_head.weight": bf16(rng, 100, H)}
    folder.mkdir(parents=True)
    save_file(first, str(folder / SHARD1), metadata={"format": "pt"})
    save_file(second, str(folder / SHARD2), metadata={"format": "pt"})
    weight_map = {name: SHARD1 for name in first} | {name: SHARD2 for name in second}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 1},
                                                                      "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": H}))
    (folder / "tokenizer.json").write_text("{\"tokens\": []}")
    return first | second


def tensors(folder: Path) -> dict[str, tuple[str, list[int], bytes]]:
    """Every tensor of every shard in ``folder``: (dtype tag, shape, raw bytes), read by hand from the
    safetensors layout (8-byte length, JSON header, data)."""
    found = {}
    for path in sorted(folder.glob("*.safetensors")):
        raw = path.read_bytes()
        (length,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + length])
        header.pop("__metadata__", None)
        for name, entry in header.items():
            begin, end = entry["data_offsets"]
            found[name] = (entry["dtype"], entry["shape"], raw[8 + length + begin:8 + length + end])
    return found


ATTN = "model.layers.0.self_attn."
MLP = "model.layers.0.mlp."
QUANTIZED = [ATTN + "q_proj", ATTN + "k_proj", ATTN + "v_proj", ATTN + "o_proj", MLP + "gate_proj",
             MLP + "up_proj", MLP + "down_proj"]


@pytest.fixture
def checkpoint(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    weights = make_checkpoint(tmp_path / "ckpt")
    return tmp_path / "ckpt", weights


# --- NVFP4, ModelOpt -----------------------------------------------------------------------------------

def test_nvfp4_matches_the_oracle_and_the_loader_rules(checkpoint, tmp_path: Path) -> None:
    folder, weights = checkpoint
    out = tmp_path / "out"
    apply(NVFP4, folder, out, backend="numpy")
    written = tensors(out)
    groups = [[ATTN + "q_proj", ATTN + "k_proj", ATTN + "v_proj"], [ATTN + "o_proj"],
              [MLP + "gate_proj", MLP + "up_proj"], [MLP + "down_proj"]]
    for group in groups:
        expected = oracle_nvfp4([weights[m + ".weight"] for m in group])
        for module, (packed, scale_bytes, gs) in zip(group, expected):
            rows, cols = weights[module + ".weight"].shape
            # vLLM ModelOptNvFp4W4A16LinearMethod.create_weights: weight uint8 [out, in // 2], weight_scale
            # float8_e4m3fn [out, in // group_size], weight_scale_2 float32 (a scalar per layer on disk)
            assert written[module + ".weight"][:2] == ("U8", [rows, cols // 2])
            assert written[module + ".weight"][2] == packed.astype(np.uint8).tobytes(), module
            assert written[module + ".weight_scale"][:2] == ("F8_E4M3", [rows, cols // 16])
            assert written[module + ".weight_scale"][2] == scale_bytes.tobytes(), module
            assert written[module + ".weight_scale_2"] == ("F32", [], np.float32(gs).tobytes())
            assert module + ".input_scale" not in written
    # unchanged tensors: byte for byte, same dtype and shape
    source = tensors(folder)
    for name in ("model.embed_tokens.weight", "lm_head.weight", "model.layers.0.input_layernorm.weight"):
        assert written[name] == source[name]
    # the same sharding, every name in the index, and the index names exactly what the shards hold
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(written)
    for shard in (SHARD1, SHARD2):
        with safe_open(str(out / shard), framework="numpy") as handle:  # the safetensors package reads it
            assert sorted(handle.keys()) == sorted(n for n, s in index["weight_map"].items() if s == shard)
            assert handle.metadata() == {"format": "pt"}
    assert index["weight_map"][ATTN + "v_proj.weight_scale_2"] == SHARD2
    # the configs vLLM reads: hf_quant_config.json (its required NVFP4 fields) and config.json's
    # quantization_config (quant_method starting with "modelopt", quant_algo, ignore)
    hf = json.loads((out / "hf_quant_config.json").read_text())["quantization"]
    assert hf["quant_algo"] == "W4A16_NVFP4" and hf["group_size"] == 16 and hf["kv_cache_quant_algo"] is None
    assert hf["exclude_modules"] == ["lm_head", "model.embed_tokens"]
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_size"] == H
    quantization = config["quantization_config"]
    assert quantization["quant_method"].startswith("modelopt") and quantization["quant_algo"] == "W4A16_NVFP4"
    assert quantization["ignore"] == ["lm_head", "model.embed_tokens"]
    assert (out / "tokenizer.json").read_text() == "{\"tokens\": []}"


def test_fused_groups_share_one_global_scale(checkpoint, tmp_path: Path) -> None:
    folder, weights = checkpoint
    apply(NVFP4, folder, tmp_path / "out", backend="numpy")
    written = tensors(tmp_path / "out")
    qkv = {written[ATTN + m + ".weight_scale_2"][2] for m in ("q_proj", "k_proj", "v_proj")}
    gate_up = {written[MLP + m + ".weight_scale_2"][2] for m in ("gate_proj", "up_proj")}
    assert len(qkv) == 1 and len(gate_up) == 1
    amax = max(np.abs(weights[ATTN + m + ".weight"].astype(np.float32)).max() for m in ("q_proj", "k_proj", "v_proj"))
    assert qkv == {np.float32(np.float32(amax) / np.float32(2688)).tobytes()}


def test_input_scales_give_the_w4a4_label(checkpoint, tmp_path: Path) -> None:
    folder, _ = checkpoint
    amax = {module: 1.5 + i for i, module in enumerate(QUANTIZED)}
    (tmp_path / "amax.json").write_text(json.dumps(amax))
    apply(NVFP4, folder, tmp_path / "out", backend="numpy", input_scales=tmp_path / "amax.json")
    written = tensors(tmp_path / "out")
    qkv_amax = max(amax[ATTN + m] for m in ("q_proj", "k_proj", "v_proj"))  # one per fused layer
    for m in ("q_proj", "k_proj", "v_proj"):
        assert written[ATTN + m + ".input_scale"] == ("F32", [], (np.float32(qkv_amax) / np.float32(2688)).tobytes())
    assert written[MLP + "down_proj.input_scale"][2] == (np.float32(amax[MLP + "down_proj"]) / np.float32(2688)).tobytes()
    assert json.loads((tmp_path / "out" / "hf_quant_config.json").read_text())["quantization"]["quant_algo"] == "NVFP4"


def test_single_file_checkpoint(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    w = bf16(rng, 48, 32)
    save_file({"layer.weight": w, "layer.bias": bf16(rng, 48)}, str(tmp_path / "model.safetensors"))
    apply(NVFP4, tmp_path / "model.safetensors", tmp_path / "out", backend="numpy")
    written = tensors(tmp_path / "out")
    (packed, scale_bytes, gs), = oracle_nvfp4([w])
    assert written["layer.weight"][2] == packed.astype(np.uint8).tobytes()
    assert written["layer.weight_scale"][2] == scale_bytes.tobytes()
    assert not (tmp_path / "out" / "model.safetensors.index.json").exists()
    assert (tmp_path / "out" / "hf_quant_config.json").is_file()


def test_nvfp4_scale_is_tensorrts_two_divisions_not_modelopts_one(tmp_path: Path) -> None:
    """Global amax 56, a block amax 46: fl32(fl32(46 / 6) / gs) = 367.99997 rounds to fp8 352, while
    ModelOpt's fl32(46 / fl32(6 * gs)) = 368 is a tie that rounds to 384 (docs/checkpoints.md)."""
    w = np.zeros((2, 32), np.float32)
    w[0, 0], w[0, 5], w[1, 20] = 46, -3, 56
    gs = np.float32(np.float32(56) / np.float32(2688))
    assert np.float32(np.float32(46) / np.float32(6 * gs)) == 368  # ModelOpt's quotient: the tie
    save_file({"a.weight": w.astype(ml_dtypes.bfloat16)}, str(tmp_path / "m.safetensors"))
    apply(NVFP4, tmp_path / "m.safetensors", tmp_path / "out", backend="numpy")
    scale = np.frombuffer(tensors(tmp_path / "out")["a.weight_scale"][2], np.uint8).reshape(2, 2)
    assert FP8[scale[0, 0]] == 352 and FP8[scale[0, 1]] == 0  # an all-zero block: scale 0, codes +0
    assert scale.tobytes() == oracle_nvfp4([w.astype(ml_dtypes.bfloat16)])[0][1].tobytes()



def test_modelopt_gpu_global_scale_is_an_ulp_up_for_28_of_128_mantissas() -> None:
    """docs/checkpoints.md (how netdsl differs from ModelOpt, item 5): on a CUDA tensor, torch computes
    ModelOpt's ``amax.float() / (6.0 * 448.0)`` as fl32(amax * fl32(1 / 2688)). Against fl32(amax / 2688)
    that differs for 28 of the 128 bfloat16 mantissas, at every exponent, always by one ulp up."""
    reciprocal = np.float32(1) / np.float32(2688)
    for exponent in range(-30, 30):
        amax = (np.float32(1) + np.arange(128, dtype=np.float32) / 128) * np.float32(2.0 ** exponent)
        by_division = (amax / np.float32(2688)).astype(np.float32)
        on_gpu = (amax * reciprocal).astype(np.float32)
        ulps = on_gpu.view(np.int32) - by_division.view(np.int32)
        assert int(np.count_nonzero(ulps)) == 28 and set(ulps.tolist()) == {0, 1}, exponent


def test_a_code_modelopt_wrote_on_the_h100_one_step_smaller(tmp_path: Path) -> None:
    """One of the codes of benchmarks/results-modelopt-cuda.md (ModelOpt 0.47 on the H100, tensor normal-1):
    amax 0.111328125, x 0.0115966796875 in a block of scale 160, where |x| * 2688 / (160 * amax) is exactly
    1.75. ModelOpt wrote code 4 (2.0) on the CPU, as netdsl does, and 3 (1.5) on the GPU, whose global scale
    was 0x382db6dc against the CPU's 0x382db6db (docs/checkpoints.md, item 5)."""
    amax, x = np.float32(0.111328125), np.float32(0.0115966796875)
    w = np.zeros((1, 32), np.float32)
    w[0, 0], w[0, 1], w[0, 16] = x, 0.0390625, amax  # 0.0390625: block scale 160 by both rules
    save_file({"a.weight": w.astype(ml_dtypes.bfloat16)}, str(tmp_path / "m.safetensors"))
    apply(NVFP4, tmp_path / "m.safetensors", tmp_path / "out", backend="numpy")
    written = tensors(tmp_path / "out")
    assert written["a.weight_scale_2"][2] == np.uint32(0x382DB6DB).tobytes()  # ModelOpt's on the CPU
    assert written["a.weight_scale"][2][0] == 0x72  # fp8 160
    assert written["a.weight"][2][0] & 15 == 4  # ModelOpt's code on the CPU
    on_gpu = np.float32(amax * (np.float32(1) / np.float32(2688)))  # torch's CUDA division by a Python float
    assert on_gpu.view(np.uint32) == 0x382DB6DC
    quotient = np.float32(x / np.float32(np.float32(160) * on_gpu))
    assert np.float32(1.5) < quotient < np.float32(1.75)  # rounds to 1.5, code 3: ModelOpt's on the H100
    # examples/recipes/nvfp4_weights_modelopt_gpu.net writes what ModelOpt wrote on the H100
    apply(RECIPES / "nvfp4_weights_modelopt_gpu.net", tmp_path / "m.safetensors", tmp_path / "gpu", backend="numpy")
    written = tensors(tmp_path / "gpu")
    assert written["a.weight_scale_2"][2] == np.uint32(0x382DB6DC).tobytes()
    assert written["a.weight_scale"][2][0] == 0x72
    assert written["a.weight"][2][0] & 15 == 3


def test_modelopt_gpu_recipe_global_scale_for_every_bfloat16_mantissa(tmp_path: Path) -> None:
    """nvfp4_weights_modelopt_gpu.net's global scale is fl32(amax * fl32(1 / 2688)) (torch's CUDA division by
    a Python float, docs/checkpoints.md item 5) for all 128 bfloat16 mantissas of an exponent, the 28 where it
    is an ulp above nvfp4_weights.net's included."""
    amaxes = ((1 + np.arange(128) / 128) * 2.0 ** -3).astype(np.float32)
    weights = {f"m{i}.weight": np.full((1, 16), a, np.float32).astype(ml_dtypes.bfloat16) for i, a in enumerate(amaxes)}
    save_file(weights, str(tmp_path / "m.safetensors"))
    apply(RECIPES / "nvfp4_weights_modelopt_gpu.net", tmp_path / "m.safetensors", tmp_path / "gpu", backend="numpy")
    apply(NVFP4, tmp_path / "m.safetensors", tmp_path / "cpu", backend="numpy")
    gpu, cpu = tensors(tmp_path / "gpu"), tensors(tmp_path / "cpu")
    reciprocal = np.float32(1) / np.float32(2688)
    above = 0
    for i, a in enumerate(amaxes):
        expected = np.float32(a * reciprocal)
        assert gpu[f"m{i}.weight_scale_2"][2] == expected.tobytes(), a
        above += gpu[f"m{i}.weight_scale_2"][2] != cpu[f"m{i}.weight_scale_2"][2]
    assert above == 28

# --- other schemes and formats ------------------------------------------------------------------------

def test_mxfp8_modelopt(checkpoint, tmp_path: Path) -> None:
    folder, weights = checkpoint
    apply(RECIPES / "mxfp8_weights.net", folder, tmp_path / "out", backend="numpy")
    written = tensors(tmp_path / "out")
    x = weights[MLP + "down_proj.weight"].astype(np.float32)
    rows, cols = x.shape
    block_amax = np.abs(x).reshape(rows, cols // 32, 32).max(axis=2)
    # e8m0: the smallest e with fl32(amax / 448) <= 2^e (round up), stored as e + 127 in a byte
    q = (block_amax / np.float32(448)).astype(np.float32)
    exponent = np.ceil(np.log2(q.astype(np.float64)))
    codes = fp8_encode((x / np.repeat(2.0 ** exponent, 32, axis=1)).astype(np.float32))
    assert written[MLP + "down_proj.weight_scale"] == ("U8", [rows, cols // 32], (exponent + 127).astype(np.uint8).tobytes())
    assert written[MLP + "down_proj.weight"] == ("F8_E4M3", [rows, cols], codes.tobytes())
    assert json.loads((tmp_path / "out" / "hf_quant_config.json").read_text())["quantization"]["quant_algo"] == "MXFP8"


def test_fp8_per_channel_both_formats(checkpoint, tmp_path: Path) -> None:
    folder, weights = checkpoint
    x = weights[ATTN + "o_proj.weight"].astype(np.float32)
    scale = np.maximum(np.abs(x).max(axis=1) / np.float32(448), np.float32(2.0**-126)).astype(np.float32)
    codes = fp8_encode((x / scale[:, None]).astype(np.float32))
    for fmt, scale_shape in (("modelopt", [H]), ("compressed-tensors", [H, 1])):
        out = tmp_path / fmt
        apply(RECIPES / "fp8_per_channel_weights.net", folder, out, format=fmt, backend="numpy")
        written = tensors(out)
        assert written[ATTN + "o_proj.weight"] == ("F8_E4M3", [H, H], codes.tobytes())
        assert written[ATTN + "o_proj.weight_scale"] == ("F32", scale_shape, scale.tobytes())
    quantization = json.loads((tmp_path / "compressed-tensors" / "config.json").read_text())["quantization_config"]
    assert quantization["quant_method"] == "compressed-tensors" and quantization["format"] == "float-quantized"
    weights_args = quantization["config_groups"]["group_0"]["weights"]
    assert (weights_args["num_bits"], weights_args["type"], weights_args["strategy"]) == (8, "float", "channel")
    assert quantization["ignore"] == ["lm_head", "model.embed_tokens"]
    hf = json.loads((tmp_path / "modelopt" / "hf_quant_config.json").read_text())
    assert hf["quantization"]["quant_algo"] == "FP8_PER_CHANNEL_PER_TOKEN"


def test_int4_block128_compressed_tensors(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    w = bf16(rng, 16, 256)
    w[3, :128] = 0  # an all-zero block: the recipe's smallest scale, codes 0
    save_file({"fc.weight": w}, str(tmp_path / "model.safetensors"))
    apply(RECIPES / "int4_block128_weights.net", tmp_path / "model.safetensors", tmp_path / "out",
          format="compressed-tensors", backend="numpy")
    written = tensors(tmp_path / "out")
    x = w.astype(np.float32)
    amax = np.abs(x).reshape(16, 2, 128).max(axis=2)
    scale = np.maximum((amax / np.float32(7)).astype(np.float32), np.float32(2.0**-126)).astype(ml_dtypes.bfloat16)
    quotient = (x / np.repeat(scale.astype(np.float32), 128, axis=1)).astype(np.float32)
    q = np.clip(np.round(quotient.astype(np.float64)), -8, 7).astype(np.int64)  # np.round: half to even
    # compressed-tensors pack_to_int32: q + 8 as unsigned 4 bits, element j of eight in bits 4j of an int32
    unsigned = (q + 8).reshape(16, 32, 8)
    packed = sum(unsigned[:, :, j] << (4 * j) for j in range(8)).astype(np.uint32).view(np.int32)
    assert written["fc.weight_packed"] == ("I32", [16, 32], packed.astype("<i4").tobytes())
    assert written["fc.weight_scale"] == ("BF16", [16, 2], scale.tobytes())
    assert written["fc.weight_shape"] == ("I64", [2], np.array([16, 256], "<i8").tobytes())
    quantization = json.loads((tmp_path / "out" / "hf_quant_config.json").read_text()) \
        if (tmp_path / "out" / "hf_quant_config.json").exists() else None
    assert quantization is None  # compressed-tensors keeps its config in config.json only


# --- resuming, settings, bad checkpoints ------------------------------------------------------------

class Killed(Exception):
    pass


def test_resume_after_a_kill_gives_the_same_bytes(checkpoint, tmp_path: Path) -> None:
    folder, _ = checkpoint
    apply(NVFP4, folder, tmp_path / "clean", backend="numpy")
    out = tmp_path / "out"

    def kill_in_second_shard(done: int, total: int) -> None:
        if (out / SHARD1).exists() and done > 0 and any(out.glob(".*.partial")):
            raise Killed

    with pytest.raises(Killed):
        apply(NVFP4, folder, out, backend="numpy", progress=kill_in_second_shard)
    assert (out / SHARD1).is_file() and not (out / SHARD2).exists()
    assert not list(out.glob(".*.partial"))  # the half-written shard is gone
    assert not (out / "model.safetensors.index.json").exists() and not (out / "config.json").exists()
    assert json.loads((out / ".netdsl-apply.json").read_text())["complete"] is False
    (out / f".{SHARD2}.partial").write_bytes(b"left by a SIGKILL")
    apply(NVFP4, folder, out, backend="numpy")
    for name in ("model.safetensors.index.json", "config.json", "hf_quant_config.json", SHARD1, SHARD2):
        assert (out / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name
    assert json.loads((out / ".netdsl-apply.json").read_text())["complete"] is True


@pytest.mark.parametrize("ahead", [1, 1 << 30])
def test_the_manifest_holds_each_shards_sha256(ahead: int, checkpoint, tmp_path: Path, monkeypatch) -> None:
    """The SHA-256 the manifest records for each shard is hashlib's of the file as written, whether the hash
    thread is at most one piece behind the writes or holds every piece of the shard (HASH_AHEAD)."""
    import hashlib

    from netdsl.apply import safetensors_io

    folder, _ = checkpoint
    monkeypatch.setattr(safetensors_io, "HASH_AHEAD", ahead)
    apply(NVFP4, folder, tmp_path / "out", backend="numpy")
    shards = json.loads((tmp_path / "out" / ".netdsl-apply.json").read_text())["shards"]
    assert sorted(shards) == [SHARD1, SHARD2]
    for shard, digest in shards.items():
        assert digest == hashlib.sha256((tmp_path / "out" / shard).read_bytes()).hexdigest()


def test_shards_written_at_once_give_the_same_bytes(checkpoint, tmp_path: Path, monkeypatch) -> None:
    """NETDSL_APPLY_SHARDS=3: the shards are written by three threads at once (the GPU's default is 4), with
    the bytes of one at a time."""
    folder, _ = checkpoint
    apply(NVFP4, folder, tmp_path / "one", backend="numpy")
    monkeypatch.setenv("NETDSL_APPLY_SHARDS", "3")
    apply(NVFP4, folder, tmp_path / "three", backend="numpy")
    for path in sorted((tmp_path / "one").iterdir()):
        assert path.read_bytes() == (tmp_path / "three" / path.name).read_bytes(), path.name


def test_a_failing_shard_stops_the_others_and_leaves_nothing_half_written(checkpoint, tmp_path: Path,
                                                                          monkeypatch) -> None:
    folder, _ = checkpoint
    apply(NVFP4, folder, tmp_path / "clean", backend="numpy")
    monkeypatch.setenv("NETDSL_APPLY_SHARDS", "2")
    out = tmp_path / "out"

    def kill_in_a_shard_thread(done: int, total: int) -> None:
        if done > 0 and threading.current_thread() is not threading.main_thread():
            raise Killed

    with pytest.raises(Killed):
        apply(NVFP4, folder, out, backend="numpy", progress=kill_in_a_shard_thread)
    assert not list(out.glob(".*.partial"))
    assert json.loads((out / ".netdsl-apply.json").read_text())["complete"] is False
    apply(NVFP4, folder, out, backend="numpy")
    for path in sorted((tmp_path / "clean").iterdir()):
        assert path.read_bytes() == (out / path.name).read_bytes(), path.name


def test_a_shard_is_put_in_place_while_the_next_is_written(checkpoint, tmp_path: Path, monkeypatch) -> None:
    """One shard at a time (NumPy): the first shard's fsync and rename (a commit thread's) wait until the
    second shard has begun, which they could not if the shard thread made its own shard durable; the bytes
    are those of a plain run, and each shard is recorded once it is in place."""
    from netdsl.apply import run
    from netdsl.apply.safetensors_io import ShardWriter

    folder, _ = checkpoint
    apply(NVFP4, folder, tmp_path / "reference", backend="numpy")
    second_started, waited = threading.Event(), []
    real_data, real_durable, real_record = run._shard_data, ShardWriter.durable, run.Manifest.record
    started: list[str] = []

    def shard_data(plan, shard, *rest):
        started.append(shard)
        if len(started) == 2:
            second_started.set()
        return real_data(plan, shard, *rest)

    def durable(self) -> None:
        if self.path.name == started[0]:
            waited.append(second_started.wait(timeout=60))  # ok: a hang limit, not a timing
        real_durable(self)

    def record(self, shard: str, sha256: str) -> None:
        assert (self.path.parent / shard).is_file()  # in place before the manifest lists it
        real_record(self, shard, sha256)

    monkeypatch.setattr(run, "_shard_data", shard_data)
    monkeypatch.setattr(ShardWriter, "durable", durable)
    monkeypatch.setattr(run.Manifest, "record", record)
    apply(NVFP4, folder, tmp_path / "out", backend="numpy")
    assert waited == [True]
    for path in sorted((tmp_path / "reference").iterdir()):
        assert path.read_bytes() == (tmp_path / "out" / path.name).read_bytes(), path.name


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names open files through /proc (Linux)")
@pytest.mark.parametrize("failing", [SHARD2, "hf_quant_config.json"])
def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(failing: str, checkpoint, tmp_path: Path,
                                                                 monkeypatch) -> None:
    """No space left while a shard or a config is made durable: a usage error naming the error and OUTDIR,
    no temporary file left, the manifest not complete; the same command again ends with a plain run's bytes."""
    import errno
    import os

    folder, _ = checkpoint
    apply(NVFP4, folder, tmp_path / "reference", backend="numpy")
    out = tmp_path / "out"
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == f".{failing}.partial":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(UsageError, match=f"^No space left on device: '{out}' \\(the shards already in place"):
        apply(NVFP4, folder, out, backend="numpy")
    assert not list(out.glob(".*.partial")) and not (out / failing).exists()
    assert json.loads((out / ".netdsl-apply.json").read_text())["complete"] is False
    monkeypatch.setattr(os, "fsync", real_fsync)
    apply(NVFP4, folder, out, backend="numpy")
    for path in sorted((tmp_path / "reference").iterdir()):
        assert path.read_bytes() == (out / path.name).read_bytes(), path.name


def _unshared_shards(folder: Path, out: Path) -> None:
    """Every output shard written on its own, each computing all its groups (as a Dask task does)."""
    from netdsl.apply.checkpoint import open_checkpoint
    from netdsl.apply.plan import make_plan
    from netdsl.apply.run import write_shard

    out.mkdir()
    plan = make_plan(NVFP4, open_checkpoint(folder), "modelopt", [], None, None)
    for shard in plan.shards:
        write_shard(plan, shard, str(out), "numpy")


@pytest.mark.parametrize("at_once", ["1", "2"])
def test_a_group_across_shards_is_read_and_quantized_once(at_once: str, checkpoint, tmp_path: Path,
                                                          monkeypatch) -> None:
    """q/k in the first shard, v in the second: one process reads and quantizes that fused group once, for
    both shards (one at a time or at once), and writes the bytes each shard gets computing it alone."""
    from netdsl.apply import run

    folder, _ = checkpoint
    _unshared_shards(folder, tmp_path / "alone")
    reads: list[tuple[str, ...]] = []
    real = run._read_group

    def counted(plan, g, backend):
        reads.append(tuple(plan.groups[g].members))
        return real(plan, g, backend)

    monkeypatch.setattr(run, "_read_group", counted)
    monkeypatch.setenv("NETDSL_APPLY_SHARDS", at_once)
    apply(NVFP4, folder, tmp_path / "out", backend="numpy")
    qkv = tuple(ATTN + f"{m}_proj.weight" for m in "qkv")
    assert reads.count(qkv) == 1
    assert len(reads) == len(set(reads))
    for shard in (SHARD1, SHARD2):
        assert (tmp_path / "out" / shard).read_bytes() == (tmp_path / "alone" / shard).read_bytes()


def _raw_safetensors(path: Path, tensors: list[tuple[str, np.ndarray]]) -> None:
    """A safetensors file with its tensors' bytes in the given order (safetensors' writer sorts them)."""
    header, offset = {}, 0
    for name, array in tensors:
        header[name] = {"dtype": "BF16", "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(a.tobytes() for _, a in tensors))


@pytest.mark.parametrize("backend", backends())
def test_groups_across_two_shards_in_opposite_orders_finish(backend: str, tmp_path: Path, monkeypatch) -> None:
    """Two fused groups each split over the same two shards, which hold them in opposite orders, written at
    once: neither shard's thread waits for the other (a thread waits only for a group being computed), and
    the bytes are those of each shard computed alone (with NumPy). On the GPU both threads read from both
    files, whose tensors share pages, pinning them where they are (NETDSL_APPLY_READ=register)."""
    rng = np.random.default_rng(3)
    a, b = "model.layers.0.self_attn.", "model.layers.1.self_attn."
    w = {name: bf16(rng, H, H) for name in (a + "q_proj.weight", a + "k_proj.weight", b + "q_proj.weight",
                                              b + "k_proj.weight")}
    folder = tmp_path / "ckpt"
    folder.mkdir()
    _raw_safetensors(folder / SHARD1, [(n, w[n]) for n in (a + "q_proj.weight", b + "q_proj.weight")])
    _raw_safetensors(folder / SHARD2, [(n, w[n]) for n in (b + "k_proj.weight", a + "k_proj.weight")])
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": {
        a + "q_proj.weight": SHARD1, b + "q_proj.weight": SHARD1, b + "k_proj.weight": SHARD2,
        a + "k_proj.weight": SHARD2}}))
    _unshared_shards(folder, tmp_path / "alone")
    monkeypatch.setenv("NETDSL_APPLY_SHARDS", "2")
    failure: list[BaseException] = []

    def work() -> None:
        try:
            apply(NVFP4, folder, tmp_path / "out", backend=backend)
        except BaseException as error:  # re-raised below
            failure.append(error)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout=300)  # ok: a hang limit (a deadlock hangs here), not a timing: it takes under 1 s
    assert not worker.is_alive(), "apply did not finish: shard threads waiting for each other"
    assert not failure, failure
    for shard in (SHARD1, SHARD2):
        assert (tmp_path / "out" / shard).read_bytes() == (tmp_path / "alone" / shard).read_bytes()


def test_input_files_stay_mapped_while_any_shard_is_written(tmp_path: Path) -> None:
    """The GPU path maps each input file once while shards are written (not once per tensor), one lock per
    file; the maps go when the last shard of the process is out, even where a view is still held."""
    from netdsl.apply.run import _FileMaps

    maps = _FileMaps()
    path = tmp_path / "shard.safetensors"
    path.write_bytes(b"abc" * 5000)
    with maps:
        data, lock = maps.get(path)
        with maps:  # a second shard thread comes and goes: the maps stay
            assert maps.get(path) == (data, lock)
        again, same_lock = maps.get(path)
        assert again is data and same_lock is lock and bytes(data[:6]) == b"abcabc" and data.nbytes == 15000
        del again
    assert maps._maps == {}
    assert bytes(data[-3:]) == b"abc"  # the view held past the end keeps its map until it goes
    with maps:
        assert maps.get(path)[0] is not data  # mapped afresh


def _shard_fsyncs_and_handoffs(monkeypatch) -> tuple[list[str], list[tuple[str, int, int]]]:
    """Record the output-shard files fsynced, and the ranges handed to the disk (posix_fadvise), by name."""
    import os

    from netdsl.apply import safetensors_io

    monkeypatch.setattr(safetensors_io, "WRITEBACK", 4096)  # the test's shards are tens of kB
    fsynced: list[str] = []
    handed: list[tuple[str, int, int]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if name.endswith(".safetensors.partial"):  # a shard: by a commit thread, not the shard's own
            assert threading.current_thread().name.startswith("netdsl-commit")
        fsynced.append(name)
        real_fsync(fd)

    def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
        assert advice == os.POSIX_FADV_DONTNEED
        assert os.fstat(fd).st_size >= offset + length  # the range was written (flushed) before it is handed
        assert threading.current_thread().name.startswith("netdsl-writeback")  # never the writing thread
        handed.append((os.path.basename(os.readlink(f"/proc/self/fd/{fd}")), offset, length))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "posix_fadvise", fadvise, raising=False)
    return fsynced, handed


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names open files through /proc (Linux)")
@pytest.mark.parametrize("mode", ["early", "commit", "none"])
def test_fsync_settings_give_the_same_bytes(mode: str, checkpoint, tmp_path: Path, monkeypatch) -> None:
    """NETDSL_APPLY_FSYNC (docs/settings.md): early hands each shard's bytes to the disk piece by piece, in
    order and without gaps, then fsyncs it; commit only fsyncs; none fsyncs no shard (the manifest, index and
    configs always). The bytes are the same."""
    folder, _ = checkpoint
    apply(NVFP4, folder, tmp_path / "reference", backend="numpy")
    monkeypatch.setenv("NETDSL_APPLY_FSYNC", mode)
    fsynced, handed = _shard_fsyncs_and_handoffs(monkeypatch)
    apply(NVFP4, folder, tmp_path / "out", backend="numpy")
    for path in sorted((tmp_path / "reference").iterdir()):
        assert path.read_bytes() == (tmp_path / "out" / path.name).read_bytes(), path.name
    shards = {f".{SHARD1}.partial", f".{SHARD2}.partial"}
    if mode == "none":
        assert not shards & set(fsynced)
    else:
        assert shards <= set(fsynced)
    assert "..netdsl-apply.json.partial" in fsynced and ".model.safetensors.index.json.partial" in fsynced
    if mode != "early":
        assert not handed
        return
    for shard in shards:
        ranges = sorted((offset, length) for name, offset, length in handed if name == shard)
        assert ranges and ranges[0][0] == 0
        assert all(a + n == b for (a, n), (b, _) in zip(ranges, ranges[1:]))  # contiguous, each range once
        assert all(n >= 4096 for _, n in ranges)
        end = ranges[-1][0] + ranges[-1][1]
        assert (tmp_path / "out" / shard[1:-len(".partial")]).stat().st_size - end < 4096


@pytest.mark.parametrize(("variable", "text", "wanted"), [
    *[("NETDSL_APPLY_SHARDS", text, "a whole number >= 1") for text in ("0", "-1", "two", "1.5")],
    *[("NETDSL_APPLY_FSYNC", text, "early, commit or none") for text in ("sometimes", "0")],
    ("NETDSL_APPLY_READ", "mmap", "staging or register")])
def test_apply_settings_are_checked_before_outdir_is_made(variable: str, text: str, wanted: str, checkpoint,
                                                          tmp_path: Path, monkeypatch) -> None:
    folder, _ = checkpoint
    monkeypatch.setenv(variable, text)
    with pytest.raises(UsageError, match=f"{variable} must be {wanted}, not '{text}'"):
        apply(NVFP4, folder, tmp_path / "out", backend="numpy")
    assert not (tmp_path / "out").exists()


def test_timing_shows_where_the_time_went(checkpoint, tmp_path: Path, capsys) -> None:
    """--timing prints the run's wall time and each phase's busy seconds (and the bytes it moved) to stderr,
    and leaves the output as it is without."""
    folder, weights = checkpoint
    assert main(["apply", str(NVFP4), str(folder), "-o", str(tmp_path / "plain"), "--backend", "numpy",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["apply", str(NVFP4), str(folder), "-o", str(tmp_path / "timed"), "--backend", "numpy",
                 "--no-progress", "--timing"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    assert lines[0].startswith(f"timing: {size / 1e9:.2f} GB checkpoint in ")
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert {"plan", "read", "run", "write", "hash", "fsync", "finish"} <= set(rows)
    quantized = sum(a.nbytes for name, a in weights.items() if "proj" in name)
    assert float(rows["read"][2]) == pytest.approx(quantized / 1e9, abs=0.006)
    wall = float(lines[0].split(" in ")[1].split()[0])
    spans = {}
    for line in lines[2:]:  # phase, seconds, [GB, GB/s,] from, to, what
        numbers = []
        for word in line[12:].split():
            try:
                numbers.append(float(word))
            except ValueError:
                break
        spans[line[2:12].strip()] = tuple(numbers[-2:])
    assert spans["plan"][0] == 0.0  # the plan starts the command; each shard's work follows it
    for phase, (first, last) in spans.items():
        assert 0.0 <= first <= last <= wall + 0.01, phase
    assert spans["plan"][1] <= spans["run"][0] and spans["finish"][0] >= spans["shard"][1] - 0.01
    for path in sorted((tmp_path / "plain").iterdir()):
        assert path.read_bytes() == (tmp_path / "timed" / path.name).read_bytes(), path.name
    assert "timing" not in capsys.readouterr().err


def test_outdir_inside_the_checkpoint_folder(checkpoint) -> None:
    folder, _ = checkpoint
    apply(NVFP4, folder, folder / "quantized", backend="numpy")
    assert not (folder / "quantized" / "quantized").exists()
    assert (folder / "quantized" / "tokenizer.json").is_file()


def test_a_damaged_finished_shard_is_written_again(checkpoint, tmp_path: Path) -> None:
    folder, _ = checkpoint
    out = tmp_path / "out"
    apply(NVFP4, folder, out, backend="numpy")
    good = (out / SHARD1).read_bytes()
    (out / SHARD1).write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    apply(NVFP4, folder, out, backend="numpy")
    assert (out / SHARD1).read_bytes() == good


def test_outdir_rules(checkpoint, tmp_path: Path) -> None:
    folder, _ = checkpoint
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="is not empty and holds no netdsl apply manifest"):
        apply(NVFP4, folder, tmp_path / "busy", backend="numpy")
    apply(NVFP4, folder, tmp_path / "out", backend="numpy")
    with pytest.raises(UsageError, match="holds the output of a run with other settings"):
        apply(RECIPES / "mxfp8_weights.net", folder, tmp_path / "out", backend="numpy")


def no_output(out: Path) -> bool:
    return not out.exists() or not list(out.glob("*.safetensors"))


def test_missing_shard(checkpoint, tmp_path: Path) -> None:
    folder, _ = checkpoint
    (folder / SHARD2).unlink()
    with pytest.raises(UsageError, match=f"shard '{SHARD2}' \\(holding tensor 'model.layers.0.self_attn.v_proj.weight', "
                                         "says the index\\) is missing"):
        apply(NVFP4, folder, tmp_path / "out", backend="numpy")
    assert no_output(tmp_path / "out")


def test_index_naming_a_missing_tensor(checkpoint, tmp_path: Path) -> None:
    folder, _ = checkpoint
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.layers.0.mlp.extra.weight"] = SHARD1
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(UsageError, match=f"the index puts tensor 'model.layers.0.mlp.extra.weight' in '{SHARD1}', "
                                         "which doesn't hold it"):
        apply(NVFP4, folder, tmp_path / "out", backend="numpy")
    assert no_output(tmp_path / "out")


def test_dtype_the_recipe_cannot_take(tmp_path: Path) -> None:
    save_file({"a.weight": np.ones((4, 32), np.float16)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(UsageError, match="tensor 'a.weight' is F16; the recipe takes bfloat16"):
        apply(NVFP4, tmp_path / "m.safetensors", tmp_path / "out", backend="numpy")
    assert no_output(tmp_path / "out")


def test_shape_that_breaks_a_block_rule(tmp_path: Path) -> None:
    save_file({"a.weight": np.ones((4, 40), ml_dtypes.bfloat16)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(ModelError) as info:
        apply(NVFP4, tmp_path / "m.safetensors", tmp_path / "out", backend="numpy")
    assert str(info.value).endswith("nvfp4_weights.net:12:79: error: tensor 'a.weight': the extent 40 of axis 1 is "
                                    "not divisible by block_size 16 (with N=4, K=40)")
    assert no_output(tmp_path / "out")


def test_an_all_zero_weight_names_the_tensor(tmp_path: Path) -> None:
    save_file({"a.weight": np.zeros((4, 32), ml_dtypes.bfloat16)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(UsageError, match="tensor 'a.weight' doesn't fit the recipe: every double_quant_scale value must be finite and > 0"):
        apply(NVFP4, tmp_path / "m.safetensors", tmp_path / "out", backend="numpy")
    assert no_output(tmp_path / "out")


def test_format_refusals(checkpoint, tmp_path: Path) -> None:
    folder, _ = checkpoint
    with pytest.raises(UsageError, match="no INT4 weight-only algorithm"):
        apply(RECIPES / "int4_block128_weights.net", folder, tmp_path / "b",
              include=["*down_proj.weight"], backend="numpy")
    (tmp_path / "amax.json").write_text(json.dumps({m: 1.0 for m in QUANTIZED}))
    with pytest.raises(UsageError, match="MXFP8 quantizes activations at run time"):
        apply(RECIPES / "mxfp8_weights.net", folder, tmp_path / "c", backend="numpy", input_scales=tmp_path / "amax.json")
    (tmp_path / "amax.json").write_text(json.dumps({QUANTIZED[0]: 1.0}))
    with pytest.raises(UsageError, match="--input-scales has no amax for layer"):
        apply(NVFP4, folder, tmp_path / "d", backend="numpy", input_scales=tmp_path / "amax.json")


# --- the command line and Dask ------------------------------------------------------------------------

def test_cli(checkpoint, tmp_path: Path, capsys) -> None:
    folder, _ = checkpoint
    assert main(["apply", str(NVFP4), str(folder), "-o", str(tmp_path / "out"), "--backend", "numpy"]) == 0
    assert capsys.readouterr().out.endswith("7 tensors quantized (NVFP4, modelopt), 2 shards\n")
    assert main(["apply", str(NVFP4), str(tmp_path / "nope"), "-o", str(tmp_path / "o2")]) == 2
    assert capsys.readouterr().err == f"netdsl: error: checkpoint '{tmp_path / 'nope'}': no such file or folder\n"
    assert main(["apply", str(NVFP4), str(folder), "-o", str(tmp_path / "o3"), "--workers", "0"]) == 2


def test_two_dask_workers_write_the_same_bytes(checkpoint, tmp_path: Path) -> None:
    """--workers 2 (a local cluster of two processes) and --scheduler (a running cluster's address) against
    one process, byte for byte."""
    distributed = pytest.importorskip("distributed", reason='Dask is the "dask" extra')
    folder, _ = checkpoint
    apply(NVFP4, folder, tmp_path / "one", backend="numpy")
    apply(NVFP4, folder, tmp_path / "two", backend="numpy", workers=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        apply(NVFP4, folder, tmp_path / "remote", backend="numpy", scheduler=cluster.scheduler_address)
    for path in sorted((tmp_path / "one").iterdir()):
        assert path.read_bytes() == (tmp_path / "two" / path.name).read_bytes(), path.name
        assert path.read_bytes() == (tmp_path / "remote" / path.name).read_bytes(), path.name


def test_gpus_without_dask_cuda_names_the_extra(checkpoint, tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason='Dask is the "dask" extra')
    try:
        import dask_cuda  # noqa: F401
        pytest.skip("dask-cuda is installed")
    except ImportError:
        pass
    folder, _ = checkpoint
    with pytest.raises(UsageError, match=r'--gpus needs dask-cuda: pip install "netdsl\[dask-cuda\]"'):
        apply(NVFP4, folder, tmp_path / "out", backend="numpy", gpus=1)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("backend", backends()[1:])
def test_every_backend_writes_the_same_bytes(backend: str, checkpoint, tmp_path: Path) -> None:
    folder, _ = checkpoint
    for recipe in ("nvfp4_weights", "mxfp8_weights", "fp8_per_channel_weights"):
        apply(RECIPES / f"{recipe}.net", folder, tmp_path / f"numpy-{recipe}", backend="numpy")
        apply(RECIPES / f"{recipe}.net", folder, tmp_path / f"{backend}-{recipe}", backend=backend)
        for path in sorted((tmp_path / f"numpy-{recipe}").glob("*.safetensors")):
            assert path.read_bytes() == (tmp_path / f"{backend}-{recipe}" / path.name).read_bytes(), (recipe, path.name)


@pytest.mark.parametrize("read", ["register", "staging"])
@pytest.mark.parametrize("backend", backends()[1:])
def test_many_shards_at_once_on_the_gpu_write_the_same_bytes(backend: str, read: str, tmp_path: Path,
                                                             monkeypatch) -> None:
    """Six shards of many small groups written by six threads at once: each launches on its own stream and
    downloads (to pinned memory) outside the GPU lock while the others run, the weights brought to the GPU
    from the page cache's own pages or through staging buffers (NETDSL_APPLY_READ); the bytes are NumPy's,
    one shard at a time."""
    rng = np.random.default_rng(11)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    names = [f"model-{i + 1:05d}-of-00006.safetensors" for i in range(6)]
    weight_map = {}
    for i, shard in enumerate(names):
        tensors = {}
        for layer in range(4 * i, 4 * i + 4):
            prefix = f"model.layers.{layer}."
            tensors |= {prefix + "self_attn.q_proj.weight": bf16(rng, H, H), prefix + "self_attn.k_proj.weight":
                        bf16(rng, 32, H), prefix + "self_attn.v_proj.weight": bf16(rng, 32, H),
                        prefix + "mlp.down_proj.weight": bf16(rng, H, INTER)}
        save_file(tensors, str(folder / shard))
        weight_map |= {name: shard for name in tensors}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    apply(NVFP4, folder, tmp_path / "numpy", backend="numpy")
    monkeypatch.setenv("NETDSL_APPLY_SHARDS", "6")
    monkeypatch.setenv("NETDSL_APPLY_READ", read)
    apply(NVFP4, folder, tmp_path / backend, backend=backend)
    for path in sorted((tmp_path / "numpy").iterdir()):
        assert path.read_bytes() == (tmp_path / backend / path.name).read_bytes(), path.name


@pytest.mark.parametrize("name", ["fp4", "int4"])
def test_codes_kept_packed_from_the_gpu_write_the_same_bytes(name: str) -> None:
    """The GPU path hands 4-bit outputs over still packed (formats.PackedCodes); every writer's conversion
    gives the bytes it gives for one value an element, row slices (fused members) included."""
    from netdsl import dtypes
    from netdsl.apply.formats import PackedCodes, _pack_fp4, _pack_int4_int32, _same

    dtype = dtypes.lookup(name)
    codes = np.random.default_rng(5).integers(0, 16, size=(6, 32)).astype(np.uint8)
    values = dtypes.from_codes(codes.reshape(-1), dtype).reshape(6, 32)
    packed = PackedCodes(dtypes.pack_nibbles(codes.reshape(-1)).reshape(6, 16), dtype)
    convert = _pack_fp4 if name == "fp4" else _pack_int4_int32
    assert np.array_equal(convert(packed), convert(values))
    assert np.array_equal(convert(packed[2:5]), convert(values[2:5]))
    assert packed.shape == (6, 32)
    assert np.array_equal(_same(packed).view(np.uint8), values.view(np.uint8))
