"""A deterministic fuzz of every tensor-file reader (docs/reliability.md, "Tensor files"): thousands of byte
and header mutations per format (.npy, .npz, .safetensors, Polygraphy .json), fixed seeds, a bounded count.

Every mutated file goes through :mod:`netdsl.files` directly (the one module every route reads with), which
may only return an array or raise the errors the command line and ``load()`` turn into one-line messages
(FileError, MismatchError, ValueError); a share of them also goes through ``netdsl.cli.main`` by each route
(``load()`` in a model, ``--input``, ``--inputs``), which must exit 0, 1 or 2 without a traceback or an
internal error. Nothing here measures time.
"""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from netdsl import files
from netdsl.cli import main
from netdsl.dtypes import lookup
from netdsl.ir import TensorType
from tests.conftest import npy_bytes, npz_bytes

#: mutations per format through netdsl.files, and how many of them also go through the command line
PER_FORMAT = 2000
THROUGH_CLI = 200

DECLARED = TensorType(lookup("float32"), (2, 3))
ARRAY = np.arange(6, dtype=np.float32).reshape(2, 3) / 4


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def polygraphy_bytes(payloads: dict[str, bytes]) -> bytes:
    feed = {name: {"array": base64.b64encode(data).decode(), "polygraphy_class": "ndarray"}
            for name, data in payloads.items()}
    return json.dumps([feed], indent=4).encode()


# --- mutations ---------------------------------------------------------------------------------------

HEADER_WORDS = ["(", ")", "[", "]", "{", "}", "'", ",", ":", "0", "9", "-1", "2**40", "1e308", "True", "None",
                "'<f4'", "'|O'", "'<V2'", "'<U9'", "'>f8'", "'<f1'", "'|V1000000000'", "[('a', '<f4')]",
                "'(2,)f4'", "'descr'", "'shape'", "(99999999999,)", "(2, 3, 4)", "()", "\\x00", "\n", "lambda: 0",
                "'" + "A" * 200 + "'", "((((((((((((((((((((((((((((((", "[" * 50]


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data))]


def splice_text(data: bytes, start: int, end: int, rng: random.Random) -> bytes:
    """Replace a random slice of data[start:end] (a header's text) with header-ish words."""
    a = rng.randrange(start, end)
    b = min(end, a + rng.randint(0, 12))
    word = rng.choice(HEADER_WORDS).encode("latin-1")
    return data[:a] + word + data[b:]


def mutate_npy(data: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:
        return flip_bytes(data, rng)
    if choice == 1:
        return truncate(data, rng)
    if choice == 2:  # the header's text, its length field kept: NumPy's parser saw this
        length = struct.unpack("<H", data[8:10])[0]
        mutated = splice_text(data, 10, 10 + length, rng)
        body = mutated[10:]
        return mutated[:8] + struct.pack("<H", min(len(body), 65535)) + body
    if choice == 3:  # the length field
        return data[:8] + struct.pack("<H", rng.randrange(65536)) + data[10:]
    if choice == 4:  # the version
        return data[:6] + bytes([rng.randrange(5), rng.randrange(3)]) + data[8:]
    descr = rng.choice(["<V2", "|V1", "|O", "<U3", ">f4", "<f8", "<f1", "|b1", "<c8", "|V0", "<M8[s]", "<i8"])
    header = {"descr": descr, "fortran_order": rng.random() < 0.3,
              "shape": tuple(rng.choice([0, 1, 2, 3, 6, 2**31, 2**40, 2**62]) for _ in range(rng.randint(0, 3)))}
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, header)
    return stream.getvalue() + bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))


def mutate_npz(data: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return flip_bytes(data, rng)
    if choice == 1:
        return truncate(data, rng)
    if choice == 2:  # a member holding a mutated .npy
        return npz_bytes({"x.npy": mutate_npy(npy_bytes(ARRAY), rng)})
    if choice == 3:  # compressed, then damaged
        compressed = npz_bytes({"x.npy": npy_bytes(ARRAY)}, zipfile.ZIP_DEFLATED)
        return flip_bytes(compressed, rng)
    # the zip's fixed fields: sizes, offsets, flags, methods, in the local or central header
    out = bytearray(data)
    signature = rng.choice([b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"])
    at = out.find(signature)
    offset = at + rng.randrange(4, 30)
    out[offset:offset + 4] = struct.pack("<I", rng.choice([0, 1, 0xFFFFFFFF, rng.randrange(1 << 32)]))
    return bytes(out)


SAFETENSORS_TAGS = list(files.SAFETENSORS_TAGS) + ["F128", "", "f32", "U4", [1], None, 5, {"a": 1}]


def mutate_safetensors(data: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return flip_bytes(data, rng)
    if choice == 1:
        return truncate(data, rng)
    if choice == 2:  # the length field
        return struct.pack("<Q", rng.choice([0, 1, 2**63, 2**40, rng.randrange(1 << 16)])) + data[8:]
    length = struct.unpack("<Q", data[:8])[0]
    if choice == 3:  # the header's text
        mutated = splice_text(data, 8, 8 + length, rng)
        return struct.pack("<Q", length + len(mutated) - len(data)) + mutated[8:]
    entry = {"dtype": rng.choice(SAFETENSORS_TAGS),
             "shape": rng.choice([[rng.choice([-1, 0, 1, 2, 3, 2**40, True, 2.0, None, [1]]) for _ in range(rng.randint(0, 3))],
                                  None, "2", {"a": 1}]),
             "data_offsets": rng.choice([[rng.choice([0, 4, 24, 2**40, -1, 1.5, None]), rng.choice([0, 24, 25, 2**40])],
                                         [0], None, [[0], [24]]])}
    header: dict = {"x": entry}
    if rng.random() < 0.3:
        header["__metadata__"] = rng.choice([{"netdsl.packed": '{"x": {"type": "int4", "shape": [6]}}'}, {"a": 1},
                                             {"netdsl.packed": "{"}, []])
    return safetensors_bytes(header, bytes(24))


def mutate_json(data: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return flip_bytes(data, rng)
    if choice == 1:
        return truncate(data, rng)
    if choice == 2:
        return polygraphy_bytes({"x": mutate_npy(npy_bytes(ARRAY), rng)})
    if choice == 3:
        return polygraphy_bytes({"x": mutate_npz(npz_bytes({"x.npy": npy_bytes(ARRAY)}), rng)})
    value = rng.choice([
        {"lst": [["r", [{"outputs": {"x": {"values": 1, "polygraphy_class": "LazyArray"}},
                        "runtime": None, "runner_name": "r", "polygraphy_class": "IterationResult"}]]],
         "polygraphy_class": "RunResults"},
        {"lst": "no", "polygraphy_class": "RunResults"},
        {"lst": 5, "polygraphy_class": "RunResults"},
        {"lst": [["r", [{"outputs": [], "runtime": None, "runner_name": 5, "polygraphy_class": "IterationResult"}]]],
         "polygraphy_class": "RunResults"},
        [{"x": {"values": {"array": 5}, "polygraphy_class": ["LazyArray"]}}],
        [{"x": {"polygraphy_class": "Unknown"}}],
        [{"x": {"tensor": "AA==", "polygraphy_class": "Tensor"}}],
        [{"x": {"array": 5, "polygraphy_class": "ndarray"}}],
        [{"x": {"array": "\u20ac", "polygraphy_class": "ndarray"}}],
        [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
        {"x": {"array": base64.b64encode(npy_bytes(ARRAY)).decode(), "__polygraphy_encoded_ndarray":
               "polygraphy_serialized_json_type"}},
    ])
    text = json.dumps(value)
    if rng.random() < 0.1:
        text = "[" * 100_000 + "]" * 100_000
    return text.encode()


FORMATS: dict[str, tuple[str, Callable[[], bytes], Callable[[bytes, random.Random], bytes]]] = {
    "npy": (".npy", lambda: npy_bytes(ARRAY), mutate_npy),
    "npz": (".npz", lambda: npz_bytes({"x.npy": npy_bytes(ARRAY)}), mutate_npz),
    "safetensors": (".safetensors", lambda: safetensors_bytes(
        {"x": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, ARRAY.tobytes()), mutate_safetensors),
    "json": (".json", lambda: polygraphy_bytes({"x": npy_bytes(ARRAY)}), mutate_json),
}

#: what netdsl.files may raise: each becomes a one-line message (load(): exit 1; the command line: exit 2)
EXPECTED = (files.FileError, files.MismatchError, ValueError)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_fuzzed_files(fmt: str, tmp_path: Path, capsys) -> None:
    suffix, make, mutate = FORMATS[fmt]
    rng = random.Random(f"netdsl-files-{fmt}")
    base = make()
    path = tmp_path / f"x{suffix}"
    (tmp_path / "load.net").write_text(f'const c : float32[2, 3] = load("x{suffix}")\nconst s : float32[] = 1\n'
                                       "q = quantize(c, s)\noutput q\n")
    (tmp_path / "input.net").write_text("input x : float32[2, 3]\nconst s : float32[] = 1\nq = quantize(x, s)\n"
                                        "output q\n")
    routes = [["check", str(tmp_path / "load.net")],
              ["run", str(tmp_path / "input.net"), "--input", f"x={path}"],
              ["run", str(tmp_path / "input.net"), "--inputs", str(path)]]
    outcomes = {"read": 0, "refused": 0}
    for index in range(PER_FORMAT):
        data = mutate(base, rng)
        path.write_bytes(data)
        for read in (lambda: files.read_tensor(path, DECLARED), lambda: files.read_tensors(path, {"x": DECLARED}),
                     lambda: files.read_tensors(path)):
            try:
                read()
                outcomes["read"] += 1
            except EXPECTED as error:
                message = str(error)
                assert message and "\n" not in message and "allow_pickle" not in message, (index, data[:200], message)
                outcomes["refused"] += 1
        if index % (PER_FORMAT // THROUGH_CLI) == 0:
            route = routes[(index // (PER_FORMAT // THROUGH_CLI)) % len(routes)]
            code = main(route)
            err = capsys.readouterr().err
            assert code in (0, 1, 2), (index, route, data[:200], err)
            assert "Traceback" not in err and "internal error" not in err, (index, data[:200], err)
            assert code == 0 or err.count("\n") >= 1
    assert outcomes["refused"] > PER_FORMAT  # the mutations mostly break the file (and some don't)
