"""``netdsl compare MODEL ...``: run a model and compare its outputs with reference outputs, a conformance
case, or a second backend (docs/compare.md). Exit 0: every compared output within tolerance; 1: a
mismatch; 2: usage, a file that can't be read, or nothing to compare."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from netdsl import files, memory
from netdsl.cli.common import (
    add_input_options,
    add_input_shape_option,
    add_mark_option,
    add_model_arguments,
    emit,
    gather_inputs,
    input_files,
    load_model,
    mark,
    read_tensors,
    writing,
)
from netdsl.diagnostics import UsageError

EXAMPLES = """examples:
  netdsl compare model.net --inputs in.npz --load-outputs engine_outputs.json
  netdsl compare model.net --load-outputs ref.npz --atol 1e-3 --rtol y:0.01 --json report.json
  netdsl compare model.net --backend numpy --backend cupy
  netdsl compare examples/quantize.net --case examples/quantize.case.yaml
"""


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "compare", help="compare a run with reference outputs, a case file or another backend",
        description="Run MODEL and compare every output present on both sides: exact by default (bit for\n"
                    "bit, NaN equals NaN), quantized outputs as codes. Exit 0 all match, 1 a mismatch, 2 usage\n"
                    "or nothing to compare. docs/compare.md explains the report.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    add_input_options(parser)
    add_input_shape_option(parser)
    parser.add_argument("--backend", action="append", choices=("auto", "numpy", "cupy"),
                        help="the backend to run (default auto); give it twice to compare two backends")
    parser.add_argument("--load-outputs", metavar="REF",
                        help="reference outputs by name (.npz, .safetensors, Polygraphy JSON)")
    parser.add_argument("--codes", action="store_true",
                        help="the reference's uint8 arrays (uint16 for bfloat16) are raw codes (4-bit ones packed "
                             "two per byte); a uint8 array for a quantized output is read as codes anyway")
    parser.add_argument("--case", metavar="FILE.case.yaml",
                        help="take the inputs and the expected outputs (and their atol) from a case file")
    parser.add_argument("--atol", action="append", default=[], metavar="[NAME:]V",
                        help="absolute tolerance, for every output or for NAME (repeatable)")
    parser.add_argument("--rtol", action="append", default=[], metavar="[NAME:]V",
                        help="relative tolerance, |got - expected| <= V * |expected| (repeatable)")
    add_mark_option(parser, "make layer output NAME (or every layer output: all) an output too, compared where "
                            "the other side has it (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON (docs/compare.md)")


def parse_tolerances(items: list[str], option: str, outputs: Any) -> dict[str, float]:
    """``[NAME:]V`` items -> {name: V} (name "" for every output)."""
    tolerances: dict[str, float] = {}
    for item in items:
        name, _, text = item.rpartition(":")
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{option} takes [NAME:]V with V a number, got '{item}'") from None
        if not (value >= 0 and math.isfinite(value)):
            raise UsageError(f"{option} takes a finite V >= 0, got '{item}'")
        if name and name not in outputs:
            raise UsageError(f"{option} names '{name}', which is not an output of the model "
                             f"(outputs: {', '.join(outputs)})")
        tolerances[name] = value
    return tolerances


def run(args: argparse.Namespace) -> int:
    from netdsl.backends import get_backend
    from netdsl.compare import ComparisonError, compare_outputs

    backends = args.backend or ["auto"]
    sources = [bool(args.load_outputs), bool(args.case), len(backends) == 2]
    if len(backends) > 2:
        raise UsageError("--backend: give one backend, or two to compare them")
    if sum(sources) != 1:
        raise UsageError("compare with one of: --load-outputs REF, --case FILE, or --backend A --backend B")
    if args.codes and not args.load_outputs:
        raise UsageError("--codes says how the --load-outputs file holds quantized outputs; give --load-outputs")
    if args.json:
        with writing(args.json):
            files.check_target(args.json, input_files(args) + ([args.load_outputs] if args.load_outputs else []))
    network = mark(load_model(args.model, args.input_shape, args.trust_paths), args.mark)
    atol = parse_tolerances(args.atol, "--atol", network.outputs)
    rtol = parse_tolerances(args.rtol, "--rtol", network.outputs)
    if args.case:
        from netdsl.cases import CaseError, feed, load_case

        if args.input or args.inputs:
            raise UsageError("--case gives the inputs: leave out --input and --inputs")
        try:
            case = load_case(args.case, network)
            inputs = network.prepare_inputs(feed(case.inputs, network))
        except CaseError as error:
            raise UsageError(str(error)) from None
        except ValueError as error:
            raise UsageError(f"case '{args.case}': {error}") from None
        expected: dict[str, Any] = dict(case.expected)
        atol = {**({} if "" in atol else case.atol), **atol}  # the command line's tolerances win
        expected_label = f"{args.case} ({case.source})"
    else:
        inputs = gather_inputs(network, args)
    backend = get_backend(backends[-1])
    memory.check(network.graph, backend.name, inputs_held=True)  # the inputs are read already
    got = backend.run(network.graph, inputs)
    got_label = f"netdsl {args.model} on {backend.name}"
    if len(backends) == 2:
        first = get_backend(backends[0])
        memory.check(network.graph, first.name, inputs_held=True)
        expected, expected_label = first.run(network.graph, inputs), f"netdsl {args.model} on {first.name}"
    elif args.load_outputs:
        expected, expected_label = read_tensors(args.load_outputs, "reference outputs"), args.load_outputs
    try:
        report = compare_outputs(expected, got, network.outputs, atol, rtol, codes=args.codes, network=network,
                                 inputs=inputs, expected_label=expected_label, got_label=got_label)
    except ComparisonError as error:
        raise UsageError(str(error)) from None
    if args.json:  # before the report is printed, as --save
        data = json.dumps({"model": args.model, **report.to_dict()}, indent=1).encode()
        with writing(args.json):
            files.write_atomically(args.json, lambda stream: stream.write(data),
                                   protect=input_files(args) + ([args.load_outputs] if args.load_outputs else []))
    emit(report.format())
    return report.exit_code
