"""ONNX in and out (docs/onnx.md): a model's quantization layers read as TensorRT's ONNX parser reads them,
and a netdsl network written as an ONNX model.

Reading follows the parser's importer (onnx-tensorrt ``onnxOpImporters.cpp``: ``QuantDequantLinearHelper``
and the ``TRT_*`` importers), attribute names and defaults included: the granularity comes from the
scale's shape (``block_size`` is not read), ``saturate=0`` is ignored (values saturate; netdsl warns),
a zero point only chooses the quantized type and must hold zeros. Nodes of other kinds are not run: the
import keeps the quantization part (docs/onnx.md, "How a model is cut"). The ``onnx`` package is imported
only here, and only when an ONNX file is read or written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netdsl import dtypes, files
from netdsl.check import CheckedGraph, CheckedNode
from netdsl.diagnostics import Diagnostics, NodeLoc, UsageError
from netdsl.dtypes import DType
from netdsl.ir import MAX_VOLUME, Graph, Node, TensorType, Value
from netdsl.ops import OPS
from netdsl.ops.common import ScaleResolution
from netdsl.ops.dequantize import DEQUANTIZE, DequantizeAttrs
from netdsl.ops.dynamic_quantize import DYNAMIC_QUANTIZE, DynamicQuantizeAttrs, DynamicResolution
from netdsl.ops.granularity import ceil_div
from netdsl.ops.quantize import QuantizeAttrs

#: what to install for ONNX files
EXTRA = 'pip install "netdsl[onnx]"'
#: TensorRT's Dims::MAX_DIMS
MAX_RANK = 8
#: the ``trt`` domain of TensorRT's own ops, as ModelOpt and the parser name it
TRT_DOMAIN = "trt"

#: ONNX TensorProto element types of the netdsl types (onnx.TensorProto.FLOAT, ... ; ``onnx.proto``)
ELEMENT_TYPES: dict[int, DType] = {
    1: dtypes.FLOAT32, 10: dtypes.FLOAT16, 16: dtypes.BFLOAT16, 3: dtypes.INT8, 22: dtypes.INT4,
    17: dtypes.FP8, 23: dtypes.FP4, 24: dtypes.E8M0,
}
ONNX_TYPES: dict[DType, int] = {dtype: code for code, dtype in ELEMENT_TYPES.items()}
UINT8 = 2
#: element type names for messages (TensorProto.DataType names)
_TYPE_NAMES = {0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32",
               7: "INT64", 8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64",
               16: "BFLOAT16", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ",
               21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1", 24: "FLOAT8E8M0"}


def type_name(code: int) -> str:
    return _TYPE_NAMES.get(code, f"type {code}")


def require_onnx() -> Any:
    """The ``onnx`` module, or a usage error naming the extra to install."""
    try:
        import onnx
    except ImportError:
        raise UsageError(f"ONNX files need the onnx package: {EXTRA}") from None
    return onnx


class OnnxModelError(Exception):
    """An error located at a node (or the model as a whole)."""

    def __init__(self, loc: NodeLoc, message: str):
        super().__init__(message)
        self.loc = loc
        self.message = message


# --- the ops the parser maps to TensorRT's quantization layers ----------------------------------------


@dataclass(frozen=True)
class LayerKind:
    """How one ONNX op becomes a netdsl layer (the parser's importer for it)."""

    layer: str  # quantize | dequantize | dynamic_quantize
    custom_type: DType | None = None  # a TRT_* Q/DQ op's quantized type (the parser's customOpType)
    mx: bool = False  # TRT_MXFP8*: uint8 scale codes are e8m0, DQ output float32 unless output_dtype
    block_shape: bool = False  # TRT_Block*: the block_shape attribute is read
    dynamic: str | None = None  # dynamic_quantize: "nvfp4" | "mxfp8" | "nd"


#: op type -> kind; the default domain's and the trt domain's QuantizeLinear/DequantizeLinear read alike
#: (ModelOpt exports ``trt::DequantizeLinear``; the parser dispatches on the op type)
LAYERS: dict[str, LayerKind] = {
    "QuantizeLinear": LayerKind("quantize"),
    "DequantizeLinear": LayerKind("dequantize"),
    "TRT_FP8QuantizeLinear": LayerKind("quantize", dtypes.FP8),
    "TRT_FP8DequantizeLinear": LayerKind("dequantize", dtypes.FP8),
    "TRT_INT4QuantizeLinear": LayerKind("quantize", dtypes.INT4),
    "TRT_INT4DequantizeLinear": LayerKind("dequantize", dtypes.INT4),
    "TRT_MXFP8QuantizeLinear": LayerKind("quantize", dtypes.FP8, mx=True),
    "TRT_MXFP8DequantizeLinear": LayerKind("dequantize", dtypes.FP8, mx=True),
    "TRT_BlockQuantize": LayerKind("quantize", block_shape=True),
    "TRT_BlockDequantize": LayerKind("dequantize", block_shape=True),
    "TRT_FP4DynamicQuantize": LayerKind("dynamic_quantize", dynamic="nvfp4"),
    "TRT_MXFP8DynamicQuantize": LayerKind("dynamic_quantize", dynamic="mxfp8"),
    "TRT_DynamicQuantize": LayerKind("dynamic_quantize", dynamic="nd"),
}


def node_loc(file: str, index: int, node: Any) -> NodeLoc:
    name = node.name or f"#{index}"
    return NodeLoc(file, index + 1, 0, f"node '{name}' ({node.op_type})")


# --- reading a model file ------------------------------------------------------------------------------


def read_model(path: Path, diagnostics: Diagnostics) -> Any:
    """The ModelProto of ``path`` with its external data loaded, or None after a located error. External
    data must lie in the model's folder or below (``netdsl.files.confined``; the onnx package's own loader
    refuses anything else too, so ``--trust-paths`` does not lift it)."""
    onnx = require_onnx()
    file = str(path)
    whole = NodeLoc(file, 0, 0)
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except OSError:
        raise  # the file can't be opened: the caller's usage error
    except Exception as error:  # noqa: BLE001 - protobuf's decode errors have no common public base
        diagnostics.error(whole, f"not a readable ONNX model ({_first_line(error)})")
        return None
    if not model.HasField("graph") or (model.ir_version == 0 and not model.graph.node):
        diagnostics.error(whole, "not an ONNX model (no graph)")
        return None
    if not _texts_are_text(model):
        diagnostics.error(whole, "not a readable ONNX model (a name or op type is not UTF-8 text)")
        return None
    failed = False
    for tensor in _all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = {e.key: e.value for e in tensor.external_data}.get("location", "")
            try:
                if not location:
                    raise ValueError("its external data names no file")
                files.confined(location, path.parent)
            except ValueError as error:
                message = str(error) if not location else \
                    f"its external data '{location}' is outside the model's folder: ONNX external data is read " \
                    "only from the model's folder and below"
                diagnostics.error(NodeLoc(file, 0, 0, f"initializer '{tensor.name}'"), message)
                failed = True
    if failed:
        return None
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except Exception as error:  # noqa: BLE001 - onnx raises OSError, ValueError or its own checker errors
        diagnostics.error(whole, f"cannot read its external data ({_first_line(error)})")
        return None
    return model


def _texts_are_text(model: Any) -> bool:
    """protobuf hands a string field that is not UTF-8 over as bytes: every name the import reads is str."""
    graph = model.graph
    texts = [t.name for t in graph.initializer] + [v.name for v in list(graph.input) + list(graph.output)]
    texts += [o.domain for o in model.opset_import]
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        texts += [value.name, *(d.dim_param for d in value.type.tensor_type.shape.dim)]
    for tensor in graph.initializer:
        texts += [text for entry in tensor.external_data for text in (entry.key, entry.value)]
    for node in graph.node:
        texts += [node.name, node.op_type, node.domain, *node.input, *node.output, *(a.name for a in node.attribute)]
    return all(isinstance(text, str) for text in texts)


def _all_tensors(model: Any) -> list[Any]:
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        tensors += [attribute.t for attribute in node.attribute if attribute.HasField("t")]
    return tensors


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def parse_input_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    """``--input-shape NAME:D0,D1,...`` (NAME may contain ':'; the last one separates) -> name -> shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, sep, dims = item.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.split(",")) if dims.strip() else ()
        except ValueError:
            shape = None
        if not sep or not name or shape is None or any(d < 0 for d in shape):
            raise UsageError(f"--input-shape takes NAME:D0,D1,... with non-negative integers, got '{item}'")
        shapes[name] = shape
    return shapes


# --- the import ----------------------------------------------------------------------------------------


@dataclass
class _Import:
    model: Any
    file: str
    input_shapes: dict[str, tuple[int, ...]]
    diagnostics: Diagnostics
    graph: Graph = field(init=False)
    #: every tensor name of the model -> (node index, node) that produces it
    producers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    consumers: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    initializers: dict[str, Any] = field(default_factory=dict)
    value_types: dict[str, Any] = field(default_factory=dict)  # name -> TypeProto.Tensor
    used_shapes: set[str] = field(default_factory=set)
    #: the types the kept layers' outputs will have (the checker computes them again): what an op's
    #: defaults depend on (a DequantizeLinear's output type is its scale's type)
    layer_types: dict[str, TensorType] = field(default_factory=dict)
    #: the tensors kept layers read as data from outside the kept part (the network inputs)
    data_inputs: list[str] = field(default_factory=list)

    def run(self, name: str) -> Graph:
        onnx = require_onnx()
        self.graph = Graph(name, self.file)
        graph = self.model.graph
        self.opset = next((o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), 1)
        for tensor in graph.initializer:
            self.initializers[tensor.name] = tensor
        for index, node in enumerate(graph.node):
            for output in node.output:
                if output:
                    self.producers[output] = (index, node)
            for input_name in node.input:
                if input_name:
                    self.consumers.setdefault(input_name, []).append((index, node))
        self.value_types = self._value_types(onnx)
        kept = [(i, n) for i, n in enumerate(graph.node) if n.op_type in LAYERS and n.domain in ("", "ai.onnx",
                                                                                                 TRT_DOMAIN)]
        for index, node in enumerate(graph.node):
            if node.domain == TRT_DOMAIN and node.op_type not in LAYERS and ("Quant" in node.op_type
                                                                            or "QDQ" in node.op_type):
                hint = " (ModelOpt's placeholder: its NVFP4QuantExporter replaces it by DequantizeLinear " \
                       "layers; export with it first)" if node.op_type == "TRT_FP4QDQ" else ""
                self.diagnostics.error(node_loc(self.file, index, node), f"{node.op_type} is not a quantization "
                                       f"op TensorRT's parser reads{hint}")
        for index, node in kept:
            try:
                self.layer(index, node)
            except OnnxModelError as error:
                self.diagnostics.error(error.loc, error.message)
                for output in node.output:  # defined but untyped: later layers report nothing more
                    if output and output not in self.graph.values:
                        self.graph.values[output] = Value(output, "layer", node_loc(self.file, index, node))
        self.unread_inputs()
        self.outputs(kept)
        self.in_model_order()
        unknown = sorted(set(self.input_shapes) - self.used_shapes)
        if unknown:
            names = [v.name for v in self.model.graph.input if v.name not in self.initializers] + \
                [n for n in self.data_inputs if n not in {v.name for v in self.model.graph.input}]
            raise UsageError(f"--input-shape names '{unknown[0]}', which is neither a graph input nor an input of "
                             f"the kept part; those are {', '.join(names) or 'none'}")
        return self.graph

    def _value_types(self, onnx: Any) -> dict[str, Any]:
        """Every tensor's declared type, after applying --input-shape to the graph inputs and running ONNX
        shape inference (which can't see into trt-domain ops: those outputs are typed by netdsl)."""
        model = self.model
        for value in model.graph.input:
            shape = self.input_shapes.get(value.name)
            if shape is not None and value.type.HasField("tensor_type"):
                self.used_shapes.add(value.name)
                dims = value.type.tensor_type.shape.dim
                del dims[:]
                for extent in shape:
                    dims.add().dim_value = extent
        try:
            model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception:  # noqa: BLE001 - inference is a help here, not a requirement
            pass
        types = {}
        for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
            if value.type.HasField("tensor_type"):
                types[value.name] = value.type.tensor_type
        return types

    # --- tensors ---------------------------------------------------------------------------------------

    def value(self, name: str, loc: NodeLoc, role: str) -> Value:
        """The netdsl value for an ONNX tensor that a kept layer reads."""
        existing = self.graph.values.get(name)
        if existing is not None:
            return existing
        data = self.constant(name, loc)
        if data is not None:
            value = Value(name, "const", loc, type=TensorType(self.storage_type(name, data, loc), data.shape),
                          data=data)
        else:
            producer = self.producers.get(name)
            if producer is not None and role != "input":
                index, node = producer
                raise OnnxModelError(loc, f"the {role} '{name}' is computed by node "
                                          f"'{node.name or '#' + str(index)}' ({node.op_type}), which netdsl does "
                                          f"not run: a {role} must be an initializer, a Constant node's output, or "
                                          f"computed by quantization layers from those")
            self.data_inputs.append(name)
            value = Value(name, "input", loc, type=self.input_type(name, loc))
        self.graph.values[name] = value
        return value

    def constant(self, name: str, loc: NodeLoc) -> np.ndarray | None:
        """An initializer's or Constant node's values as an array (ONNX's NumPy form), else None."""
        onnx = require_onnx()
        tensor = self.initializers.get(name)
        if tensor is None:
            producer = self.producers.get(name)
            if producer is None or producer[1].op_type != "Constant" or producer[1].domain not in ("", "ai.onnx"):
                return None
            tensor = self.constant_node(*producer)
        try:
            return np.asarray(onnx.numpy_helper.to_array(tensor))
        except Exception as error:  # noqa: BLE001 - a tensor whose bytes don't match its dims and type
            raise OnnxModelError(loc, f"cannot read the values of '{name}' ({_first_line(error)})") from None

    def constant_node(self, index: int, node: Any) -> Any:
        onnx = require_onnx()
        loc = node_loc(self.file, index, node)
        for attribute in node.attribute:
            if attribute.name == "value":
                return attribute.t
            if attribute.name == "value_float":
                return onnx.numpy_helper.from_array(np.array(attribute.f, np.float32))
            if attribute.name == "value_floats":
                return onnx.numpy_helper.from_array(np.array(list(attribute.floats), np.float32))
            if attribute.name in ("value_int", "value_ints"):
                raise OnnxModelError(loc, "an integer Constant is not a netdsl type (quantization layers take "
                                          "float32, float16, bfloat16, int8, int4, fp8, fp4 or e8m0 tensors)")
        raise OnnxModelError(loc, "this Constant's value form (sparse or string) is not supported; "
                                  "give it as 'value'")

    def storage_type(self, name: str, data: np.ndarray, loc: NodeLoc) -> DType:
        for dtype in dtypes.DTYPES.values():
            if data.dtype == dtype.storage:
                return dtype
        if data.dtype == np.uint8:
            return _UINT8_CODES
        raise OnnxModelError(loc, f"'{name}' is {data.dtype}; quantization layers take float32, float16, "
                                  "bfloat16, int8, int4, fp8 (float8e4m3fn), fp4 (float4e2m1) or e8m0 tensors")

    def input_type(self, name: str, loc: NodeLoc) -> TensorType:
        """A network input's type: its ONNX element type and shape, --input-shape filling symbolic dims."""
        declared = self.value_types.get(name)
        given = self.input_shapes.get(name)
        if given is not None:
            self.used_shapes.add(name)
        if declared is None or declared.elem_type == 0:
            raise OnnxModelError(loc, f"the type of '{name}' is unknown (ONNX shape inference could not give it)")
        dtype = ELEMENT_TYPES.get(declared.elem_type)
        if dtype is None:
            raise OnnxModelError(loc, f"'{name}' is {type_name(declared.elem_type)}; quantization layers take "
                                      "FLOAT, FLOAT16 or BFLOAT16 data to quantize and INT8, INT4, FLOAT8E4M3FN or "
                                      "FLOAT4E2M1 data to dequantize")
        if given is not None:
            shape = given
        else:
            if not declared.HasField("shape"):
                raise OnnxModelError(loc, f"the shape of '{name}' is unknown: give --input-shape {name}:D0,D1,...")
            symbolic = [d.dim_param or "?" for d in declared.shape.dim if not d.HasField("dim_value")]
            if symbolic:
                written = ", ".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
                                    for d in declared.shape.dim)
                raise OnnxModelError(loc, f"'{name}' has symbolic dimensions {', '.join(symbolic)} "
                                          f"({dtype.name}[{written}]): give --input-shape "
                                          f"{name}:{','.join('D' + str(i) for i in range(len(declared.shape.dim)))}")
            shape = tuple(d.dim_value for d in declared.shape.dim)
        if len(shape) > MAX_RANK:
            raise OnnxModelError(loc, f"'{name}' has {len(shape)} dimensions; TensorRT allows at most {MAX_RANK}")
        if math.prod(shape) > MAX_VOLUME:
            raise OnnxModelError(loc, f"'{name}' has {math.prod(shape)} elements, over TensorRT's limit of 2^31-1")
        return TensorType(dtype, tuple(shape))

    # --- layers ----------------------------------------------------------------------------------------

    def layer(self, index: int, node: Any) -> None:
        loc = node_loc(self.file, index, node)
        kind = LAYERS[node.op_type]
        attributes = _attributes(node, loc)
        inputs = list(node.input)
        while inputs and not inputs[-1]:
            inputs.pop()
        if "" in inputs:
            raise OnnxModelError(loc, "an optional input left empty before a given one is not supported")
        if kind.layer == "dynamic_quantize":
            names, attrs = self.dynamic_quantize(kind, attributes, inputs, loc)
        else:
            names, attrs = self.scaled(kind, attributes, inputs, loc)
        op = OPS[kind.layer]
        outputs = [o for o in node.output]
        if len(outputs) < len(op.outputs) or any(not o for o in outputs[: len(op.outputs)]):
            raise OnnxModelError(loc, f"{node.op_type} needs {len(op.outputs)} named outputs")
        netdsl_node = Node(op, names, outputs[: len(op.outputs)], op.attrs(**attrs), loc, [loc] * len(names),
                           {key: loc for key in attrs})
        for output in netdsl_node.outputs:
            if output in self.graph.values:
                raise OnnxModelError(loc, f"'{output}' is produced twice")
            self.graph.values[output] = Value(output, "layer", loc, producer=netdsl_node)
        self.graph.nodes.append(netdsl_node)
        source = self.type_of(self.graph.values[names[0]])
        if source is not None:
            for output, tensor_type in zip(netdsl_node.outputs, _output_types(netdsl_node.attrs, source.shape)):
                self.layer_types[output] = tensor_type

    def type_of(self, value: Value) -> TensorType | None:
        return value.type if value.type is not None else self.layer_types.get(value.name)

    def scaled(self, kind: LayerKind, attributes: dict[str, Any], inputs: list[str],
               loc: NodeLoc) -> tuple[list[str], dict[str, Any]]:
        """QuantizeLinear / DequantizeLinear and their trt-domain forms (the parser's QuantDequantLinearHelper,
        TRT_BlockQuantize, TRT_BlockDequantize)."""
        is_dq = kind.layer == "dequantize"
        if len(inputs) < 2:
            raise OnnxModelError(loc, "QuantizeLinear/DequantizeLinear needs a scale (TensorRT requires at least "
                                      "2 inputs)")
        if len(inputs) > 3:
            raise OnnxModelError(loc, f"takes at most 3 inputs (data, scale, zero point), got {len(inputs)}")
        data = self.value(inputs[0], loc, "input")
        scale = self.value(inputs[1], loc, "scale")
        scale_type = self.type_of(scale)
        if scale.type is not None and scale.type.dtype is _UINT8_CODES:
            if not kind.mx:
                raise OnnxModelError(loc, f"the scale '{scale.name}' is UINT8; only TRT_MXFP8QuantizeLinear/"
                                          "DequantizeLinear read UINT8 scales (as e8m0 codes)")
            self.as_e8m0(scale)
            scale_type = scale.type
        if data.type is not None and data.type.dtype is _UINT8_CODES:
            raise OnnxModelError(loc, f"'{data.name}' is UINT8; TensorRT's parser refuses UINT8 quantized data "
                                      "(asymmetric UINT8 is for DLA only)")
        attrs: dict[str, Any] = {}
        if "axis" in attributes:
            attrs["axis"] = attributes["axis"]
        elif scale_type is not None and scale_type.rank == 1 and scale_type.volume > 1:
            # the parser's default (ONNX's), which a per-channel scale needs written out in netdsl; a model
            # older than opset 13 (which had no axis) gets 0
            attrs["axis"] = 1 if self.opset >= 13 else 0
        if kind.block_shape:
            if "block_shape" not in attributes:
                raise OnnxModelError(loc, "TRT_BlockQuantize/TRT_BlockDequantize need a block_shape attribute")
            attrs["block_shape"] = tuple(attributes["block_shape"])
        output_dtype = attributes.get("output_dtype")
        if output_dtype is not None and output_dtype not in ELEMENT_TYPES:
            raise OnnxModelError(loc, f"output_dtype {type_name(output_dtype)} is not a type TensorRT quantizes to")
        zero_point_type = self.zero_point(inputs[2], scale_type, loc) if len(inputs) == 3 else None
        if is_dq:
            if output_dtype is not None:
                attrs["to_type"] = ELEMENT_TYPES[output_dtype]
            elif kind.mx or (scale_type is not None and scale_type.dtype == dtypes.E8M0):
                attrs["to_type"] = dtypes.FLOAT32
            elif scale_type is not None:
                attrs["to_type"] = scale_type.dtype
        else:
            if zero_point_type is not None:
                if output_dtype is not None and output_dtype != ONNX_TYPES.get(zero_point_type):
                    raise OnnxModelError(loc, f"output_dtype {type_name(output_dtype)} differs from the zero "
                                              f"point's type {zero_point_type.name}")
                attrs["to_type"] = zero_point_type
            elif output_dtype is not None:
                attrs["to_type"] = ELEMENT_TYPES[output_dtype]
            elif kind.custom_type is not None:
                attrs["to_type"] = kind.custom_type
            elif kind.block_shape:
                attrs["to_type"] = dtypes.FP8  # TRT_BlockQuantize: "output_dtype is not set. Defaulting to FP8."
            else:
                attrs["to_type"] = dtypes.INT8  # the parser's default (ONNX's is UINT8)
            if attributes.get("saturate", 1) == 0:
                self.diagnostics.warning(loc, "saturate=0 is ignored by TensorRT's parser: values saturate "
                                              "(netdsl runs it as TensorRT does)")
        return [data.name, scale.name], _without_defaults(OPS[kind.layer].attrs, attrs)

    def zero_point(self, name: str, scale: TensorType | None, loc: NodeLoc) -> DType:
        """Check a zero point (a constant of zeros, the scale's volume) and return the quantized type it
        selects; it is then left out, as TensorRT turns it into float zeros."""
        data = self.constant(name, loc)
        if data is None:
            raise OnnxModelError(loc, f"the zero point '{name}' must be an initializer or a Constant node's output")
        values = np.asarray(data, np.float64) if data.dtype != np.uint8 else data.astype(np.float64)
        if np.any(values != 0):
            raise OnnxModelError(loc, f"the zero point '{name}' holds {values[values != 0].flat[0]:g}: a non-zero "
                                      "zero point is not supported (TensorRT supports only symmetric quantization)")
        if scale is not None and data.size != scale.volume:
            raise OnnxModelError(loc, f"the scale and zero point must have the same volume; the zero point has "
                                      f"{data.size} elements, the scale {scale.volume}")
        for dtype in (dtypes.INT8, dtypes.INT4, dtypes.FP8, dtypes.FP4):
            if data.dtype == dtype.storage:
                return dtype
        self.diagnostics.warning(loc, f"a {data.dtype} zero point: TensorRT's parser quantizes to INT8 instead")
        return dtypes.INT8

    def as_e8m0(self, scale: Value) -> None:
        """A TRT_MXFP8 op's UINT8 scale constant read as e8m0 codes (the parser's isE8M0)."""
        assert scale.type is not None and scale.data is not None
        scale.data = scale.data.view(dtypes.E8M0.storage)
        scale.type = TensorType(dtypes.E8M0, scale.type.shape)

    def dynamic_quantize(self, kind: LayerKind, attributes: dict[str, Any], inputs: list[str],
                         loc: NodeLoc) -> tuple[list[str], dict[str, Any]]:
        """TRT_FP4DynamicQuantize (axis 1, block_size 16, scale_type FP8 by default), TRT_MXFP8DynamicQuantize
        (axis -1, block_size 32), TRT_DynamicQuantize (block_shape; output_type and scale_type default FLOAT)."""
        names = [self.value(inputs[0], loc, "input").name] if inputs else []
        if not names:
            raise OnnxModelError(loc, "needs an input")
        attrs: dict[str, Any]
        if kind.dynamic == "nvfp4":
            if len(inputs) != 2:
                raise OnnxModelError(loc, "TRT_FP4DynamicQuantize takes the data and a double quantization scale")
            names.append(self.value(inputs[1], loc, "double_quant_scale").name)
            scale_type = ELEMENT_TYPES.get(attributes.get("scale_type", 17))
            if scale_type != dtypes.FP8:
                raise OnnxModelError(loc, "scale_type must be FP8 (FLOAT8E4M3FN)")
            attrs = {"axis": attributes.get("axis", 1), "block_size": attributes.get("block_size", 16),
                     "output_type": dtypes.FP4, "scale_type": dtypes.FP8}
        elif kind.dynamic == "mxfp8":
            if len(inputs) != 1:
                raise OnnxModelError(loc, f"TRT_MXFP8DynamicQuantize takes 1 input, {len(inputs)} are given")
            attrs = {"axis": attributes.get("axis", -1), "block_size": attributes.get("block_size", 32),
                     "output_type": dtypes.FP8, "scale_type": dtypes.E8M0}
        else:
            if len(inputs) > 2:
                raise OnnxModelError(loc, f"TRT_DynamicQuantize takes 1 or 2 inputs, {len(inputs)} are given")
            if len(inputs) == 2:
                names.append(self.value(inputs[1], loc, "double_quant_scale").name)
            if "block_shape" not in attributes:
                raise OnnxModelError(loc, "TRT_DynamicQuantize needs a block_shape attribute")
            types = {}
            for key in ("output_type", "scale_type"):
                code = attributes.get(key, 1)
                if code not in ELEMENT_TYPES:
                    raise OnnxModelError(loc, f"{key} {type_name(code)} is not a netdsl type")
                types[key] = ELEMENT_TYPES[code]
            attrs = {"block_shape": tuple(attributes["block_shape"]), **types}
        return names, attrs

    def in_model_order(self) -> None:
        """Inputs and constants listed as the model lists them (graph inputs, initializers, Constant nodes)."""
        graph = self.model.graph
        order = [v.name for v in graph.input] + [t.name for t in graph.initializer] + \
            [o for n in graph.node if n.op_type == "Constant" for o in n.output]
        rank = {name: i for i, name in reversed(list(enumerate(order)))}
        values = self.graph.values
        first = sorted((n for n in values if values[n].kind != "layer"), key=lambda n: rank.get(n, len(rank)))
        self.graph.values = {**{n: values[n] for n in first}, **values}

    def unread_inputs(self) -> None:
        """A graph input that no node reads stays a network input (netdsl then warns that it is unused)."""
        for value in self.model.graph.input:
            if value.name in self.initializers or value.name in self.consumers or value.name in self.graph.values:
                continue
            loc = NodeLoc(self.file, 0, 0, f"input '{value.name}'")
            try:
                self.graph.values[value.name] = Value(value.name, "input", loc, type=self.input_type(value.name, loc))
            except OnnxModelError as error:
                self.diagnostics.warning(loc, f"left out: no node reads it, and {error.message}")
                continue
            self.diagnostics.warning(loc, f"input '{value.name}' is not used")

    # --- outputs ---------------------------------------------------------------------------------------

    def outputs(self, kept: list[tuple[int, Any]]) -> None:
        """A kept layer's output that the graph outputs or another (not kept) node reads."""
        graph_outputs = {value.name for value in self.model.graph.output}
        kept_nodes = {id(node) for _, node in kept}
        for index, node in kept:
            for output in node.output:
                value = self.graph.values.get(output)
                if value is None or value.kind != "layer" or value.producer is None:
                    continue
                readers = self.consumers.get(output, [])
                if output in graph_outputs or any(id(reader) not in kept_nodes for _, reader in readers):
                    self.graph.outputs.append(output)
                    self.graph.output_locs.append(node_loc(self.file, index, node))
        if not kept:
            self.diagnostics.error(NodeLoc(self.file, 0, 0), "the model has no quantization layers to keep "
                                   "(QuantizeLinear, DequantizeLinear or TensorRT's trt-domain quantization ops)")
        elif not self.graph.outputs and not self.diagnostics.errors:
            self.diagnostics.error(NodeLoc(self.file, 0, 0), "the kept quantization layers produce nothing that "
                                   "the model outputs or reads")


def _output_types(attrs: Any, shape: tuple[int, ...]) -> list[TensorType]:
    """The output types a layer with ``attrs`` gives an input of ``shape`` (the checker's rules, in short)."""
    if hasattr(attrs, "output_type"):  # dynamic_quantize
        if attrs.block_shape is not None:
            block = [extent if b == -1 else b for b, extent in zip(attrs.block_shape, shape)]
        else:
            axis = (attrs.axis or 0) % max(len(shape), 1)
            block = [attrs.block_size if i == axis else 1 for i in range(len(shape))]
        scale_shape = tuple(ceil_div(d, max(b, 1)) for d, b in zip(shape, block))
        return [TensorType(attrs.output_type, shape), TensorType(attrs.scale_type, scale_shape)]
    return [TensorType(attrs.to_type, shape)]


class _Uint8Codes:
    """A UINT8 constant's type until the op reading it says what its codes are (TRT_MXFP8: e8m0)."""

    name = "uint8"
    storage = np.dtype(np.uint8)


_UINT8_CODES: Any = _Uint8Codes()


#: the attributes the quantization importers read, and their ONNX attribute types (AttributeProto INT, INTS)
_INT_ATTRIBUTES = ("axis", "block_size", "saturate", "output_dtype", "scale_type", "output_type", "precision")
_INTS_ATTRIBUTES = ("block_shape",)


def _attributes(node: Any, loc: NodeLoc) -> dict[str, Any]:
    """The node's attributes that the importers read, checked for their types (others are not read)."""
    attributes: dict[str, Any] = {}
    for attribute in node.attribute:
        if attribute.name in _INT_ATTRIBUTES:
            if attribute.type != 2:  # INT
                raise OnnxModelError(loc, f"attribute '{attribute.name}' must be an integer (INT)")
            attributes[attribute.name] = int(attribute.i)
        elif attribute.name in _INTS_ATTRIBUTES:
            if attribute.type != 7:  # INTS
                raise OnnxModelError(loc, f"attribute '{attribute.name}' must be a list of integers (INTS)")
            attributes[attribute.name] = [int(v) for v in attribute.ints]
    return attributes


def _without_defaults(attrs_type: type, attrs: dict[str, Any]) -> dict[str, Any]:
    defaults = attrs_type()
    return {key: value for key, value in attrs.items() if getattr(defaults, key) != value}


def import_model(path: str | Path, diagnostics: Diagnostics,
                 input_shapes: dict[str, tuple[int, ...]] | None = None) -> Graph | None:
    """The quantization part of the ONNX model at ``path`` as a netdsl graph (not yet checked); errors go
    to ``diagnostics`` (None when the file can't be read as a model). OSError when it can't be opened."""
    path = Path(path)
    model = read_model(path, diagnostics)
    if model is None:
        return None
    return _Import(model, str(path), dict(input_shapes or {}), diagnostics).run(path.stem)



# --- export ------------------------------------------------------------------------------------------


@dataclass
class _Export:
    graph: CheckedGraph
    nodes: list[Any] = field(default_factory=list)
    initializers: list[Any] = field(default_factory=list)
    opset: int = 10
    trt: bool = False
    names: set[str] = field(default_factory=set)

    def run(self) -> Any:
        onnx = require_onnx()
        helper = onnx.helper
        graph = self.graph
        self.names = set(graph.values)
        for value in graph.constants:
            self.initializers.append(onnx.numpy_helper.from_array(np.asarray(value.data), value.name))
        for index, node in enumerate(graph.nodes):
            (self.dynamic if node.op is DYNAMIC_QUANTIZE else self.scaled)(index, node)

        def info(name: str) -> Any:
            tensor_type = graph.values[name].type
            assert tensor_type is not None
            return helper.make_tensor_value_info(name, ONNX_TYPES[tensor_type.dtype], list(tensor_type.shape))

        outputs = set(graph.outputs)
        layer_outputs = [name for node in graph.nodes for name in node.outputs if name not in outputs]
        onnx_graph = helper.make_graph(self.nodes, graph.name, [info(v.name) for v in graph.inputs],
                                       [info(name) for name in graph.outputs], self.initializers,
                                       value_info=[info(name) for name in layer_outputs])
        opsets = [helper.make_opsetid("", self.opset)] + ([helper.make_opsetid(TRT_DOMAIN, 1)] if self.trt else [])
        model = helper.make_model(onnx_graph, opset_imports=opsets, producer_name="netdsl",
                                  ir_version=helper.find_min_ir_version_for(opsets, ignore_unknown=True))
        return model

    def fresh(self, base: str) -> str:
        name, suffix = base, 2
        while name in self.names:
            name, suffix = f"{base}_{suffix}", suffix + 1
        self.names.add(name)
        return name

    def type_of(self, name: str) -> DType:
        tensor_type = self.graph.values[name].type
        assert tensor_type is not None
        return tensor_type.dtype

    def scaled(self, index: int, node: CheckedNode) -> None:
        """Quantize / Dequantize: default-domain QuantizeLinear / DequantizeLinear at the lowest opset that
        expresses the layer; TRT_BlockQuantize / TRT_BlockDequantize for blocks ONNX can't express as
        TensorRT's parser reads them (more than one blocked dimension, one not among the last two, or a
        partial edge block)."""
        onnx = require_onnx()
        is_dq = node.op is DEQUANTIZE
        plan = node.resolution
        assert isinstance(plan, ScaleResolution)
        granularity = plan.granularity
        data_name, scale_name = node.inputs[0], node.inputs[1]
        data_type, scale_type = self.type_of(data_name), self.type_of(scale_name)
        shape = self.graph.values[data_name].type.shape  # type: ignore[union-attr]
        quantized = data_type if is_dq else plan.to_type
        blocked = [i for i, b in enumerate(granularity.block) if granularity.scale_shape[i] > 1 and b > 1] \
            if granularity.kind == "block" else []
        standard = granularity.kind != "block" or (len(blocked) == 1 and blocked[0] >= len(shape) - 2
                                                    and shape[blocked[0]] % granularity.block[blocked[0]] == 0)
        name = f"{node.outputs[0]}"
        if not standard:
            self.trt = True
            self.opset = max(self.opset, 19 if quantized == dtypes.FP8 else 10)
            assert isinstance(node.attrs, QuantizeAttrs | DequantizeAttrs)
            block_shape = node.attrs.block_shape if node.attrs.block_shape is not None else granularity.block
            self.nodes.append(onnx.helper.make_node(
                "TRT_BlockDequantize" if is_dq else "TRT_BlockQuantize", [data_name, scale_name], node.outputs,
                name=name, domain=TRT_DOMAIN, output_dtype=ONNX_TYPES[plan.to_type], block_shape=list(block_shape)))
            return
        opset = 10
        attributes: dict[str, Any] = {}
        if granularity.kind == "per-channel":
            opset, attributes["axis"] = 13, granularity.axis
        floats = {data_type, scale_type, plan.to_type} - {quantized}
        if quantized != dtypes.INT8 or floats != {dtypes.FLOAT32}:
            opset = max(opset, 19)
        if quantized == dtypes.INT4 or granularity.kind == "block":
            opset = max(opset, 21)
        if granularity.kind == "block":
            (axis,) = blocked
            attributes["axis"], attributes["block_size"] = axis, granularity.block[axis]
        if quantized == dtypes.FP4:
            opset = max(opset, 23)
        inputs = [data_name, scale_name]
        if is_dq:
            if scale_type == dtypes.E8M0:
                opset = max(opset, 24)
                attributes["output_dtype"] = ONNX_TYPES[plan.to_type]
            elif plan.to_type != scale_type:
                opset = max(opset, 23)
                attributes["output_dtype"] = ONNX_TYPES[plan.to_type]
        else:
            if data_type != scale_type:
                opset = max(opset, 23)
            # the zero point fixes the quantized type in every opset (ONNX's default is UINT8, TensorRT's INT8)
            zero_point = self.fresh(f"{node.outputs[0]}.zero_point")
            zeros = np.zeros(self.graph.values[scale_name].type.shape, quantized.storage)  # type: ignore[union-attr]
            self.initializers.append(onnx.numpy_helper.from_array(zeros, zero_point))
            inputs.append(zero_point)
        self.opset = max(self.opset, opset)
        self.nodes.append(onnx.helper.make_node("DequantizeLinear" if is_dq else "QuantizeLinear", inputs,
                                                node.outputs, name=name, **attributes))

    def dynamic(self, index: int, node: CheckedNode) -> None:
        """DynamicQuantize: TensorRT's own ops (no standard op computes block scales from the data):
        TRT_FP4DynamicQuantize / TRT_MXFP8DynamicQuantize for the 1-D NVFP4 / MXFP8 forms, as ModelOpt
        exports them, else TRT_DynamicQuantize with block_shape."""
        onnx = require_onnx()
        self.trt = True
        attrs, plan = node.attrs, node.resolution
        assert isinstance(attrs, DynamicQuantizeAttrs) and isinstance(plan, DynamicResolution)
        one_d = attrs.block_shape is None
        if one_d and plan.mode == "NVFP4":
            made = onnx.helper.make_node("TRT_FP4DynamicQuantize", node.inputs, node.outputs, name=node.outputs[0],
                                         domain=TRT_DOMAIN, axis=attrs.axis, block_size=attrs.block_size,
                                         scale_type=ONNX_TYPES[dtypes.FP8])
        elif one_d and plan.mode == "MXFP8":
            made = onnx.helper.make_node("TRT_MXFP8DynamicQuantize", node.inputs, node.outputs,
                                         name=node.outputs[0], domain=TRT_DOMAIN, axis=attrs.axis,
                                         block_size=attrs.block_size)
        else:
            made = onnx.helper.make_node("TRT_DynamicQuantize", node.inputs, node.outputs, name=node.outputs[0],
                                         domain=TRT_DOMAIN, block_shape=list(attrs.block_shape or plan.block),
                                         output_type=ONNX_TYPES[plan.output_type],
                                         scale_type=ONNX_TYPES[plan.scale_type])
        self.nodes.append(made)


def export_model(graph: CheckedGraph) -> Any:
    """A checked netdsl graph as an ONNX ModelProto (docs/onnx.md, "Export"), valid for onnx.checker."""
    model = _Export(graph).run()
    require_onnx().checker.check_model(model)
    return model
