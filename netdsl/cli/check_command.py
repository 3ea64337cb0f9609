"""``netdsl check MODEL [-v]``: validate a model and print ok."""

from __future__ import annotations

import argparse

from netdsl.cli.common import add_input_shape_option, add_model_arguments, emit, load_model_or_recipe


def add_parser(commands) -> None:
    check = commands.add_parser("check", help="validate a model and print ok")
    add_model_arguments(check)
    check.add_argument("-v", "--verbose", action="store_true", help="print the checked graph")
    add_input_shape_option(check)


def run(args: argparse.Namespace) -> int:
    network = load_model_or_recipe(args.model, args.input_shape, args.trust_paths)
    if args.verbose:
        emit(network.describe(), end="")
    emit("ok (a recipe: checked again for each shape it meets)" if network.recipe else "ok")
    return 0
