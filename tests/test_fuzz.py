"""The language survives hostile input: property and mutation fuzzing of both front ends and of ``check``.

Every input must end, quickly, in success or in located errors (``ModelError`` whose diagnostics all read
``FILE:LINE:COL: error|warning: MESSAGE``), and through the command line in exit code 0, 1 or 2 with no
traceback: never another exception, a hang, or a large allocation. No test here measures speed: the inputs
are bounded in size, what must stay linear is checked by counting work, and each input runs under a hang
safety net (:data:`HANG_SAFETY_NET_SECONDS`, hundreds of times the slowest input's time even on a loaded
machine) that only stops a suite that would otherwise never end. The named hostile inputs also run under a
memory limit (RLIMIT_DATA), and the 2^40-element models under tracemalloc. Seeds for the mutations are the
valid models of ``examples/``.

``NETDSL_FUZZ_EXAMPLES`` raises the number of examples per property (default 150) for a longer hunt.
"""

from __future__ import annotations

import difflib
import os
import re
import resource
import signal
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netdsl
from netdsl import ModelError
from netdsl.cli import main
from netdsl.frontend.lower import SUGGESTION_BUDGET

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: a hang safety net per input, not a speed test: the slowest input takes ~2 s alone and ~10 s on a machine
#: whose cores are busy with other work; only an input that never ends reaches this
HANG_SAFETY_NET_SECONDS = 600
#: memory one named hostile input may take (the 100000-deep inputs take up to ~170 MB, linear in their size)
MEMORY_BOUND = 1024 * 2**20
FUZZ = settings(max_examples=int(os.environ.get("NETDSL_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
LINE_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
LOCATED = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): (?P<severity>error|warning): \S.*$")

FALLBACK_MODELS = {
    "net": ["input x : float32[2, 16]\nconst s : float32[] = 1/127\nq = quantize(x, s)\n"
            "y = dequantize(q, s, to_type=bfloat16)\noutput y\n",
            "input x : float32[2, 32]\nd, s = dynamic_quantize(x, axis=1, block_size=32, output_type=fp8, "
            "scale_type=e8m0)\noutput d, s\n"],
    "yaml": ["inputs: {x: 'float32[4]'}\nconstants:\n  s: {type: 'float32[]', value: 0.5}\n"
             "layers:\n  - {op: quantize, inputs: [x, s], outputs: [q], to_type: fp8}\noutputs: [q]\n"],
}


def seed_models(form: str) -> list[str]:
    """The valid models of examples/ in one form (the fallbacks where there are none)."""
    paths = [p for p in sorted(EXAMPLES.glob(f"*.{form}")) if not p.name.endswith(".case.yaml")]
    return [p.read_text(encoding="utf-8") for p in paths] or FALLBACK_MODELS[form]


class Hang(BaseException):
    """Raised by the safety net; a BaseException, so that no ``except Exception`` in netdsl swallows it."""


@contextmanager
def hang_safety_net(seconds: int = HANG_SAFETY_NET_SECONDS) -> Iterator[None]:
    """Fail an input that has not ended after ``seconds`` (a whole-second alarm): a hang, not slowness."""
    def expire(signum, frame):
        raise Hang(f"no result within {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _data_segment() -> int | None:
    """This process's data segment (heap and private mappings) in bytes, from /proc; None elsewhere."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmData:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) * 1024 if match else None


@contextmanager
def memory_limit(extra: int = MEMORY_BOUND) -> Iterator[None]:
    """Allocating more than ``extra`` bytes beyond what the process holds now fails with MemoryError
    (RLIMIT_DATA, no overhead); where /proc is missing, tracemalloc measures the peak instead."""
    used = _data_segment()
    if used is None:
        with traced_peak_below(extra):
            yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = used + extra if hard == resource.RLIM_INFINITY else min(used + extra, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


@contextmanager
def traced_peak_below(limit: int) -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
        assert peak < limit, f"peak allocation {peak / 2**20:.1f} MiB"
    finally:
        tracemalloc.stop()


def assert_located(lines: list[str], file: str, text: str) -> None:
    """Every line a located diagnostic in ``file``, its line within the text (or just past it), or one of
    the two lines the command line shows after it: the source line (`` N | text``) and the caret."""
    assert lines, "an error without a diagnostic"
    last_line = len(LINE_BREAKS.split(text)) + 1  # YAML also breaks lines at CR, NEL, LS and PS
    for index, line in enumerate(lines):
        if line.startswith(" "):
            assert index and (re.match(r" \d+ \|( |$)", line) or re.fullmatch(r" +\| *\^", line)), line
            continue
        match = LOCATED.match(line)
        assert match, f"not a located diagnostic: {line!r}"
        assert match["file"] == file, line
        assert 1 <= int(match["line"]) <= last_line and int(match["col"]) >= 1, line


def load_text(text: str, form: str, base_dir: Path = EXAMPLES) -> netdsl.Network | None:
    """``netdsl.loads`` under the hang safety net: the network, or None after checking the ModelError."""
    file = f"fuzz.{form}"
    with hang_safety_net():
        try:
            return netdsl.loads(text, format=form, base_dir=base_dir, filename=file)
        except ModelError as error:
            assert any(d.severity == "error" for d in error.diagnostics)
            assert_located([str(d) for d in error.diagnostics], file, text)
            return None


def check_file(path: Path, capsys, text: str = "") -> int:
    """``netdsl check PATH`` under the hang safety net: exit 0, 1 (located errors) or 2 (one line), no traceback."""
    capsys.readouterr()
    with hang_safety_net():
        code = main(["check", str(path)])
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), f"exit {code}: {err}"
    assert "Traceback" not in err and "internal error" not in err
    if code == 0:
        assert out.endswith("ok\n")
    elif code == 1:
        assert_located(err.splitlines(), str(path), text)
    else:
        assert err.count("\n") == 1 and err.startswith("netdsl: error: "), err
    if code == 0 and err:
        assert_located(err.splitlines(), str(path), text)  # warnings only
    return code


# --------------------------------------------------------------------------------------------------
# mutations of the valid examples

#: fragments that tend to reach deep into the parsers and the checker
FRAGMENTS = ["[", "]", "(", ")", ",", ":", "=", "-", "+", "*", "/", "#", "\n", " ", "\t", "\r", "\"", "'",
             "0", "1", "-1", "16", "32", "0x1p-149", "1e999999", "0x1p99999999", "9" * 40, "nan", "inf", "-0",
             "float32", "fp8", "fp4", "int4", "e8m0", "bfloat16", "axis=", "block_shape=[4, -1]",
             "block_size=16", "to_type=", "output_type=fp4", "scale_type=fp8", "quantize(", "dequantize(",
             "dynamic_quantize(", "load(\"missing.npy\")", "output ", "input ", "const ", "network ",
             "{", "}", "- ", "? ", "&a ", "*a", "!!python/object/apply:os.system ['true']", "<<: ", "---\n",
             "|\n", ">-\n", "%YAML 1.1\n", "\x00", "\ufeff", "é", "\u202e", "\ud800", "𝔵", "\x85"]


@st.composite
def mutated(draw, form: str) -> str:
    """A valid model of ``form`` after 1-8 mutations: truncation, deletion, insertion of a fragment or of
    any character, a duplicated or swapped line, a splice from another model."""
    seeds = seed_models(form)
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 8))):
        size = len(text)
        at = draw(st.integers(0, size))
        kind = draw(st.sampled_from(["truncate", "delete", "fragment", "character", "line", "swap", "splice"]))
        if kind == "truncate":
            text = text[:at]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)):]
        elif kind == "fragment":
            text = text[:at] + draw(st.sampled_from(FRAGMENTS)) + text[at:]
        elif kind == "character":
            text = text[:at] + draw(st.characters()) + text[at + draw(st.integers(0, 1)):]
        else:
            lines = text.split("\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if kind == "line":
                lines.insert(i, lines[j])
            elif kind == "swap":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                other = draw(st.sampled_from(seeds)).split("\n")
                lines[i:i + 1] = other[draw(st.integers(0, len(other) - 1)):][:draw(st.integers(1, 5))]
            text = "\n".join(lines)
    return text


@pytest.mark.parametrize("form", ["net", "yaml"])
@FUZZ
@given(data=st.data())
def test_mutated_examples(form: str, data) -> None:
    text = data.draw(mutated(form))
    network = load_text(text, form)
    if network is not None:  # still valid: it must also run (small random inputs, NumPy backend)
        rng = np.random.default_rng(0)
        inputs = {name: rng.uniform(-2, 2, t.shape).astype(np.float32) if t.dtype.is_float else
                  np.zeros(t.shape, t.dtype.storage) for name, t in network.inputs.items()}
        if all(t.volume <= 1 << 16 for t in network.inputs.values()):
            with hang_safety_net():
                network.run(inputs, backend="numpy")


# --------------------------------------------------------------------------------------------------
# random text and bytes

NET_ALPHABET = st.sampled_from(list("abcdefgimnopqrstuxyz_019.:=[](),-+*/#\"' \n") + FRAGMENTS[20:40])
YAML_ALPHABET = st.sampled_from(list("abinopstuxyz_019.:-[]{}&*!?|>,#'\" \n") + FRAGMENTS[20:40])


@pytest.mark.parametrize("form,alphabet", [("net", NET_ALPHABET), ("yaml", YAML_ALPHABET)])
@FUZZ
@given(data=st.data())
def test_random_token_soup(form: str, alphabet, data) -> None:
    text = "".join(data.draw(st.lists(alphabet, max_size=120)))
    load_text(text, form)


@pytest.mark.parametrize("form", ["net", "yaml"])
@FUZZ
@given(text=st.text(max_size=300))
def test_random_unicode(form: str, text: str) -> None:
    load_text(text, form)


@st.composite
def byte_mutants(draw) -> bytes:
    """An example's bytes with 1-8 bytes replaced by any byte (often not UTF-8 any more), or cut short."""
    content = bytearray(draw(st.sampled_from(seed_models("net") + seed_models("yaml"))).encode("utf-8"))
    for _ in range(draw(st.integers(1, 8))):
        content[draw(st.integers(0, len(content) - 1))] = draw(st.integers(0, 255))
    return bytes(content[: draw(st.integers(0, len(content)))] if draw(st.booleans()) else content)


@pytest.mark.parametrize("suffix", [".net", ".yaml"])
@FUZZ
@given(content=st.one_of(st.binary(max_size=300), byte_mutants()))
def test_cli_check_random_bytes(suffix: str, content: bytes, tmp_path: Path, capsys) -> None:
    """Any file content, UTF-8 or not, through ``netdsl check``: exit 0, 1 or 2, never a traceback."""
    path = tmp_path / f"model{suffix}"
    path.write_bytes(content)
    check_file(path, capsys, content.decode("utf-8", errors="replace"))


# --------------------------------------------------------------------------------------------------
# named hostile inputs

DEPTH = 100_000
SCALE = "const s : float32[] = 1\n"
HOSTILE_NET = {
    "nested lists": "const c : float32[] = " + "[" * DEPTH + "1" + "]" * DEPTH + "\noutput c\n",
    "nested parentheses": "const c : float32[] = " + "(" * DEPTH + "1" + ")" * DEPTH + "\noutput c\n",
    "unary minus chain": "const c : float32[] = " + "-" * DEPTH + "1\noutput c\n",
    "long sum": "const c : float32[] = " + "+".join(["1"] * DEPTH) + "\noutput c\n",
    "unclosed lists": "const c : float32[] = " + "[" * DEPTH,
    "unclosed call": "q = quantize(" * 10_000,
    "nested list type": "input x : float32" + "[" * DEPTH + "]" * DEPTH + "\noutput x\n",
    "1e999999": "input x : float32[4]\nconst s : float32[] = 1e999999\nq = quantize(x, s)\noutput q\n",
    "0x1p99999999": "input x : float32[4]\nconst s : float32[] = 0x1p99999999\nq = quantize(x, s)\noutput q\n",
    "0x1p-99999999": "input x : float32[4]\nconst s : float32[] = 0x1p-99999999\nq = quantize(x, s)\noutput q\n",
    "5000-digit value": "input x : float32[4]\nconst s : float32[] = " + "7" * 5000 + "\nq = quantize(x, s)\noutput q\n",
    "5000-digit dimension": f"input x : float32[{'9' * 5000}]\n{SCALE}q = quantize(x, s)\noutput q\n",
    "10**5000 dimension": f"input x : float32[1{'0' * 5000}]\n{SCALE}q = quantize(x, s)\noutput q\n",
    "hex dimension": f"input x : float32[0x{'f' * 5000}]\n{SCALE}q = quantize(x, s)\noutput q\n",
    "5000-digit axis": f"input x : float32[4]\nconst c : float32[4] = [1, 2, 3, 4]\n"
                       f"q = quantize(x, c, axis={'9' * 5000})\noutput q\n",
    "huge block_shape": f"input x : float32[4, 4]\nconst c : float32[1, 1] = [[1]]\n"
                        f"q = quantize(x, c, block_shape=[{'9' * 30}, 4])\noutput q\n",
    "huge block_size": "input x : float32[4, 32]\nd, s = dynamic_quantize(x, axis=1, block_size=" + "9" * 30
                       + ", output_type=fp8, scale_type=float32)\noutput d\n",
    "2^40 input": f"input x : float32[1048576, 1048576]\n{SCALE}q = quantize(x, s)\noutput q\n",
    "2^40 constant": "const c : float32[1048576, 1048576] = [[1]]\nconst s : float32[] = 1\n"
                     "q = quantize(c, s)\noutput q\n",
    "2^40 loaded constant": 'const c : float32[1048576, 1048576] = load("weights.npy")\n'
                            "const s : float32[] = 1\nq = quantize(c, s)\noutput q\n",
    "2^31 input": f"input x : float32[2147483648]\n{SCALE}q = quantize(x, s)\noutput q\n",
    "2^31-1 input, literal scale": f"input x : int8[2147483647]\n{SCALE}d = dequantize(x, s)\noutput d\n",
    "zero elements, huge extent": f"input x : float32[0, {'9' * 30}]\n{SCALE}q = quantize(x, s)\noutput q\n",
    "zero-element constant, huge extents": f"const c : float32[0, 2147483647, 2147483647] = []\n{SCALE}"
                                           "q = quantize(c, s)\noutput q\n",
    "rank 65": f"input x : float32[{', '.join(['1'] * 65)}]\n{SCALE}q = quantize(x, s)\noutput q\n",
    "rank 1000 constant": f"const c : float32[{', '.join(['1'] * 1000)}] = {'[' * 1000}1{']' * 1000}\n"
                          f"{SCALE}q = quantize(c, s)\noutput q\n",
    "empty block scale": "input x : float32[0]\nconst c : float32[4] = [1, 1, 1, 1]\n"
                         "q = quantize(x, c)\noutput q\n",
    "3000-layer chain, per-channel end": "input x : float32[4]\n" + SCALE
    + "const c : float32[4] = [1, 2, 3, 4]\n" + "".join(
        f"q{i} = quantize({'x' if i == 0 else f'd{i - 1}'}, s)\nd{i} = dequantize(q{i}, s)\n" for i in range(3000))
    + "p = quantize(d2999, c, axis=0)\noutput p\n",
    "5000 unknown names among 5000": "".join(f"input name{i} : float32[1]\n" for i in range(5000)) + SCALE
    + "".join(f"q{i} = quantize(nome{i}, s)\n" for i in range(5000)) + "output s\n",
    "unicode names": "input xé : float32[4]\ninput ｘ : float32[4]\ninput 𝔵 : float32[4]\noutput x\n",
    "right-to-left override": "input x\u202e : float32[4]\noutput x\n",
    "byte order mark": "\ufeffinput x : float32[4]\noutput x\n",
    "NUL": "input x\x00 : float32[4]\noutput x\n",
    "NUL in a type's brackets": "const c : float32[\x00] = 1\noutput c\n",
    "NUL in a literal": "const c : float32[1] = [\x00]\noutput c\n",
    "lone surrogate": "input x\ud800 : float32[4]\noutput x\n",
    "CR line ends": "input x : float32[4]\r" + SCALE.replace("\n", "\r") + "q = quantize(x, s)\routput q\r",
    "1 MB comment": "input x : float32[4] #" + "#" * 2**20 + "\noutput x\n",
    "load with NUL": 'const c : float32[2] = load("a\\x00b")\noutput c\n',
    "load with a 5000-character name": f'const c : float32[2] = load("{"a" * 5000}")\noutput c\n',
    "load a directory": 'const c : float32[2] = load(".")\noutput c\n',
    "load a device": 'const c : float32[2] = load("/dev/zero")\noutput c\n',
    "100000 errors": "bogus statement here\n" * 100_000,
}

_BILLION = "".join(f"{k}: &{k} [" + ", ".join([f"*{p}" if p else "x"] * 9) + "]\n"
                   for k, p in zip("abcdefghi", [None] + list("abcdefgh")))
HOSTILE_YAML = {
    "nested flow lists": "network: " + "[" * DEPTH + "]" * DEPTH + "\n",
    "nested flow mappings": "network: " + "{a: " * DEPTH + "1" + "}" * DEPTH + "\n",
    "nested value": "constants:\n  c: {type: 'float32[]', value: " + "[" * DEPTH + "1" + "]" * DEPTH
                    + "}\noutputs: [c]\n",
    "nested block lists": "network:\n" + "".join(" " * i + "- \n" for i in range(1, 3000)),
    "unclosed flow": "network: " + "[" * DEPTH,
    "billion laughs": _BILLION + "outputs: [x]\n",
    "alias before anchor": "inputs: *a\noutputs: [x]\n",
    "anchored type": "inputs:\n  x: &t float32[4]\n  y: *t\noutputs: [x]\n",
    "merge key": "inputs: {x: 'float32[4]', <<: {y: 'float32[2]'}}\noutputs: [x]\n",
    "python object tag": "network: !!python/object/apply:os.system ['touch netdsl-fuzz-pwned']\noutputs: [x]\n",
    "python name tag": "layers: !!python/name:os.system\noutputs: [x]\n",
    "binary tag": "network: !!binary aGVsbG8=\noutputs: [x]\n",
    "local tag": "inputs: {x: !shape float32[4]}\noutputs: [x]\n",
    "tag directive": "%TAG !e! tag:example.com,2000:\n---\nnetwork: !e!x y\noutputs: [x]\n",
    "duplicate keys": "network: a\nnetwork: b\ninputs: {x: 'float32[4]', x: 'float32[2]'}\noutputs: [x]\n",
    "two documents": "outputs: [x]\n---\noutputs: [y]\n",
    "complex key": "? [a, b]\n: c\noutputs: [x]\n",
    "1e999999": "inputs: {x: 'float32[4]'}\nconstants:\n  s: {type: 'float32[]', value: 1e999999}\n"
                "layers: [{op: quantize, inputs: [x, s], outputs: [q]}]\noutputs: [q]\n",
    "0x1p99999999": "inputs: {x: 'float32[4]'}\nconstants:\n  s: {type: 'float32[]', value: 0x1p99999999}\n"
                    "layers: [{op: quantize, inputs: [x, s], outputs: [q]}]\noutputs: [q]\n",
    "5000-digit value": "inputs: {x: 'float32[4]'}\nconstants:\n  s: {type: 'float32[]', value: " + "7" * 5000
                        + "}\nlayers: [{op: quantize, inputs: [x, s], outputs: [q]}]\noutputs: [q]\n",
    "10**5000 dimension": "inputs: {x: 'float32[1" + "0" * 5000 + "]'}\noutputs: [x]\n",
    "5000-digit attribute": "inputs: {x: 'float32[4]'}\nconstants:\n  c: {type: 'float32[4]', value: [1, 2, 3, 4]}"
                            "\nlayers: [{op: quantize, inputs: [x, c], outputs: [q], axis: " + "9" * 5000
                            + "}]\noutputs: [q]\n",
    "2^40 input": "inputs: {x: 'float32[1048576, 1048576]'}\noutputs: [x]\n",
    "rank 65": "inputs: {x: 'float32[" + ", ".join(["1"] * 65) + "]'}\noutputs: [x]\n",
    "unicode names": "inputs: {xé: 'float32[4]', ｘ: 'float32[4]'}\noutputs: [xé]\n",
    "NUL": "outputs: [\x00]\n",
    "NEL": "outputs: [x]\x85network: y\n",
    "tab indent": "outputs:\n\t- x\n",
    "byte order mark": "\ufeffoutputs: [x]\n",
    "20000 keys": "inputs:\n" + "".join(f"  x{i}: float32[1]\n" for i in range(20_000)) + "outputs: [x0]\n",
    "1 MB scalar": "network: " + "a" * 2**20 + "\noutputs: [x]\n",
    "empty": "",
    "scalar": "42\n",
    "null sections": "inputs:\nconstants:\nlayers:\noutputs:\n",
}


@pytest.mark.parametrize("form,name", [("net", n) for n in HOSTILE_NET] + [("yaml", n) for n in HOSTILE_YAML])
def test_hostile_input(form: str, name: str, tmp_path: Path, capsys, monkeypatch) -> None:
    """Each named hostile input, through the API and through ``netdsl check``: bounded time and memory."""
    text = (HOSTILE_NET if form == "net" else HOSTILE_YAML)[name]
    monkeypatch.chdir(tmp_path)
    with memory_limit():
        load_text(text, form, base_dir=tmp_path)
    path = tmp_path / f"model.{form}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check_file(path, capsys, text)
    assert not (tmp_path / "netdsl-fuzz-pwned").exists()


@pytest.mark.parametrize("name,expected", [
    ("2^40 input", "has 1099511627776 elements, over TensorRT's limit of 2^31-1"),
    ("2^40 constant", "has 1099511627776 elements, over TensorRT's limit of 2^31-1"),
    ("2^40 loaded constant", "has 1099511627776 elements, over TensorRT's limit of 2^31-1"),
    ("zero elements, huge extent", "dimension 999999999999...9999 (30 characters) is over TensorRT's limit"),
    ("zero-element constant, huge extents", "nonzero extents multiplying to 4611686014132420609"),
    ("hex dimension", "dimension 0xffffffffff...ffff (5002 characters) is over TensorRT's limit"),
    ("5000-digit axis", "axis takes 64-bit integers; 999999999999...9999 (5000 characters) is too large"),
    ("rank 65", "at most 8 dimensions"),
    ("3000-layer chain, per-channel end", "TensorRT accepts a per-channel scale only on constant-rooted"),
    ("empty block scale", "input extent 0 on axis 0 has no blocks"),
    ("nested lists", "nested too deeply"),
    # found by benchmarks/fuzz_campaign.py (an IndexError: a NUL read as a literal read ahead)
    ("NUL in a type's brackets", "m.net:1:19: error: unexpected character '\\x00'"),
    ("NUL in a literal", "m.net:1:25: error: unexpected character '\\x00'"),
    ("NUL", "m.net:1:8: error: unexpected character '\\x00'; expected"),
])
def test_hostile_input_messages(name: str, expected: str) -> None:
    """What the regressions found by fuzzing now say (each was an internal error before: a NumPy
    ValueError, a RecursionError or a ZeroDivisionError)."""
    text = HOSTILE_NET[name]
    try:
        network = netdsl.loads(text, filename="m.net")
        messages = [str(w) for w in network.warnings]
    except ModelError as error:
        messages = [str(d) for d in error.diagnostics]
    assert any(expected in m for m in messages), messages


def test_2_to_the_40_model_allocates_nothing() -> None:
    """A model declaring a 2^40-element tensor is rejected while parsing its type: nothing near its size
    is ever allocated (tracemalloc peak under 1 MiB)."""
    for text in (HOSTILE_NET["2^40 input"], HOSTILE_NET["2^40 constant"], HOSTILE_YAML["2^40 input"]):
        with traced_peak_below(2**20), pytest.raises(ModelError, match="over TensorRT's limit"):
            netdsl.loads(text, format="yaml" if text.startswith("inputs") else "net")


def test_many_unknown_names_stay_linear(monkeypatch) -> None:
    """"Did you mean" compares a name against every tensor; with thousands of unknown names among
    thousands of tensors that was quadratic (2000 of each took 18 s). A budget keeps it bounded: early
    errors still get their suggestion, later ones none. The work is counted (names compared), not timed."""
    compared = [0]

    def counting(word, possibilities, *args, **kwargs):
        possibilities = list(possibilities)
        compared[0] += len(possibilities)
        return close_matches(word, possibilities, *args, **kwargs)

    close_matches = difflib.get_close_matches
    monkeypatch.setattr(difflib, "get_close_matches", counting)
    with pytest.raises(ModelError) as info:
        netdsl.loads(HOSTILE_NET["5000 unknown names among 5000"])
    assert compared[0] <= SUGGESTION_BUDGET  # 5000 x 5001 comparisons without the budget
    unknown = [d.message for d in info.value.diagnostics if d.message.startswith("unknown tensor")]
    assert len(unknown) == 5000
    assert unknown[0] == "unknown tensor 'nome0' (did you mean 'name0'?)"
    assert unknown[-1] == "unknown tensor 'nome4999'"


def test_valid_deep_chain_runs() -> None:
    """A valid 3000-layer chain checks and runs (the constant-rooted walk used to recurse per layer)."""
    network = netdsl.loads(HOSTILE_NET["3000-layer chain, per-channel end"])
    out = network.run({"x": np.array([0.5, 1, 2, 4], np.float32)}, backend="numpy")["p"]
    assert out.tolist() == [0, 0, 1, 1]  # 0.5 rounds to 0 (ties to even), then 0/1, 1/2 (a tie), 2/3, 4/4


def test_fuzz_campaign_script_runs(tmp_path) -> None:
    """benchmarks/fuzz_campaign.py (docs/reliability.md, "The fuzz campaign") on 150 of its cases, every kind
    among them: all end in exit 0, 1 or 2 in our words. The timeout is a safety net (a run takes ~10 s)."""
    summary = tmp_path / "summary.md"
    result = subprocess.run([sys.executable, str(EXAMPLES.parent / "benchmarks" / "fuzz_campaign.py"), "--cases", "150",
                             "--workers", "1", "--out", str(summary)], capture_output=True, text=True, timeout=1800,  # ok: a hang safety net
                            cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    text = summary.read_text()
    assert text.startswith("150 cases") and "exit 3: 0, tracebacks: 0, hangs: 0" in text
    assert all(f"| {kind}" in text for kind in ("cli", "file-npy", "file-npz", "model", "net", "yaml"))
