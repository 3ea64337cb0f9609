"""What the commands share: reading a model, gathering inputs, printing outputs, writing files."""

from __future__ import annotations

import argparse
import math
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from netdsl import arrays, dtypes
from netdsl.atomic import write_atomically as write_atomically  # re-exported for the commands' old import
from netdsl.diagnostics import UsageError
from netdsl.ir import TensorType
from netdsl.model import Network, load


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose a run's inputs (``run``, ``compare``); :func:`gather_inputs` reads them."""
    parser.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                        help="one input's values from a file (repeatable)")
    parser.add_argument("--inputs", metavar="FILE.npz", help="inputs by name from an archive")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of NumPy's default_rng for the inputs not given (default 1)")
    parser.add_argument("--val-range", nargs="+", default=[], metavar="[NAME:][MIN,MAX]",
                        help="range of the random values for the inputs not given, as Polygraphy takes it: "
                             "[MIN,MAX] for every input, NAME:[MIN,MAX] for one (default [-1,1]; uniform in "
                             "[MIN, MAX), then rounded to the input's type)")


def add_input_shape_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME:D0,D1,...",
                        help="the shape of an ONNX model's input whose dimensions are symbolic")


def load_model(path: str, input_shapes: list[str] | None = None) -> Network:
    """Read and check a model named on the command line; ``input_shapes``: ``--input-shape`` items."""
    shapes = {}
    if input_shapes:
        if Path(path).suffix.lower() != ".onnx":
            raise UsageError("--input-shape is for ONNX models (a .net or .yaml model declares its shapes)")
        from netdsl.interop.onnx import parse_input_shapes

        shapes = parse_input_shapes(input_shapes)
    try:
        if not Path(path).is_file():
            raise UsageError(f"cannot read model '{path}': no such file")
        network = load(path, shapes)
    except OSError as error:
        raise UsageError(f"cannot read model '{path}': {error.strerror or error}") from None
    for warning in network.warnings:
        print(warning.render(), file=sys.stderr)
    return network


#: what reading an input file can raise besides a mismatch: unreadable, corrupt (a zip that isn't one), or
#: too large for memory
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, MemoryError)


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _read_npy(path: str, what: str, expected: TensorType | None = None) -> Any:
    """``np.load`` without pickles; with ``expected``, an .npy whose header doesn't fit is refused
    before its data is read."""
    try:
        if expected is not None:
            with open(path, "rb") as stream:
                arrays.check_npy_header(stream, expected)
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"cannot read {what} '{path}': no such file") from None
    except arrays.MismatchError as error:
        raise UsageError(f"{what} {error}") from None
    except _READ_ERRORS as error:
        raise UsageError(f"cannot read {what} '{path}': {_first_line(error)}") from None


def parse_val_ranges(items: list[str], inputs: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """``--val-range`` (Polygraphy's syntax): ``[MIN,MAX]`` for every input, ``NAME:[MIN,MAX]`` for one;
    input name -> (low, high), the default (-1, 1) where none is given."""
    default = (-1.0, 1.0)
    ranges: dict[str, tuple[float, float]] = {}
    for item in items:
        name, _, text = item.rpartition(":")
        if not (text.startswith("[") and text.endswith("]")) or text.count(",") != 1:
            raise UsageError(f"--val-range takes [NAME:][MIN,MAX], e.g. x:[0,1], got '{item}'")
        try:
            low, high = (float(part) for part in text[1:-1].split(","))
        except ValueError:
            raise UsageError(f"--val-range '{item}': MIN and MAX must be numbers") from None
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise UsageError(f"--val-range '{item}': needs finite MIN <= MAX")
        if not name:
            default = (low, high)
        elif name not in inputs:
            raise UsageError(f"--val-range: unknown input '{name}': the network's inputs are "
                             f"{', '.join(inputs) or 'none'}")
        else:
            ranges[name] = (low, high)
    return {name: ranges.get(name, default) for name in inputs}


def read_tensors(path: str, what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz archive, by name, as stored."""
    archive = _read_npy(path, what)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UsageError(f"{what} '{path}' is not an .npz archive")
    with archive:
        try:
            return {key: arrays.read_npz_member(archive, key, None) for key in archive.files}
        except _READ_ERRORS as error:
            raise UsageError(f"cannot read {what} '{path}': {_first_line(error)}") from None


def gather_inputs(network: Network, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The inputs of a run: from --inputs and --input files, the rest random (--seed, --val-range)."""
    given: dict[str, Any] = {}  # an unknown name is not read: None, for prepare_inputs to report
    if args.inputs:
        archive = _read_npy(args.inputs, "inputs file")
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise UsageError(f"--inputs '{args.inputs}' is not an .npz archive")
        with archive:
            for key in archive.files:
                if key not in network.inputs:
                    given[key] = None
                    continue
                try:
                    given[key] = arrays.read_npz_member(archive, key, network.inputs[key])
                except arrays.MismatchError as error:
                    raise UsageError(f"input '{key}' {error}") from None
                except _READ_ERRORS as error:
                    raise UsageError(f"cannot read inputs file '{args.inputs}': {_first_line(error)}") from None
    for item in args.input:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--input takes NAME=FILE.npy, got '{item}'")
        if name not in network.inputs:
            given[name] = None
            continue
        array = _read_npy(path, f"input '{name}'", network.inputs[name])
        if isinstance(array, np.lib.npyio.NpzFile):
            array.close()
            raise UsageError(f"--input {name}: '{path}' is an .npz archive; use --inputs for archives")
        given[name] = array
    if args.seed < 0:
        raise UsageError(f"--seed takes a non-negative integer, got {args.seed}")
    ranges = parse_val_ranges(args.val_range, network.inputs)
    rng = np.random.default_rng(args.seed)
    for name, tensor_type in network.inputs.items():
        if name not in given:
            given[name] = arrays.random_input(tensor_type, rng, *ranges[name])
    try:
        return network.prepare_inputs(given)
    except ValueError as error:
        raise UsageError(str(error)) from None


def format_output(name: str, array: np.ndarray, dtype: dtypes.DType) -> str:
    """An output as ``run`` prints it: ``name: type[shape]``, then its values when it has at most
    PRINT_LIMIT elements, else a summary read in place (netdsl.view.summarize: no copy of the array)."""
    from netdsl import view

    header = f"{name}: {dtype.name}[{', '.join(map(str, array.shape))}]"
    if array.size <= view.PRINT_LIMIT:
        return header + "\n" + np.array2string(view.plain_values(array, dtype), separator=" ",
                                                threshold=view.PRINT_LIMIT, max_line_width=100)
    return f"{header}\n  {view.summarize(array, dtype).describe(integral=dtype.is_integer)}"


def write_json(path: str, document: Any) -> None:
    """``--json FILE``: the document as indented JSON, to stdout for '-', else atomically to FILE."""
    import json

    text = json.dumps(document, indent=1) + "\n"
    if path == "-":
        sys.stdout.write(text)
        return
    try:
        write_atomically(path, lambda stream: stream.write(text), binary=False)
    except OSError as error:
        raise UsageError(f"cannot write '{path}': {error.strerror or error}") from None
