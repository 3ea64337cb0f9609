"""What the commands share: reading a model, gathering inputs, printing outputs, writing files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from netdsl import arrays, dtypes, files
from netdsl.diagnostics import UsageError
from netdsl.model import Network, Recipe, load

#: outputs with more elements than this print as a summary
PRINT_LIMIT = 256


def emit(text: str, end: str = "\n") -> None:
    """Print a command's output; a standard output that can't be written (a full disk, /dev/full) is a
    usage error, a closed pipe a BrokenPipeError (cli.main ends quietly)."""
    try:
        sys.stdout.write(text + end)
    except BrokenPipeError:
        raise
    except OSError as error:
        raise UsageError(f"cannot write to standard output: {error.strerror or error}") from None


def flush_stdout() -> None:
    """:func:`emit`'s rules for the last of the output, still buffered when a command returns."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        raise UsageError(f"cannot write to standard output: {error.strerror or error}") from None


def add_model_arguments(parser: argparse.ArgumentParser, metavar: str | None = None) -> None:
    """The positional MODEL and ``--trust-paths``, for every command that reads a model."""
    parser.add_argument("model", metavar=metavar)
    parser.add_argument("--trust-paths", action="store_true",
                        help="let the model's load() read files outside its folder (only for models you trust; "
                             "see docs/reliability.md)")


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose a run's inputs (``run``, ``compare``); :func:`gather_inputs` reads them."""
    parser.add_argument("--input", action="append", default=[], metavar="NAME=FILE",
                        help="one input's values from a tensor file holding one array (.npy, or an .npz, "
                             ".safetensors or Polygraphy .json of one array; repeatable)")
    parser.add_argument("--inputs", metavar="FILE",
                        help="inputs by name from an .npz, .safetensors or Polygraphy .json file")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the uniform [-1, 1) values of inputs not given (default 1)")


def add_input_shape_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME:D0,D1,...",
                        help="the shape of an ONNX model's input whose dimensions are symbolic")


def load_model(path: str, input_shapes: list[str] | None = None, trust_paths: bool = False) -> Network:
    """The checked model named on the command line (its warnings printed), or a UsageError for a file
    that can't be read; ``input_shapes``: ``--input-shape`` items; ``trust_paths``: ``--trust-paths``. A
    recipe (input dimensions that are names) is a usage error here: this command needs fixed shapes."""
    network = load_model_or_recipe(path, input_shapes, trust_paths)
    if isinstance(network, Recipe):
        raise UsageError(f"'{path}' is a recipe (its input dimensions are names): bind it with netdsl run "
                         f"--input NAME=FILE.npy, or apply it with netdsl apply (docs/checkpoints.md)")
    return network


def load_model_or_recipe(path: str, input_shapes: list[str] | None = None,
                         trust_paths: bool = False) -> Network | Recipe:
    """:func:`load_model`, a recipe included (``netdsl check``, ``run``, ``convert``)."""
    shapes = {}
    if input_shapes:
        if Path(path).suffix.lower() != ".onnx":
            raise UsageError("--input-shape is for ONNX models (a .net or .yaml model declares its shapes)")
        from netdsl.interop.onnx import parse_input_shapes

        shapes = parse_input_shapes(input_shapes)
    try:
        network = load(path, shapes, trust_paths=trust_paths)
    except files.FileError as error:
        raise UsageError(f"cannot read model '{path}': {error}") from None
    except OSError as error:
        raise UsageError(f"cannot read model '{path}': {error.strerror or error}") from None
    for warning in network.warnings:
        print(warning.render(), file=sys.stderr)
    return network


def read_tensors(path: str, what: str) -> dict[str, np.ndarray]:
    """Every array of a multi-array tensor file (.npz, .safetensors, Polygraphy .json), by name, as stored
    (:func:`netdsl.files.read_tensors`); a file that can't be read is a usage error naming ``what``."""
    try:
        arrays_ = files.read_tensors(path)
    except files.FileError as error:
        raise UsageError(f"cannot read {what} '{path}': {error}") from None
    return {name: array for name, array in arrays_.items() if array is not None}


def bind_recipe(network: Recipe, args: argparse.Namespace) -> Network:
    """A recipe (docs/checkpoints.md) bound to the shapes of the input files given on the command line;
    an input whose dimensions are names can't be drawn at random."""
    shapes: dict[str, tuple[int, ...]] = {}
    if args.inputs:
        shapes.update({key: array.shape for key, array in read_tensors(args.inputs, "inputs file").items()
                       if key in network.inputs})
    for item in args.input:
        name, _, path = item.partition("=")
        if name not in network.inputs or not path:
            continue
        try:  # only the shape: gather_inputs reads the values, and reports a file it can't read
            if path.lower().endswith(".npy"):
                shapes[name] = np.load(path, mmap_mode="r", allow_pickle=False).shape
            else:
                found = [a for a in files.read_tensors(path).values() if a is not None]
                if len(found) == 1:
                    shapes[name] = found[0].shape
        except (OSError, ValueError, files.FileError):
            continue
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


def gather_inputs(network: Network, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The inputs of a run: ``--inputs FILE`` (.npz, .safetensors, Polygraphy .json), then ``--input
    NAME=FILE`` (any tensor file holding one array), raw codes with ``--codes``, the rest drawn at random."""
    given: dict[str, Any] = {}  # an unknown name is not read: None, for prepare_inputs to report
    codes = getattr(args, "codes", False)
    if args.inputs:
        try:
            given.update(files.read_tensors(args.inputs, network.inputs, codes))
        except files.FileError as error:
            raise UsageError(f"cannot read inputs file '{args.inputs}': {error}") from None
        except ValueError as error:  # names its array: 'x' has shape ...
            raise UsageError(f"input {error}") from None
    for item in args.input:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--input takes NAME=FILE, got '{item}'")
        if name not in network.inputs:
            given[name] = None
            continue
        try:
            given[name] = files.read_tensor(path, network.inputs[name], codes=codes)
        except files.KeyNotFound as error:
            raise UsageError(f"--input {name}: '{path}' {error}; use --inputs for a file of several arrays") from None
        except files.FileError as error:
            raise UsageError(f"cannot read input '{name}' '{path}': {error}") from None
        except ValueError as error:
            raise UsageError(f"input '{name}' {error}") from None
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


def input_files(args: argparse.Namespace) -> list[str]:
    """The files a run reads: its model and input files (which ``--save`` must never replace)."""
    paths = [args.model] + ([args.inputs] if args.inputs else [])
    return paths + [item.partition("=")[2] for item in args.input if item.partition("=")[2]]


def check_save_target(path: str, args: argparse.Namespace) -> None:
    """``--save PATH`` checked before the run (a usage error now rather than a lost run later)."""
    try:
        files.save_format(path)
        files.check_target(path, input_files(args))
    except files.FileError as error:
        raise UsageError(f"cannot write '{path}': {error}") from None


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


@contextmanager
def writing(path: str) -> Iterator[None]:
    """Errors of writing ``path`` (:mod:`netdsl.files`) as one-line usage errors."""
    try:
        yield
    except files.FileError as error:
        raise UsageError(f"cannot write '{path}': {error}") from None
    except OSError as error:
        raise UsageError(f"cannot write '{path}': {error.strerror or error}") from None
