"""The CUDA kernels (kernels/*.cu through netdsl.backends.cupy) against the NumPy references, bit for bit.

Two kinds of test:

- ``test_kernels_compile_for_sm90``: every kernel file with every template instantiation the launch layer
  uses, built for sm_90 by nvcc with the runtime's options. It needs no GPU; it skips without nvcc,
  except under ``CI=true``, where a missing nvcc or a failed build fails.
- the rest run the kernels (skipped with the reason when CuPy or a GPU is missing) and compare the bits
  with ``netdsl.ops.*.reference`` and with the exact values of docs/semantics.md "Checked examples":
  every code of every quantized type (dequantize), float32 probes at and around every rounding boundary
  and every 16-bit input pattern (quantize), every granularity incl. odd sizes and partial blocks,
  DynamicQuantize's four modes with zero / all-NaN / Inf / subnormal blocks, and tens of millions of
  random elements.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from netdsl import dtypes
from netdsl.backends.cupy import abi, device, dynamic, geometry, launch, loader
from netdsl.ops import dequantize as dequantize_op
from netdsl.ops import dynamic_quantize as dynamic_quantize_op
from netdsl.ops import quantize as quantize_op
from netdsl.ops.granularity import expand

GPU_OK, GPU_REASON = device.available()
gpu = pytest.mark.skipif(not GPU_OK, reason=f"no GPU: {GPU_REASON}")

FLOATS = [dtypes.FLOAT32, dtypes.FLOAT16, dtypes.BFLOAT16]
QUANTIZED = [dtypes.INT8, dtypes.INT4, dtypes.FP8, dtypes.FP4]
BY_STORAGE = {d.storage: d for d in dtypes.DTYPES.values()}

# --------------------------------------------------------------------------------------------------
# The CI compile test


def _nvcc() -> str | None:
    for candidate in (os.environ.get("NVCC"), shutil.which("nvcc"),
                      os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def test_kernels_compile_for_sm90(tmp_path: Path) -> None:
    nvcc = _nvcc()
    if nvcc is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but nvcc is not installed: the kernels cannot be compile-checked")
        pytest.skip("nvcc not installed")
    jobs = {}
    for file, names in abi.KERNEL_NAMES.items():
        # Taking each instantiation's address makes nvcc build exactly the kernels the launch layer
        # asks NVRTC for (its name expressions).
        unit = tmp_path / file
        unit.write_text(loader.kernel_source(file) + "\nstatic void* const netdsl_instantiations[] = {\n"
                        + ",\n".join(f"    (void*)&{name}" for name in names) + "\n};\n")
        cubin = tmp_path / (file + ".cubin")
        command = [nvcc, "-arch=sm_90", "--cubin", "-diag-suppress", "177", *abi.COMPILE_OPTIONS,
                   "-o", str(cubin), str(unit)]
        jobs[file] = (subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
                      cubin, names)
    for file, (process, cubin, names) in jobs.items():
        output, _ = process.communicate()
        assert process.returncode == 0, f"nvcc failed on kernels/{file}:\n{output}"
        built = set(re.findall(rb"\.nv\.info\.(_ZN6netdsl\w+)", cubin.read_bytes()))
        assert len(built) == len(names), f"kernels/{file}: {len(built)} kernels built, {len(names)} named"


def test_kernel_sources_found_and_inlined() -> None:
    for file in abi.KERNEL_NAMES:
        source = loader.kernel_source(file)
        assert '#include "' not in source and "namespace netdsl" in source


def test_collapse_keeps_scale_indices() -> None:
    for shape, block in [((4, 8), (2, 8)), ((9, 10), (4, 3)), ((2, 3, 4, 5), (2, 1, 4, 5)), ((6, 64), (16, 1)),
                         ((3, 1, 7), (1, 1, 7)), ((2, 3, 4, 33), (1, 2, 3, 8)), ((5,), (2,))]:
        dims = geometry.collapse(shape, block)
        index = np.arange(math.prod(shape))
        expected = np.zeros_like(index)
        stride = 1
        for axis in reversed(range(len(shape))):
            coordinate = (index // math.prod(shape[axis + 1:])) % shape[axis]
            expected += coordinate // block[axis] * stride
            stride *= -(-shape[axis] // block[axis])
        got = np.zeros_like(index)
        rest, stride = index.copy(), 1
        for extent, blk in reversed(dims):
            got += (rest % extent) // blk * stride
            rest //= extent
            stride *= -(-extent // blk)
        assert np.array_equal(got, expected), (shape, block, dims)


# --------------------------------------------------------------------------------------------------
# Helpers


def bits(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    return array.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[array.dtype.itemsize])


def assert_same_bits(got: np.ndarray, want: np.ndarray, inputs: np.ndarray | None = None, what: str = "") -> None:
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    differ = bits(got) != bits(want)
    if differ.any():
        where = np.argwhere(differ)[:8]
        lines = []
        for index in map(tuple, where):
            source = "" if inputs is None else f" input {inputs[index]!r} ({int(bits(inputs)[index]):#x})"
            lines.append(f"  at {index}:{source} got {int(bits(got)[index]):#x}, want {int(bits(want)[index]):#x}")
        raise AssertionError(f"{what}: {int(differ.sum())} of {differ.size} differ\n" + "\n".join(lines))


def seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def dtype_of(array: np.ndarray) -> dtypes.DType:
    return BY_STORAGE[np.asarray(array).dtype]


def gpu_quantize(x, scale, block, to_type):
    return device.download(launch.quantize(device.upload(x, dtype_of(x)), device.upload(scale, dtype_of(scale)),
                                       block, to_type))


def gpu_dequantize(q, scale, block, to_type):
    return device.download(launch.dequantize(device.upload(q, dtype_of(q)), device.upload(scale, dtype_of(scale)),
                                         block, to_type))


def gpu_quantize_dequantize(x, scale, block, quant_type):
    x_device, scale_device = device.upload(x, dtype_of(x)), device.upload(scale, dtype_of(scale))
    return device.download(launch.quantize_dequantize(x_device, scale_device, block, quant_type))


def gpu_dynamic_quantize(x, block, output_type, scale_type, dqs):
    data, scale = launch.dynamic_quantize(device.upload(x, dtype_of(x)), block, output_type, scale_type, dqs)
    return device.download(data), device.download(scale)


def cast(values: np.ndarray, dtype: dtypes.DType) -> np.ndarray:
    """float64/float32 values rounded (RNE) to a float type's storage."""
    with np.errstate(over="ignore", invalid="ignore"):
        return dtypes.encode(np.asarray(values, np.float64).astype(np.float32), dtype)


def all_codes(dtype: dtypes.DType) -> np.ndarray:
    return dtypes.from_codes(np.arange(1 << dtype.bits, dtype=np.uint8), dtype)


def float32_from_bits(values) -> np.ndarray:
    return np.asarray(values, dtype=np.uint32).view(np.float32)


def probes(to_type: dtypes.DType, rng: np.random.Generator) -> np.ndarray:
    """float32 quotients at, around and between every representable value of ``to_type``, the specials,
    and random bit patterns."""
    values = np.unique(dtypes.decode(all_codes(to_type), to_type).astype(np.float64))
    values = values[np.isfinite(values)]
    mids = (values[1:] + values[:-1]) / 2
    beyond = np.array([1, 1.5, 2, 1e3]) * values[-1] + np.array([0.5, 0, 0, 0])
    centres = np.concatenate([values, mids, beyond, -beyond, [values[-1] + (values[-1] - values[-2]) / 2]])
    centres = np.concatenate([centres, -centres]).astype(np.float32)
    around = [centres]
    for steps in (1, 2, 3, 9):
        up, down = centres.copy(), centres.copy()
        for _ in range(steps):
            up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(-np.inf))
        around += [up, down]
    specials = float32_from_bits([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF, 0x7F800000, 0xFF800000,
                                  0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF,
                                  0x00400000, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF])
    random_bits = float32_from_bits(rng.integers(0, 1 << 32, 1 << 18, dtype=np.uint64))
    return np.concatenate([*around, specials, random_bits]).astype(np.float32)


# Scales: exact powers of two, ordinary values, the reciprocal path's edges (2^-126, 2^126) and
# outside them (a subnormal scale, a huge one), where the kernel divides every element.
SCALES = [1.0, 0.125, 0.1, 3.0, 1 / 448, 1 / 127, 7.3e-3, 2.0**-126, 2.0**-130, 2.0**126, 3e37, 1e-30]


# --------------------------------------------------------------------------------------------------
# Dequantize: every code, many scales


def scale_values_for(scale_type: dtypes.DType) -> np.ndarray:
    if scale_type == dtypes.E8M0:
        return all_codes(dtypes.E8M0)
    values = np.array([1, 0.1, 3.5, 2.0**-130, 1e-45, 3e38, 2.0**-20, 65504, 1e-8, 0.007874016, 448, 1e5],
                      np.float64)
    with np.errstate(over="ignore"):
        stored = cast(values, scale_type)
    decoded = dtypes.decode(stored, scale_type)
    return stored[(decoded > 0) & np.isfinite(decoded)]


@gpu
@pytest.mark.parametrize("q_type", QUANTIZED, ids=str)
@pytest.mark.parametrize("scale_type", [*FLOATS, dtypes.E8M0], ids=str)
@pytest.mark.parametrize("to_type", FLOATS, ids=str)
def test_dequantize_every_code(q_type, scale_type, to_type) -> None:
    scales = scale_values_for(scale_type)
    codes = all_codes(q_type)
    # one row per scale, every code in each row: a per-row block scale
    q = np.tile(codes, (scales.size, 1))
    scale = scales.reshape(-1, 1)
    block = (1, codes.size)
    want = dequantize_op.reference(q, scale, block, to_type)
    assert_same_bits(gpu_dequantize(q, scale, block, to_type), want, q, f"dequantize {q_type}->{to_type}")
    # the same values per-tensor, each scale in turn, and over an odd count (a tail chunk)
    for index in range(0, scales.size, 3):
        s = scales[index:index + 1]
        flat = np.tile(codes, 3)[:-1]
        want = dequantize_op.reference(flat, s, flat.shape, to_type)
        assert_same_bits(gpu_dequantize(flat, s, flat.shape, to_type), want, flat, "per-tensor")


# --------------------------------------------------------------------------------------------------
# Quantize: boundaries, specials, every 16-bit input


@gpu
@pytest.mark.parametrize("to_type", QUANTIZED, ids=str)
@pytest.mark.parametrize("scale_type", FLOATS, ids=str)
def test_quantize_float32_probes(to_type, scale_type) -> None:
    rng = np.random.default_rng(1)
    quotients = probes(to_type, rng)
    for scale_value in SCALES:
        scale = cast([scale_value], scale_type)
        s = dtypes.decode(scale, scale_type).astype(np.float64)[0]
        if not (s > 0 and np.isfinite(s)):
            continue
        # x near quotient * s, so that x / s lands on and around every boundary
        with np.errstate(over="ignore", invalid="ignore"):
            x = np.concatenate([quotients, (quotients.astype(np.float64) * s).astype(np.float32)])
        want = quantize_op.reference(x, scale, x.shape, to_type)
        assert_same_bits(gpu_quantize(x, scale, x.shape, to_type), want, x,
                         f"quantize float32 -> {to_type}, scale {scale_value} ({scale_type})")


@gpu
@pytest.mark.parametrize("in_type", [dtypes.FLOAT16, dtypes.BFLOAT16], ids=str)
@pytest.mark.parametrize("to_type", QUANTIZED, ids=str)
def test_quantize_every_16_bit_input(in_type, to_type) -> None:
    x = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(in_type.storage)
    for scale_value in (1.0, 0.1, 2.0**-14, 300.0, 2.0**-130):
        scale = cast([scale_value], dtypes.FLOAT32)
        want = quantize_op.reference(x, scale, x.shape, to_type)
        assert_same_bits(gpu_quantize(x, scale, x.shape, to_type), want, x,
                         f"quantize {in_type} -> {to_type}, scale {scale_value}")


# --------------------------------------------------------------------------------------------------
# Every granularity: per-tensor, per-channel, block, partial edges, odd sizes (the three map modes)

LAYOUTS = [  # (shape, block)
    ((1000,), (1000,)),            # per-tensor, tail chunk
    ((3, 17), (3, 17)),
    ((1, 1, 1, 1), (1, 1, 1, 1)),
    ((37,), (1,)),                 # a scale per element
    ((6, 9), (1, 9)),              # per-channel axis 0, rows not a multiple of 16
    ((6, 64), (1, 64)),            # per-channel axis 0: one scale per chunk
    ((5, 48), (5, 1)),             # per-channel last axis: 16 consecutive scales per chunk
    ((2, 3, 7), (2, 3, 1)),        # per-channel last axis, odd
    ((4, 6, 5), (4, 1, 5)),        # per-channel middle axis
    ((2, 1, 3), (1, 1, 1)),
    ((8, 6), (4, 1)),              # block rows (the Block Quantization doc example's form)
    ((3, 32), (1, 16)),            # NVFP4-style blocks
    ((7, 2, 96), (1, 1, 32)),      # MXFP8-style blocks
    ((3, 40), (1, 16)),            # partial edge block along the last axis
    ((9, 10), (4, 3)),             # partial edges on both axes
    ((2, 5, 7), (2, 4, 1)),
    ((10,), (4,)),
    ((2, 3, 4, 33), (1, 2, 3, 8)),
    ((33, 17), (11, 17)),
    ((64, 48), (16, 1)),           # blocks down the columns
]
TIES = {"int8": np.arange(-130, 130) + 0.5, "int4": np.arange(-10, 10) + 0.5,
        "fp8": np.array([2.0**-10, 3 * 2.0**-10, 1.0625, 1.1875, 248, 272, 432, 464, 480]),
        "fp4": np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 6.5, 7])}


def layout_scale(shape, block, scale_type, rng) -> np.ndarray:
    scale_shape = tuple(-(-d // b) for d, b in zip(shape, block))
    values = np.exp(rng.uniform(-6, 3, scale_shape))
    return cast(values, scale_type)


def layout_input(shape, block, scale, in_type, to_type, rng) -> np.ndarray:
    per_element = expand(dtypes.decode(scale, dtype_of(scale)).astype(np.float64), block, shape)
    magnitude = {"int8": 60, "int4": 4, "fp8": 200, "fp4": 3}[to_type.name]
    quotient = rng.standard_normal(shape) * magnitude
    ties = np.concatenate([TIES[to_type.name], -TIES[to_type.name]])
    pick = rng.random(shape) < 0.3
    quotient[pick] = rng.choice(ties, int(pick.sum()))
    x = quotient * per_element
    flat = x.reshape(-1)
    specials = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, -1e-40, 3e38, -3e38]
    flat[rng.choice(flat.size, min(flat.size, len(specials)), replace=False)] = specials[:min(flat.size, 9)]
    return cast(x, in_type)


@gpu
@pytest.mark.parametrize("in_type", FLOATS, ids=str)
@pytest.mark.parametrize("to_type", QUANTIZED, ids=str)
@pytest.mark.parametrize("shape,block", LAYOUTS, ids=lambda v: "x".join(map(str, v)))
def test_every_granularity(in_type, to_type, shape, block) -> None:
    rng = np.random.default_rng(seed(shape, block, in_type.name, to_type.name))
    for scale_type in FLOATS:
        scale = layout_scale(shape, block, scale_type, rng)
        x = layout_input(shape, block, scale, in_type, to_type, rng)
        what = f"{in_type}->{to_type} scale {scale_type} shape {shape} block {block}"
        q_want = quantize_op.reference(x, scale, block, to_type)
        q_got = gpu_quantize(x, scale, block, to_type)
        assert_same_bits(q_got, q_want, x, "quantize " + what)
        y_want = dequantize_op.reference(q_want, scale, block, in_type)
        assert_same_bits(gpu_dequantize(q_want, scale, block, in_type), y_want, q_want, "dequantize " + what)
        assert_same_bits(gpu_quantize_dequantize(x, scale, block, to_type), y_want, x, "fused " + what)
        # the fused pair with another dequantize scale (any float type or e8m0) and output type
        other_type = FLOATS[(FLOATS.index(in_type) + 1) % 3]
        dq_scale = (cast(np.exp(rng.uniform(-8, 8, scale.shape)), other_type) if scale_type != dtypes.BFLOAT16
                    else dtypes.from_codes(rng.integers(0, 256, scale.shape).astype(np.uint8), dtypes.E8M0))
        y_want = dequantize_op.reference(q_want, dq_scale, block, other_type)
        got = device.download(launch.quantize_dequantize(device.upload(x, dtype_of(x)), device.upload(scale, dtype_of(scale)),
                                                     block, to_type, device.upload(dq_scale, dtype_of(dq_scale)),
                                                     other_type))
        assert_same_bits(got, y_want, x, "fused, other scale and output " + what)
        # the NVFP4-style chain: q dequantized with S = round_to(sf type, decode(code) * dqs) per block
        codes = dtypes.from_codes(rng.integers(0, 256, scale.shape).astype(np.uint8), dtypes.FP8)
        dqs = cast(np.exp(rng.uniform(-10, 10, (1,) * len(shape))), scale_type)
        sf = dequantize_op.reference(codes, dqs, tuple(max(d, 1) for d in scale.shape), other_type)
        y_want = dequantize_op.reference(q_want, sf, block, in_type)
        got = device.download(launch.dequantize_double(device.upload(q_want, to_type), device.upload(codes, dtypes.FP8),
                                                   device.upload(dqs, dtype_of(dqs)), block, other_type, in_type))
        assert_same_bits(got, y_want, q_want, "dequantize chain " + what)


# --------------------------------------------------------------------------------------------------
# DynamicQuantize

NVFP4, MXFP8 = (dtypes.FP4, dtypes.FP8), (dtypes.FP8, dtypes.E8M0)
FLOAT_FP8, FLOAT_INT8 = (dtypes.FP8, dtypes.FLOAT32), (dtypes.INT8, dtypes.FLOAT32)
DYNAMIC_CASES = [  # (mode, shape, block, dqs): the fused path, the one-thread-per-block path, the atomic path
    (NVFP4, (64, 256), (1, 16), 1.0),
    (NVFP4, (3, 5, 48), (1, 1, 16), 0.37),
    (NVFP4, (48, 40), (16, 1), 2.0),
    (NVFP4, (2, 32, 24), (1, 16, 1), 1.0),
    (NVFP4, (8, 32), (1, 16), 1e-30),   # effective scales underflow: data +0
    (NVFP4, (8, 32), (1, 16), 1e30),    # scales underflow to fp8 0: data +0
    (NVFP4, (8, 32), (1, 16), 2.0**-130),
    (MXFP8, (16, 128), (1, 32), None),
    (MXFP8, (3, 64, 24), (1, 32, 1), None),
    (MXFP8, (5, 96), (1, 32), None),
    (FLOAT_FP8, (3, 16), (1, 16), None),
    (FLOAT_FP8, (8, 8), (4, 4), None),
    (FLOAT_FP8, (8, 8), (4, 3), None),
    (FLOAT_FP8, (100, 37), (100, 37), None),     # per-tensor, atomic
    (FLOAT_FP8, (4, 600), (2, 600), None),       # large blocks, atomic, chunk map
    (FLOAT_FP8, (3, 5, 7, 9), (1, 2, 7, 4), None),
    (FLOAT_FP8, (7, 3000), (1, 1500), None),
    (FLOAT_FP8, (2, 3, 50, 50), (1, 3, 25, 30), None),  # atomic, general map
    (FLOAT_FP8, (32, 512), (1, 512), None),
    (FLOAT_INT8, (17, 33), (5, 4), None),
    (FLOAT_INT8, (64, 64), (1, 64), None),
    (FLOAT_INT8, (6, 2048), (6, 2048), None),
    (FLOAT_INT8, (4, 16, 8), (2, 16, 1), None),
    # the tile kernel (blocks down the columns): partial last bands, short blocks, shared blocks
    (NVFP4, (50, 64), (16, 1), 1.0),
    (NVFP4, (17, 12), (16, 1), 0.7),
    (MXFP8, (70, 48), (32, 1), None),
    (MXFP8, (8, 6), (32, 1), None),
    (MXFP8, (64, 7), (32, 1), None),           # odd width: the general path
    (FLOAT_FP8, (64, 256), (32, 32), None),
    (FLOAT_FP8, (33, 64), (16, 1), None),
    (FLOAT_INT8, (40, 128), (16, 16), None),
    (FLOAT_INT8, (45, 96), (20, 1), None),
    # the block kernel (one block per CTA): partial bands and block columns, folded 1-D blocks
    (FLOAT_FP8, (300, 384), (128, 128), None),
    (FLOAT_INT8, (260, 320), (128, 128), None),
    (FLOAT_FP8, (4, 256, 512), (1, 128, 128), None),
    (FLOAT_INT8, (8, 4096), (1, 1024), None),
    (FLOAT_FP8, (3, 6144), (1, 2048), None),
    (FLOAT_FP8, (3, 5120), (1, 2048), None),
    (FLOAT_INT8, (64, 64), (64, 64), None),
    (FLOAT_FP8, (40, 2048), (8, 256), None),
    (FLOAT_INT8, (7, 8192), (1, 4096), None),      # groups of blocks per CTA, a partial last group
    (FLOAT_FP8, (45, 2048), (8, 256), None),       # a partial last band inside a group
]

#: (shape, block) -> whether the block kernel takes it, for float32 and bfloat16 input
CTA_GEOMETRIES = [
    ((300, 384), (128, 128), True, True),
    ((4, 256, 512), (1, 128, 128), True, True),
    ((4, 200, 512), (1, 128, 128), False, False),  # three dims after collapsing: the general path
    ((8, 4096), (1, 1024), True, True),
    ((3, 5120), (1, 2048), False, True),           # 512 float32 vectors across a block row: too many
    ((64, 64), (64, 64), True, True),
    ((40, 2048), (8, 256), True, True),
    ((5, 32768), (1, 32768), False, False),        # more than 64 elements per thread
    ((64, 7), (64, 7), False, False),              # no 16-byte vectors
]


@pytest.mark.parametrize("shape,block,f32,bf16", CTA_GEOMETRIES)
def test_block_kernel_takes_these_geometries(shape, block, f32, bf16) -> None:
    if abi.CTA16_PASSES != abi.TUNING_DEFAULTS["NETDSL_CTA16_PASSES"]:
        pytest.skip("the table is the block kernel's choice with the default rows per thread for 16-bit input; "
                    "NETDSL_CUDA_DEFINES sets NETDSL_CTA16_PASSES (more rows take larger blocks)")
    dims = geometry.scale_indexing(shape, block).dims
    assert (dynamic.cta_geometry(dims, "FloatFP8", dtypes.FLOAT32) is not None) == f32
    assert (dynamic.cta_geometry(dims, "FloatInt8", dtypes.BFLOAT16) is not None) == bf16
    assert dynamic.cta_geometry(dims, "NVFP4", dtypes.FLOAT32) is None


@pytest.mark.parametrize("shape,block,single_row", [
    ((4096, 4096), (1, 4096), True),    # collapses to one dim (the 1x4096 of benchmarks/results-kgap.md)
    ((8, 4096), (1, 1024), True),       # one row high, several across
    ((4096, 4096), (128, 128), False),
    ((40, 2048), (8, 256), False),
])
def test_block_kernel_ctas_per_sm(shape, block, single_row) -> None:
    """The block kernel's grid: 3 CTAs per SM (its 16-bit bound by default) for one-row blocks of 16-bit
    input, 2 for taller blocks and for float32 input (docs/gpu.md; dynamic.cta_ctas_per_sm)."""
    if abi.CTA16_CTAS_PER_SM != abi.TUNING_DEFAULTS["NETDSL_CTA_CTAS"]:
        pytest.skip("NETDSL_CUDA_DEFINES sets NETDSL_CTA_CTAS")
    dims = geometry.scale_indexing(shape, block).dims
    for in_type in (dtypes.BFLOAT16, dtypes.FLOAT16):
        assert dynamic.cta_ctas_per_sm(dims, in_type) == (3 if single_row else 2)
    assert dynamic.cta_ctas_per_sm(dims, dtypes.FLOAT32) == 2


def dynamic_input(shape, block, in_type, rng) -> np.ndarray:
    """Random data whose blocks span many magnitudes, with special blocks: all zero (some -0), all NaN,
    one with +Inf, one with -Inf and NaN, one of subnormals only."""
    index = np.indices(shape)
    counts = [-(-d // b) for d, b in zip(shape, block)]
    block_id = np.zeros(shape, dtype=np.int64)
    for axis, (b, count) in enumerate(zip(block, counts)):
        block_id = block_id * count + index[axis] // b
    magnitude = np.exp(rng.uniform(-20, 20, math.prod(counts)))[block_id]
    x = rng.standard_normal(shape) * magnitude
    special = rng.permutation(math.prod(counts))
    if special.size >= 5:
        zero, nan, inf, mixed, tiny = special[:5]
        x[block_id == zero] = 0.0
        x[(block_id == zero) & (rng.random(shape) < 0.5)] = -0.0
        x[block_id == nan] = np.nan
        x[(block_id == inf) & (rng.random(shape) < 0.2)] = np.inf
        x[(block_id == mixed) & (rng.random(shape) < 0.3)] = np.nan
        x[(block_id == mixed) & (rng.random(shape) < 0.1)] = -np.inf
        x[block_id == tiny] = rng.standard_normal(int((block_id == tiny).sum())) * 1e-41
    return cast(x, in_type)


@gpu
@pytest.mark.parametrize("in_type", FLOATS, ids=str)
@pytest.mark.parametrize("mode,shape,block,dqs", DYNAMIC_CASES,
                         ids=lambda v: "-".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_dynamic_quantize(in_type, mode, shape, block, dqs) -> None:
    output_type, scale_type = mode
    rng = np.random.default_rng(seed(shape, block, in_type.name, output_type.name))
    for trial in range(2):
        x = dynamic_input(shape, block, in_type, rng)
        if trial:
            x = cast(rng.standard_normal(shape), in_type)
        want_data, want_scale = dynamic_quantize_op.reference(x, block, output_type, scale_type, dqs)
        got_data, got_scale = gpu_dynamic_quantize(x, block, output_type, scale_type, dqs)
        what = f"dynamic {output_type}/{scale_type} {in_type} shape {shape} block {block} dqs {dqs}"
        assert_same_bits(got_scale, want_scale, None, what + " scale")
        assert_same_bits(got_data, want_data, x, what + " data")


def column_amax_input(in_type: dtypes.DType, rng: np.random.Generator) -> np.ndarray:
    """16 rows, one column per amax: every positive finite value of a 16-bit type (float32: 2^18 random
    bit patterns over every exponent), then +Inf, -Inf, a NaN among values, all NaN. Each column holds
    its amax (either sign) in one row and smaller values of both signs in the others."""
    if in_type.name == "float32":
        amax = np.sort(rng.integers(0, 0x7F800000, 1 << 18, dtype=np.uint32)).view(np.float32)
    else:
        top = 0x7F80 if in_type.name == "bfloat16" else 0x7C00
        amax = np.arange(0, top, dtype=np.uint16).view(in_type.storage).astype(np.float32)
    amax = np.concatenate([amax, [np.inf, np.inf, 1.0, np.nan]]).astype(np.float32)
    amax = np.concatenate([amax, np.ones(-amax.size % 4, np.float32)])
    cols = amax.size
    with np.errstate(invalid="ignore"):  # Inf * 0
        x = amax * rng.uniform(0, 1, (16, cols)).astype(np.float32) * rng.choice([-1, 1], (16, cols))
    x[np.arange(cols) % 16, np.arange(cols)] = amax * rng.choice([-1, 1], cols)
    x[:, cols - 4] = np.abs(x[:, cols - 4])
    x[3, cols - 3] = -np.inf
    x[5, cols - 2] = np.nan
    return cast(x, in_type)


@gpu
@pytest.mark.parametrize("in_type", FLOATS, ids=str)
@pytest.mark.parametrize("dqs", [1.0, 0.75, 2.0**-20, 3.3e-5, 2.0**31, 6e9, 2.0**-33, 1e-30])
def test_nvfp4_columns_take_every_amax(in_type, dqs) -> None:
    """NVFP4 16x1 (the tile kernel, whose scales skip the divisions inside a guarded range): every amax
    a 16-bit input can have, and every exponent of float32, at double-quant scales inside and outside
    that range; scales and data bit for bit against the reference."""
    x = column_amax_input(in_type, np.random.default_rng(seed("columns", in_type.name, dqs)))
    want_data, want_scale = dynamic_quantize_op.reference(x, (16, 1), dtypes.FP4, dtypes.FP8, dqs)
    got_data, got_scale = gpu_dynamic_quantize(x, (16, 1), dtypes.FP4, dtypes.FP8, dqs)
    what = f"NVFP4 16x1 {in_type} dqs {dqs}"
    assert_same_bits(got_scale, want_scale, None, what + " scale")
    assert_same_bits(got_data, want_data, x, what + " data")


def checked_example_x() -> np.ndarray:
    return (np.arange(48, dtype=np.float32).reshape(3, 16) / np.float32(24) - np.float32(1)).astype(np.float32)


@gpu
def test_checked_examples() -> None:
    """docs/semantics.md "Checked examples", exact values."""
    x = checked_example_x()
    data, scale = gpu_dynamic_quantize(x, (1, 16), dtypes.FP8, dtypes.FLOAT32, None)
    amax = np.abs(x).max(axis=1, keepdims=True)
    assert np.allclose(amax.ravel(), [1, 0.3333333, 0.9583334])
    assert np.array_equal(scale, amax / np.float32(448))
    assert data[0].astype(np.float32).tolist() == [-448, -416, -416, -384, -384, -352, -320, -320, -288, -288,
                                                   -256, -240, -224, -208, -192, -160]
    data, scale = gpu_dynamic_quantize(x, (1, 16), dtypes.FP4, dtypes.FP8, 1.0)
    assert scale.astype(np.float32).ravel().tolist() == [0.171875, 0.0546875, 0.15625]
    assert data[1].astype(np.float32).tolist() == [-6, -6, -4, -4, -3, -2, -1.5, -1, 0, 1, 1.5, 2, 3, 4, 4, 6]
    x = (np.arange(64, dtype=np.float32).reshape(8, 8) / np.float32(32) - np.float32(1)).astype(np.float32)
    data, scale = gpu_dynamic_quantize(x, (4, 4), dtypes.FP8, dtypes.FLOAT32, None)
    amax = np.array([[1, 0.875], [0.84375, 0.96875]], np.float32)
    assert np.array_equal(scale, amax / np.float32(448))
    assert data[7].astype(np.float32).tolist() == [384, 416, 416, 448, 416, 416, 448, 448]


# --------------------------------------------------------------------------------------------------
# Large random tensors (tens of millions of elements)

LARGE = 1 << 25


@gpu
@pytest.mark.slow
def test_large_random() -> None:
    rng = np.random.default_rng(7)
    x32 = (rng.standard_normal(LARGE) * np.exp(rng.uniform(-8, 8, LARGE // 4096)).repeat(4096)).astype(np.float32)
    x_bf16 = x32.astype(ml_dtypes.bfloat16)

    for x, shape, output_type, scale_type, block, dqs in [
        (x_bf16, (8192, 4096), dtypes.FP4, dtypes.FP8, (1, 16), 1.0),
        (x32, (4096, 8192), dtypes.FP8, dtypes.E8M0, (1, 32), None),
        (x32, (4096, 8192), dtypes.INT8, dtypes.FLOAT32, (1, 128), None),
        (x_bf16, (4096, 8192), dtypes.FP4, dtypes.FP8, (16, 1), 0.5),
    ]:
        x = x.reshape(shape)
        want_data, want_scale = dynamic_quantize_op.reference(x, block, output_type, scale_type, dqs)
        got_data, got_scale = gpu_dynamic_quantize(x, block, output_type, scale_type, dqs)
        what = f"large dynamic {output_type}/{scale_type} {shape} {block}"
        assert_same_bits(got_scale, want_scale, None, what + " scale")
        assert_same_bits(got_data, want_data, x, what + " data")

    odd = x32[: 4999 * 6007].reshape(4999, 6007)
    for x, scale, block, to_type in [
        (odd, cast([[0.013]], dtypes.FLOAT32), odd.shape, dtypes.FP4),
        (odd.astype(np.float16), cast([[0.7]], dtypes.FLOAT16), odd.shape, dtypes.FP8),
        (odd, cast(np.exp(rng.uniform(-3, 3, (4999, 1))), dtypes.FLOAT32), (1, 6007), dtypes.INT8),
        (x_bf16.reshape(4096, 8192), cast(np.exp(rng.uniform(-3, 3, (4096, 512))), dtypes.BFLOAT16), (1, 16),
         dtypes.FP4),
    ]:
        want = quantize_op.reference(x, scale, block, to_type)
        got = gpu_quantize(x, scale, block, to_type)
        assert_same_bits(got, want, x, f"large quantize {x.dtype} -> {to_type} {x.shape} {block}")
        y_want = dequantize_op.reference(want, scale, block, dtypes.BFLOAT16)
        assert_same_bits(gpu_dequantize(want, scale, block, dtypes.BFLOAT16), y_want, want,
                         f"large dequantize {to_type} {x.shape} {block}")


@gpu
@pytest.mark.slow
def test_large_two_dim_blocks() -> None:
    """2-D block scales over tensors large enough that every thread of the grid-stride kernels works on
    several chunks (Quantize, Dequantize, the fused pair) or block groups (DynamicQuantize's block
    kernel): the scale index of a thread's later chunks, whether or not the grid stride spans whole rows
    (the 4096 and 4000 wide tensors), and the block kernel's next items, special blocks included."""
    rng = np.random.default_rng(11)
    for shape, block, to_type in [((8192, 4096), (128, 128), dtypes.FP4), ((5000, 4000), (128, 80), dtypes.INT4)]:
        scale = layout_scale(shape, block, dtypes.BFLOAT16, rng)
        x = layout_input(shape, block, scale, dtypes.BFLOAT16, to_type, rng)
        what = f"large {to_type} {shape} {block}"
        want = quantize_op.reference(x, scale, block, to_type)
        assert_same_bits(gpu_quantize(x, scale, block, to_type), want, x, "quantize " + what)
        y_want = dequantize_op.reference(want, scale, block, dtypes.BFLOAT16)
        assert_same_bits(gpu_dequantize(want, scale, block, dtypes.BFLOAT16), y_want, want, "dequantize " + what)
        assert_same_bits(gpu_quantize_dequantize(x, scale, block, to_type), y_want, x, "fused " + what)
    for in_type, shape, block in [(dtypes.BFLOAT16, (4096, 4096), (1, 4096)), (dtypes.BFLOAT16, (4096, 4096), (128, 128)),
                                  (dtypes.FLOAT16, (2048, 4096), (1, 4096))]:
        x = dynamic_input(shape, block, in_type, rng)
        want_data, want_scale = dynamic_quantize_op.reference(x, block, dtypes.INT8, dtypes.FLOAT32, None)
        got_data, got_scale = gpu_dynamic_quantize(x, block, dtypes.INT8, dtypes.FLOAT32, None)
        what = f"large dynamic int8 {in_type} {shape} {block}"
        assert_same_bits(got_scale, want_scale, None, what + " scale")
        assert_same_bits(got_data, want_data, x, what + " data")

@gpu
def test_device_tensor_storage() -> None:
    """The documented raw layout: 4-bit codes packed two per byte, low nibble first, last byte padded."""
    codes = np.array([1, 2, 3, 4, 5], np.uint8)
    t = device.upload(dtypes.from_codes(codes, dtypes.FP4), dtypes.FP4)
    assert device.import_cupy().asnumpy(t.data).tolist() == [0x21, 0x43, 0x05]
    q = launch.quantize(device.upload(np.array([0.5, 1, 1.5, 2, 3], np.float32), dtypes.FLOAT32),
                      device.upload(np.array([1], np.float32), dtypes.FLOAT32), (5,), dtypes.FP4)
    assert device.import_cupy().asnumpy(q.data).tolist() == [0x21, 0x43, 0x05]
    bf16 = device.upload(np.array([1.5, -2], ml_dtypes.bfloat16), dtypes.BFLOAT16)
    assert device.import_cupy().asnumpy(bf16.data).tolist() == [0x3FC0, 0xC000]
    empty = launch.quantize(device.upload(np.zeros((0, 3), np.float32), dtypes.FLOAT32),
                          device.upload(np.ones((0, 1), np.float32), dtypes.FLOAT32), (1, 3), dtypes.INT8)
    assert device.download(empty).shape == (0, 3)
