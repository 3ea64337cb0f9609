"""The command line's own costs (docs/cli.md): how long ``netdsl check`` takes, what ``netdsl run`` adds to the
engine's work on a large tensor (wall time and peak memory), and what the imports cost.

    python3 benchmarks/bench_cli.py --out benchmarks/results-cli.md            # check, run at 2^28, imports
    python3 benchmarks/bench_cli.py --log2 20 --repeat 3                       # a quick try
    python3 benchmarks/bench_cli.py --imports --python /tmp/v6/bin/python --python /tmp/v7/bin/python

Every figure is from a fresh process, as a user meets it, with netdsl's bytecode compiled first (as an
installed package has it). ``run`` is measured on one model (one quantize of a float32[2^k] input to int8,
NumPy backend) against two engine baselines, each a Python process doing only the engine's part:
- from a file: ``np.load`` of the input file, then ``Network.run``; against it,
  ``netdsl run MODEL --input x=x.npy`` (the command, printing the output's summary);
- random inputs: the inputs drawn by ``netdsl.arrays.random_input`` (what the command draws, seed 1), then
  ``Network.run``; against it (and against the file baseline), ``netdsl run MODEL`` drawing its input.
The processes are interleaved, the best of ``--repeat`` is reported; the load average is printed before and
after. Peak memory is each process's maximum resident set (``wait4``'s ru_maxrss), against input + output bytes.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL = """input x : float32[{n}]
const s : float32[] = 0.0078125
q = quantize(x, s, to_type=int8)
output q
"""
ENGINE = """
import sys, time
import numpy as np
import netdsl
network = netdsl.load(sys.argv[1])
start = time.perf_counter()
x = np.load(sys.argv[2])
read = time.perf_counter()
network.run({"x": x}, backend="numpy")
print(f"engine {time.perf_counter() - read:.3f} inputs {read - start:.3f}")
"""
ENGINE_RANDOM = """
import sys, time
import numpy as np
import netdsl
from netdsl import arrays
network = netdsl.load(sys.argv[1])
start = time.perf_counter()
rng = np.random.default_rng(1)  # the command's default seed
inputs = {name: arrays.random_input(tensor_type, rng) for name, tensor_type in network.inputs.items()}
drawn = time.perf_counter()
network.run(inputs, backend="numpy")
print(f"engine {time.perf_counter() - drawn:.3f} inputs {drawn - start:.3f}")
"""


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


class Measured(NamedTuple):
    wall: float  # seconds
    cpu: float  # user + system seconds of the process (its threads together): what waiting for a core hides
    rss: int  # peak resident set, bytes
    out: str


def timed_rss(command: list[str]) -> Measured:
    """Wall and CPU seconds, peak resident set (``wait4``'s rusage) and stdout of one process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment())
    out = process.stdout.read()  # type: ignore[union-attr]
    err = process.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{err.decode()}")
    return Measured(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, out.decode())


def measure_check(repeat: int) -> list[str]:
    """``netdsl check`` beside the floor under it: Python starting, and Python importing NumPy."""
    commands = {"`netdsl check examples/quantize.net`":
                [sys.executable, "-m", "netdsl", "check", str(ROOT / "examples" / "quantize.net")],
                "`netdsl check examples/nvfp4_bf16.net`":
                [sys.executable, "-m", "netdsl", "check", str(ROOT / "examples" / "nvfp4_bf16.net")],
                "floor: `python3 -c pass`": [sys.executable, "-c", "pass"],
                "floor: `python3 -c 'import numpy'`": [sys.executable, "-c", "import numpy"]}
    timed_rss(next(iter(commands.values())))  # the first run builds the parser cache
    runs: dict[str, list[Measured]] = {label: [] for label in commands}
    for _ in range(repeat):  # interleaved, so that a burst of load hits each alike
        for label, command in commands.items():
            runs[label].append(timed_rss(command))
    return [f"| {label} | {min(r.wall for r in found):.3f} s | {statistics.median(r.wall for r in found):.3f} s | "
            f"{min(r.cpu for r in found):.3f} s |" for label, found in runs.items()]


RUNS = {  # key: (label, the baseline it is compared with)
    "engine": ("engine from a file: `np.load` + `Network.run` in one process", "engine"),
    "cli": ("`netdsl run q.net --input x=x.npy --backend numpy`", "engine"),
    "engine_random": ("engine on random inputs: `arrays.random_input` + `Network.run` in one process", "engine_random"),
    "random": ("`netdsl run q.net --backend numpy` (random input)", "engine_random"),
}


def write_input(folder: Path, n: int) -> tuple[Path, Path]:
    """The model (float32[n] -> int8) and its input file, n uniform values in [-1, 1)."""
    model, data = folder / "q.net", folder / "x.npy"
    model.write_text(MODEL.format(n=n))
    # written by a child: a parent grown by the input would lend its size to every process it starts
    subprocess.run([sys.executable, "-c", "import sys, numpy as np; np.save(sys.argv[1], np.random.default_rng(0)"
                    ".random(int(sys.argv[2]), dtype=np.float32) * 2 - 1)", str(data), str(n)], check=True)
    return model, data


def measure_run(model: Path, data: Path, n: int, repeat: int) -> tuple[list[str], str]:
    """The table's rows, and the sentence on the target (issue 13: the command within 1.5x of the engine)."""
    payload = n * 4 + n  # the float32 input and the int8 output
    commands = {
        "engine": [sys.executable, "-c", ENGINE, str(model), str(data)],
        "cli": [sys.executable, "-m", "netdsl", "run", str(model), "--input", f"x={data}", "--backend", "numpy"],
        "engine_random": [sys.executable, "-c", ENGINE_RANDOM, str(model)],
        "random": [sys.executable, "-m", "netdsl", "run", str(model), "--backend", "numpy"],
    }
    results: dict[str, list[Measured]] = {key: [] for key in commands}
    for _ in range(repeat):  # interleaved, so that a burst of load hits each alike
        for key, command in commands.items():
            results[key].append(timed_rss(command))
    wall = {key: min(r.wall for r in found) for key, found in results.items()}
    cpu = {key: min(r.cpu for r in found) for key, found in results.items()}
    rows = []
    for key, (label, baseline) in RUNS.items():
        rss = max(r.rss for r in results[key])
        rows.append(f"| {label} | {wall[key]:.2f} s | {wall[key] / wall[baseline]:.2f}x | "
                    f"{wall[key] / wall['engine']:.2f}x | {cpu[key]:.2f} s | {cpu[key] / cpu[baseline]:.2f}x | "
                    f"{rss / 2**30:.2f} GiB | {rss / payload:.2f}x |")
    for key, what in (("engine", "reading the input (`np.load`)"), ("engine_random", "drawing the input")):
        inner = [r.out.split() for r in results[key]]
        rows.append(f"| (inside the {'file' if key == 'engine' else 'random'} baseline: `Network.run` "
                    f"{min(float(i[1]) for i in inner):.2f} s, {what} {min(float(i[3]) for i in inner):.2f} s) "
                    "| | | | | | | |")
    worst = max(wall["cli"] / wall["engine"], wall["random"] / wall["engine_random"])
    verdict = (f"Target (issue 13: `netdsl run` within 1.5x of the engine's wall time): "
               f"{'met' if worst <= 1.5 else 'not met'}: {wall['cli'] / wall['engine']:.2f}x from a file, "
               f"{wall['random'] / wall['engine_random']:.2f}x with random inputs (against the engine on the same "
               f"random inputs; {wall['random'] / wall['engine']:.2f}x against the engine from a file).")
    return rows, verdict


READERS = {  # label: how a fresh process gets the input's values, then makes one pass over them (max)
    "`np.load`": "x = np.load(path)",
    "`files.read_array`, one thread": "files.PARALLEL_READ = 1 << 62; x = files.read_array(path, declared)",
    "`files.read_array` (netdsl's: a thread per core)": "x = files.read_array(path, declared)",
    "`np.load(mmap_mode='r')`: memory-mapped, not chosen (SIGBUS if the file is cut)":
        "x = np.load(path, mmap_mode='r')",
}
READ = """
import sys, time
import numpy as np
from netdsl import files, dtypes
from netdsl.ir import TensorType
path, declared = sys.argv[1], TensorType(dtypes.FLOAT32, (int(sys.argv[2]),))
start = time.perf_counter()
{read}
got = time.perf_counter()
x.max()
print(f"{{got - start:.3f}} {{time.perf_counter() - start:.3f}}")
"""


def measure_reads(data: Path, n: int, repeat: int) -> list[str]:
    """Ways to read the float32[n] input, each in a fresh process: the read, and the read plus one pass over
    the values (what the engine's first layer does, and where a memory map's page faults are paid)."""
    found: dict[str, list[tuple[float, float]]] = {label: [] for label in READERS}
    for _ in range(repeat):  # interleaved
        for label, read in READERS.items():
            out = timed_rss([sys.executable, "-c", READ.format(read=read), str(data), str(n)]).out.split()
            found[label].append((float(out[0]), float(out[1])))
    return [f"| {label} | {min(r[0] for r in runs):.3f} s | {min(r[1] for r in runs):.3f} s |"
            for label, runs in found.items()]


def import_costs(pythons: list[str], repeat: int) -> list[str]:
    rows = []
    for python in pythons:
        version = subprocess.run([python, "-c", "import ml_dtypes, numpy; print(ml_dtypes.__version__, "
                                  "numpy.__version__)"], capture_output=True, text=True, check=True).stdout.split()
        costs: dict[str, list[int]] = {"numpy": [], "ml_dtypes": []}
        for _ in range(repeat):
            err = subprocess.run([python, "-X", "importtime", "-c", "import numpy; import ml_dtypes"],
                                 capture_output=True, text=True, check=True).stderr
            for line in err.splitlines():
                name = line.rsplit("|", 1)[-1].strip()
                if name in costs and line.count("|") == 2:
                    costs[name].append(int(line.split("|")[1]))
        best, median = min(costs["ml_dtypes"]) / 1000, statistics.median(costs["ml_dtypes"]) / 1000
        rows.append(f"| ml_dtypes {version[0]} (NumPy {version[1]}) | {min(costs['numpy']) / 1000:.0f} ms | "
                    f"{best:.0f} ms | {median:.0f} ms |")
    return rows


def free_cores() -> str:
    """How much of the two cores is free now: two threads each doing the work one does alone take about as
    long as one when both cores are free, twice as long when other work holds one."""
    def work(_: int) -> None:
        values = np.random.default_rng(0).random(1 << 16)
        for _ in range(200):
            np.sin(values)

    times = []
    for threads in (1, 2):
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(threads)))
        times.append(time.perf_counter() - start)
    return f"two threads' equal work took {times[1] / times[0]:.2f}x one's"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log2", type=int, default=28, help="run at 2^LOG2 elements (default 28: a 1 GiB input)")
    parser.add_argument("--repeat", type=int, default=3, help="processes per figure (the best is reported)")
    parser.add_argument("--imports", action="store_true", help="measure only the import costs")
    parser.add_argument("--python", action="append", default=[],
                        help="another interpreter (a venv with another ml_dtypes) for the import costs")
    parser.add_argument("--out", help="write the results as Markdown to this file")
    args = parser.parse_args()
    # an installed package has its bytecode; a checkout run with PYTHONDONTWRITEBYTECODE would compile every module
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "netdsl")], check=True, env=environment())
    load, cores = os.getloadavg(), free_cores()
    lines = ["# netdsl command line: costs", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, NumPy {np.__version__}. Other work shares these cores: the best of "
             f"several runs is reported. When the run began: load average {load[0]:.1f}, {cores} (1x: both cores "
             "free; 2x: one busy); when it ended: LOAD_AFTER.", "",
             f"Command: `python3 benchmarks/bench_cli.py {' '.join(sys.argv[1:])}`".rstrip(), ""]
    if not args.imports:
        lines += ["## `netdsl check` latency (a fresh process)", "",
                  "| command | wall (best) | wall (median) | CPU time (best) |", "|---|---|---|---|"]
        lines += measure_check(max(args.repeat, 5)) + [""]
        n = 1 << args.log2
        with tempfile.TemporaryDirectory(prefix="netdsl-bench-") as folder:
            model, data = write_input(Path(folder), n)
            rows, verdict = measure_run(model, data, n, args.repeat)
            reads = measure_reads(data, n, max(args.repeat, 3))
        lines += [f"## `netdsl run` at 2^{args.log2} elements, float32 -> int8", "",
                  "| what | wall (best) | vs its engine baseline | vs engine from a file | CPU time (best) | "
                  "CPU vs its baseline | peak RSS | vs input + output |", "|---|---|---|---|---|---|---|---|"]
        lines += rows + ["", verdict, ""]
        lines += [f"## Reading the 2^{args.log2} float32 input (a fresh process each; the page cache warm)", "",
                  "| how | read (best) | read + one pass over the values (best) |", "|---|---|---|"]
        lines += reads + [""]
    lines += ["## Import costs (`python -X importtime -c 'import numpy; import ml_dtypes'`, cumulative)", "",
              "| ml_dtypes | numpy | ml_dtypes (best) | ml_dtypes (median) |", "|---|---|---|---|"]
    lines += import_costs([sys.executable] + args.python, max(args.repeat, 5)) + [""]
    after = f"load average {os.getloadavg()[0]:.1f}, {free_cores()}"
    text = "\n".join(lines).replace("LOAD_AFTER", after, 1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
