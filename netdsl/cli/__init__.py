"""The ``netdsl`` command line (docs/language.md, "Command line"): one module per command.

Each command module defines ``add_parser(commands)`` (its sub-parser, help and options) and
``run(args) -> int``; :data:`COMMANDS` lists them in the order ``netdsl -h`` shows.

Exit codes: 0 success; 1 model error (``FILE:LINE:COL: error: ...``); 2 usage error (one line: bad
command line, missing file, input that doesn't fit, backend not available, a run over the memory budget
or out of memory, standard output not writable); 3 internal error; 130 interrupted; 141 standard output
closed by its reader (a pipe) (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

from netdsl.diagnostics import ModelError, UsageError, one_line

#: the command modules of netdsl.cli, in the order ``netdsl -h`` lists them
COMMANDS = ("check", "run", "convert", "graph", "import", "export", "compare", "test", "apply")

EPILOG = """examples:
  netdsl check examples/quantize.net
  netdsl run examples/quantize.net --mark all
  netdsl graph examples/nvfp4_bf16.net -o nvfp4.svg

'netdsl COMMAND -h' explains a command; docs/cli.md has the details."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2) and help text kept as written (examples in epilogs)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # one line, exit 2 (argparse's own prints the usage too)
        raise UsageError(message)


def version() -> str:
    """The installed distribution's version; in a source checkout that isn't installed, netdsl.__version__."""
    from importlib import metadata

    try:
        return metadata.version("netdsl")
    except metadata.PackageNotFoundError:
        import netdsl

        return netdsl.__version__


class VersionAction(argparse.Action):
    """``--version``, looked up only when asked for (package metadata costs an import)."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"netdsl {version()}")
        parser.exit()


def _command(name: str):
    return importlib.import_module(f"netdsl.cli.{name}_command")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser: every command's, or with ``only`` just that command's (what a command
    line naming it needs: the other commands' modules are not imported)."""
    parser = Parser(prog="netdsl", description="TensorRT's quantization numerics, bit for bit: check, run, "
                                               "convert and draw networks of quantize/dequantize layers.",
                    epilog=EPILOG)
    parser.add_argument("--version", action=VersionAction, help="print netdsl's version and exit")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for name in COMMANDS if only is None else (only,):
        _command(name).add_parser(commands)
    for command in commands.choices.values():
        command.add_argument("-q", "--quiet", action="store_true",
                             help="print nothing but errors and warnings (files are still written)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        words = sys.argv[1:] if argv is None else argv
        if words == ["--version"]:  # without building every command's parser (their imports: half a second)
            print(f"netdsl {version()}")
            return 0
        args = build_parser(words[0] if words and words[0] in COMMANDS else None).parse_args(argv)
        with contextlib.ExitStack() as quiet:
            if args.quiet:  # nothing on stdout; errors and warnings still go to stderr
                quiet.enter_context(contextlib.redirect_stdout(quiet.enter_context(open(os.devnull, "w"))))
            code = _command(args.command).run(args)
            from netdsl.cli.common import flush_stdout

            flush_stdout()
        return code
    except BrokenPipeError:  # the reader went away (`netdsl run ... | head -1`): quietly, as SIGPIPE would
        _silence_stdout()
        return 141
    except ModelError as error:
        for diagnostic in error.diagnostics:
            print(diagnostic.render(), file=sys.stderr)
        return 1
    except UsageError as error:
        print(f"netdsl: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except MemoryError as error:  # the budget refused the run (before allocating), or an allocation failed
        from netdsl.memory import MemoryLimitError

        reason = one_line(str(error)) if isinstance(error, MemoryLimitError) else \
            f"out of memory ({one_line(str(error)) or 'an allocation failed'}): give smaller inputs, " \
            f"free memory, or run on another backend"
        print(f"netdsl: error: {reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("netdsl: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the last resort: say it is ours, never a traceback
        print(f"netdsl: internal error: {type(error).__name__}: {one_line(str(error))} (please report this)",
              file=sys.stderr)
        return 3


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of a closed pipe says nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stdout (captured): nothing to silence
        pass


def _lark_without_regex() -> None:
    """Import lark (the language's parser) without the third-party ``regex`` module: lark imports it where it is
    installed (50 ms of the command's start on the H100 machine, benchmarks/results-apply.md) and uses it only
    for grammars built with ``regex=True``, which netdsl's is not. Done by the command line only, whose
    process this is: ``regex`` is hidden while lark is imported, and importable again after."""
    if "lark" in sys.modules or "regex" in sys.modules:
        return
    sys.modules["regex"] = None  # type: ignore[assignment]  # `import regex` raises ImportError: lark uses re
    try:
        import lark  # noqa: F401
    except ImportError:  # not installed: reported where the language is first needed
        pass
    finally:
        del sys.modules["regex"]


def entry() -> None:
    """The ``netdsl`` program (and ``python -m netdsl``): :func:`main`, then out of the process without the
    interpreter's teardown, which has nothing left to do (every output is written, closed and renamed into
    place; after ``netdsl apply`` on the GPU the exit took 0.24 s with it, 0.12-0.15 s without, in two runs on the H100
    machine: benchmarks/results-apply.md)."""
    _lark_without_regex()
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader went away after the last line
        code = code or 141
    except (OSError, ValueError):  # no stream left to flush
        pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
