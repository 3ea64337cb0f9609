"""``netdsl check MODEL [-v]``: validate a model and print ok."""

from __future__ import annotations

import argparse

from netdsl.cli.common import add_input_shape_option, add_model_arguments, emit, load_model


def add_parser(commands) -> None:
    check = commands.add_parser("check", help="validate a model and print ok")
    add_model_arguments(check)
    check.add_argument("-v", "--verbose", action="store_true", help="print the checked graph")
    add_input_shape_option(check)


def run(args: argparse.Namespace) -> int:
    network = load_model(args.model, args.input_shape, args.trust_paths)
    if args.verbose:
        emit(network.describe(), end="")
    emit("ok")
    return 0
