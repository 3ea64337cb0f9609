"""The host's copy of the kernels' ABI (netdsl/backends/cupy/abi.py and the word tables of geometry.py
and dynamic.py) against the kernel sources themselves: the ``.cu``/``.cuh`` files are read as text and
their enums, constants, struct layouts, tuning macros, DynamicQuantize mode structs and kernel templates
compared with the Python side. Needs neither CuPy nor a GPU: it runs everywhere, CI included."""

from __future__ import annotations

import re

import ml_dtypes
import numpy as np
import pytest

from netdsl import dtypes
from netdsl.backends.cupy import abi, dynamic, geometry
from netdsl.ops import dequantize
from netdsl.ops.dynamic_quantize import MODES
from netdsl.resources import resource_dir

KERNELS = resource_dir("kernels")
SOURCES = {path.name: path.read_text() for path in sorted(KERNELS.iterdir()) if path.suffix in (".cu", ".cuh")}
ALL = "\n".join(SOURCES.values())


def constexpr(name: str) -> int:
    """The value of ``constexpr int NAME = VALUE;`` (exactly one definition in the sources)."""
    values = re.findall(rf"constexpr\s+int\s+{name}\s*=\s*(\d+)\s*;", ALL)
    assert len(values) == 1, f"{name}: {len(values)} definitions"
    return int(values[0])


def enum(name: str) -> dict[str, int]:
    """The enumerators of ``enum NAME ... { A = 0, B = 1 }`` (comments dropped)."""
    match = re.search(rf"enum\s+{name}\b[^{{]*\{{(.*?)\}};", ALL, re.DOTALL)
    assert match, f"enum {name} not found"
    body = re.sub(r"//[^\n]*", "", match.group(1))
    return {key: int(value) for key, value in re.findall(r"(\w+)\s*=\s*(\d+)", body)}


def struct_body(name: str) -> str:
    match = re.search(rf"struct\s+{name}\s*\{{(.*?)\n\}};", ALL, re.DOTALL)
    assert match, f"struct {name} not found"
    return re.sub(r"//[^\n]*", "", match.group(1))


def struct_words(name: str) -> int:
    """The size in 32-bit words of a struct of u32 fields and nested such structs (``u32 a, b[N];``)."""
    words = 0
    for type_name, declarators in re.findall(r"^\s*(\w+)\s+([^;()]+);", struct_body(name), re.MULTILINE):
        size = 1 if type_name == "u32" else struct_words(type_name)
        for declarator in declarators.split(","):
            count = re.search(r"\[(\w+)\]", declarator)
            length = 1 if count is None else int(count.group(1)) if count.group(1).isdigit() \
                else constexpr(count.group(1))
            words += size * length
    return words


def test_threads_and_dims() -> None:
    assert abi.THREADS == constexpr("kThreads")
    assert abi.BLOCK == (abi.THREADS,)
    assert abi.MAX_DIMS == constexpr("kMaxDims")


def test_scale_map_layout() -> None:
    """ScaleMap (common.cuh) as the host writes it: the word count, and every table the same length."""
    assert struct_words("FastDiv") == 3 == len(geometry.fast_div(7))
    assert abi.SCALE_MAP_WORDS == struct_words("ScaleMap")
    for shape, block in [((4, 8), (2, 8)), ((2, 3, 4, 33), (1, 2, 3, 8)), ((5,), (5,)), ((64, 64), (1, 16))]:
        assert len(geometry.scale_indexing(shape, block).words) == abi.SCALE_MAP_WORDS


def test_block_geometry_layout() -> None:
    """BlockGeometry (dynamic_quantize.cu): 4 dims, and the host's table of that many words."""
    assert re.search(rf"u32\s+extent\[{abi.BLOCK_GEOMETRY_DIMS}\]", struct_body("BlockGeometry"))
    assert abi.BLOCK_GEOMETRY_WORDS == struct_words("BlockGeometry")
    for dims in [((64, 16),), ((9, 4), (10, 3)), ((2, 2), (3, 1), (4, 4), (5, 5))]:
        assert len(dynamic.block_geometry_words(dims)) == abi.BLOCK_GEOMETRY_WORDS


def _kind_name(enumerator: str, prefix: str) -> str:
    assert enumerator.startswith(prefix), enumerator
    return enumerator[len(prefix):].lower()


def test_scale_kinds() -> None:
    """ScaleKind (common.cuh) is DType.scale_kind, defined for exactly the types Dequantize takes as scales."""
    kinds = {_kind_name(key, "kScale"): value for key, value in enum("ScaleKind").items()}
    assert kinds == {t.name: t.scale_kind for t in dtypes.DTYPES.values() if t.scale_kind is not None}
    assert set(kinds) == {t.name for t in dequantize.SCALE_TYPES}


def test_code_kinds() -> None:
    """CodeKind (dequantize.cu) is DType.code_kind, defined for exactly the quantized types."""
    kinds = {_kind_name(key, "kCode"): value for key, value in enum("CodeKind").items()}
    assert kinds == {t.name: t.code_kind for t in dtypes.DTYPES.values() if t.code_kind is not None}
    assert set(kinds) == set(abi.QUANTIZED_TYPES)


def test_map_modes() -> None:
    assert enum("MapMode") == {"kPerTensor": abi.PER_TENSOR, "kChunk": abi.CHUNKED, "kGeneral": abi.GENERAL}
    assert abi.MAP_MODES == (abi.PER_TENSOR, abi.CHUNKED, abi.GENERAL)


def test_recipe_operations() -> None:
    """recipe.cu's SignMode and BinaryOp are the host's, and cover exactly the recipe layers' operations."""
    from netdsl.ops import elementwise, unary

    assert enum("SignMode") == {"kSignKeep": abi.SIGN_KEEP, "kSignAbs": abi.SIGN_ABS, "kSignNeg": abi.SIGN_NEG}
    assert set(abi.UNARY_SIGNS) == set(unary.OPERATIONS)
    assert {f"kSign{op.title()}": sign for op, sign in abi.UNARY_SIGNS.items()}.items() <= enum("SignMode").items()
    assert set(abi.BINARY_OPS) == set(elementwise.OPERATIONS)
    assert enum("BinaryOp") == {f"k{op.title()}": value for op, value in abi.BINARY_OPS.items()}


def test_chunk() -> None:
    """Chunk<T> (formats.cuh) holds 16 elements: 2 * bits bytes, bits / 2 words."""
    body = struct_body("Chunk")
    bytes_per_bit = int(re.search(r"kBytes\s*=\s*(\d+)\s*\*\s*T::bits", body).group(1))
    assert abi.CHUNK == 8 * bytes_per_bit
    words_divisor = int(re.search(r"kWords\s*=\s*T::bits\s*/\s*(\d+)", body).group(1))
    assert abi.CHUNK == 32 // words_divisor


def test_tuning_defaults() -> None:
    defaults = {name: int(value) for name, value in
                re.findall(r"#ifndef\s+(NETDSL_\w+)\s*\n#define\s+\1\s+(\d+)", ALL)}
    assert defaults == abi.TUNING_DEFAULTS


def test_cta_and_tile_shapes() -> None:
    cta = struct_body("CtaShape")
    match = re.search(r"kCtasPerSm\s*=\s*In::bits\s*==\s*32\s*\?\s*(\d+)\s*:\s*NETDSL_CTA_CTAS\s*;", cta)
    assert match, "CtaShape::kCtasPerSm changed shape"
    assert int(match.group(1)) == abi.CTA32_CTAS_PER_SM
    assert abi.CTA16_CTAS_PER_SM == abi.tuning("NETDSL_CTA_CTAS")
    tile = struct_body("TileShape")
    match = re.search(r"kVec\s*=\s*kRows\s*==\s*(\d+)\s*\?\s*\(same_type<In,\s*type::bfloat16>\s*\?\s*"
                      r"NETDSL_TILE16_BF16_VEC\s*:\s*(\d+)\)\s*:\s*(\d+)\s*;", tile)
    assert match, "TileShape::kVec changed shape"
    rows, other_16, other = map(int, match.groups())
    assert rows == 16
    assert dynamic.tile_vec(dtypes.FLOAT32, 16) == dynamic.tile_vec(dtypes.FLOAT16, 16) == other_16
    assert dynamic.tile_vec(dtypes.BFLOAT16, 16) == abi.TILE16_BF16_VEC
    assert {dynamic.tile_vec(t, 32) for t in dtypes.FLOAT_TYPES} == {other}
    assert max(r for variants in abi.TILE_VARIANTS.values() for r, _ in variants) == abi.MAX_TILE_ROWS


def _mode_types(struct: str) -> tuple[str, str, int | None]:
    """(data type, scale type, kMax of a FloatScale) of a DynamicQuantize mode struct."""
    alias = re.search(rf"using\s+{struct}\s*=\s*FloatScale<type::(\w+),\s*(\d+)>\s*;", ALL)
    if alias:
        scale = re.search(r"using\s+Scale\s*=\s*type::(\w+)\s*;", struct_body(r"FloatScale")).group(1)
        return alias.group(1), scale, int(alias.group(2))
    body = struct_body(struct)
    data = re.search(r"using\s+Data\s*=\s*type::(\w+)\s*;", body).group(1)
    scale = re.search(r"using\s+Scale\s*=\s*type::(\w+)\s*;", body).group(1)
    return data, scale, None


def test_dynamic_modes() -> None:
    """Each mode struct has the data and scale types the host maps to it, every mode of the op has a
    struct, and a float-scale struct divides by the largest finite value of its data type."""
    assert set(abi.DYNAMIC_MODES) == {(output.name, scale.name) for output, scale in MODES}
    largest = {"fp8": float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn).max), "int8": float(np.iinfo(np.int8).max)}
    modes = {(output.name, scale.name): mode for (output, scale), mode in MODES.items()}
    for (output, scale), struct in abi.DYNAMIC_MODES.items():
        data, scale_type, bound = _mode_types(struct)
        assert (data, scale_type) == (output, scale), struct
        assert bound == modes[(output, scale)].bound, struct
        if bound is not None:
            assert bound == largest[output], struct
    assert set(abi.CTA_MODES) <= set(abi.DYNAMIC_MODES.values())
    assert set(abi.TILE_VARIANTS) == set(abi.DYNAMIC_MODES.values())


def _templates() -> dict[str, int]:
    """kernel name -> its template's parameter count, for every __global__ template."""
    found = {}
    for params, name in re.findall(r"template\s*<([^>]*)>\s*__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s*)?(\w+_kernel)\s*\(", ALL):
        found[name] = len(params.split(","))
    return found


@pytest.mark.parametrize("file", sorted(abi.KERNEL_NAMES))
def test_kernel_names_match_templates(file: str) -> None:
    """Every instantiation the host names is a __global__ template of that file, with as many
    arguments as the template has parameters, over types and structs the sources define."""
    templates = _templates()
    source = SOURCES[file]
    for expression in abi.KERNEL_NAMES[file]:
        match = re.fullmatch(r"netdsl::(\w+)<(.*)>", expression)
        assert match, expression
        name, arguments = match.group(1), [a.strip() for a in match.group(2).split(",")]
        assert name in templates and re.search(rf"\b{name}\s*\(", source), f"{expression}: no such kernel in {file}"
        assert len(arguments) == templates[name], expression
        for argument in arguments:
            if argument.startswith("netdsl::type::"):
                assert re.search(rf"struct\s+{argument.removeprefix('netdsl::type::')}\s*\{{", ALL), argument
            elif argument.startswith("netdsl::"):
                assert argument.removeprefix("netdsl::") in abi.DYNAMIC_MODES.values(), argument
            else:
                assert argument in ("true", "false") or argument.isdigit(), argument
