"""``netdsl test [PATH...]``: run conformance cases (``NAME.case.yaml``, examples/README.md) against their
models, one line per case and a summary (docs/compare.md). Exit 0: every case passed; 1: one failed or
couldn't run; 2: usage (a path that is not there, no case found)."""

from __future__ import annotations

import argparse
import sys

from netdsl.cli.common import add_trust_paths_option
from netdsl.compare import Report, _g
from netdsl.diagnostics import ModelError, UsageError, one_line

EXAMPLES = """examples:
  netdsl test                                 # every *.case.yaml under examples/
  netdsl test examples/quantize.case.yaml     # the TensorRT doc example, with the doc's inputs
  netdsl test my_cases/ --backend cupy
"""


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "test", help="run conformance cases (NAME.case.yaml) against their models",
        description="Run every case file given or found under the folders given (default: examples/)\n"
                    "against the model beside it (NAME.net, NAME.yaml or NAME.onnx) and compare its outputs\n"
                    "(docs/compare.md).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", default=["examples"], metavar="PATH",
                        help="case files or folders to search (default: examples)")
    add_trust_paths_option(parser)
    parser.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto",
                        help="the backend to run the models on (default auto)")


def summary(report: Report, atol: dict[str, float]) -> str:
    """One case's outputs in a few words: exact, or the largest error against its tolerance."""
    parts = []
    for output in report.outputs:
        if output.shape != output.expected_shape:
            parts.append(f"{output.name}: shape differs")
        elif output.exact:
            parts.append(f"{output.name} exact" if output.passed
                         else f"{output.name}: {output.mismatches} of {output.compared} differ")
        else:
            error = f"{output.max_abs_error or 0.0:.3g}"
            parts.append(f"{output.name}: max error {error} (atol {_g(atol.get(output.name))})")
    parts += [f"{name}: not an output of the model" for name in report.only_expected]
    return ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    from netdsl.backends import get_backend
    from netdsl.cases import CaseError, feed, find_cases, load_case, model_path
    from netdsl.compare import ComparisonError, compare_outputs
    from netdsl.model import Network, load

    try:
        paths = find_cases(args.paths)
    except CaseError as error:
        raise UsageError(str(error)) from None
    if not paths:
        raise UsageError(f"no case files (*.case.yaml) in {', '.join(args.paths)}")
    backend = get_backend(args.backend)
    failed = 0
    for path in paths:
        try:
            network = load(model_path(path), trust_paths=args.trust_paths)
            if not isinstance(network, Network):
                raise UsageError(f"{model_path(path)} is a recipe (its input dimensions are names); a case "
                                 f"needs a model of fixed shapes")
            case = load_case(path, network)
            inputs = network.prepare_inputs(feed(case.inputs, network))
            outputs = backend.run(network.graph, inputs)
            got = {name: outputs[name] for name in case.expected if name in outputs}
            report = compare_outputs(case.expected, got, network.outputs, case.atol, network=network,
                                     inputs=inputs, expected_label=str(path), got_label=f"netdsl on {backend.name}")
        except ModelError as error:
            failed += 1
            print(f"error {path}: the model has errors")
            for diagnostic in error.diagnostics:
                print(f"    {diagnostic}")
            continue
        except (CaseError, ComparisonError, ValueError, OSError) as error:
            failed += 1
            print(f"error {path}: {one_line(str(error))}")
            continue
        passed = report.passed and not report.only_expected
        failed += not passed
        print(f"{'pass ' if passed else 'FAIL '} {path}: {summary(report, case.atol)}  [{case.source}]")
        if not passed:
            for output in report.outputs:
                if not output.passed:
                    print("\n".join("    " + line for line in output.format().splitlines()))
        sys.stdout.flush()
    count = len(paths)
    failures = f", {failed} failed" if failed else ""
    print(f"{count} case{'s' if count != 1 else ''}: {count - failed} passed{failures}")
    return 1 if failed else 0
