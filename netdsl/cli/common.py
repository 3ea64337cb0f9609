"""What the commands share: reading a model, gathering inputs, printing outputs, writing files."""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from netdsl import arrays, dtypes
from netdsl.atomic import write_atomically as write_atomically  # re-exported for the commands' old import
from netdsl.diagnostics import UsageError
from netdsl.ir import TensorType
from netdsl.model import Network, Recipe, load

#: outputs with more elements than this print as a summary
PRINT_LIMIT = 256


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose a run's inputs (``run``, ``compare``); :func:`gather_inputs` reads them."""
    parser.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                        help="one input's values from a file (repeatable)")
    parser.add_argument("--inputs", metavar="FILE.npz", help="inputs by name from an archive")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the uniform [-1, 1) values of inputs not given (default 1)")


def add_input_shape_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME:D0,D1,...",
                        help="the shape of an ONNX model's input whose dimensions are symbolic")


def load_model(path: str, input_shapes: list[str] | None = None) -> Network:
    """Read and check a model named on the command line; ``input_shapes``: ``--input-shape`` items. A recipe
    (input dimensions that are names) is a usage error here: this command needs fixed shapes."""
    network = load_model_or_recipe(path, input_shapes)
    if isinstance(network, Recipe):
        raise UsageError(f"'{path}' is a recipe (its input dimensions are names): bind it with netdsl run "
                         f"--input NAME=FILE.npy, or apply it with netdsl apply (docs/checkpoints.md)")
    return network


def load_model_or_recipe(path: str, input_shapes: list[str] | None = None) -> Network | Recipe:
    """:func:`load_model`, a recipe included (``netdsl check``, ``run``, ``convert``)."""
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


def bind_recipe(network: Recipe, args: argparse.Namespace) -> Network:
    """A recipe (docs/checkpoints.md) bound to the shapes of the input files given on the command line;
    an input whose dimensions are names can't be drawn at random."""
    shapes: dict[str, tuple[int, ...]] = {}
    if args.inputs:
        archive = _read_npy(args.inputs, "inputs file")
        if isinstance(archive, np.lib.npyio.NpzFile):
            with archive:
                shapes.update({key: archive[key].shape for key in archive.files if key in network.inputs})
    for item in args.input:
        name, _, path = item.partition("=")
        if name in network.inputs and path:
            try:
                shapes[name] = np.load(path, mmap_mode="r", allow_pickle=False).shape
            except _READ_ERRORS:
                pass  # gather_inputs reports it
    for name, declared in network.inputs.items():
        if name not in shapes:
            if any(isinstance(d, str) for d in declared.dims):
                raise UsageError(f"input '{name}' has named dimensions ({declared}): give it with "
                                 f"--input {name}=FILE.npy")
            shapes[name] = tuple(int(d) for d in declared.dims)
    try:
        return network.bind(shapes)
    except ValueError as error:
        raise UsageError(str(error)) from None


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
    rng = np.random.default_rng(args.seed)
    for name, tensor_type in network.inputs.items():
        if name not in given:
            given[name] = arrays.random_input(tensor_type, rng)
    try:
        return network.prepare_inputs(given)
    except ValueError as error:
        raise UsageError(str(error)) from None


def format_output(name: str, array: np.ndarray, dtype: dtypes.DType) -> str:
    shape = ", ".join(map(str, array.shape))
    header = f"{name}: {dtype.name}[{shape}]"
    values = dtypes.decode(array, dtype) if not dtype.is_float else np.asarray(array, dtype=np.float32)
    if dtype.is_integer:
        values = np.asarray(array).astype(np.int64)
    if values.size <= PRINT_LIMIT:
        return header + "\n" + np.array2string(values, separator=" ", threshold=PRINT_LIMIT,
                                                max_line_width=100)
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    nan = int(np.isnan(values).sum()) if values.dtype.kind == "f" else 0
    inf = int(np.isinf(values).sum()) if values.dtype.kind == "f" else 0
    stats = f"min {finite.min()} max {finite.max()} mean {finite.astype(np.float64).mean():.6g}" if finite.size \
        else "no finite values"
    return f"{header}\n  {values.size} values: {stats}; nan {nan}, inf {inf}"
