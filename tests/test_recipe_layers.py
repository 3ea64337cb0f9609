"""The recipe layers (unary, reduce, elementwise, cast), named dimensions and constant folding:
values against IEEE 754 facts and float64 arithmetic (docs/semantics.md, "Recipe layers"), and a failing
input for every rule."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

import netdsl
from netdsl import ModelError
from tests.conftest import EXAMPLES, backends, needs_gpu

NAN_BITS = 0x7FC00000


def errors(text: str) -> list[str]:
    with pytest.raises(ModelError) as info:
        netdsl.loads(text, filename="m.net")
    return [str(d) for d in info.value.diagnostics if d.severity == "error"]


def run(text: str, backend: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    return netdsl.loads(text, filename="m.net").run(inputs, backend=backend)


def bits(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, np.float32).view(np.uint32)


SPECIALS = np.array([0.0, -0.0, 1.5, -2.25, np.inf, -np.inf, np.nan, 1e-45, -3e38, 7.0], np.float32)


# --- values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", backends())
def test_unary_abs_and_neg_bits(backend: str) -> None:
    x = SPECIALS.copy()
    x.view(np.uint32)[6] = 0xFFC00001  # a negative, non-canonical NaN
    text = "input x : float32[10]\na = unary(x, op=abs)\nn = unary(x, op=neg)\noutput a, n\n"
    out = run(text, backend, x=x)
    expected_abs = [0x00000000, 0x00000000, 0x3FC00000, 0x40100000, 0x7F800000, 0x7F800000, NAN_BITS,
                    0x00000001, 0x7F61B1E6, 0x40E00000]
    assert bits(out["a"]).tolist() == expected_abs
    expected_neg = [0x80000000, 0x00000000, 0xBFC00000, 0x40100000, 0xFF800000, 0x7F800000, NAN_BITS,
                    0x80000001, 0x7F61B1E6, 0xC0E00000]
    assert bits(out["n"]).tolist() == expected_neg


@pytest.mark.parametrize("backend", backends())
def test_reduce_max_min(backend: str) -> None:
    x = np.array([[1, -7, 3], [np.nan, 2, -1], [-0.0, 0.0, -0.0], [-0.0, -0.0, -5]], np.float32)
    text = ("input x : float32[4, 3]\nm = reduce(x, op=max, axes=[1])\nn = reduce(x, op=min, axes=[-1], keep_dims=true)\n"
            "c = reduce(x, op=max, axes=[0, 1])\noutput m, n, c\n")
    out = run(text, backend, x=x)
    # IEEE 754-2019 maximum/minimum: NaN propagates (canonical), +0 > -0
    assert bits(out["m"]).tolist() == [0x40400000, NAN_BITS, 0x00000000, 0x80000000]
    assert out["n"].shape == (4, 1)
    assert bits(out["n"]).reshape(-1).tolist() == [0xC0E00000, NAN_BITS, 0x80000000, 0xC0A00000]
    assert out["c"].shape == () and np.isnan(out["c"]) and bits(out["c"]).tolist() == NAN_BITS


@pytest.mark.parametrize("backend", backends())
def test_reduce_bfloat16_keeps_the_type(backend: str) -> None:
    x = np.array([[1.5, -3.0], [0.25, 2.0]], np.float32).astype(ml_dtypes.bfloat16)
    out = run("input x : bfloat16[2, 2]\nm = reduce(unary(x, op=abs), op=max, axes=[0, 1])\noutput m\n"
              .replace("reduce(unary(x, op=abs)", "reduce(a").replace("input x : bfloat16[2, 2]\n",
                                                                       "input x : bfloat16[2, 2]\na = unary(x, op=abs)\n"),
              backend, x=x)
    assert out["m"].dtype == ml_dtypes.bfloat16 and float(out["m"]) == 3.0


def test_elementwise_float32_against_float64() -> None:
    """One float32 operation, rounded to nearest even, is the float64 result rounded to float32 (float64 has
    more than 2 * 24 + 2 bits, so that double rounding is innocuous)."""
    rng = np.random.default_rng(5)
    a = (rng.standard_normal(4000) * 10.0 ** rng.integers(-30, 30, 4000)).astype(np.float32)
    b = (rng.standard_normal(4000) * 10.0 ** rng.integers(-30, 30, 4000)).astype(np.float32)
    text = "input a : float32[4000]\ninput b : float32[4000]\n" + "".join(
        f"{op} = elementwise(a, b, op={op})\n" for op in ("sum", "sub", "prod", "div")) + "output sum, sub, prod, div\n"
    out = run(text, "numpy", a=a, b=b)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(all="ignore"):
        expected = {"sum": a64 + b64, "sub": a64 - b64, "prod": a64 * b64, "div": a64 / b64}
    for op, value in expected.items():
        with np.errstate(over="ignore"):
            assert np.array_equal(bits(out[op]), bits(value.astype(np.float32))), op


@pytest.mark.parametrize("backend", backends())
def test_elementwise_specials_and_broadcast(backend: str) -> None:
    a = np.array([[1.0], [np.inf], [0.0], [-0.0]], np.float32)
    b = np.array([[0.0, -0.0, np.nan]], np.float32)
    text = ("input a : float32[4, 1]\ninput b : float32[1, 3]\n"
            + "".join(f"{op} = elementwise(a, b, op={op})\n" for op in ("div", "max", "min", "sub"))
            + "output div, max, min, sub\n")
    out = run(text, backend, a=a, b=b)
    assert out["div"].shape == (4, 3)
    inf, ninf, zero, nzero = 0x7F800000, 0xFF800000, 0x00000000, 0x80000000
    assert bits(out["div"]).tolist() == [[inf, ninf, NAN_BITS], [inf, ninf, NAN_BITS],
                                         [NAN_BITS] * 3, [NAN_BITS] * 3]
    assert bits(out["max"]).tolist() == [[0x3F800000, 0x3F800000, NAN_BITS], [inf, inf, NAN_BITS],
                                         [zero, zero, NAN_BITS], [zero, nzero, NAN_BITS]]
    assert bits(out["min"]).tolist() == [[zero, nzero, NAN_BITS], [zero, nzero, NAN_BITS],
                                         [zero, nzero, NAN_BITS], [nzero, nzero, NAN_BITS]]
    assert bits(out["sub"])[1].tolist() == [inf, inf, NAN_BITS]


@pytest.mark.parametrize("backend", backends())
def test_cast_rounds_to_nearest_even(backend: str) -> None:
    # bfloat16 steps by 2^-7 above 1: 1 + 2^-8 is halfway (ties to even: 1), 1 + 3 * 2^-9 rounds up;
    # float16 steps by 2^-10: both exact. 3.4e38 is past bfloat16's largest finite (0x7F7F) and float16's.
    x = np.array([1 + 2**-8, 1 + 3 * 2**-9, 3.4e38, np.nan, -0.0], np.float32)
    out = run("input x : float32[5]\ny = cast(x, to_type=bfloat16)\nh = cast(x, to_type=float16)\noutput y, h\n",
              backend, x=x)
    assert out["y"].view(np.uint16).tolist() == [0x3F80, 0x3F81, 0x7F80, 0x7FC0, 0x8000]
    assert out["h"].view(np.uint16).tolist() == [0x3C04, 0x3C06, 0x7C00, 0x7E00, 0x8000]


# --- folding and constant-rooted scales -----------------------------------------------------------


def test_constant_rooted_scale_is_folded_and_checked() -> None:
    text = ("input x : float32[2, 4]\nconst a : float32[] = 3\nconst b : float32[] = 6\n"
            "s = elementwise(a, b, op=div)\nq = quantize(x, s, to_type=fp8)\noutput q\n")
    net = netdsl.loads(text)
    out = net.run({"x": np.array([[0.5, 1, -1, 2]] * 2, np.float32)}, backend="numpy")
    assert np.asarray(out["q"], np.float32).tolist() == [[1, 2, -2, 4]] * 2
    assert net.graph.values["s"].folded == np.float32(0.5)  # folded at check time
    text_negative = text.replace("op=div", "op=sub")  # 3 - 6 = -3
    assert any("5:17: error: every scale value must be finite and > 0; 's' holds -3.0" in e for e in errors(text_negative))


def test_scale_from_a_network_input_is_still_refused() -> None:
    text = "input x : float32[4]\ninput y : float32[]\ns = unary(y, op=abs)\nq = quantize(x, s)\noutput q\n"
    assert any("4:17: error: quantize's scale must be a constant" in e for e in errors(text))


# --- recipes: named dimensions, bound per shape ------------------------------------------------------

RECIPE = EXAMPLES / "recipes" / "nvfp4_weights.net"


def test_recipe_binds_each_shape_once() -> None:
    net = netdsl.load(RECIPE)
    assert net.recipe and str(net.inputs["w"]) == "bfloat16[N, K]"
    first = net.bind({"w": (4, 32)})
    assert net.bind({"w": (4, 32)}) is first
    assert net.bind({"w": (8, 32)}) is not first
    assert str(first.inputs["w"]) == "bfloat16[4, 32]"


def test_recipe_errors_are_located_with_the_bound_dims() -> None:
    net = netdsl.load(RECIPE)
    with pytest.raises(ModelError) as info:
        net.bind({"w": (4, 40)})
    assert str(info.value).endswith("nvfp4_weights.net:12:79: error: the extent 40 of axis 1 is not divisible "
                                    "by block_size 16 (with N=4, K=40)")


def test_recipe_shape_must_fit_the_declared_dims() -> None:
    net = netdsl.loads("input w : float32[N, N, 2]\nm = reduce(w, op=max, axes=[0])\noutput m\n")
    with pytest.raises(ValueError, match=r"input 'w': shape \[3, 4, 2\] does not fit float32\[N, N, 2\]: N is 3 and 4"):
        net.bind({"w": (3, 4, 2)})
    with pytest.raises(ValueError, match="rank 2 does not fit"):
        net.bind({"w": (3, 3)})
    with pytest.raises(ValueError, match=r"shape \[3, 3, 5\] does not fit"):
        net.bind({"w": (3, 3, 5)})
    assert net.bind({"w": (3, 3, 2)}).outputs["m"].shape == (3, 2)


def test_recipe_yaml_form_is_the_same_network() -> None:
    """Named dimensions read the same in both forms; the layers' TensorRT ``op`` attribute is ``operation:``
    in YAML, where ``op:`` names the layer; convert writes each form back."""
    from netdsl.frontend.writer import write_model

    text = RECIPE.read_text()
    net_text = netdsl.loads(text, filename="nvfp4_weights.net")
    yaml_text = write_model(net_text.graph, "yaml", EXAMPLES, EXAMPLES)
    assert "  w: bfloat16[N, K]" in yaml_text and "    operation: max" in yaml_text
    net_yaml = netdsl.loads(yaml_text, format="yaml", filename="nvfp4_weights.yaml")
    assert net_yaml.recipe
    assert net_yaml.bind({"w": (4, 32)}).describe() == net_text.bind({"w": (4, 32)}).describe()
    assert netdsl.loads(write_model(net_yaml.graph, "net", EXAMPLES, EXAMPLES)).bind({"w": (4, 32)}).describe() == \
        net_text.bind({"w": (4, 32)}).describe()


def test_recipe_weight_all_zero_is_an_error_naming_the_scale() -> None:
    net = netdsl.load(RECIPE)
    with pytest.raises(ValueError, match="every double_quant_scale value must be finite and > 0; 'weight_scale_2' holds 0.0"):
        net.run({"w": np.zeros((2, 16), ml_dtypes.bfloat16)}, backend="numpy")


@pytest.mark.parametrize("backend", backends())
def test_recipe_runs_on_every_backend(backend: str) -> None:
    w = np.random.default_rng(3).standard_normal((8, 64)).astype(ml_dtypes.bfloat16)
    net = netdsl.load(RECIPE)
    expected = net.run({"w": w}, backend="numpy")
    got = net.run({"w": w}, backend=backend)
    for name in expected:
        assert np.array_equal(np.asarray(got[name]).reshape(-1).view(np.uint8),
                              np.asarray(expected[name]).reshape(-1).view(np.uint8))


# --- a failing input for every rule ----------------------------------------------------------------

X = "input x : float32[4, 8]\n"
CASES = [
    ("unary op missing", X + "y = unary(x)\noutput y\n", "2:1: error: unary needs op=, one of abs, neg"),
    ("unary op unknown", X + "y = unary(x, op=exp)\noutput y\n", "2:17: error: unary has no operation 'exp'; it takes abs, neg"),
    ("unary op not a word", X + "y = unary(x, op=1)\noutput y\n", "2:17: error: op takes a word, e.g. op=max"),
    ("unary input type", "input x : int8[4]\ny = unary(x, op=abs)\noutput y\n", "2:11: error: unary's input must be float32"),
    ("reduce no axes", X + "y = reduce(x, op=max)\noutput y\n", "2:1: error: reduce needs axes=[...]"),
    ("reduce sum refused", X + "y = reduce(x, op=sum, axes=[0])\noutput y\n", "2:18: error: reduce has no operation 'sum'; it takes max, min"),
    ("reduce empty axes", X + "y = reduce(x, op=max, axes=[])\noutput y\n", "2:28: error: axes must name at least one dimension"),
    ("reduce axis range", X + "y = reduce(x, op=max, axes=[2])\noutput y\n", "2:28: error: axis 2 is out of range for a rank-2 input"),
    ("reduce axis twice", X + "y = reduce(x, op=max, axes=[1, -1])\noutput y\n", "2:28: error: axes names a dimension twice: [1, -1]"),
    ("reduce zero extent", "input x : float32[0, 8]\ny = reduce(x, op=max, axes=[0])\noutput y\n", "2:28: error: dimension 0 has extent 0"),
    ("reduce keep_dims word", X + "y = reduce(x, op=max, axes=[0], keep_dims=1)\noutput y\n", "2:43: error: keep_dims takes true or false"),
    ("elementwise types", X + "input b : float16[4, 8]\ny = elementwise(x, b, op=sum)\noutput y\n", "3:20: error: elementwise's inputs must have the same type"),
    ("elementwise ranks", X + "input b : float32[8]\ny = elementwise(x, b, op=sum)\noutput y\n", "3:20: error: elementwise's inputs must have the same rank"),
    ("elementwise extents", X + "input b : float32[4, 2]\ny = elementwise(x, b, op=sum)\noutput y\n", "3:20: error: 'x' float32[4, 8] and 'b' float32[4, 2] differ in dimension 1"),
    ("elementwise pow refused", X + "y = elementwise(x, x, op=pow)\noutput y\n", "2:26: error: elementwise has no operation 'pow'"),
    ("elementwise quantized", "input b : int8[4]\ny = elementwise(b, b, op=sum)\noutput y\n", "2:17: error: elementwise's first input must be float32"),
    ("cast no type", X + "y = cast(x)\noutput y\n", "2:1: error: cast needs to_type="),
    ("cast quantized", X + "y = cast(x, to_type=fp8)\noutput y\n", "2:21: error: cast's to_type must be float32, float16, bfloat16, got fp8"),
    ("named dim in a constant", "const c : float32[N] = [1]\ninput x : float32[1]\ny = elementwise(x, c, op=sum)\noutput y\n",
     "1:19: error: a dimension must be a non-negative integer; only an input's dimensions may be names (here 'N')"),
]


@pytest.mark.parametrize("name,text,expected", CASES, ids=[c[0] for c in CASES])
def test_rule(name: str, text: str, expected: str) -> None:
    found = errors(text)
    assert any(expected in e for e in found), found


# --- the command line ----------------------------------------------------------------------------


def test_cli_check_and_run_a_recipe(tmp_path, capsys) -> None:
    from netdsl.cli import main

    assert main(["check", str(RECIPE)]) == 0
    assert capsys.readouterr().out == "ok (a recipe: checked again for each shape it meets)\n"
    np.save(tmp_path / "w.npy", np.linspace(-1, 1, 4 * 32, dtype=np.float32).reshape(4, 32))
    assert main(["run", str(RECIPE), "--input", f"w={tmp_path / 'w.npy'}", "--backend", "numpy"]) == 0
    assert "weight_scale_2: float32[]" in capsys.readouterr().out
    assert main(["run", str(RECIPE)]) == 2
    assert capsys.readouterr().err == ("netdsl: error: input 'w' has named dimensions (bfloat16[N, K]): give it "
                                       "with --input w=FILE.npy\n")
    np.save(tmp_path / "z.npy", np.zeros((4, 32), np.float32))
    assert main(["run", str(RECIPE), "--input", f"w={tmp_path / 'z.npy'}", "--backend", "numpy"]) == 2
    assert "every double_quant_scale value must be finite and > 0; 'weight_scale_2' holds 0.0" in capsys.readouterr().err
    np.save(tmp_path / "w40.npy", np.ones((4, 40), np.float32))
    assert main(["run", str(RECIPE), "--input", f"w={tmp_path / 'w40.npy'}"]) == 1
    assert capsys.readouterr().err.endswith("(with N=4, K=40)\n")


@pytest.mark.parametrize("recipe", sorted((EXAMPLES / "recipes").glob("*.net")), ids=lambda p: p.stem)
def test_shipped_recipes_read_the_same_in_yaml(recipe) -> None:
    from netdsl.frontend.writer import write_model

    net = netdsl.load(recipe)
    assert net.recipe
    yaml_net = netdsl.loads(write_model(net.graph, "yaml", recipe.parent, recipe.parent), format="yaml",
                            filename=str(recipe.with_suffix(".yaml")))
    shapes = {"w": (256, 256)}
    assert yaml_net.bind(shapes).describe().replace(".yaml", ".net") == net.bind(shapes).describe()


def test_reduce_in_slices_gives_the_same_bits(monkeypatch) -> None:
    """A large input is reduced a slice at a time; NaN, signed zeros and ties come out as on the whole."""
    from netdsl.ops import reduce

    rng = np.random.default_rng(8)
    x = rng.standard_normal((37, 11, 5)).astype(np.float32)
    x[4, 2, 1], x[30, 0, 0] = np.nan, -0.0
    x[:, 3, :] = 0.0
    x[:, 3, 2] = -0.0
    expected = {}
    for op in ("max", "min"):
        for axes in ((0,), (1,), (0, 2), (0, 1, 2), (2,)):
            for keep in (False, True):
                expected[op, axes, keep] = reduce.reference(x, op, axes, keep, netdsl.dtypes.FLOAT32)
    monkeypatch.setattr(reduce, "CHUNK_ELEMENTS", 50)  # slices of one row of 55 elements
    for (op, axes, keep), value in expected.items():
        got = reduce.reference(x, op, axes, keep, netdsl.dtypes.FLOAT32)
        assert got.shape == value.shape and np.array_equal(bits(got), bits(value)), (op, axes, keep)


@pytest.mark.parametrize("backend", backends())
def test_subnormals_are_kept(backend: str) -> None:
    """No layer flushes a subnormal to zero (docs/semantics.md): IEEE float32 results written by hand."""
    tiny = np.float32(2.0**-149)
    a = np.array([3 * tiny, tiny, tiny, -tiny, 0.0], np.float32)
    b = np.array([1.5, tiny, 2.0**-5, 0.0, tiny], np.float32)
    text = ("input a : float32[5]\ninput b : float32[5]\nd = elementwise(a, b, op=div)\np = elementwise(a, b, op=prod)\n"
            "s = elementwise(a, b, op=sum)\nm = elementwise(a, b, op=max)\nn = elementwise(a, b, op=min)\n"
            "r = reduce(a, op=max, axes=[0])\nq = reduce(a, op=min, axes=[0])\nabs_a = unary(a, op=abs)\n"
            "output d, p, s, m, n, r, q, abs_a\n")
    out = run(text, backend, a=a, b=b)
    assert bits(out["d"])[0] == 0x00000002  # 3 * 2^-149 / 1.5 = 2^-148
    assert bits(out["p"])[0] == 0x00000004 and bits(out["d"])[1] == 0x3F800000  # 3*2^-149 * 1.5 rounds to even
    assert bits(out["s"])[1] == 0x00000002  # 2^-149 + 2^-149
    assert bits(out["m"]).tolist()[3:] == [0x00000000, 0x00000001]  # max(-2^-149, 0) = 0; max(0, 2^-149)
    assert bits(out["n"]).tolist()[3:] == [0x80000001, 0x00000000]
    assert bits(out["r"]).tolist() == 0x00000003 and bits(out["q"]).tolist() == 0x80000001
    assert bits(out["abs_a"])[3] == 0x00000001


# --- the GPU kernels' layouts (kernels/recipe.cu), on the CPU -----------------------------------------


def map_offsets(words: tuple[int, ...], count: int) -> np.ndarray:
    """scale_index(map, e) of common.cuh for e < count, read from a ScaleMap's words: per dim (innermost
    last) extent, block and stride, as the kernel decomposes e."""
    rank = words[0]
    dims = [(words[1 + 7 * i], words[4 + 7 * i], words[7 + 7 * i]) for i in range(rank)]
    e = np.arange(count, dtype=np.int64)
    offset = np.zeros_like(e)
    for extent, block, stride in reversed(dims[1:]):
        e, coordinate = np.divmod(e, extent)
        offset += coordinate // block * stride
    return offset + e // dims[0][1] * dims[0][2]


LAYOUT_CASES = [((37, 11, 5), axes) for axes in ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))] + [
    ((4, 1, 6), (1,)), ((4, 1, 6), (0, 1)), ((1, 1), (0, 1)), ((7,), (0,)), ((3, 2, 4, 5, 2), (0, 2, 4)),
    ((2, 3) * 4, (0, 2, 4, 6)), ((2, 3) * 4, (1, 3, 5, 7))]


@pytest.mark.parametrize("shape,axes", LAYOUT_CASES, ids=[f"{s}-{a}" for s, a in LAYOUT_CASES])
def test_reduce_layout_indexes_as_numpy(shape, axes) -> None:
    """Output o of a reduction reads exactly the elements NumPy groups into it (the input moved so that the
    reduced axes come last, row-major); a contiguous layout's are the run at o * count."""
    from netdsl.backends.cupy.recipe_layers import reduce_layout

    layout = reduce_layout(shape, axes)
    kept = [a for a in range(len(shape)) if a not in axes]
    expected = np.arange(math.prod(shape)).reshape(shape).transpose(kept + list(axes))
    expected = expected.reshape(math.prod(shape[a] for a in kept), math.prod(shape[a] for a in axes))
    assert (layout.outputs, layout.count) == expected.shape
    half = len(layout.words) // 2
    got = map_offsets(layout.words[:half], layout.outputs)[:, None] + map_offsets(layout.words[half:], layout.count)
    assert np.array_equal(got, expected)
    if layout.contiguous:
        assert np.array_equal(got, np.arange(got.size).reshape(got.shape))


BROADCAST_CASES = [((7, 33), (7, 33)), ((7, 1), (1, 33)), ((1, 1), (7, 33)), ((7, 33), (1, 1)), ((5, 1, 9), (1, 3, 1)),
                   ((2, 3, 1, 4), (2, 1, 5, 4)), ((1,), (9,)), ((), ()), ((2, 1) * 4, (1, 2) * 4)]


@pytest.mark.parametrize("a_shape,b_shape", BROADCAST_CASES, ids=[f"{a}x{b}" for a, b in BROADCAST_CASES])
def test_binary_maps_broadcast_as_numpy(a_shape, b_shape) -> None:
    from netdsl.backends.cupy.recipe_layers import binary_words

    words = binary_words(a_shape, b_shape)
    shape = np.broadcast_shapes(a_shape, b_shape)
    n, half = math.prod(shape), len(words) // 2
    for side, side_shape in ((slice(None, half), a_shape), (slice(half, None), b_shape)):
        expected = np.broadcast_to(np.arange(math.prod(side_shape)).reshape(side_shape), shape).reshape(-1)
        assert np.array_equal(map_offsets(words[side], n), expected)


@pytest.mark.parametrize("shape,axes", [((1 << 26,), (0,)), ((8192, 4096), (1,)), ((8192, 4096), (0,)),
                                        ((4096, 32, 128), (2,)), ((3, 100003), (1,)), ((100001, 3), (0,)),
                                        ((5, 7), (1,)), ((1, 528), (1,)), ((2**31 - 1,), (0,))])
def test_reduce_plan_parts_are_never_empty_and_two_launches_suffice(shape, axes) -> None:
    """Every part of a split reduction holds units (no group reduces nothing), and on an H100-sized
    machine (132 SMs) even a whole 2^31-element tensor takes at most two launches."""
    from netdsl.backends.cupy import abi
    from netdsl.backends.cupy.recipe_layers import MIN_UNITS, reduce_layout, reduce_plan

    threads = 132 * abi.MIN_CTAS_PER_SM * abi.THREADS
    launches = 0
    while True:
        layout = reduce_layout(shape, axes)
        chunked, units, group, splits = reduce_plan(layout, threads)
        launches += 1
        assert group & (group - 1) == 0 and 1 <= group <= abi.THREADS
        assert chunked == (layout.contiguous and layout.count % 16 == 0)
        assert (splits - 1) * group < units, "an empty part"
        assert splits == 1 or units >= splits * group * MIN_UNITS
        if splits == 1:
            break
        shape, axes = (layout.outputs, splits), (1,)
    assert launches <= 2


# --- the GPU backend (kernels/recipe.cu) against the NumPy backend, bit for bit ---------------------------

gpu = needs_gpu()
STORAGE = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
#: float32 values for every type: signed zeros, subnormals of each type (float32 2^-149.., bfloat16
#: 2^-133.., float16 2^-24..), ties (1 + 2^-8 is halfway between bfloat16 neighbours, 1 + 2^-24 between
#: float32 ones, 65520 rounds float16 to Inf), large and small magnitudes, +-Inf, NaN
POOL = np.array([0.0, -0.0, 1.0, -1.0, 1.5, 3.0, 7.0, 0.1, 1 / 3, 448.0, 2688.0, 2.0**-8, 2.0**-11, 2.0**-24,
                 3 * 2.0**-24, 1 + 2.0**-8, 1 + 2.0**-11, 1 + 2.0**-23, 1 + 2.0**-12, 2.0**-14, 2.0**-25, 2.0**-126,
                 2.0**-127, 3 * 2.0**-149, 2.0**-149, -(2.0**-149), 2.0**-133, -(2.0**-130), 65504.0, 65520.0, 1e38,
                 3.4e38, -3.4e38, float(np.finfo(np.float32).max), np.inf, -np.inf, np.nan], np.float32)
#: non-canonical NaNs (negative, signalling, with a payload) by storage type
ODD_NANS = {"float32": [0xFFC00001, 0x7F800001], "float16": [0xFE01, 0x7C01], "bfloat16": [0xFFC1, 0x7F81]}


def typed(values: np.ndarray, type_name: str) -> np.ndarray:
    """float32 ``values`` rounded to a float type's storage (NumPy's and ml_dtypes' own casts)."""
    with np.errstate(over="ignore"):
        return np.asarray(values, np.float32).astype(STORAGE[type_name])


def special(shape: tuple[int, ...], type_name: str, rng: np.random.Generator, nan: float = 0.01) -> np.ndarray:
    """Values over the type's whole range (subnormals to overflow), a third of them from POOL, with NaN
    (non-canonical ones too) at rate ``nan``."""
    count = math.prod(shape)
    with np.errstate(over="ignore"):
        x = (rng.standard_normal(count) * 2.0 ** rng.uniform(-150, 128, count)).astype(np.float32)
    pick = rng.random(count)
    x[pick < 1 / 3] = rng.choice(POOL[~np.isnan(POOL)], int((pick < 1 / 3).sum()))
    out = typed(x, type_name)
    raw = out.view(np.uint32 if type_name == "float32" else np.uint16)
    odd = np.flatnonzero(pick > 1 - nan)
    raw[odd] = rng.choice(ODD_NANS[type_name], odd.size)
    return out.reshape(shape)


def same_bits(got: np.ndarray, want: np.ndarray, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, got.shape, want.dtype, want.shape)
    width = {2: np.uint16, 4: np.uint32}[want.dtype.itemsize]
    differ = got.view(width) != want.view(width)
    assert not differ.any(), f"{what}: {int(differ.sum())} of {want.size} differ, first at {np.argwhere(differ)[0]}"


def on_both(text: str, **inputs: np.ndarray) -> None:
    """The network on the GPU, fused and not, against the NumPy backend (tests/test_gpu_fusion.py)."""
    from netdsl.backends.cupy.fusion import UNARY_REDUCE
    from tests.test_gpu_fusion import run_three_ways

    run_three_ways(text, inputs, UNARY_REDUCE if "fused_" in text else None)


def dims(shape: tuple[int, ...]) -> str:
    return ", ".join(map(str, shape))


@gpu
@pytest.mark.parametrize("type_name", list(STORAGE))
def test_gpu_unary_and_cast(type_name: str) -> None:
    x = special((7, 333), type_name, np.random.default_rng(1))  # 2331 elements: a partial last chunk
    text = (f"input x : {type_name}[7, 333]\na = unary(x, op=abs)\nn = unary(x, op=neg)\n"
            + "".join(f"c_{t} = cast(x, to_type={t})\n" for t in STORAGE) + f"output a, n, {', '.join(f'c_{t}' for t in STORAGE)}\n")
    on_both(text, x=x)


@gpu
@pytest.mark.parametrize("type_name", list(STORAGE))
def test_gpu_elementwise_every_pair_of_specials(type_name: str) -> None:
    """Every op on every pair of POOL values and odd NaNs ((P, 1) against (1, P): broadcasting)."""
    pool = typed(POOL, type_name)
    pool = np.concatenate([pool, np.array(ODD_NANS[type_name], pool.view(np.uint32 if type_name == "float32"
                                                                         else np.uint16).dtype).view(pool.dtype)])
    p = pool.size
    ops = ("sum", "sub", "prod", "div", "max", "min")
    text = (f"input a : {type_name}[{p}, 1]\ninput b : {type_name}[1, {p}]\n"
            + "".join(f"{op} = elementwise(a, b, op={op})\n" for op in ops) + f"output {', '.join(ops)}\n")
    on_both(text, a=pool.reshape(p, 1), b=pool.reshape(1, p))


BINARY_SHAPES = [((7, 33), (7, 33)), ((7, 1), (1, 33)), ((1, 1), (7, 33)), ((7, 33), (1, 1)), ((5, 1, 9), (1, 3, 1)),
                 ((2, 3, 1, 4), (2, 1, 5, 4)), ((1,), (9,)), ((), ()), ((0, 3), (1, 3)), ((1001, 17), (1, 17)),
                 ((2, 1) * 4, (1, 2) * 4)]


@gpu
@pytest.mark.parametrize("type_name", list(STORAGE))
@pytest.mark.parametrize("a_shape,b_shape", BINARY_SHAPES, ids=[f"{a}x{b}" for a, b in BINARY_SHAPES])
def test_gpu_elementwise_broadcasts(type_name: str, a_shape, b_shape) -> None:
    rng = np.random.default_rng(len(a_shape) * 100 + math.prod(a_shape))
    ops = ("sum", "sub", "prod", "div", "max", "min")
    text = (f"input a : {type_name}[{dims(a_shape)}]\ninput b : {type_name}[{dims(b_shape)}]\n"
            + "".join(f"{op} = elementwise(a, b, op={op})\n" for op in ops) + f"output {', '.join(ops)}\n")
    on_both(text, a=special(a_shape, type_name, rng), b=special(b_shape, type_name, rng))


REDUCE_SHAPES = LAYOUT_CASES + [
    ((0, 5), (1,)), ((1 << 20,), (0,)), ((3, 100003), (1,)), ((100001, 3), (0,)), ((64, 4096), (1,)),
    ((512, 8, 128), (2,)), ((96, 50), (0,)), ((33, 5, 160), (0, 2))]


def reduce_text(type_name: str, shape: tuple[int, ...], axes: tuple[int, ...], keep: bool) -> str:
    """max and min, and abs -> max and neg -> min (fused on the GPU) over ``axes``."""
    attrs = f"axes=[{dims(axes)}], keep_dims={'true' if keep else 'false'}"
    return (f"input x : {type_name}[{dims(shape)}]\nmx = reduce(x, op=max, {attrs})\nmn = reduce(x, op=min, {attrs})\n"
            f"a = unary(x, op=abs)\nfused_amax = reduce(a, op=max, {attrs})\nn = unary(x, op=neg)\n"
            f"fused_nmin = reduce(n, op=min, {attrs})\noutput mx, mn, fused_amax, fused_nmin\n")


@gpu
@pytest.mark.parametrize("type_name", list(STORAGE))
@pytest.mark.parametrize("shape,axes", REDUCE_SHAPES, ids=[f"{s}-{a}" for s, a in REDUCE_SHAPES])
def test_gpu_reduce(type_name: str, shape, axes) -> None:
    """Three inputs: specials with sparse NaN (a NaN late in a large tensor, too); signed zeros only
    (-0 everywhere, +0 in some sets: the sign of a zero max/min); zeros with tiny negatives."""
    rng = np.random.default_rng(math.prod(shape) + len(axes))
    size = math.prod(shape)
    specials = special(shape, type_name, rng, nan=min(0.01, 3 / max(size, 1)))
    zeros = np.full(size, -0.0, np.float32)
    zeros[rng.random(size) < 0.02] = 0.0
    tiny = zeros.copy()
    tiny[rng.random(size) < 0.01] = -{"float32": 2.0**-149, "float16": 2.0**-24, "bfloat16": 2.0**-133}[type_name]
    for keep in (False, True):
        text = reduce_text(type_name, shape, axes, keep)
        for x in (specials, typed(zeros, type_name).reshape(shape), typed(tiny, type_name).reshape(shape)):
            on_both(text, x=x)


@gpu
@pytest.mark.parametrize("recipe", sorted((EXAMPLES / "recipes").glob("*.net")), ids=lambda p: p.stem)
@pytest.mark.parametrize("shape", [(48, 512), (7, 256), (1, 128)])
def test_gpu_recipes_end_to_end(recipe, shape) -> None:
    """The shipped recipes on bfloat16 weights over its whole finite range (subnormals, -0, ties,
    huge and tiny rows): cupy == numpy, fused and not; a NaN weight fails alike on both."""
    from netdsl.backends.cupy import BACKEND as CUPY
    from netdsl.backends.cupy.fusion import UNARY_REDUCE
    from netdsl.backends.numpy import BACKEND as NUMPY

    w = special(shape, "bfloat16", np.random.default_rng(shape[0]), nan=0.0)
    w[~np.isfinite(w.astype(np.float32))] = 0.5
    w[0] *= ml_dtypes.bfloat16(2.0**-120)  # a row of subnormals and zeros
    network = netdsl.load(recipe).bind({"w": shape})
    prepared = network.prepare_inputs({"w": w})
    want = NUMPY.run(network.graph, prepared)
    assert (UNARY_REDUCE in {step.kind for step in CUPY.schedule(network.graph)}) == ("unary(" in recipe.read_text())
    for fusion in (True, False):
        try:
            CUPY.fusion = fusion
            got = CUPY.run(network.graph, prepared)
        finally:
            CUPY.fusion = None
        for name in want:
            assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, name
            assert got[name].tobytes() == want[name].tobytes(), (name, fusion)
    w[-1, -1] = np.nan
    if recipe.stem != "mxfp8_weights":  # MXFP8's scales come from each block alone: NaN is data there
        messages = []
        for backend in ("numpy", "cupy"):
            with pytest.raises(ValueError) as info:
                netdsl.load(recipe).run({"w": w}, backend=backend)
            messages.append(str(info.value))
        assert messages[0] == messages[1]
