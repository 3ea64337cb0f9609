"""Writing a checked graph back out as a model: the ``.net`` text form or the YAML form (``netdsl convert``).

Loading what is written (from ``target_dir``) gives the same IR: the same network name, inputs,
constants (same type, shape and bits), layers with their non-default attributes, and outputs. Literal
values are written exactly: a float type's value as the shortest decimal that the front ends' rule
(float64, then round to nearest even to the type) reads back to the same bits, plus ``inf``, ``-inf``,
``nan``, ``-nan`` and ``-0.0``; a quantized type's value as its exact value; e8m0 as ``0x1pN``.
``load()`` constants stay loads, their path rewritten relative to ``target_dir``.
A tensor name that is not a valid name (an ONNX name such as ``/model/fc1/Relu_output_0``) is written as
:func:`written_names` makes it, with an ``alias`` giving the original back (docs/onnx.md, "Names").
The output is deterministic: inputs, constants, layers, outputs, each in the order the model gave them.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from netdsl import dtypes
from netdsl.check import CheckedGraph, CheckedNode
from netdsl.frontend.ast import NAME
from netdsl.frontend.yaml_form import ATTRIBUTE_KEYS
from netdsl.ir import LoadRef, Value, attr_items, format_attr

FORMATS = ("net", "yaml")

#: a file name or key that needs no quoting as a YAML plain scalar, in block and flow context alike
_PLAIN_YAML_STRING = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_./-]*")


def write_model(graph: CheckedGraph, to: str, source_dir: Path, target_dir: Path) -> str:
    """``graph`` as ``.net`` text (``to="net"``) or YAML (``to="yaml"``), to be read from ``target_dir``;
    ``load()`` paths in ``graph`` are relative to ``source_dir``."""
    if to not in FORMATS:
        raise ValueError(f"can write {' or '.join(FORMATS)}, not {to!r}")
    paths = functools.partial(_relocate, source_dir=Path(source_dir), target_dir=Path(target_dir))
    return (_write_net if to == "net" else _write_yaml)(graph, paths)


def _relocate(source: LoadRef, source_dir: Path, target_dir: Path) -> LoadRef:
    """``source`` (relative to ``source_dir``) as a path relative to ``target_dir``, naming the same file;
    an absolute path stays as it is."""
    path = Path(source.path)
    if not path.is_absolute():
        path = Path(os.path.relpath(source_dir / path, target_dir))
    return LoadRef(path.as_posix(), source.key, source.codes)


# --- numbers ---------------------------------------------------------------------------------------


def value_texts(data: np.ndarray, dtype: dtypes.DType) -> list[str]:
    """Each element of a constant's storage array as the exact literal the front ends read back."""
    flat = np.asarray(data).reshape(-1)
    if dtype.is_integer:
        return [str(int(v)) for v in flat.astype(np.int64)]
    if dtype == dtypes.E8M0:
        return [_special_text(v) or _power_of_two_text(v) for v in dtypes.decode(flat, dtype).tolist()]
    if not dtype.is_float:  # fp8, fp4: dyadic values whose float64 repr is exact
        return [_special_text(v) or repr(v) for v in dtypes.decode(flat, dtype).astype(np.float64).tolist()]
    return _shortest_texts(flat)


def _special_text(value: float) -> str | None:
    if math.isnan(value):
        return "-nan" if math.copysign(1.0, value) < 0 else "nan"
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    return None


def _power_of_two_text(value: float) -> str:
    mantissa, exponent = math.frexp(value)  # an e8m0 value is 0.5 * 2**exponent
    assert mantissa == 0.5
    return f"0x1p{exponent - 1}"


def _shortest_texts(flat: np.ndarray) -> list[str]:
    """For float32/float16/bfloat16 elements: the shortest ``%g`` decimal that the front ends' rule
    (float64, then round to nearest even to the type) turns back into the element's exact bits.

    numpy's own shortest repr of a float32/float16 is tried first: almost always right, it only misses
    where double rounding (decimal -> float64 -> type) moves it to a neighbour; ``%.Ng`` for growing N
    covers those and bfloat16, up to 17 digits, which give the float64 (and so the element) exactly.
    """
    storage = flat.dtype
    unsigned = np.dtype(f"u{storage.itemsize}")
    bits = flat.view(unsigned)
    wide = flat.astype(np.float64).tolist()
    texts = [_special_text(v) or "" for v in wide]
    pending = [i for i, text in enumerate(texts) if not text]
    numpy_first: list[int | None] = [None] if storage in (np.float32, np.float16) else []
    for digits in numpy_first + list(range(1, 18)):
        if not pending:
            break
        candidates = [str(flat[i]) if digits is None else f"{wide[i]:.{digits}g}" for i in pending]
        back = np.array([float(c) for c in candidates], np.float64).astype(storage).view(unsigned)
        exact = (back == bits[pending]).tolist()
        for i, text, ok in zip(pending, candidates, exact):
            if ok:
                texts[i] = _float_looking(text)
        pending = [i for i, ok in zip(pending, exact) if not ok]
    return texts


def _float_looking(text: str) -> str:
    """``1`` -> ``1.0``: a float type's value keeps looking like one."""
    return text if any(c in text for c in ".eE") else text + ".0"


def _nested(texts: list[str], shape: tuple[int, ...]) -> str:
    """A flat list of element texts as a literal nested like ``shape`` (a bare number for a scalar)."""
    if not shape:
        return texts[0]
    if len(shape) == 1:
        return "[" + ", ".join(texts) + "]"
    step = len(texts) // shape[0] if shape[0] else 0
    return "[" + ", ".join(_nested(texts[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])) + "]"


def literal_text(value: Value) -> str:
    assert value.type is not None and value.data is not None
    return _nested(value_texts(value.data, value.type.dtype), value.type.shape)


# --- names ----------------------------------------------------------------------------------------


def written_names(names: list[str]) -> dict[str, str]:
    """Each name as it is written in a model file: itself where it is a valid name, else every character
    outside ``[A-Za-z0-9_.]`` replaced by ``_``, a leading ``_`` added where it would start with a digit
    or ``.`` (or be empty), and ``_2``, ``_3``, ... appended where that meets a name already taken."""
    written = {name: name for name in names if NAME.fullmatch(name)}
    taken = set(written.values())
    for name in names:
        if name in written:
            continue
        base = re.sub(r"[^A-Za-z0-9_.]", "_", name)
        if not NAME.fullmatch(base):
            base = "_" + base
        candidate, suffix = base, 2
        while candidate in taken:
            candidate, suffix = f"{base}_{suffix}", suffix + 1
        written[name] = candidate
        taken.add(candidate)
    return written


def _aliases(graph: CheckedGraph) -> dict[str, str]:
    """Original name -> written name, for every tensor of ``graph``."""
    return written_names(list(graph.values))


# --- the two forms ---------------------------------------------------------------------------------


def _network_name(graph: CheckedGraph) -> str | None:
    """The name to write, or None where it isn't a valid name (a default taken from a file stem such as
    ``my-model``): then the written file's own stem names it again."""
    return graph.name if NAME.fullmatch(graph.name) else None


def _write_net(graph: CheckedGraph, paths: Callable[[LoadRef], LoadRef]) -> str:
    lines = []
    name = _network_name(graph)
    if name is not None:
        lines.append(f"network {name}")
    names = _aliases(graph)
    for original, written in names.items():
        if original != written:
            lines.append(f"alias {written} = {json.dumps(original, ensure_ascii=False)}")
    for value in graph.inputs:
        lines.append(f"input {names[value.name]} : {value.declared or value.type}")
    for value in graph.constants:
        if value.source is not None:
            source = paths(value.source)
            args = [_net_string(source.path)] + ([_net_string(source.key)] if source.key is not None else [])
            text = "load(" + ", ".join(args + (["codes=true"] if source.codes else [])) + ")"
        else:
            text = literal_text(value)
        lines.append(f"const {names[value.name]} : {value.type} = {text}")
    for node in graph.nodes:
        arguments = [names[n] for n in node.inputs] + [f"{key}={format_attr(v)}" for key, v in attr_items(node.attrs)]
        lines.append(f"{', '.join(names[n] for n in node.outputs)} = {node.op.name}({', '.join(arguments)})")
    lines.append(f"output {', '.join(names[n] for n in graph.outputs)}")
    return "\n".join(lines) + "\n"


def _net_string(text: str) -> str:
    """A double-quoted .net string the text form reads back as ``text``: JSON's escapes, with a lone
    surrogate (a file name that is not UTF-8) kept as its ``\\uXXXX`` escape so that the file stays UTF-8."""
    quoted = json.dumps(text, ensure_ascii=False)
    return "".join(f"\\u{ord(c):04x}" if 0xD800 <= ord(c) <= 0xDFFF else c for c in quoted)


def _yaml_string(text: str) -> str:
    """A plain scalar where that is safe, else a double-quoted one (YAML escapes what it can't print)."""
    if _PLAIN_YAML_STRING.fullmatch(text):
        return text
    return '"' + "".join(_yaml_escape(c) for c in text) + '"'


def _yaml_escape(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    code = ord(char)
    if code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
        return f"\\u{code:04x}"
    return char


def _yaml_constant(value: Value, paths: Callable[[LoadRef], LoadRef]) -> str:
    if value.source is not None:
        source = paths(value.source)
        if source.codes:
            key = f", key: {_yaml_string(source.key)}" if source.key is not None else ""
            load = f"{{file: {_yaml_string(source.path)}{key}, codes: true}}"
        else:
            load = _yaml_string(source.path) if source.key is None else \
                f"[{_yaml_string(source.path)}, {_yaml_string(source.key)}]"
        return f'{{type: "{value.type}", load: {load}}}'
    return f'{{type: "{value.type}", value: {literal_text(value)}}}'


def _yaml_layer(node: CheckedNode, names: dict[str, str]) -> list[str]:
    lines = [f"  - op: {node.op.name}",
             f"    inputs: [{', '.join(names[n] for n in node.inputs)}]",
             f"    outputs: [{', '.join(names[n] for n in node.outputs)}]"]
    keys = {attribute: key for key, attribute in ATTRIBUTE_KEYS.items()}  # a keyword that is a layer key
    lines += [f"    {keys.get(key, key)}: {format_attr(v)}" for key, v in attr_items(node.attrs)]
    return lines


def _write_yaml(graph: CheckedGraph, paths: Callable[[LoadRef], LoadRef]) -> str:
    lines = []
    name = _network_name(graph)
    if name is not None:
        lines.append(f"network: {name}")
    names = _aliases(graph)
    renamed = [(original, written) for original, written in names.items() if original != written]
    if renamed:
        lines.append("aliases:")
        lines += [f"  {written}: {_yaml_string(original)}" for original, written in renamed]
    if graph.inputs:
        lines.append("inputs:")
        lines += [f"  {names[value.name]}: {value.declared or value.type}" for value in graph.inputs]
    if graph.constants:
        lines.append("constants:")
        lines += [f"  {names[value.name]}: {_yaml_constant(value, paths)}" for value in graph.constants]
    if graph.nodes:
        lines.append("layers:")
        for node in graph.nodes:
            lines += _yaml_layer(node, names)
    lines.append(f"outputs: [{', '.join(names[n] for n in graph.outputs)}]")
    return "\n".join(lines) + "\n"
