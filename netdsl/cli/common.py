"""What the commands share: reading a model, gathering inputs, printing outputs, writing files."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from netdsl import arrays, dtypes, files
from netdsl.diagnostics import UsageError
from netdsl.model import Network, Recipe, load

if TYPE_CHECKING:
    from netdsl.view import Summary


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


def add_model_arguments(parser: argparse.ArgumentParser, metavar: str | None = None,
                        help: str = "the model: a .net, .yaml or .onnx file") -> None:
    """The positional MODEL and ``--trust-paths``, for every command that reads a model."""
    parser.add_argument("model", metavar=metavar, help=help)
    add_trust_paths_option(parser)


def add_trust_paths_option(parser: argparse.ArgumentParser) -> None:
    """``--trust-paths``, for every command that reads a model (``netdsl test`` reads the cases' models)."""
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
                        help="seed of NumPy's default_rng for the inputs not given (default 1)")
    parser.add_argument("--val-range", nargs="+", default=[], metavar="[NAME:][MIN,MAX]",
                        help="range of the random values for the inputs not given, as Polygraphy takes it: "
                             "[MIN,MAX] for every input, NAME:[MIN,MAX] for one (default [-1,1]; uniform in "
                             "[MIN, MAX), then rounded to the input's type)")


def add_mark_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--mark NAME|all`` (``run``, ``compare``, ``graph``); :func:`mark` applies it."""
    parser.add_argument("--mark", action="append", default=[], metavar="NAME|all", help=help)


def mark(network: Network, names: list[str]) -> Network:
    """The network with the ``--mark`` layer outputs made outputs too (docs/cli.md, "Seeing inside")."""
    if not names:
        return network
    try:
        return network.marked(names)
    except ValueError as error:
        raise UsageError(f"--mark: {error}") from None


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
    NAME=FILE`` (any tensor file holding one array), raw codes with ``--codes``, the rest drawn at random
    (``--seed``, ``--val-range``)."""
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
    ranges = parse_val_ranges(args.val_range, network.inputs)
    rng = np.random.default_rng(args.seed)
    for name, tensor_type in network.inputs.items():
        if name not in given:
            given[name] = arrays.random_input(tensor_type, rng, *ranges[name])
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


def format_output(name: str, array: np.ndarray, dtype: dtypes.DType, summary: Summary | None = None) -> str:
    """An output as ``run`` prints it: ``name: type[shape]``, then its values when it has at most
    PRINT_LIMIT elements, else its ``summary`` (by default netdsl.view.summarize's, read in place: no copy
    of the array)."""
    from netdsl import view

    header = f"{name}: {dtype.name}[{', '.join(map(str, array.shape))}]"
    if array.size <= view.PRINT_LIMIT:
        return header + "\n" + np.array2string(view.plain_values(array, dtype), separator=" ",
                                                threshold=view.PRINT_LIMIT, max_line_width=100)
    summary = summary or view.summarize(array, dtype)
    return f"{header}\n  {summary.describe(integral=dtype.is_integer)}"


def write_json(path: str, document: Any) -> None:
    """``--json FILE``: the document as indented JSON, to stdout for '-', else atomically to FILE."""
    import json

    text = json.dumps(document, indent=1)
    if path == "-":
        emit(text)
        return
    with writing(path):
        files.write_atomically(path, lambda stream: stream.write(text.encode() + b"\n"))


@contextmanager
def writing(path: str) -> Iterator[None]:
    """Errors of writing ``path`` (:mod:`netdsl.files`) as one-line usage errors."""
    try:
        yield
    except files.FileError as error:
        raise UsageError(f"cannot write '{path}': {error}") from None
    except OSError as error:
        raise UsageError(f"cannot write '{path}': {error.strerror or error}") from None
