"""A fuzz campaign against netdsl's promises (docs/reliability.md): every case ends in exit 0, 1 or 2 with
our own words (exit 1: located diagnostics only; exit 2: one line), never exit 3, a traceback or a hang.

    python3 benchmarks/fuzz_campaign.py [--cases 20000] [--seed 1] [--workers 2] [--out FILE.md]
    python3 benchmarks/fuzz_campaign.py --seed 1 --only 1234 --keep DIR    # one case again, its files kept

Each case is made from (seed, index) alone, so any case can be run again by its number. The kinds:

- ``net``, ``yaml``: the valid models of ``examples/`` mutated (token swaps and replacements, huge numbers,
  deep nesting, odd bytes and invalid UTF-8, duplicated, swapped, deleted and cut lines), through
  ``check``, ``run`` or ``convert``;
- ``model``: structurally valid random models (ranks 1-4, extents from 0 to 2^31-1, every mode, blocks
  past the tensor's extent, literal scales that overflow their type) run under random memory limits;
- ``cli``: random combinations of commands, options and arguments (valid and broken models, missing,
  empty, directory and device paths, bad sizes, seeds and names);
- ``file``: tensor files, valid then mutated (header fields, version bytes, lengths, truncation, byte flips,
  appended data), given to ``--input``, ``--inputs`` and ``load()``: ``.npy``, ``.npz`` (stored and
  compressed), ``.safetensors`` and ``.json``. More formats plug into :data:`FORMATS`.

Cases run in-process through ``netdsl.cli.main`` with stdout and stderr captured, in a pool of worker
processes (each under an RLIMIT_DATA of ``--worker-memory``, so allocation failures are exercised rather
than the machine's memory). A watchdog kills a worker whose case runs past ``--case-limit`` seconds (a hang:
far above any case's time on a loaded machine) and starts another.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import io
import json
import math
import multiprocessing
import os
import random
import re
import resource
import shutil
import struct
import sys
import tempfile
import time
import zipfile
from collections import Counter
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EXAMPLES = ROOT / "examples"
LOCATED = re.compile(r"^.+:\d+:\d+: (error|warning): \S")
#: the two lines the command line shows after a located diagnostic: the source line and the caret
SOURCE_LINES = re.compile(r" \d+ \|( |$)| +\| *\^$")


def _located(lines: list[str]) -> bool:
    """Every line a located diagnostic, or the source line or caret shown after one."""
    return all(LOCATED.match(line) or (index and SOURCE_LINES.match(line)) for index, line in enumerate(lines))

KINDS = {"net": 3, "yaml": 2, "cli": 2, "file": 3, "model": 2}  # weights

HUGE = ["9" * 400, "1e999999", "-1e999999", "0x1p99999999", "0x1p-99999999", "2147483647", "2147483648",
        "4294967296", "9223372036854775808", "-9223372036854775809", "1" + "0" * 5000, "0x" + "f" * 300, "nan",
        "inf", "-inf", "-0", "0", "-1", "65536", "1e-45", "3.4e38", "70000", "1/0", "0/0"]
FRAGMENTS = ["[", "]", "(", ")", ",", ":", "=", "-", "+", "*", "/", "#", "\n", " ", "\t", "\r", '"', "'", "output ",
             "input ", "const ", "network ", "quantize(", "dequantize(", "dynamic_quantize(", "load(\"w.npy\")",
             "load(\"/etc/passwd\")", "load(\"../x.npy\")", "axis=", "block_shape=[2147483647, 1]", "block_size=16",
             "to_type=fp4", "output_type=fp4", "scale_type=e8m0", "float32", "bfloat16", "int4", "fp8", "e8m0",
             "fp16", "x", "y", "s"]
YAML_FRAGMENTS = ["{", "}", "- ", "? ", "&a ", "*a", "!!python/object/apply:os.system ['true']", "<<: ", "---\n",
                  "|\n", ">-\n", "%YAML 1.1\n", "!!binary aGk=", "null", "~", "[]", "{}", "'", '"\\x00"']
ODD = [b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\r", b"\xc2\x85", b"\xe2\x80\xae",
       b"\xf0\x9d\x94\xb5", b"\x1b[31m", b"\\", b"\\x00"]
TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


def seed_models(suffix: str) -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.glob(f"*{suffix}"))
            if not p.name.endswith(".case.yaml")]


NET, YAML = seed_models(".net"), seed_models(".yaml")
DATA = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".npy", ".npz"))


# --------------------------------------------------------------------------------------------------
# mutations


def mutate_text(rng: random.Random, text: str, yaml: bool) -> bytes:
    """1-6 mutations of a model's text; the result as bytes (it may not be UTF-8 any more)."""
    pool = FRAGMENTS + (YAML_FRAGMENTS if yaml else [])
    tokens = TOKEN.findall(text)
    data: bytes | None = None
    for _ in range(rng.randint(1, 6)):
        kind = rng.choice(["swap", "replace", "huge", "nest", "fragment", "line", "delete", "odd", "cut"])
        if kind == "odd" or data is not None:  # byte-level from here on
            data = data if data is not None else "".join(tokens).encode()
            at = rng.randint(0, len(data))
            if kind == "cut":
                data = data[:at]
            else:
                data = data[:at] + rng.choice(ODD + [bytes([rng.randrange(256)])]) + data[at + rng.randint(0, 1):]
            continue
        if not tokens:
            tokens = [rng.choice(pool)]
        i, j = rng.randrange(len(tokens)), rng.randrange(len(tokens))
        if kind == "swap":
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif kind == "replace":
            tokens[i] = tokens[j] if rng.random() < 0.5 else rng.choice(pool)
        elif kind == "huge":
            numbers = [k for k, t in enumerate(tokens) if t[:1].isdigit()] or [i]
            tokens[rng.choice(numbers)] = rng.choice(HUGE)
        elif kind == "nest":
            depth = rng.choice([10, 100, 1000, 30_000])
            opener = rng.choice("[({" if yaml else "[(-")
            closer = {"[": "]", "(": ")", "{": "}", "-": ""}[opener]
            tokens[i:i] = [opener * depth + rng.choice(["1", "x", ""]) + (closer * depth if rng.random() < 0.7 else "")]
        elif kind == "fragment":
            tokens.insert(i, rng.choice(pool))
        elif kind == "line":
            lines = "".join(tokens).split("\n")
            a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
            choice = rng.random()
            if choice < 0.4:
                lines.insert(a, lines[b])
            elif choice < 0.7:
                lines[a], lines[b] = lines[b], lines[a]
            else:
                del lines[a]
            tokens = TOKEN.findall("\n".join(lines))
        elif kind == "delete":
            del tokens[i:i + rng.randint(1, 5)]
        elif kind == "cut":
            tokens = tokens[:i]
    return data if data is not None else "".join(tokens).encode("utf-8", "surrogatepass")


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """Byte-level damage to a file: flips, cuts, insertions, appended data, a rewritten length field."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["flip", "cut", "insert", "append", "length", "zero"])
        at = rng.randrange(max(len(data), 1))
        if kind == "flip" and data:
            data[at] = rng.randrange(256)
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        elif kind == "append":
            data += rng.randbytes(rng.choice([1, 100, 5000]))
        elif kind == "length" and len(data) >= 12:
            where = rng.choice([8, 0]) if len(data) > 16 else 0
            data[where:where + 4] = struct.pack("<I", rng.choice([0, 1, 2**31 - 1, 2**32 - 1, len(data) * 7]))
        elif kind == "zero" and data:
            data[at:at + rng.randint(1, 64)] = bytes(min(64, len(data) - at))
    return bytes(data)


def npy_bytes(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array, allow_pickle=False)
    return stream.getvalue()


def mutate_npy(rng: random.Random, array: np.ndarray) -> bytes:
    data = npy_bytes(array)
    if rng.random() < 0.5:
        return mutate_bytes(rng, data)
    header_end = data.index(b"\n") + 1
    header = data[10:header_end].decode("latin1")
    field = rng.choice(["descr", "shape", "fortran", "text", "version"])
    if field == "descr":
        header = re.sub(r"'descr': '[^']*'", "'descr': " + rng.choice(
            ["'<f8'", "'>f4'", "'|O'", "'<U99999999'", "'V2147483647'", "[('a', '<f4')]", "'<f4", "''", "'<c16'",
             "'<i8'", "'|b1'", "'<M8[s]'"]), header)
    elif field == "shape":
        header = re.sub(r"'shape': \([^)]*\)", "'shape': " + rng.choice(
            ["(1099511627776,)", "(-1,)", "()", "(4, 16, 1)", "(0,)", "(2**40,)", "(4,", "(1e9,)", "(4, 'a')",
             f"({', '.join(['1'] * 70)})", "(9999999999999999999999,)"]), header)
    elif field == "fortran":
        header = header.replace("False", rng.choice(["True", "1", "None", "Fals"]))
    elif field == "text":
        header = rng.choice(["{", "{'descr': '<f4'}", "[1, 2]", "{" * 5000, "__import__('os')", "(", "\x00"])
    else:
        return data[:6] + bytes([rng.choice([0, 1, 2, 3, 9, 255]), 0]) + data[8:]
    encoded = header.encode("latin1", "replace")
    if data[6] == 1:
        return data[:8] + struct.pack("<H", len(encoded)) + encoded + data[header_end:]
    return data[:8] + struct.pack("<I", len(encoded)) + encoded + data[header_end:]


def npz_bytes(rng: random.Random, members: dict[str, bytes], compressed: bool) -> bytes:
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return stream.getvalue()


def mutate_npz(rng: random.Random, arrays: dict[str, np.ndarray]) -> bytes:
    members = {f"{k}.npy": npy_bytes(v) for k, v in arrays.items()}
    choice = rng.random()
    if choice < 0.3:
        key = rng.choice(list(members))
        members[key] = mutate_npy(rng, arrays[key[:-4]])
    elif choice < 0.45:
        members[rng.choice(["allow_pickle", "file", "../x.npy", "x", "a\x01.npy", "a" * 300 + ".npy", "x.npy/"])] = \
            rng.choice([b"", b"not an npy", npy_bytes(np.zeros(3))])
    data = npz_bytes(rng, members, compressed=rng.random() < 0.5)
    return mutate_bytes(rng, data) if choice >= 0.3 or rng.random() < 0.3 else data


def safetensors_parts(arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], bytes]:
    """The safetensors header (name -> dtype, shape, data offsets) and data of ``arrays``."""
    header, offset, chunks = {}, 0, []
    names = {"float32": "F32", "float16": "F16", "int8": "I8", "uint8": "U8"}
    for key, array in arrays.items():
        raw = np.ascontiguousarray(array).tobytes()
        header[key] = {"dtype": names[array.dtype.name], "shape": list(array.shape),
                       "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        chunks.append(raw)
    return header, b"".join(chunks)


def safetensors_file(header: Any, payload: bytes) -> bytes:
    """The safetensors layout, by hand: an 8-byte little-endian header length, the JSON header, the data."""
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + payload


def mutate_safetensors(rng: random.Random, arrays: dict[str, np.ndarray]) -> bytes:
    header, payload = safetensors_parts(arrays)
    if rng.random() < 0.5:
        return mutate_bytes(rng, safetensors_file(header, payload))
    key = next(iter(header))
    field = rng.choice(["dtype", "shape", "data_offsets", "key", "metadata"])
    value = rng.choice([["F32"], "F64", "BF16", "F8_E4M3", "X", [2**40], [-1], [0, 2**62], [8, 4], None, {}, 1e308])
    if field == "key":
        header = {rng.choice(["", "\x00", "../x", "__metadata__"]): header[key]}
    elif field == "metadata":
        header["__metadata__"] = value
    else:
        header[key][field] = value
    return safetensors_file(header, payload)


def polygraphy_json(arrays: dict[str, np.ndarray]) -> bytes:
    """Polygraphy's JSON for a feed dict (``save_json`` of a list of one dict): each array an .npy in
    base64; netdsl's own writer where it has one (``netdsl.files``), else this layout by hand."""
    try:
        from netdsl import dtypes, files
    except ImportError:
        files = None
    if files is not None and hasattr(files, "write_tensors"):
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / "w.json"
            files.write_tensors(target, arrays, {k: dtypes.FLOAT32 for k in arrays}, kind="inputs")
            return target.read_bytes()
    encoded = {k: {"array": base64.b64encode(npy_bytes(v)).decode(), "polygraphy_class": "ndarray"}
               for k, v in arrays.items()}
    return json.dumps([encoded], indent=4).encode()


def mutate_json(rng: random.Random, arrays: dict[str, np.ndarray]) -> bytes:
    """Polygraphy JSON, mutated: its text, its structure, or the .npy inside an array's base64."""
    text = polygraphy_json(arrays)
    choice = rng.random()
    if choice < 0.35:
        return mutate_bytes(rng, text)
    document = json.loads(text)
    if choice < 0.7:
        def walk(node: Any) -> Any:
            if isinstance(node, dict):
                return {k: base64.b64encode(mutate_npy(rng, next(iter(arrays.values())))).decode()
                        if k == "array" else walk(v) for k, v in node.items()}
            return [walk(item) for item in node] if isinstance(node, list) else node
        return json.dumps(walk(document)).encode()
    replacement = rng.choice([[], None, 1e400, "x", {"x": None}, [[[[]]]], [{"x": {"array": "!!"}}],
                              [{"x": {"array": "", "polygraphy_class": "ndarray"}}], {"lst": 1},
                              [{"x": {"polygraphy_class": "LazyArray", "values": None}}]])
    return json.dumps(replacement, allow_nan=True).encode()


#: format -> (file suffix, writer of a mutated file of name -> array)
FORMATS = {
    "npy": (".npy", lambda rng, arrays: mutate_npy(rng, next(iter(arrays.values())))),
    "npz": (".npz", mutate_npz),
    "safetensors": (".safetensors", mutate_safetensors),
    "json": (".json", mutate_json),
}


# --------------------------------------------------------------------------------------------------
# cases

FILE_MODEL = ("input x : float32[4, 16]\nconst w : float32[4, 16] = {load}\nconst s : float32[] = 0.5\n"
              "q = quantize(x, s, to_type=fp8)\ny = dequantize(q, s)\nz = quantize(w, s)\noutput y, z\n")
SIZES = ["none", "1", "0", "1K", "64M", "8G", "-1", "1e9", "lots", "", "999999999999T", "auto"]


TYPES = ["float32", "float16", "bfloat16"]
QTYPES = ["int8", "int4", "fp8", "fp4"]


def random_model(rng: random.Random) -> str:
    """A model that is valid more often than not: one or two layers on a random shape, with scales and
    blocks drawn to fit it (or nearly), some extents 0 or huge."""
    rank = rng.randint(1, 4)
    big = rng.random() < 0.15
    shape = [rng.choice([1, 2, 3, 4, 8, 16, 32]) for _ in range(rank)]
    if big:
        shape[rng.randrange(rank)] = rng.choice([2**20, 2**24, 2**30, 2**31 - 1]) // max(1, math.prod(shape))
    if rng.random() < 0.05:
        shape[rng.randrange(rank)] = 0
    dims = ", ".join(map(str, shape))
    x_type = rng.choice(TYPES)
    scale_type = rng.choice(TYPES)
    value = rng.choice(["0.5", "1/127", "70000", "3.4e38", "1e-45", "0x1p-140", "2", "inf", "1e999"])
    op = rng.choice(["quantize", "dequantize", "dynamic_quantize", "pair"])
    lines = []
    if op == "dynamic_quantize":
        mode = rng.choice([("fp4", "fp8", 16), ("fp8", "e8m0", 32), ("fp8", "float32", None),
                           ("int8", "float32", None)])
        rank = max(rank, 2)
        shape = (shape + [16, 32])[:rank]
        if mode[2]:
            shape[-1] = mode[2] * rng.choice([1, 2, 4])
        dims = ", ".join(map(str, shape))
        lines.append(f"input x : {x_type}[{dims}]")
        dqs = ""
        if mode[0] == "fp4":
            lines.append(f"const g : {scale_type}[] = {rng.choice(['1', value])}")
            dqs = "g, "
        if mode[2] and rng.random() < 0.6:
            blocking = f"axis={rank - 1}, block_size={mode[2]}"
        else:
            entries = [rng.choice(["1", "-1", "2", "3", str(2**31 - 1)]) for _ in range(rank)]
            if mode[2]:
                entries = ["1"] * rank
                entries[-1] = str(mode[2])
            blocking = f"block_shape=[{', '.join(entries)}]"
        lines.append(f"d, s = dynamic_quantize(x, {dqs}{blocking}, output_type={mode[0]}, scale_type={mode[1]})")
        lines.append("output d, s")
        return "\n".join(lines) + "\n"
    granularity = rng.choice(["tensor", "channel", "block"])
    if granularity == "tensor":
        scale, extra = f"const s : {scale_type}[] = {value}", ""
    elif granularity == "channel":
        axis = rng.randrange(rank)
        scale = f"const s : {scale_type}[{shape[axis]}] = [{', '.join([value] * min(shape[axis], 4096))}]"
        extra = f", axis={axis}"
        if shape[axis] > 4096:
            scale, extra = f"const s : {scale_type}[] = {value}", ""
    else:
        block = [rng.choice([1, 2, 3, d or 1, 2**31 - 1]) for d in shape]
        scale_shape = [-(-d // b) for d, b in zip(shape, block)]
        if math.prod(scale_shape) > 4096:
            scale_shape, block = [1] * rank, [2**31 - 1] * rank
        literal = "1"
        for extent in reversed(scale_shape):
            literal = "[" + ", ".join([literal.replace("1", value, 1)] * extent) + "]"
        scale = f"const s : {scale_type}[{', '.join(map(str, scale_shape))}] = {literal}"
        extra = f", block_shape=[{', '.join(map(str, block))}]"
    q_type = rng.choice(QTYPES)
    lines += [f"input x : {x_type if op != 'dequantize' else q_type}[{dims}]", scale]
    if op == "dequantize":
        lines += [f"y = dequantize(x, s{extra}, to_type={rng.choice(TYPES)})", "output y"]
    elif op == "quantize":
        lines += [f"q = quantize(x, s{extra}, to_type={q_type})", "output q"]
    else:
        lines += [f"q = quantize(x, s{extra}, to_type={q_type})", f"y = dequantize(q, s{extra}, to_type={x_type})",
                  "output y" + (", q" if rng.random() < 0.3 else "")]
    return "\n".join(lines) + "\n"


def make_case(seed: int, index: int, folder: Path, data: Path = EXAMPLES) -> tuple[str, list[str]]:
    """Write case ``index``'s files into ``folder`` (the example data files hard-linked from ``data``, a
    copy of them on the same file system); its kind and the argv for ``netdsl``."""
    rng = random.Random(f"netdsl-fuzz:{seed}:{index}")
    kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
    for path in DATA:
        try:
            os.link(data / path.name, folder / path.name)
        except OSError:
            shutil.copy(data / path.name, folder / path.name)
    model = folder / "model.net"
    if kind in ("net", "yaml"):
        yaml = kind == "yaml"
        model = folder / ("model.yaml" if yaml else "model.net")
        model.write_bytes(mutate_text(rng, rng.choice(YAML if yaml else NET), yaml))
        command = rng.choices(["check", "run", "convert"], weights=[3, 3, 1])[0]
        argv = [command, str(model)]
        if command == "run":
            argv += ["--backend", "numpy", "--memory-limit", rng.choice(["256M", "1G", "auto"])]
            argv += ["--save", str(folder / "out.npz")] if rng.random() < 0.3 else []
        if command == "convert":
            argv += ["--to", rng.choice(["net", "yaml"])]
            argv += ["-o", str(folder / "out.txt")] if rng.random() < 0.5 else []
        if command == "check" and rng.random() < 0.3:
            argv.append("-v")
        return kind, argv
    if kind == "model":
        model.write_text(random_model(rng))
        argv = ["run", str(model), "--backend", "numpy", "--memory-limit", rng.choice(["64M", "auto", "none", "1G"])]
        return kind, argv + (["--save", str(folder / "o.npz")] if rng.random() < 0.2 else [])
    if kind == "file":
        format_name = rng.choice(list(FORMATS))
        suffix, write = FORMATS[format_name]
        rng_arrays = np.random.default_rng(index)
        arrays = {"x": rng_arrays.uniform(-1, 1, (4, 16)).astype(np.float32)}
        data = write(rng, arrays)
        target = folder / f"w{suffix}"
        target.write_bytes(data)
        where = rng.choice(["input", "inputs", "load"])
        if where == "load":
            key = ', "x"' if format_name != "npy" and rng.random() < 0.7 else ""
            model.write_text(FILE_MODEL.format(load=f'load("w{suffix}"{key})'))
            return f"file-{format_name}", ["run", str(model), "--backend", "numpy", "--memory-limit", "256M"]
        model.write_text(FILE_MODEL.format(load="[" + ", ".join(["[" + ", ".join(["1"] * 16) + "]"] * 4) + "]"))
        argv = ["run", str(model), "--backend", "numpy", "--memory-limit", "256M"]
        argv += [f"--input=x={target}"] if where == "input" else ["--inputs", str(target)]
        return f"file-{format_name}", argv
    # cli: random argument combinations
    examples = sorted(p for p in EXAMPLES.glob("*") if p.suffix in (".net", ".yaml") and ".case." not in p.name)
    source = rng.choice(examples)
    model = folder / source.name
    mutated = rng.random() < 0.2
    text = source.read_text()
    model.write_bytes(mutate_text(rng, text, source.suffix == ".yaml") if mutated else text.encode())
    paths = [str(model)] * 30 + [str(folder / "missing.net"), str(folder), "", "/dev/null", str(folder / DATA[0].name),
                                "-", "/", "a" * 5000, "\x7f", str(folder / "model.net\x00")]
    argv = [rng.choice(["check", "run", "convert"] * 3 + ["frobnicate", "-h", "--version", "RUN"])]
    argv.append(rng.choice(paths))
    options = [["--seed", rng.choice(["0", "1", "-1", "99999999999999999999999", "x", "1e3"])],
               ["--backend", rng.choice(["numpy", "auto", "cupy", "tpu", ""])],
               ["--input", rng.choice(["x=" + str(folder / DATA[0].name), "x=", "=a.npy", "x", "input1=/dev/null",
                                       "input1=" + str(folder), "x=" + str(folder / "nope.npy")])],
               ["--inputs", rng.choice([str(folder / p.name) for p in DATA] + ["/dev/null", str(folder), ""])],
               ["--save", rng.choice([str(folder / "o.npz"), "", str(folder), str(model), "/dev/full",
                                      str(folder / ("o" * 300 + ".npz")), str(folder / "no" / "o.npz")])],
               ["--memory-limit", rng.choice(SIZES)], ["-v"], ["--to", rng.choice(["net", "yaml", "onnx", ""])],
               ["-o", rng.choice([str(folder / "o.net"), str(folder), "", str(model)])],
               ["--codes"], ["--bogus"], ["-q"], [rng.choice(paths)]]
    fitting = {"run": range(0, 6), "check": [6], "convert": [7, 7, 8]}.get(argv[0], range(len(options)))
    for _ in range(rng.randint(0, 4)):  # mostly options of the command, a stray one now and then
        argv += options[rng.choice(fitting)] if rng.random() < 0.85 else rng.choice(options)
    if argv[0] == "run" and "--memory-limit" not in argv:
        argv += ["--memory-limit", "1G"]
    if argv[0] == "run" and "--backend" not in argv:
        argv += ["--backend", "numpy"]
    return "cli", argv


def run_case(seed: int, index: int, base: Path) -> dict[str, Any]:
    """One case in this process: its kind, exit code, and what went wrong with its messages, if anything."""
    from netdsl.cli import main

    folder = Path(tempfile.mkdtemp(prefix=f"case{index}-", dir=base))
    try:
        kind, argv = make_case(seed, index, folder, base / "data")
        out, err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="replace"), io.StringIO()
        escaped = None
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv)
        except SystemExit as exit_:  # argparse's -h/--version
            code = exit_.code if isinstance(exit_.code, int) else 2
        except BaseException as error:  # noqa: BLE001 - what escaped main is the finding
            escaped, code = f"{type(error).__name__}: {error}"[:300], -1
        stderr = err.getvalue()
        lines = stderr.splitlines()
        problem = None
        if escaped:
            problem = f"exception escaped main: {escaped}"
        elif "Traceback" in stderr:
            problem = "traceback"
        elif code == 3:
            problem = "exit 3"
        elif code not in (0, 1, 2):
            problem = f"exit {code}"
        elif code == 1 and not (lines and _located(lines)):
            problem = "exit 1 with a line that is not a located diagnostic"
        elif code == 2 and not (len(lines) >= 1 and lines[-1].startswith("netdsl: error: ")
                                and _located(lines[:-1])):
            problem = "exit 2 without one 'netdsl: error:' line"
        return {"index": index, "kind": kind, "code": code, "problem": problem,
                "stderr": stderr[-400:] if problem else "", "argv": [a[:200] for a in argv] if problem else []}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# the pool and its watchdog


def _worker(connection: Connection, seed: int, base: str, memory: int) -> None:
    with open("/proc/self/status") as status:
        used = next((int(line.split()[1]) * 1024 for line in status if line.startswith("VmData:")), 0)
    resource.setrlimit(resource.RLIMIT_DATA, (used + memory, resource.getrlimit(resource.RLIMIT_DATA)[1]))
    os.environ["NETDSL_NUMBA"] = "0"
    import netdsl.cli  # noqa: F401 - imported once per worker, not per case

    while True:
        index = connection.recv()
        if index is None:
            return
        gc.collect()  # what an earlier case's MemoryError left in reference cycles is freed before the next
        try:
            result = run_case(seed, index, Path(base))
        except BaseException as error:  # noqa: BLE001 - the case maker itself failed: report it, go on
            result = {"index": index, "kind": "?", "code": -2, "problem": f"case failed: {error!r}"[:300],
                      "stderr": "", "argv": []}
        connection.send(result)


class Pool:
    def __init__(self, workers: int, seed: int, base: Path, memory: int, limit: float):
        self.seed, self.base, self.memory, self.limit = seed, base, memory, limit
        self.context = multiprocessing.get_context("fork")
        self.slots: list[dict[str, Any]] = [self._start() for _ in range(workers)]

    def _start(self) -> dict[str, Any]:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker, args=(child, self.seed, str(self.base), self.memory),
                                       daemon=True)
        process.start()
        child.close()
        return {"process": process, "connection": parent, "index": None, "since": 0.0}

    def run(self, indices: list[int], report) -> None:
        pending = list(reversed(indices))
        while pending or any(slot["index"] is not None for slot in self.slots):
            for slot in self.slots:
                if slot["index"] is None and pending:
                    slot["index"], slot["since"] = pending.pop(), time.monotonic()
                    slot["connection"].send(slot["index"])
            busy = [slot for slot in self.slots if slot["index"] is not None]
            ready = wait([slot["connection"] for slot in busy], timeout=1.0)
            now = time.monotonic()
            for position, slot in enumerate(self.slots):
                if slot["index"] is None:
                    continue
                if slot["connection"] in ready:
                    try:
                        report(slot["connection"].recv())
                        slot["index"] = None
                        continue
                    except (EOFError, OSError):
                        problem = f"worker died (exit {slot['process'].exitcode})"
                elif now - slot["since"] > self.limit:
                    problem = f"hang: no result within {self.limit:.0f} s"
                else:
                    continue
                report({"index": slot["index"], "kind": "?", "code": None, "problem": problem, "stderr": "",
                        "argv": []})
                slot["process"].kill()
                slot["process"].join()
                self.slots[position] = self._start()

    def close(self) -> None:
        for slot in self.slots:
            with contextlib.suppress(OSError):
                slot["connection"].send(None)
            slot["process"].join(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", type=int, default=0, help="the first case number")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--case-limit", type=float, default=300.0, help="seconds before a case counts as a hang")
    parser.add_argument("--worker-memory", type=int, default=2048, help="MiB each worker may allocate")
    parser.add_argument("--only", type=int, help="run this one case in this process and show it")
    parser.add_argument("--keep", metavar="DIR", help="with --only: leave the case's files in DIR")
    parser.add_argument("--out", metavar="FILE.md", help="write the summary here too")
    args = parser.parse_args()
    if args.only is not None:
        folder = Path(args.keep or tempfile.mkdtemp(prefix="netdsl-case-"))
        folder.mkdir(parents=True, exist_ok=True)
        kind, argv = make_case(args.seed, args.only, folder)
        shown = " ".join(a if a.isprintable() and " " not in a and a else repr(a) for a in argv)
        print(f"case {args.only} ({kind}): netdsl {shown}")
        from netdsl.cli import main as netdsl_main

        code = netdsl_main(argv)
        print(f"exit {code}; files in {folder}")
        return 0
    base = Path(tempfile.mkdtemp(prefix="netdsl-fuzz-"))
    (base / "data").mkdir()
    for path in DATA:
        shutil.copy(path, base / "data" / path.name)
    codes: Counter[tuple[str, Any]] = Counter()
    problems: list[dict[str, Any]] = []
    started = time.monotonic()
    done = [0]

    def report(result: dict[str, Any]) -> None:
        done[0] += 1
        codes[(result["kind"], result["code"])] += 1
        if result["problem"]:
            problems.append(result)
            print(f"case {result['index']} ({result['kind']}): {result['problem']}\n  argv {result['argv']}\n  "
                  f"{result['stderr'].strip()[-300:]}", file=sys.stderr, flush=True)
        if done[0] % 1000 == 0:
            print(f"{done[0]} cases, {len(problems)} problems, {time.monotonic() - started:.0f} s", file=sys.stderr,
                  flush=True)

    pool = Pool(args.workers, args.seed, base, args.worker_memory << 20, args.case_limit)
    try:
        pool.run(list(range(args.start, args.start + args.cases)), report)
    finally:
        pool.close()
        shutil.rmtree(base, ignore_errors=True)
    elapsed = time.monotonic() - started
    kinds = sorted({k for k, _ in codes})
    exits = sorted({c for _, c in codes}, key=lambda c: (c is None, str(c)))
    heads = [f"exit {c}" if isinstance(c, int) and c >= 0 else "killed" if c is None else "escaped" for c in exits]
    table = ["| kind | " + " | ".join(heads) + " | total |",
             "|---|" + "---|" * (len(exits) + 1)]
    for kind in kinds:
        row = [codes[(kind, c)] for c in exits]
        table.append(f"| {kind} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    KNOWN = ("exit 3", "traceback", "exception escaped", "hang", "worker died", "exit 1 with", "exit 2 without")

    def counted(*starts: str) -> int:
        return sum(1 for p in problems if p["problem"].startswith(starts))

    summary = "\n".join([
        f"{done[0]} cases (seed {args.seed}, cases {args.start}..{args.start + args.cases - 1}) in {elapsed:.0f} s "
        f"with {args.workers} workers: exit 3: {counted('exit 3')}, tracebacks: "
        f"{counted('traceback', 'exception escaped')}, hangs: {counted('hang')}, workers died: "
        f"{counted('worker died')}, message-format violations: {counted('exit 1 with', 'exit 2 without')}, "
        f"other: {len(problems) - counted(*KNOWN)}",
        "", *table, ""])
    print(summary)
    if problems:
        print("problems (run one again with --only N):")
        for problem in problems[:50]:
            print(f"  {problem['index']} {problem['kind']}: {problem['problem']}")
    if args.out:
        Path(args.out).write_text(summary)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
