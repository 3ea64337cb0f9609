"""Kernel variants against the traffic-matched ceiling, for the cases bench_gpu.py finds below 95% of it.

    python3 benchmarks/sweep_dq.py --out DIR
    python3 benchmarks/sweep_dq.py --variant base:8 --variant 'cs:occ:NETDSL_STORE_CS=1' --cases 'DQ int8@float32'

Each variant is the kernels compiled with some tuning macros (the ``#ifndef NETDSL_*`` knobs of kernels/,
abi.TUNING_DEFAULTS) and a grid policy: N resident CTAs per SM for the elementwise kernels (8 is the
launchers' default, geometry.grid) or ``occ``, the kernel's own occupancy (one wave). Every case runs
through the launchers as bench_gpu.py runs it (its cases, inputs, timing and ceilings), with the
variant's kernels and grids swapped in. Per case the table gives the ceiling's two access orders
separately (interleaved: a streaming kernel's order; prefix: all reads early), then each variant's GB/s
and its share of the best ceiling. The first variant is timed again at the end: the spread between its
two runs is the noise. Writes sweep.md and sweep.json under --out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_gpu as bench  # noqa: E402

from netdsl import dtypes  # noqa: E402
from netdsl.backends import cupy as gpu  # noqa: E402
from netdsl.backends.cupy import abi, dynamic, geometry, launch, loader  # noqa: E402
from netdsl.backends.cupy.device import import_cupy  # noqa: E402

#: (label prefix, types) of the cases swept by default: those below 95% of the ceiling in
#: benchmarks/results-gpu.md, and as controls (at 97-101%) Quantize fp4 per-tensor (bfloat16), Quantize int8
#: per-tensor and two fused Q->DQ, which the elementwise knobs change too
DEFAULT_CASES = ("DQ @float32,bfloat16", "DQ(@float32,bfloat16", "Q fp4 @bfloat16", "DynQ NVFP4 16x1@bfloat16",
                 "DynQ float int8 128x128@bfloat16", "DynQ float int8 1x4096@bfloat16",
                 "Q int8 per-tensor@float32,bfloat16", "Q->DQ int8 per-tensor@float32,bfloat16",
                 "Q->DQ fp4 block 1x16@float32,bfloat16")
DEFAULT_VARIANTS = ("base:8", "base:occ", "ctas6:occ:NETDSL_MIN_CTAS_PER_SM=6@DQ|Q",
                    "ctas8:occ:NETDSL_MIN_CTAS_PER_SM=8@DQ|Q", "ahead2:occ:NETDSL_AHEAD=2@DQ|Q",
                    "ahead3:occ:NETDSL_AHEAD=3@DQ|Q", "scale:occ:NETDSL_SCALE_AHEAD=1@DQ|Q",
                    "scale-all:occ:NETDSL_SCALE_AHEAD=7@DQ|Q", "cs:occ:NETDSL_STORE_CS=1@DQ|Q",
                    "scale-cs:8:NETDSL_SCALE_AHEAD=1,NETDSL_STORE_CS=1@DQ|Q",
                    "cta10:8:NETDSL_CTA16_PASSES=10@DynQ", "cta12:8:NETDSL_CTA16_PASSES=12@DynQ",
                    "cta16:8:NETDSL_CTA16_PASSES=16@DynQ", "vec8:8:NETDSL_TILE16_BF16_VEC=8@DynQ",
                    "vec2:8:NETDSL_TILE16_BF16_VEC=2@DynQ", "nopf:8:NETDSL_TILE_PREFETCH=0@DynQ")

#: the macros the launchers also read on the host (abi's values, swapped with a variant's kernels)
HOST_TUNING = {"NETDSL_CTA16_PASSES": "CTA16_PASSES", "NETDSL_TILE16_BF16_VEC": "TILE16_BF16_VEC",
               "NETDSL_CTA_CTAS": "CTA16_CTAS_PER_SM"}


@dataclass(frozen=True)
class Variant:
    """NAME:GRID[:MACRO=V,...][@PREFIX|PREFIX]: the macros, the grid policy, and the case labels it runs
    (prefixes; all cases when none)."""

    name: str
    grid: str  # resident CTAs per SM the elementwise grids assume, or 'occ'
    defines: tuple[str, ...]
    only: tuple[str, ...] = ()

    @staticmethod
    def parse(text: str) -> Variant:
        text, _, only = text.partition("@")
        name, grid, *rest = text.split(":")
        return Variant(name, grid, tuple(w for w in ":".join(rest).split(",") if w),
                       tuple(w for w in only.split("|") if w))

    @property
    def key(self) -> str:
        return f"{self.name}/{self.grid}"

    def runs(self, label: str) -> bool:
        return not self.only or any(label.startswith(prefix) for prefix in self.only)


def build(job: tuple[str, tuple[str, ...], tuple[str, ...]]) -> tuple[bytes, dict[str, str]]:
    """One NVRTC program (run in a worker process)."""
    file, names, defines = job
    return loader.compile_cubin(file, names, abi.COMPILE_OPTIONS + tuple(f"-D{d}" for d in defines))


class Kernels:
    """The launchers' kernel lookup, recorded (which names the cases use) or swapped for a variant's."""

    def __init__(self) -> None:
        self.used: dict[str, set[str]] = {}
        self.label = ""  # the case being recorded
        self.files: dict[str, set[str]] = {}  # case label -> the kernel files it used
        self.modules: dict[tuple[str, tuple[str, ...]], loader.Module] = {}
        self.variant: Variant | None = None
        self.last: Any = None  # the function last looked up
        self.grid: Any = None  # the grid last computed

    def __call__(self, file: str, name: str, on_device: int | None = None) -> Any:
        self.used.setdefault(file, set()).add(name)
        self.files.setdefault(self.label, set()).add(file)
        module = self.modules.get((file, self.variant.defines)) if self.variant and self.variant.defines else None
        self.last = loader.kernel(file, name, on_device) if module is None else module.function(name)
        return self.last

    def jobs(self, variants: list[Variant]) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
        """The NVRTC programs of the variants: per variant with macros, each file its cases used, with the
        names all cases used from it."""
        return list(dict.fromkeys((file, tuple(sorted(self.used[file])), v.defines) for v in variants if v.defines
                                  for label, files in self.files.items() if v.runs(label) for file in sorted(files)))


@contextlib.contextmanager
def swapped(kernels: Kernels, variant: Variant, sms: int) -> Iterator[None]:
    """The launchers with ``variant``'s kernels and grid policy (launch caches emptied on entry and exit)."""
    cp = import_cupy()
    saved = (launch.kernel, dynamic.kernel, geometry.grid, {a: getattr(abi, a) for a in HOST_TUNING.values()})
    original_grid = geometry.grid

    def grid(work_items: int, on_device: int, ctas_per_sm: int = abi.CTAS_PER_SM) -> tuple[int]:
        if ctas_per_sm != abi.CTAS_PER_SM or (variant.grid == "occ" and kernels.last is None):
            kernels.grid = original_grid(work_items, on_device, ctas_per_sm)  # the tile and CTA kernels' own
            return kernels.grid
        if variant.grid == "occ":
            ctas_per_sm = cp.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(kernels.last.ptr, abi.THREADS, 0)
        else:
            ctas_per_sm = int(variant.grid)
        kernels.grid = (max(1, min(-(-work_items // abi.THREADS), sms * ctas_per_sm)),)
        return kernels.grid

    kernels.variant = variant
    launch.kernel = dynamic.kernel = kernels
    geometry.grid = grid
    for word in variant.defines:
        macro, _, value = word.partition("=")
        if macro in HOST_TUNING:
            setattr(abi, HOST_TUNING[macro], int(value))
    launch.LAUNCHES.entries.clear()
    try:
        yield
    finally:
        launch.kernel, dynamic.kernel, geometry.grid, host = saved
        for attribute, value in host.items():
            setattr(abi, attribute, value)
        kernels.variant = None
        launch.LAUNCHES.entries.clear()


def wanted_cases(specs: list[str]) -> list[tuple[str, set[str]]]:
    out = []
    for spec in specs:
        prefix, _, types = spec.partition("@")
        out.append((prefix, set(types.split(",")) if types else {"float32", "bfloat16"}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log2", type=int, default=28)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--cases", action="append", help="LABEL_PREFIX[@type,type] (repeatable)")
    parser.add_argument("--variant", action="append", help="NAME:GRID[:MACRO=V,...] (repeatable)")
    parser.add_argument("--random-ceilings", type=int, default=2,
                        help="also measure the first N ceilings with random source data")
    parser.add_argument("--budget", type=float, default=200.0, help="seconds; later variants are skipped")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    began = time.monotonic()
    ok, reason = gpu.available()
    if not ok:
        sys.exit(f"no GPU: {reason}")
    cp = import_cupy()
    print(f"precompile: {gpu.precompile()} parts built in {time.monotonic() - began:.0f} s", flush=True)
    sms = cp.cuda.Device().attributes["MultiProcessorCount"]
    n = 1 << args.log2
    wanted = wanted_cases(args.cases or list(DEFAULT_CASES))
    variants = [Variant.parse(v) for v in (args.variant or DEFAULT_VARIANTS)]
    kernels = Kernels()
    # the cases, their inputs and their kernel names (one untimed launch each through the recording lookup)
    groups = []
    for t in (dtypes.FLOAT32, dtypes.BFLOAT16):
        rotated = bench.RotatedInputs(cp, n, t)
        group = [(label, moved, make, rotated(kind)) for label, moved, kind, make in bench.cases(cp, n, t)
                 if any(label.startswith(p) and t.name in types for p, types in wanted)]
        with swapped(kernels, variants[0], sms):
            for label, _moved, make, inputs in group:
                kernels.label = label
                make(inputs[0])()
        groups.append((t, group))
    cp.cuda.Device().synchronize()
    results: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for t, group in groups:
        for label, moved, _make, _inputs in group:
            order.append(f"{label} | {t.name}")
            results[order[-1]] = {"read": moved.read, "write": moved.write, "rates": {}, "grids": {}}
    ceilings: dict[tuple[int, int], dict[str, float]] = {}
    runs = variants + [Variant(variants[0].name + "-again", variants[0].grid, variants[0].defines, variants[0].only)]

    def write() -> None:
        lines = report(results, order, ceilings, runs)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "sweep.md").write_text("\n".join(lines) + "\n")
            (args.out / "sweep.json").write_text(json.dumps(
                {"results": results, "ceilings": {f"{r}/{w}": c for (r, w), c in ceilings.items()},
                 "variants": [v.__dict__ for v in runs]}, indent=1, default=str))

    # the variants compile in worker processes while the ceilings are measured
    jobs = kernels.jobs(variants)
    with ProcessPoolExecutor(min(16, max(1, len(jobs))), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(build, job) for job in jobs]
        for index, traffic in enumerate(sorted({ceiling_key(r) for r in results.values()})):
            rates = bench.traffic_rates(cp, *traffic, args.reps)
            entry = {f"{o}/{c}x{th}": r for (o, c, th), r in rates.items()}
            if index < args.random_ceilings:
                entry |= {f"random {o}/{c}x{th}": r for (o, c, th), r in
                          bench.traffic_rates(cp, *traffic, args.reps, random_source=True).items()}
            ceilings[traffic] = entry
        print(f"ceilings done at {time.monotonic() - began:.0f} s", flush=True)
        failed = set()
        for (file, _names, defines), future in zip(jobs, futures):
            try:
                kernels.modules[(file, defines)] = loader.load(*future.result())
            except Exception as error:  # noqa: BLE001 - that variant is left out, the others run
                print(f"build {file} {defines}: {type(error).__name__}: {error}", flush=True)
                failed.add(defines)
    print(f"compiled {len(jobs)} programs by {time.monotonic() - began:.0f} s; kernels: "
          + "; ".join(sorted(name for names in kernels.used.values() for name in names)), flush=True)
    for t, group in groups:
        for variant in runs:
            if variant.defines in failed:
                continue
            if time.monotonic() - began > args.budget and not variant.name.endswith("-again"):
                print(f"budget spent: {variant.key} skipped for {t.name}", flush=True)
                continue
            with swapped(kernels, variant, sms):
                for label, moved, make, inputs in group:
                    key = f"{label} | {t.name}"
                    if not variant.runs(label):
                        continue
                    try:
                        bench.warm_up(cp, [make(x) for x in inputs])
                        seconds, _ = bench.timed(cp, [make(x) for x in inputs], args.reps)
                    except Exception as error:  # noqa: BLE001 - a variant may not build or run for a case
                        print(f"{key} {variant.key}: {type(error).__name__}: {error}", flush=True)
                        continue
                    results[key]["rates"][variant.key] = moved.total / seconds
                    results[key]["grids"][variant.key] = kernels.grid
            print(f"{t.name} {variant.key}: done at {time.monotonic() - began:.0f} s", flush=True)
            write()
        group.clear()
        cp.get_default_memory_pool().free_all_blocks()
    write()
    print("\n".join(report(results, order, ceilings, runs)), flush=True)
    print(f"done in {time.monotonic() - began:.0f} s", flush=True)


def ceiling_key(result: dict[str, Any]) -> tuple[int, int]:
    """The traffic whose ceiling a case is held against: its bytes to the nearest 4 MiB (cases that differ
    only by a small scale tensor share one measurement; the difference is under 0.5%)."""
    unit = 4 << 20
    return (max(unit, round(result["read"] / unit) * unit), max(unit, round(result["write"] / unit) * unit))


def report(results: dict[str, dict[str, Any]], order: list[str], ceilings: dict[tuple[int, int], dict[str, float]],
           runs: list[Variant]) -> list[str]:
    """A markdown table: per case the ceiling by order (GB/s), then each variant's % of the best ceiling."""
    names = [v.key for v in runs]
    lines = ["| case | type | interleaved | prefix | ceiling | " + " | ".join(names) + " |",
             "|---|---|---|---|---|" + "---|" * len(names)]
    for key in order:
        r = results[key]
        c = ceilings[ceiling_key(r)]
        inter = max(v for k, v in c.items() if k.startswith("interleaved"))
        prefix = max(v for k, v in c.items() if k.startswith("prefix"))
        best = max(inter, prefix)
        label, t = key.split(" | ")
        cells = [f"{100 * r['rates'][v] / best:.1f}" if v in r["rates"] else "" for v in names]
        lines.append(f"| {label} | {t} | {inter / 1e9:.0f} | {prefix / 1e9:.0f} | {best / 1e9:.0f} | "
                     + " | ".join(cells) + " |")
    lines.append("\nCeilings by order and launch shape (GB/s):")
    for (read, write), c in ceilings.items():
        lines.append(f"- read {read >> 20} MiB write {write >> 20} MiB: "
                     + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in c.items()))
    lines.append("\nGrids: " + "; ".join(f"{key}: {results[key]['grids']}" for key in order[:4]))
    return lines


if __name__ == "__main__":
    main()
