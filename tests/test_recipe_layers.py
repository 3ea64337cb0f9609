"""The recipe layers (unary, reduce, elementwise, cast), named dimensions and constant folding:
values against IEEE 754 facts and float64 arithmetic (docs/semantics.md, "Recipe layers"), and a failing
input for every rule."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import netdsl
from netdsl import ModelError
from tests.conftest import EXAMPLES, backends

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


@pytest.mark.parametrize("backend", [
    "numpy",
    pytest.param("cupy", marks=[*backends()[1].marks, pytest.mark.xfail(
        strict=True, reason="known gap, issue 14 left open: the cupy recipe layers run CuPy's own float kernels, "
        "which flush subnormals to zero on the H100 (2^-149 * 1 gave 0); netdsl's own kernels don't")])])
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
