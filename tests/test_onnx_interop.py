"""ONNX in and out (docs/onnx.md): models made by onnx.helper for every op/type/opset row, TensorRT's
trt-domain ops with the parser's defaults, cutting whole models, names, every bad file, export of every
example (onnx.checker, import(export(m)) is the same IR, onnxruntime and onnx.reference give the same bits).

Expected values come from onnx's reference evaluator, onnxruntime (CPU, graph optimizations off), or the
independent oracle tests/oracle.py; never from netdsl.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import oracle
import pytest

import netdsl
from netdsl import arrays
from netdsl.cli import main as cli_main
from netdsl.diagnostics import UsageError
from tests.conftest import backends

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from netdsl.interop.onnx import export_model  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "onnx"
NETS = sorted(EXAMPLES.glob("*.net"))


def make_model(path: Path, nodes, inputs=(), outputs=(), initializers=(), opset: int = 21, trt: bool = False,
               value_info=()) -> Path:
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("trt", 1)] if trt else [])
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(initializers),
                              value_info=list(value_info))
    onnx.save(helper.make_model(graph, opset_imports=opsets), path)
    return path


def info(name: str, elem_type: int, shape) -> object:
    return helper.make_tensor_value_info(name, elem_type, list(shape))


def const(name: str, array) -> object:
    return numpy_helper.from_array(np.asarray(array), name)


def ir(graph) -> tuple:
    """What import(export(m)) must preserve: inputs, constants (type and bits), layers with their checked
    plans, outputs. Attributes that only restate the plan (an ignored per-tensor axis, a block_shape the
    scale's shape implies) are compared through the plan."""
    return ([(v.name, v.type) for v in graph.inputs],
            [(v.name, v.type, np.asarray(v.data).tobytes()) for v in graph.constants],
            [(n.op.name, n.inputs, n.outputs, n.resolution) for n in graph.nodes],
            graph.outputs)


def at_least(model, version: int):
    """``model`` run as opset ``version`` where it is older. The reference evaluator implements
    QuantizeLinear/DequantizeLinear from opset 19; the older ops read int8 and float32 exactly as 19 does."""
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version < version:
            opset.version = version
    return model


def same_bits(a, b) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.view(np.uint8).tobytes() == b.view(np.uint8).tobytes()


def cli(*args: str, capsys) -> tuple[int, str, str]:
    code = cli_main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def ort_session(path: Path):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# --- export of every example, and import(export(m)) ----------------------------------------------------


@pytest.mark.parametrize("model", NETS, ids=[p.stem for p in NETS])
def test_import_of_export_is_the_same_ir(model: Path, tmp_path) -> None:
    net = netdsl.load(model)
    exported = export_model(net.graph)  # onnx.checker.check_model passes inside
    onnx.checker.check_model(exported)
    path = tmp_path / f"{model.stem}.onnx"
    onnx.save(exported, path)
    assert ir(netdsl.load(path).graph) == ir(net.graph)


@pytest.mark.parametrize("form", ["net", "yaml"])
def test_cli_export_then_import_writes_a_model_with_the_same_ir(form: str, tmp_path, capsys) -> None:
    for model in NETS:
        onnx_path = tmp_path / f"{model.stem}.onnx"
        assert cli("export", str(model), "-o", str(onnx_path), capsys=capsys)[0] == 0
        written = tmp_path / f"{model.stem}.{form}"
        assert cli("import", str(onnx_path), "-o", str(written), capsys=capsys)[0] == 0
        assert ir(netdsl.load(written).graph) == ir(netdsl.load(model).graph), model.stem


#: the lowest opset that expresses each example's layers (docs/onnx.md, "Export")
OPSETS = {"quantize": 10, "int8_per_channel": 13, "fp8_per_tensor": 23, "block_quantization": 21,
          "int4_weight_only": 21, "nvfp4_weights": 23, "mxfp4_weights": 24, "dynamic_quantize": 23,
          "mxfp8": 24, "nvfp4_bf16": 23}


@pytest.mark.parametrize("name,opset", OPSETS.items())
def test_export_uses_the_lowest_opset(name: str, opset: int) -> None:
    model = export_model(netdsl.load(EXAMPLES / f"{name}.net").graph)
    assert {o.domain: o.version for o in model.opset_import}[""] == opset


#: where onnxruntime (1.32, CPU) can't give the bits of an exported standard-op example, and why
ORT_LACKS = {
    "mxfp4_weights": "no CPU kernel for DequantizeLinear(24) with a float8e8m0 scale",
    "nvfp4_weights": "no CPU kernel for DequantizeLinear(23) with float4e2m1 data",
}
#: outputs onnxruntime computes but can't hand to NumPy ("No corresponding Numpy type for Tensor Type. Int4x2")
ORT_INT4 = {"int4_weight_only": ["weight_q"]}


def _standard(model) -> bool:
    return all(n.domain in ("", "ai.onnx") for n in model.graph.node)


@pytest.mark.parametrize("model", NETS, ids=[p.stem for p in NETS])
def test_exported_examples_run_with_the_same_bits(model: Path, tmp_path) -> None:
    net = netdsl.load(model)
    exported = export_model(net.graph)
    if not _standard(exported):
        pytest.skip("DynamicQuantize or N-D blocks: trt-domain ops, which only TensorRT runs")
    path = tmp_path / f"{model.stem}.onnx"
    onnx.save(exported, path)
    rng = np.random.default_rng(7)
    feeds = net.prepare_inputs({n: arrays.random_input(t, rng) for n, t in net.inputs.items()})
    ours = net.run(feeds, backend="numpy")
    reference = ReferenceEvaluator(at_least(onnx.load(path), 19)).run(None, feeds)
    for name, value in zip(net.graph.outputs, reference):
        assert same_bits(ours[name], value), name
    if model.stem in ORT_LACKS:
        return
    wanted = [n for n in net.graph.outputs if n not in ORT_INT4.get(model.stem, [])]
    for name, value in zip(wanted, ort_session(path).run(wanted, feeds)):
        assert same_bits(ours[name], value), name  # fp8 comes back as its uint8 codes: the same bytes


# --- every op / type / opset row, from files onnx.helper writes ----------------------------------------

F, F16, BF16 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16
I8, I4, FP8, FP4, E8M0 = (TensorProto.INT8, TensorProto.INT4, TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT4E2M1,
                          TensorProto.FLOAT8E8M0)
STORAGE = {F: np.float32, F16: np.float16, BF16: ml_dtypes.bfloat16, I8: np.int8, I4: ml_dtypes.int4,
           FP8: ml_dtypes.float8_e4m3fn, FP4: ml_dtypes.float4_e2m1fn, E8M0: ml_dtypes.float8_e8m0fnu}

#: (opset, x type, scale type, quantized type, granularity): each row is a QuantizeLinear then a
#: DequantizeLinear of what it gives, as ONNX first allows it (docs/onnx.md, "The type table")
ROWS = [
    (10, F, F, I8, "tensor"), (13, F, F, I8, "channel"), (19, F, F, FP8, "tensor"), (19, F16, F16, I8, "tensor"),
    (19, BF16, BF16, FP8, "channel"), (21, F, F, I4, "block"), (21, F, F, I8, "block"), (21, F16, F16, FP8, "block"),
    (23, F, F, FP4, "block"), (23, BF16, BF16, FP4, "tensor"), (24, F, F, I4, "channel"), (25, F16, F16, FP8, "block"),
]


def _row_model(path: Path, opset: int, x_type: int, scale_type: int, q_type: int, granularity: str):
    rng = np.random.default_rng(opset * 100 + q_type)
    x = (rng.standard_normal((4, 32)) * 3).astype(np.float32).astype(STORAGE[x_type])
    scale_shape = {"tensor": (), "channel": (4,), "block": (4, 2)}[granularity]
    scale = (rng.uniform(0.05, 0.5, scale_shape)).astype(np.float32).astype(STORAGE[scale_type])
    attributes = {"tensor": {}, "channel": {"axis": 0}, "block": {"axis": 1, "block_size": 16}}[granularity]
    zero_point = const("zp", np.zeros(scale_shape, STORAGE[q_type]))
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q", **attributes),
             helper.make_node("DequantizeLinear", ["q", "s"], ["y"], name="dq", **attributes)]
    make_model(path, nodes, [info("x", x_type, x.shape)], [info("q", q_type, x.shape), info("y", scale_type, x.shape)],
               [const("s", scale), zero_point], opset=opset)
    return x


@pytest.mark.parametrize("row", ROWS, ids=[f"opset{r[0]}-{r[1]}-{r[2]}-{r[3]}-{r[4]}" for r in ROWS])
def test_every_row_reads_as_the_reference_evaluator_computes(row, tmp_path) -> None:
    path = tmp_path / "row.onnx"
    x = _row_model(path, *row)
    ours = netdsl.load(path).run({"x": x}, backend="numpy")
    model = at_least(onnx.load(path), 19)
    if row[1] != F:
        # below opset 23 the reference divides in x's type; TensorRT (and netdsl) divide in float32, which
        # the reference does with precision=FLOAT (opset 23+): run the reference that way
        model = at_least(model, 23)
        model.graph.node[0].attribute.append(helper.make_attribute("precision", F))
    q, y = ReferenceEvaluator(model).run(None, {"x": x})
    assert same_bits(ours["q"], q) and same_bits(ours["y"], y)


def test_trt_parser_defaults_and_types(tmp_path) -> None:
    """The parser's defaults: QuantizeLinear without zero point or output_dtype gives INT8 (ONNX says
    UINT8); DequantizeLinear's output is its scale's type; axis 1 for a per-channel scale."""
    w = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    nodes = [helper.make_node("QuantizeLinear", ["w", "s"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s16"], ["y"], name="dq")]
    path = make_model(tmp_path / "m.onnx", nodes, [], [info("y", F16, (3, 4))],
                      [const("w", w), const("s", np.float32(0.5)), const("s16", np.array([1, 2, 0.5, 4], np.float16))])
    net = netdsl.load(path)
    assert str(net.graph.values["q"].type) == "int8[3, 4]" and str(net.outputs["y"]) == "float16[3, 4]"
    assert net.graph.nodes[1].attrs.axis == 1
    y = net.run({}, backend="numpy")["y"]
    q = oracle.quantize(w, np.float32(0.5), "int8")
    assert np.array_equal(np.asarray(y, np.float64), oracle.dequantize(q, np.array([1, 2, 0.5, 4]), "float16", axis=1))


# --- TensorRT's trt-domain ops --------------------------------------------------------------------------


def test_modelopt_nvfp4_activation_pattern(tmp_path) -> None:
    """ModelOpt's export (modelopt/torch/quantization/export_onnx.py): trt::TRT_FP4DynamicQuantize, then
    trt::DequantizeLinear of the fp8 scale by the global scale, then of the fp4 data by that."""
    x = ((np.arange(64, dtype=np.float32).reshape(2, 32) - 30) / 7).astype(np.float32)
    nodes = [helper.make_node("TRT_FP4DynamicQuantize", ["x", "gs"], ["x_f4", "sx_f8"], name="dynq", domain="trt",
                              axis=-1, block_size=16, scale_type=FP8),
             helper.make_node("DequantizeLinear", ["sx_f8", "gs"], ["sx"], name="dq_scale", domain="trt"),
             helper.make_node("DequantizeLinear", ["x_f4", "sx"], ["y"], name="dq", domain="trt", axis=-1,
                              block_size=16)]
    path = make_model(tmp_path / "m.onnx", nodes, [info("x", F, x.shape)], [info("y", F, x.shape)],
                      [const("gs", np.float32(0.01))], trt=True)
    y = netdsl.load(path).run({"x": x}, backend="numpy")["y"]
    data, scale = oracle.dynamic_quantize(x, np.float32(0.01), axis=1, block_size=16)
    assert np.array_equal(np.asarray(y, np.float64), oracle.dequantize(data, oracle.dequantize(scale, np.float32(0.01))))


def test_modelopt_mxfp8_activation_pattern(tmp_path) -> None:
    """ModelOpt's MXFP8 export (export_onnx.py, export_mxfp8): trt::TRT_MXFP8DynamicQuantize, then
    trt::TRT_MXFP8DequantizeLinear of its data by its e8m0 scale, output_dtype the input's type."""
    x = ((np.arange(128, dtype=np.float32).reshape(2, 64) - 50) / 3).astype(np.float16)
    nodes = [helper.make_node("TRT_MXFP8DynamicQuantize", ["x"], ["x_f8", "sx_ui8"], name="dynq", domain="trt",
                              axis=-1, block_size=32, output_dtype=FP8),
             helper.make_node("TRT_MXFP8DequantizeLinear", ["x_f8", "sx_ui8"], ["y"], name="dq", domain="trt",
                              axis=-1, block_size=32, output_dtype=F16)]
    path = make_model(tmp_path / "m.onnx", nodes, [info("x", F16, x.shape)], [info("y", F16, x.shape)], trt=True)
    net = netdsl.load(path)
    assert str(net.outputs["y"]) == "float16[2, 64]"
    data, scale = oracle.dynamic_quantize(x, axis=-1, block_size=32, output_type="fp8", scale_type="e8m0")
    expected = oracle.dequantize(data, scale, "float16", block_shape=[1, 32])
    assert np.array_equal(np.asarray(net.run({"x": x}, backend="numpy")["y"], np.float64), expected)


def test_trt_op_defaults(tmp_path) -> None:
    """Defaults from onnx-tensorrt's importers: TRT_FP4DynamicQuantize axis 1, block_size 16;
    TRT_MXFP8DynamicQuantize axis -1, block_size 32; TRT_MXFP8DequantizeLinear reads UINT8 scales as e8m0
    and outputs FLOAT; TRT_FP8/INT4QuantizeLinear quantize to FP8/INT4; TRT_BlockQuantize to FP8."""
    x = ((np.arange(128, dtype=np.float32).reshape(2, 64) - 60) / 9).astype(np.float32)
    scale_codes = np.array([[120, 121], [125, 127]], np.uint8)  # e8m0 2^-7, 2^-6, 2^-2, 2^0
    nodes = [helper.make_node("TRT_FP4DynamicQuantize", ["x", "one"], ["a", "a_s"], name="fp4", domain="trt"),
             helper.make_node("TRT_MXFP8DynamicQuantize", ["x"], ["b", "b_s"], name="mx", domain="trt"),
             helper.make_node("TRT_MXFP8DequantizeLinear", ["w8", "codes"], ["c"], name="mxdq", domain="trt"),
             helper.make_node("TRT_FP8QuantizeLinear", ["x", "one"], ["d"], name="fp8q", domain="trt"),
             helper.make_node("TRT_INT4QuantizeLinear", ["x", "one"], ["e"], name="int4q", domain="trt"),
             helper.make_node("TRT_BlockQuantize", ["x", "bs"], ["f"], name="blockq", domain="trt",
                              block_shape=[2, 32])]
    w8 = np.linspace(-4, 4, 128, dtype=np.float32).reshape(2, 64).astype(ml_dtypes.float8_e4m3fn)
    outputs = [info(n, 0, ()) for n in ("a", "a_s", "b", "b_s", "c", "d", "e", "f")]
    path = make_model(tmp_path / "m.onnx", nodes, [info("x", F, x.shape)], outputs,
                      [const("one", np.float32(1)), const("codes", scale_codes), const("w8", w8),
                       const("bs", np.array([[0.5, 0.25]], np.float32))], trt=True)
    net = netdsl.load(path)
    out = net.run({"x": x}, backend="numpy")
    types = {n: str(t) for n, t in net.outputs.items()}
    assert types == {"a": "fp4[2, 64]", "a_s": "fp8[2, 4]", "b": "fp8[2, 64]", "b_s": "e8m0[2, 2]",
                     "c": "float32[2, 64]", "d": "fp8[2, 64]", "e": "int4[2, 64]", "f": "fp8[2, 64]"}
    data, scale = oracle.dynamic_quantize(x, np.float32(1), axis=1, block_size=16)
    assert np.array_equal(np.asarray(out["a_s"], np.float64), scale)
    data, scale = oracle.dynamic_quantize(x, axis=-1, block_size=32, output_type="fp8", scale_type="e8m0")
    assert np.array_equal(np.asarray(out["b_s"], np.float64), scale)
    scales = np.exp2(scale_codes.astype(np.float64) - 127)
    assert np.array_equal(np.asarray(out["c"], np.float64),
                          oracle.dequantize(np.asarray(w8, np.float64), scales, block_shape=[1, 32]))
    assert np.array_equal(np.asarray(out["f"], np.float64),
                          oracle.quantize(x, np.array([[0.5, 0.25]]), "fp8", block_shape=[2, 32]))


def test_saturate_0_runs_saturating_with_a_warning(tmp_path, capsys) -> None:
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="quant", saturate=0)]
    path = make_model(tmp_path / "m.onnx", nodes, [info("x", F, (4,))], [info("q", FP8, (4,))],
                      [const("s", np.float32(1)), const("zp", np.zeros((), ml_dtypes.float8_e4m3fn))], opset=19)
    x = tmp_path / "x.npy"
    np.save(x, np.array([1000, -1000, 1, np.inf], np.float32))
    code, out, err = cli("run", str(path), "--input", f"x={x}", capsys=capsys)
    assert code == 0 and "[ 448. -448.    1.  448.]" in out
    assert err == (f"{path}: node 'quant' (QuantizeLinear): warning: saturate=0 is ignored by TensorRT's parser: "
                   "values saturate (netdsl runs it as TensorRT does)\n")


def test_constant_nodes_and_uint8_zero_point(tmp_path, capsys) -> None:
    scale = helper.make_node("Constant", [], ["s"], name="c", value=numpy_helper.from_array(np.float32(0.25)))
    nodes = [scale, helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="quant"),
             helper.make_node("DequantizeLinear", ["q", "s"], ["y"], name="dequant")]
    path = make_model(tmp_path / "m.onnx", nodes, [info("x", F, (2, 3))], [info("y", F, (2, 3))],
                      [const("zp", np.uint8(0))], opset=13)
    code, _, err = cli("check", "-v", str(path), capsys=capsys)
    assert code == 0
    assert err == f"{path}: node 'quant' (QuantizeLinear): warning: a uint8 zero point: TensorRT's parser quantizes to INT8 instead\n"


# --- cutting a whole model; names -----------------------------------------------------------------------


def _whole_model(path: Path, batch="batch") -> Path:
    """Relu -> Q -> DQ -> Relu, with ONNX names that are not identifiers."""
    nodes = [helper.make_node("Relu", ["x"], ["/model/relu/Relu_output_0"], name="/model/relu/Relu"),
             helper.make_node("QuantizeLinear", ["/model/relu/Relu_output_0", "s", "zp"], ["/q:0"], name="/q"),
             helper.make_node("DequantizeLinear", ["/q:0", "s", "zp"], ["/dq:0"], name="/dq"),
             helper.make_node("Relu", ["/dq:0"], ["out"], name="/out")]
    return make_model(path, nodes, [info("x", F, [batch, 8])], [info("out", F, [batch, 8])],
                      [const("s", np.float32(0.05)), const("zp", np.int8(0))], opset=13)


def test_a_whole_model_is_cut_to_its_quantization_part(tmp_path) -> None:
    net = netdsl.load(_whole_model(tmp_path / "m.onnx"), input_shapes={"x": (2, 8)})
    assert list(net.inputs) == ["/model/relu/Relu_output_0"]  # produced by a node netdsl does not run
    assert list(net.outputs) == ["/dq:0"]  # read by a node netdsl does not run
    assert [n.op.name for n in net.graph.nodes] == ["quantize", "dequantize"]
    assert str(net.inputs["/model/relu/Relu_output_0"]) == "float32[2, 8]"  # the given shape, through Relu


def test_names_stay_the_onnx_names_through_import(tmp_path, capsys) -> None:
    model = _whole_model(tmp_path / "m.onnx", batch=2)
    code, _, _ = cli("run", str(model), "--save", str(tmp_path / "a.npz"), capsys=capsys)
    assert code == 0 and list(np.load(tmp_path / "a.npz")) == ["/dq:0"]
    assert cli("import", str(model), "-o", str(tmp_path / "m.net"), capsys=capsys)[0] == 0
    text = (tmp_path / "m.net").read_text()
    assert 'alias _model_relu_Relu_output_0 = "/model/relu/Relu_output_0"' in text and 'alias _dq_0 = "/dq:0"' in text
    x = tmp_path / "x.npy"
    np.save(x, np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8))
    code, out, _ = cli("run", str(tmp_path / "m.net"), "--input", f"/model/relu/Relu_output_0={x}",
                       "--save", str(tmp_path / "b.npz"), capsys=capsys)
    assert code == 0 and out.startswith("/dq:0: float32[2, 8]")
    assert list(np.load(tmp_path / "b.npz")) == ["/dq:0"]
    assert cli("import", str(model), "-o", str(tmp_path / "m.yaml"), capsys=capsys)[0] == 0
    assert ir(netdsl.load(tmp_path / "m.yaml").graph) == ir(netdsl.load(tmp_path / "m.net").graph)
    # convert of an ONNX model is import
    assert cli("convert", str(model), "--to", "yaml", "-o", str(tmp_path / "c.yaml"), capsys=capsys)[0] == 0
    assert (tmp_path / "c.yaml").read_text() == (tmp_path / "m.yaml").read_text().replace("m.npz", "c.npz")
    code, _, err = cli("convert", str(model), "--to", "net", capsys=capsys)
    assert code == 2 and err == "netdsl: error: converting an ONNX model writes its constants beside the model: give -o FILE\n"


def test_an_unknown_symbolic_dimension_is_an_error_naming_it(tmp_path, capsys) -> None:
    model = _whole_model(tmp_path / "m.onnx")
    code, _, err = cli("check", str(model), capsys=capsys)
    assert code == 1
    assert err == (f"{model}: node '/q' (QuantizeLinear): error: '/model/relu/Relu_output_0' has symbolic "
                   "dimensions batch (float32[batch, 8]): give --input-shape /model/relu/Relu_output_0:D0,D1\n")
    assert cli("check", str(model), "--input-shape", "/model/relu/Relu_output_0:3,8", capsys=capsys)[0] == 0
    assert cli("check", str(model), "--input-shape", "x:3,8", capsys=capsys)[0] == 0
    code, _, err = cli("check", str(model), "--input-shape", "x:3,x", capsys=capsys)
    assert code == 2 and err == "netdsl: error: --input-shape takes NAME:D0,D1,... with non-negative integers, got 'x:3,x'\n"
    code, _, err = cli("check", str(model), "--input-shape", "y:3,8", capsys=capsys)
    assert code == 2 and err == ("netdsl: error: --input-shape names 'y', which is neither a graph input nor an "
                                 "input of the kept part; those are x, /model/relu/Relu_output_0\n")
    code, _, err = cli("check", str(EXAMPLES / "quantize.net"), "--input-shape", "x:3,8", capsys=capsys)
    assert code == 2 and err == ("netdsl: error: --input-shape is for ONNX models (a .net or .yaml model declares "
                                 "its shapes)\n")


def test_import_and_export_usage_errors(tmp_path, capsys) -> None:
    code, _, err = cli("import", str(EXAMPLES / "quantize.net"), "-o", str(tmp_path / "q.net"), capsys=capsys)
    assert code == 2 and err.startswith("netdsl: error: import reads an .onnx model")
    code, _, err = cli("export", str(EXAMPLES / "quantize.net"), "-o", str(tmp_path / "q.txt"), capsys=capsys)
    assert code == 2 and err == f"netdsl: error: export writes an .onnx file, not '{tmp_path / 'q.txt'}'\n"
    onnx_path = tmp_path / "q.onnx"
    assert cli("export", str(EXAMPLES / "quantize.net"), "-o", str(onnx_path), capsys=capsys)[0] == 0
    code, _, err = cli("import", str(onnx_path), "-o", str(tmp_path / "q.txt"), capsys=capsys)
    assert code == 2 and err == f"netdsl: error: import writes a .net or .yaml model, not '{tmp_path / 'q.txt'}'\n"
    assert not (tmp_path / "q.txt").exists()


# --- bad files: message and exit code --------------------------------------------------------------------


def test_truncated_and_wrong_files(tmp_path, capsys) -> None:
    whole = (_whole_model(tmp_path / "m.onnx", batch=2)).read_bytes()
    truncated = tmp_path / "t.onnx"
    truncated.write_bytes(whole[: len(whole) // 2])
    code, _, err = cli("check", str(truncated), capsys=capsys)
    assert code == 1 and err.startswith(f"{truncated}: error: not a readable ONNX model (")
    text = tmp_path / "text.onnx"
    text.write_text("input x : float32[2]\n")
    code, _, err = cli("run", str(text), capsys=capsys)
    assert code == 1 and err.startswith(f"{text}: error: not ")
    code, _, err = cli("check", str(tmp_path / "missing.onnx"), capsys=capsys)
    assert code == 2 and err == f"netdsl: error: cannot read model '{tmp_path / 'missing.onnx'}': no such file\n"


@pytest.mark.parametrize("fixture", ["conv_qdq.onnx", "modelopt_nvfp4_linear.onnx"])
def test_damaged_models_end_in_a_result_or_a_located_error(fixture: str, tmp_path, capsys) -> None:
    """Bytes of a real model overwritten at random (fixed seed): every run exits 0, 1 or 2, never with a
    traceback or an internal error."""
    original = (FIXTURES / fixture).read_bytes()
    rng = np.random.default_rng(2026)
    for attempt in range(150):
        data = bytearray(original)
        for _ in range(int(rng.integers(1, 6))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        path = tmp_path / f"m{attempt}.onnx"
        path.write_bytes(bytes(data))
        code, _, err = cli("run", str(path), capsys=capsys)
        assert code in (0, 1, 2) and "Traceback" not in err and "internal error" not in err, (attempt, err)


def test_non_zero_zero_point_is_an_error_naming_the_node(tmp_path, capsys) -> None:
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="quant")]
    path = make_model(tmp_path / "m.onnx", nodes, [info("x", F, (4,))], [info("q", TensorProto.UINT8, (4,))],
                      [const("s", np.float32(1)), const("zp", np.uint8(128))], opset=13)
    code, _, err = cli("check", str(path), capsys=capsys)
    assert code == 1
    assert err == (f"{path}: node 'quant' (QuantizeLinear): error: the zero point 'zp' holds 128: a non-zero zero "
                   "point is not supported (TensorRT supports only symmetric quantization)\n")


def test_unsupported_op_in_the_kept_part(tmp_path, capsys) -> None:
    nodes = [helper.make_node("Cast", ["s64"], ["s"], name="cast", to=F),
             helper.make_node("DequantizeLinear", ["w", "s"], ["y"], name="dq")]
    path = make_model(tmp_path / "m.onnx", nodes, [], [info("y", F, (4,))],
                      [const("s64", np.float64(0.5)), const("w", np.array([1, 2, 3, 4], np.int8))], opset=13)
    code, _, err = cli("run", str(path), capsys=capsys)
    assert code == 1
    assert err == (f"{path}: node 'dq' (DequantizeLinear): error: the scale 's' is computed by node 'cast' (Cast), "
                   "which netdsl does not run: a scale must be an initializer, a Constant node's output, or computed "
                   "by quantization layers from those\n")


def test_an_unknown_trt_quantization_op_is_an_error(tmp_path, capsys) -> None:
    nodes = [helper.make_node("TRT_FP4QDQ", ["w"], ["w_qdq"], name="wq", domain="trt", block_size=16),
             helper.make_node("QuantizeLinear", ["w_qdq", "s"], ["q"], name="q")]
    path = make_model(tmp_path / "m.onnx", nodes, [], [info("q", I8, (2, 16))],
                      [const("w", np.ones((2, 16), np.float32)), const("s", np.float32(1))], trt=True)
    code, _, err = cli("check", str(path), capsys=capsys)
    assert code == 1 and err.startswith(f"{path}: node 'wq' (TRT_FP4QDQ): error: TRT_FP4QDQ is not a quantization "
                                        "op TensorRT's parser reads (ModelOpt's placeholder")


def test_a_layer_rule_error_names_the_node(tmp_path, capsys) -> None:
    nodes = [helper.make_node("DequantizeLinear", ["w", "s"], ["y"], name="dq")]
    path = make_model(tmp_path / "m.onnx", nodes, [], [info("y", F, (4,))],
                      [const("s", np.float32(-1)), const("w", np.array([1, 2, 3, 4], np.int8))], opset=13)
    code, _, err = cli("check", str(path), capsys=capsys)
    assert code == 1 and err == f"{path}: node 'dq' (DequantizeLinear): error: every scale value must be finite and > 0; 's' holds -1.0\n"


def _external(tmp_path: Path, location: str) -> Path:
    tensor = const("s", np.float32(0.5))
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    nodes = [helper.make_node("QuantizeLinear", ["x", "s"], ["q"], name="quant")]
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    return make_model(folder / "m.onnx", nodes, [info("x", F, (4,))], [info("q", I8, (4,))], [tensor], opset=13)


def test_external_data_beside_the_model_is_read(tmp_path) -> None:
    path = _external(tmp_path, "weights.bin")
    (path.parent / "weights.bin").write_bytes(np.float32(0.5).tobytes())
    net = netdsl.load(path)
    assert net.graph.values["s"].data.tolist() == 0.5


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink"])
def test_external_data_outside_the_folder_is_refused(where: str, tmp_path, capsys) -> None:
    outside = tmp_path / "secret.bin"
    outside.write_bytes(np.float32(0.5).tobytes())
    location = {"absolute": str(outside), "dotdot": "../secret.bin", "symlink": "link.bin"}[where]
    path = _external(tmp_path, location)
    if where == "symlink":
        os.symlink(outside, path.parent / "link.bin")
    code, _, err = cli("check", str(path), capsys=capsys)
    assert code == 1 and err.startswith(f"{path}: initializer 's': error: its external data '{location}' ")
    assert "outside the model's folder" in err


def test_trust_paths_does_not_lift_the_onnx_rule(tmp_path, capsys) -> None:
    """The onnx package's loader reads external data only inside the model's folder: so does netdsl, with
    --trust-paths too (docs/onnx.md)."""
    (tmp_path / "secret.bin").write_bytes(np.float32(0.5).tobytes())
    path = _external(tmp_path, "../secret.bin")
    code, _, err = cli("check", str(path), "--trust-paths", capsys=capsys)
    assert code == 1 and "ONNX external data is read only from the model's folder and below" in err


def test_without_the_onnx_package_a_one_line_usage_error(tmp_path, capsys, monkeypatch) -> None:
    path = _whole_model(tmp_path / "m.onnx", batch=2)
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    code, _, err = cli("check", str(path), capsys=capsys)
    assert code == 2 and err == 'netdsl: error: ONNX files need the onnx package: pip install "netdsl[onnx]"\n'
    code, _, err = cli("export", str(EXAMPLES / "quantize.net"), "-o", str(tmp_path / "q.onnx"), capsys=capsys)
    assert code == 2 and err == 'netdsl: error: ONNX files need the onnx package: pip install "netdsl[onnx]"\n'
    assert not (tmp_path / "q.onnx").exists()
    with pytest.raises(UsageError, match=r'ONNX files need the onnx package: pip install "netdsl\[onnx\]"'):
        netdsl.load(path)


# --- real producers: the committed fixtures (tests/fixtures/onnx/make_fixtures.py) ----------------------


def _kept_values(path: Path, net, feeds: dict) -> dict:
    """Every kept layer's inputs and outputs as onnxruntime computes them running the whole model."""
    model = onnx.load(path)
    names = [v.name for v in net.graph.inputs] + [o for n in net.graph.nodes for o in n.outputs]
    model = onnx.shape_inference.infer_shapes(model)
    known = {v.name: v for v in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input)}
    del model.graph.output[:]
    model.graph.output.extend(known[n] for n in names)
    extended = path.parent / "extended.onnx"
    onnx.save(model, extended)
    return dict(zip(names, ort_session(extended).run(names, feeds)))


@pytest.mark.parametrize("backend", backends())
def test_onnxruntime_quantize_static_conv_net(backend: str, tmp_path) -> None:
    """onnxruntime's quantize_static(QuantFormat.QDQ, int8 symmetric) of a small conv net: every Q/DQ
    tensor netdsl computes has onnxruntime's bits, and onnx.reference agrees."""
    path = FIXTURES / "conv_qdq.onnx"
    net = netdsl.load(path)
    assert {n.op.name for n in net.graph.nodes} == {"quantize", "dequantize"}
    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)
    (tmp_path / "m.onnx").write_bytes(path.read_bytes())
    expected = _kept_values(tmp_path / "m.onnx", net, {"input": x})
    ours = net.run({v.name: expected[v.name] for v in net.graph.inputs}, backend=backend)
    assert ours and all(same_bits(ours[name], expected[name]) for name in ours)
    reference = ReferenceEvaluator(at_least(onnx.load(path), 19)).run(list(ours), {"input": x})
    assert all(same_bits(ours[name], value) for name, value in zip(ours, reference))


@pytest.mark.parametrize("backend", backends())
def test_modelopt_nvfp4_export_fixture(backend: str) -> None:
    """The graph ModelOpt's NVFP4 export writes for a Linear layer (see make_fixtures.py): the weight as
    DQ(w_f4, DQ(sw_f8, sw_f32), axis=-1, block_size=16), the activation through trt::TRT_FP4DynamicQuantize
    and two trt::DequantizeLinear; netdsl's weight has onnx.reference's bits."""
    path = FIXTURES / "modelopt_nvfp4_linear.onnx"
    net = netdsl.load(path)
    kinds = sorted(n.op.name for n in net.graph.nodes)
    assert kinds == ["dequantize", "dequantize", "dequantize", "dequantize", "dynamic_quantize"]
    (weight_dq,) = [n for n in net.graph.nodes if n.inputs[0] == "linear.weight_f4"]
    x = np.random.default_rng(5).standard_normal((2, 32)).astype(np.float32)
    ours = net.run({v.name: x for v in net.graph.inputs}, backend=backend)
    model = onnx.load(path)
    weight_only = helper.make_model(helper.make_graph(
        [n for n in model.graph.node if n.domain == "" and n.op_type == "DequantizeLinear"], "w", [],
        [info(weight_dq.outputs[0], F, ())], list(model.graph.initializer)), opset_imports=[helper.make_opsetid("", 23)])
    (reference,) = ReferenceEvaluator(weight_only).run(None, {})
    assert same_bits(ours[weight_dq.outputs[0]], reference)
