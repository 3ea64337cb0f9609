"""The front end's memory and speed (issue 12 item 5): peak memory of parsing 10 MiB models, the rate at
which literals are read, and how fast an over-limit literal is refused.

Every measurement runs in a fresh Python process (peak RSS is per process) with ``PYTHONPATH`` set to the
code under test, so the same script measures this tree and an older one:

    git worktree add /tmp/netdsl-old 9fcdd9a
    python3 benchmarks/bench_frontend.py --before /tmp/netdsl-old --out benchmarks/results-frontend.md

Without ``--before`` only this tree is measured. Sizes are in MiB of model text. Each model is written to
a file first; the measuring process reads it, resets its peak RSS (Linux ``/proc/self/clear_refs``), then
parses it: memory is the peak RSS while parsing less the RSS with the text read (so the text itself is
not counted); rates are elements read per second of ``netdsl.loads`` (parse, lower, check).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent

def literal(count: int, plain: bool) -> str:
    """A model that is one float32 constant of ``count`` random values, plain numbers or ``v / 127`` each,
    and its output (no layer: the checker folds nothing, so the time is the literal's)."""
    rng = np.random.default_rng(1)
    values = [repr(float(v)) for v in rng.standard_normal(count).astype(np.float32)]
    items = values if plain else [f"{v} / 127" for v in values]
    return f"const w : float32[{count}] = [" + ", ".join(items) + "]\noutput w\n"


#: models of about ``size`` bytes: kind -> (description, text of a size)
MODELS = {
    "blank": ("blank lines", lambda size: "\n" * size),
    "indented-blank": ("lines of blanks", lambda size: " \t \n" * (size // 4)),
    "comments": ("comment lines", lambda size: "# a comment line of thirty-two\n" * (size // 32)),
    "statements": ("input statements",
                   lambda size: "".join(f"input x{i} : float32[1, 2]\n" for i in range(size // 28))),
    "string": ("one long load() path", lambda size: 'const w : float32[1] = load("' + "a" * size + '")\n'),
    "literal": ("one literal of 2^20 plain numbers", lambda size: literal(1 << 20, plain=True)),
}

_CHILD = textwrap.dedent("""
    import json, sys, time

    def status_mib(field):
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith(field + ":"))
        return int(line.split()[1]) / 1024

    import netdsl
    from netdsl.diagnostics import Diagnostics
    from netdsl.frontend.text import parse_text
    parse_text("output x\\n", "m.net", Diagnostics())  # the parser is built outside the measurement
    job = json.loads(sys.argv[1])
    with open(job["path"], encoding="utf-8") as stream:
        text = stream.read()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the peak RSS starts again from the current RSS (Linux)
    before = status_mib("VmRSS")
    start = time.perf_counter()
    error = ""
    if job["what"] == "parse":
        diagnostics = Diagnostics()
        parse_text(text, "m.net", diagnostics)
        error = str(diagnostics.items[0]) if diagnostics.items else ""
    else:
        try:
            netdsl.loads(text, filename="m.net")
        except netdsl.ModelError as e:
            error = str(e.diagnostics[0])
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_growth_mib": status_mib("VmHWM") - before, "bytes": len(text),
                      "error": error[:120]}))
""")


def measure(root: Path, what: str, text: str, timeout: float) -> dict:
    """One measurement of ``text`` in a fresh process importing netdsl from ``root``."""
    env = dict(os.environ, PYTHONPATH=str(root))
    with tempfile.NamedTemporaryFile("w", suffix=".net", encoding="utf-8", delete=False) as model:
        model.write(text)
    job = json.dumps({"what": what, "path": model.name})
    try:
        result = subprocess.run([sys.executable, "-c", _CHILD, job], capture_output=True, text=True, env=env,
                                timeout=timeout, cwd=root)
    except subprocess.TimeoutExpired:
        return {"timeout": timeout}
    finally:
        os.unlink(model.name)
    if result.returncode:
        return {"failed": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode}
    return json.loads(result.stdout)


def _cell(result: dict, key: str, fmt: str) -> str:
    if "timeout" in result:
        return f"> {result['timeout']:.0f} s (stopped)"
    if "failed" in result:
        return f"failed: {result['failed']}"
    return fmt.format(result[key])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a checkout of the older code to compare with")
    parser.add_argument("--mib", type=float, default=10.0, help="model size for the memory table (MiB)")
    parser.add_argument("--before-mib", type=float, help="model size for the older code (default: --mib)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a measurement is stopped")
    parser.add_argument("--repeat", type=int, default=3, help="literal rates: the fastest of this many runs")
    parser.add_argument("--sections", default="memory,rates,limit",
                        help="which tables to measure (comma-separated: memory, rates, limit)")
    parser.add_argument("--out", type=Path, help="write the Markdown report here")
    args = parser.parse_args()
    roots = {"now": HERE}
    if args.before:
        roots["before"] = args.before.resolve()
    lines = ["# Front-end benchmarks (issue 12 item 5)", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), "
             f"Python {platform.python_version()}.",
             f"Command: `python3 benchmarks/bench_frontend.py {' '.join(sys.argv[1:])}`", "",
             "## Peak memory of parsing a model (growth of peak RSS over the text itself)", "",
             "| model | " + " | ".join(f"{name}: MiB, s" for name in roots) + " |",
             "|---|" + "---|" * len(roots)]
    sections = set(args.sections.split(","))
    for kind, (description, make) in MODELS.items() if "memory" in sections else ():
        cells = []
        for name, root in roots.items():
            mib = args.before_mib if name == "before" and args.before_mib else args.mib
            result = measure(root, "parse", make(int(mib * 2**20)), args.timeout)
            cell = _cell(result, "peak_growth_mib", "{:.0f}")
            if "seconds" in result:
                cell += f", {result['seconds']:.1f} s ({result['bytes'] / 2**20:.1f} MiB)"
            cells.append(cell)
            print(kind, name, result, flush=True)
        lines.append(f"| {description} | " + " | ".join(cells) + " |")
    lines += ["", f"## Literal read rate (`netdsl.loads` of one float32 constant, fastest of {args.repeat})", "",
              "| literal | code | elements | seconds | elements/s | peak growth MiB |", "|---|---|---|---|---|---|"]
    for plain in (True, False) if "rates" in sections else ():
        for name, root in roots.items():
            count = (1 << 20 if name == "now" else 100_000) if plain else 20_000
            text = literal(count, plain)
            runs = [measure(root, "load", text, args.timeout) for _ in range(args.repeat)]
            timed = [run for run in runs if "seconds" in run]
            result = min(timed, key=lambda run: run["seconds"]) if timed else runs[0]
            print("literal", plain, name, runs, flush=True)
            rate = _cell(result, "seconds", "{}")
            if "seconds" in result:
                rate = f"{count / result['seconds']:,.0f}"
            lines.append(f"| {'plain numbers' if plain else 'x / 127 each'} | {name} | {count:,} | "
                         f"{_cell(result, 'seconds', '{:.2f}')} | {rate} | "
                         f"{_cell(result, 'peak_growth_mib', '{:.0f}')} |")
    lines += ["", "## An over-limit literal (10^7 plain numbers, limit 2^20)", "",
              "| code | seconds to the error | peak growth MiB | error |", "|---|---|---|---|"]
    for name, root in roots.items() if "limit" in sections else ():
        if name == "before":
            lines.append("| before | not measured: it parsed for over 15 minutes at 3.75 GB (issue 12) | | |")
            continue
        result = measure(root, "load", "const w : float32[2] = [" + "0.5, " * 10**7 + "]\n", args.timeout)
        print("limit", name, result, flush=True)
        lines.append(f"| {name} | {_cell(result, 'seconds', '{:.2f}')} | "
                     f"{_cell(result, 'peak_growth_mib', '{:.0f}')} | `{result.get('error', '')}` |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
