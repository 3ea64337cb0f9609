"""``netdsl apply`` throughput beside the rate of just reading (and hashing) the same files, one run.

    python3 benchmarks/bench_apply.py [--size-gb 3] [--dir DIR] [--recipe examples/recipes/nvfp4_weights.net]
                                      [--backend numpy|cupy] [--workers N | --gpus N] [--peer-python PYTHON]
                                      [--out benchmarks/results-apply.md]

Builds (once, in DIR) a synthetic Llama-shaped bfloat16 checkpoint of about SIZE GB in 1 GB shards, then
measures in this order: reading every shard (64 MiB reads), reading and SHA-256 hashing them, and
``netdsl apply`` (a fresh process, its peak resident memory from the OS) on the same files; rates are
GB of checkpoint read per second. The files are read from the page cache in every measurement (they were
just written or read; the machine has the memory), so the read rate is the ceiling of memory-to-memory
reading, not the disk's. Target on the GPU (issue 14): apply >= 90% of the read rate. After the apply run:
writing and fsyncing an output of apply's size, and the job's I/O alone (every input read and an output of
apply's size written and fsynced, the same files at once as apply writes, no computing): the ceiling that
matches apply's traffic, as the kernel table's traffic-matched ceiling does a kernel's.

Peer: ModelOpt's own NVFP4 quantizer (``NVFP4QTensor.quantize``) over the same weights, read with safetensors
and written with ``save_file`` per shard, when ``--peer-python`` names a Python with torch and nvidia-modelopt
installed (the same ``python3`` as netdsl's run will do); its tensors are on the GPU where torch sees one,
else on the CPU. Its output is compared with netdsl's, block scale by block scale (docs/checkpoints.md says
where the two rules differ). ModelOpt's modules are imported and run unchanged, but not the ``__init__`` of
the five packages above ``qtensor/nvfp4_tensor.py``: those import every ModelOpt algorithm and so need
scipy, PuLP and huggingface_hub (about 55 MB of wheels, none of them used by the quantizer); what the
quantizer's own modules import (torch, pydantic, omegaconf, requests, setuptools, tqdm) must be installed.

The lead's GPU row: ``python3 benchmarks/bench_apply.py --backend cupy --out benchmarks/results-apply.md``.
"""

from __future__ import annotations

import argparse
import datetime
import filecmp
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ml_dtypes
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HIDDEN, INTERMEDIATE = 4096, 11008
CHUNK = 1 << 26


def layer_tensors(layer: int) -> list[tuple[str, tuple[int, ...]]]:
    prefix = f"model.layers.{layer}."
    square, wide, narrow = (HIDDEN, HIDDEN), (INTERMEDIATE, HIDDEN), (HIDDEN, INTERMEDIATE)
    return [(prefix + "self_attn.q_proj.weight", square), (prefix + "self_attn.k_proj.weight", square),
            (prefix + "self_attn.v_proj.weight", square), (prefix + "self_attn.o_proj.weight", square),
            (prefix + "mlp.gate_proj.weight", wide), (prefix + "mlp.up_proj.weight", wide),
            (prefix + "mlp.down_proj.weight", narrow), (prefix + "input_layernorm.weight", (HIDDEN,))]


def draw_weight(shape: tuple[int, ...], seed: list[int]) -> np.ndarray:
    """One checkpoint tensor: bfloat16 N(0, 0.02) from its own seed."""
    values = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    values *= np.float32(0.02)
    return values.astype(ml_dtypes.bfloat16)


def make_checkpoint(folder: Path, size_gb: float) -> None:
    """Llama-shaped layers of bfloat16 N(0, 0.02) weights until SIZE GB, about 1 GB per shard; each tensor
    drawn from its own seed ([0, layer, index]) by a thread per core, so that tens of GB take seconds."""
    from safetensors.numpy import save_file

    marker = folder / "bench.json"
    if marker.is_file() and json.loads(marker.read_text()) .get("size_gb") == size_gb \
            and json.loads(marker.read_text()).get("seeds") == "per-tensor":
        return
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.safetensors"):
        old.unlink()
    per_layer = sum(int(np.prod(s)) * 2 for _, s in layer_tensors(0))
    layers = max(1, round(size_gb * 1e9 / per_layer))
    shards: list[list[tuple[str, tuple[int, ...], list[int]]]] = [[]]
    shard_bytes = 0
    for layer in range(layers):
        for i, (name, shape) in enumerate(layer_tensors(layer)):
            if shard_bytes > 1e9:
                shards.append([])
                shard_bytes = 0
            shards[-1].append((name, shape, [0, layer, i]))
            shard_bytes += int(np.prod(shape)) * 2

    weight_map = {}
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        for i, members in enumerate(shards):
            name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            arrays = pool.map(lambda m: draw_weight(m[1], m[2]), members)
            save_file({m[0]: a for m, a in zip(members, arrays)}, str(folder / name), metadata={"format": "pt"})
            weight_map.update({m[0]: name for m in members})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": HIDDEN}))
    marker.write_text(json.dumps({"size_gb": size_gb, "layers": layers, "seeds": "per-tensor"}))


def _read_file(path: Path, hash_it: bool) -> int:
    buffer = bytearray(CHUNK)
    total = 0
    digest = hashlib.sha256() if hash_it else None
    with open(path, "rb", buffering=0) as stream:
        while True:
            count = stream.readinto(buffer)
            if not count:
                break
            total += count
            if digest is not None:
                digest.update(memoryview(buffer)[:count])
    return total


def read_rate(files: list[Path], hash_it: bool, threads: int = 1) -> tuple[float, float]:
    """(seconds, bytes) to read every file in 64 MiB pieces, SHA-256 hashing them when ``hash_it``; with
    ``threads`` > 1, that many files at once (a thread each)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda path: _read_file(path, hash_it), files))
    return time.perf_counter() - start, total


def write_rate(folder: Path, total: int, files: int) -> float:
    """Seconds to write ``total`` bytes as ``files`` new files at once (a thread each, 64 MiB writes of random
    bytes) and fsync each: the durable-write ceiling of an output of that size on this disk."""
    piece = np.random.default_rng(0).integers(0, 256, CHUNK, dtype=np.uint8).data
    folder.mkdir(parents=True, exist_ok=True)

    def write(index: int) -> None:
        size = total // files + (index < total % files)
        with open(folder / f"w{index}", "wb") as stream:
            while size > 0:
                size -= stream.write(piece[:min(size, CHUNK)])
            stream.flush()
            os.fsync(stream.fileno())

    start = time.perf_counter()
    with ThreadPoolExecutor(files) as pool:
        list(pool.map(write, range(files)))
    seconds = time.perf_counter() - start
    for path in folder.iterdir():
        path.unlink()
    return seconds


def io_rate(files: list[Path], folder: Path, ratio: float, parallel: int) -> float:
    """Seconds to do the I/O of an apply run alone, with no computing: ``parallel`` files at once (a thread
    each), every input file read in 64 MiB pieces and the first ``ratio`` of each piece written to a new file
    (the output is ``ratio`` x the input, as apply's), which is fsynced at its end. The ceiling that matches
    apply's traffic on this machine's page cache and disk (apply also hashes what it writes, not counted)."""
    folder.mkdir(parents=True, exist_ok=True)

    def copy(path: Path) -> None:
        buffer = bytearray(CHUNK)
        with open(path, "rb", buffering=0) as source, open(folder / path.name, "wb", buffering=0) as target:
            while count := source.readinto(buffer):
                view = memoryview(buffer)[:round(count * ratio)]
                while view:
                    view = view[target.write(view):]
            os.fsync(target.fileno())

    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(copy, files))
    seconds = time.perf_counter() - start
    for path in folder.iterdir():
        path.unlink()
    return seconds


def _memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) of a process in KiB: all resident pages, and the anonymous ones (not the
    checkpoint's memory-mapped file pages, which the kernel can drop and read again)."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                fields[key] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    return fields.get("VmRSS", 0), fields.get("RssAnon", 0)


def run_apply(recipe: Path, folder: Path, backend: str, dask: list[str],
              env_extra: dict[str, str] | None = None) -> tuple[float, float, float, Path, str]:
    """(seconds, peak resident GB, peak anonymous GB, output folder, its ``--timing`` table) of one fresh
    ``netdsl apply`` process (with the Dask options ``dask`` and the environment ``env_extra``), sampled every
    20 ms."""
    out = Path(tempfile.mkdtemp(prefix="bench-apply-out-", dir=folder.parent))
    command = [sys.executable, "-m", "netdsl", "apply", str(recipe), str(folder), "-o", str(out / "q"),
               "--backend", backend, "--no-progress", "--timing", *dask]
    # the checkout first, then the caller's entries (where a machine keeps dependencies such as lark)
    kept = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *kept]), **(env_extra or {}))
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        peak_rss = peak_anon = 0
        while process.poll() is None:
            rss, anon = _memory_kb(process.pid)
            peak_rss, peak_anon = max(peak_rss, rss), max(peak_anon, anon)
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        errors.seek(0)
        timing = errors.read()
    if process.returncode:
        raise SystemExit(f"netdsl apply failed (exit {process.returncode}): {timing[-2000:]}")
    return seconds, peak_rss / 1e6, peak_anon / 1e6, out / "q", timing.strip()


def same_files(first: Path, other: Path) -> bool:
    """Whether two output folders hold the same files with the same bytes."""
    names = sorted(p.name for p in first.iterdir())
    return names == sorted(p.name for p in other.iterdir()) and all(
        filecmp.cmp(first / name, other / name, shallow=False) for name in names if (first / name).is_file())


# ModelOpt's NVFP4QTensor, its modules unchanged but not the __init__ of the packages above it (every ModelOpt
# algorithm: scipy, PuLP, ...); the peer below and benchmarks/modelopt_cuda_nvfp4.py run it
IMPORT_NVFP4QTENSOR = r'''
import importlib.util, sys, types
from pathlib import Path
import modelopt
root = Path(importlib.util.find_spec("modelopt").submodule_search_locations[0])
for package in ("torch", "torch.opt", "torch.quantization", "torch.quantization.backends",
                "torch.quantization.qtensor"):
    module = types.ModuleType(f"modelopt.{package}")
    module.__path__ = [str(root.joinpath(*package.split(".")))]
    sys.modules[module.__name__] = module
    parent, _, child = module.__name__.rpartition(".")
    setattr(sys.modules[parent], child, module)
from modelopt.torch.quantization.qtensor.nvfp4_tensor import NVFP4QTensor
'''

PEER = IMPORT_NVFP4QTENSOR + r'''
import json, os, time
import torch
from safetensors import safe_open
from safetensors.torch import save_file
device = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_num_threads(os.cpu_count())
folder, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
FUSED = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gate_up", "up_proj": "gate_up"}
def group_of(name):
    parent, member, _ = name.rsplit(".", 2)
    return parent, FUSED.get(member, member)
groups = {}
for name in index:
    if name.endswith("_proj.weight"):
        groups.setdefault(group_of(name), []).append(name)
start = time.perf_counter()
handles = {shard: safe_open(str(folder / shard), framework="pt", device=device) for shard in set(index.values())}
global_scale = {}  # one per fused group, over all its members (ModelOpt's export unifies them too)
for shard in sorted(handles):
    result = {}
    f = handles[shard]
    for name in f.keys():
        w = f.get_tensor(name)
        if not name.endswith("_proj.weight"):
            result[name] = w.cpu()
            continue
        key = group_of(name)
        if key not in global_scale:
            amax = max(handles[index[m]].get_tensor(m).abs().amax().float() for m in groups[key])
            global_scale[key] = amax / (6.0 * 448.0)
        packed, scale, scale_2 = NVFP4QTensor.quantize(w, 16, weights_scaling_factor_2=global_scale[key])
        result[name] = packed._quantized_data.cpu()
        result[name + "_scale"] = scale.cpu()
        result[name + "_scale_2"] = scale_2.cpu().clone()
    save_file(result, str(out / shard), metadata={"format": "pt"})
seconds = time.perf_counter() - start
where = torch.cuda.get_device_name() if device == "cuda" else "CPU"
print(json.dumps({"seconds": seconds, "where": f"torch {torch.__version__}, modelopt {modelopt.__version__}, {where}"}))
'''


def run_peer(python: str, folder: Path) -> tuple[float, str, Path]:
    """(seconds, what ran it, output folder) of the ModelOpt peer under ``python``."""
    out = Path(tempfile.mkdtemp(prefix="bench-apply-peer-", dir=folder.parent))
    result = subprocess.run([python, "-c", PEER, str(folder), str(out)], capture_output=True, text=True)
    if result.returncode:
        lines = result.stderr.strip().splitlines() or ["no output"]
        raise RuntimeError(f"the ModelOpt peer failed: {lines[-1]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["seconds"], report["where"], out


def compare_with_peer(ours: Path, peer: Path, checkpoint: Path) -> str:
    """Block scales and packed code bytes that differ between netdsl's output and ModelOpt's (read by hand:
    safetensors' NumPy reader has no float8 type)."""
    from netdsl.apply.safetensors_io import read_header

    def raw(path: Path, name: str, tensors: dict) -> np.ndarray:
        info = tensors[name]
        with open(path, "rb") as stream:
            stream.seek(info.begin)
            return np.frombuffer(stream.read(info.nbytes), np.uint8)

    scales = blocks = other = signed_zero = explained = 0
    gs_tensors = gs_reciprocal = gs_codes = 0  # tensors whose global scales differ, and their codes
    for path in sorted(ours.glob("*.safetensors")):
        mine, theirs = read_header(path)[0], read_header(peer / path.name)[0]
        for name in mine:
            if not name.endswith("_proj.weight"):
                continue
            ours_scale, peer_scale = raw(path, name + "_scale", mine), raw(peer / path.name, name + "_scale", theirs)
            ours_gs = raw(path, name + "_scale_2", mine).view(np.float32)[0]
            peer_gs = raw(peer / path.name, name + "_scale_2", theirs).view(np.float32)[0]
            differ = ours_scale != peer_scale
            scales += int(np.count_nonzero(differ))
            blocks += differ.size
            if differ.any():
                explained += _division_order(checkpoint, path.name, name, ours_gs, peer_gs, ours_scale, peer_scale,
                                             differ)
            # codes in blocks whose scales agree: two nibbles per byte, 8 bytes per block of 16
            ours_codes = raw(path, name, mine).reshape(-1, 8)[~differ]
            peer_codes = raw(peer / path.name, name, theirs).reshape(-1, 8)[~differ]
            nibbles = [(ours_codes & 15, peer_codes & 15), (ours_codes >> 4, peer_codes >> 4)]
            codes = 0
            for a, b in nibbles:
                mismatch = a != b
                zero = mismatch & (a == 8) & (b == 0)  # -0: netdsl keeps the sign (0x8), ModelOpt writes +0
                signed_zero += int(np.count_nonzero(zero))
                codes += int(np.count_nonzero(mismatch & ~zero))
            if ours_gs == peer_gs:
                other += codes
            else:
                gs_tensors += 1
                gs_reciprocal += int(peer_gs == _cuda_global_scale(ours_gs))
                gs_codes += codes
    return (f"{scales} of {blocks} block scales differ ({scales / max(blocks, 1):.1e}), {explained} of them "
            f"where netdsl's fp8(fl32(amax / 6) / gs) and ModelOpt's fp8(amax / fl32(6 * gs)) differ "
            f"(docs/checkpoints.md); where the scales agree, {signed_zero} codes differ as -0 (netdsl 0x8) "
            f"against +0 (ModelOpt 0x0), {gs_codes} in the {gs_tensors} tensors whose global scales differ "
            f"({gs_reciprocal} of them ModelOpt's fl32(amax * fl32(1 / 2688)), torch's division by a Python "
            f"float on CUDA, against netdsl's fl32(amax / 2688)), and {other} otherwise")


def _cuda_global_scale(ours: np.float32) -> np.float32 | None:
    """The global scale ModelOpt's ``amax.float() / (6.0 * 448.0)`` gives on CUDA for the amax of netdsl's
    ``ours`` = fl32(amax / 2688): torch multiplies a CUDA tensor divided by a Python float by the float32
    reciprocal (aten/src/ATen/native/cuda/BinaryDivTrueKernel.cu). The amax is the bfloat16 weight whose
    quotient is ``ours`` (None: there is none)."""
    guess = np.array(ours * np.float32(2688), np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)
    for bits in (guess - 1, guess, guess + 1):
        amax = bits.view(ml_dtypes.bfloat16).astype(np.float32)
        if amax / np.float32(2688) == ours:
            return np.float32(amax * (np.float32(1) / np.float32(2688)))
    return None


def _division_order(checkpoint: Path, shard: str, name: str, ours_gs: np.float32, peer_gs: np.float32,
                    ours: np.ndarray, peer: np.ndarray, differ: np.ndarray) -> int:
    """How many of the differing block scales are exactly TensorRT's rule (ours) against ModelOpt's, each with
    its own global scale."""
    from safetensors import safe_open

    with safe_open(str(checkpoint / shard), framework="numpy") as handle:
        weight = handle.get_tensor(name).astype(np.float32)
    amax = np.abs(weight).reshape(-1, 16).max(axis=1)
    two = ((amax / np.float32(6)).astype(np.float32) / ours_gs).astype(np.float32)
    one = (amax / np.float32(np.float32(6) * peer_gs)).astype(np.float32)
    fp8 = ml_dtypes.float8_e4m3fn
    return int(np.count_nonzero(differ & (two.astype(fp8).view(np.uint8) == ours)
                                & (one.astype(fp8).view(np.uint8) == peer)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=3.0)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "netdsl-bench-apply")
    parser.add_argument("--recipe", type=Path, default=ROOT / "examples" / "recipes" / "nvfp4_weights.net")
    parser.add_argument("--backend", default="numpy", choices=("numpy", "cupy"))
    dask = parser.add_mutually_exclusive_group()
    dask.add_argument("--workers", type=int, help="netdsl apply --workers N (a local Dask cluster)")
    dask.add_argument("--gpus", type=int, help="netdsl apply --gpus N (one dask-cuda worker per GPU)")
    parser.add_argument("--peer-python", help="a Python with torch and nvidia-modelopt (ModelOpt's quantizer)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=VALUE[,NAME=VALUE]",
                        help="one more apply run with these environment settings (docs/settings.md), after the "
                             "default one; its output must be the default run's bytes")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    folder = args.dir / "checkpoint"
    make_checkpoint(folder, args.size_gb)
    files = sorted(folder.glob("*.safetensors"))
    read_rate(files, False)  # into the page cache, for every measurement alike
    read_seconds, size = read_rate(files, False)
    parallel = min(4, len(files))
    read4_seconds, _ = read_rate(files, False, parallel)
    hash_seconds, _ = read_rate(files, True)
    hash4_seconds, _ = read_rate(files, True, parallel)
    dask = ["--workers", str(args.workers)] if args.workers else ["--gpus", str(args.gpus)] if args.gpus else []
    notes = []
    if args.backend == "cupy":  # the kernels are built once per machine (a disk cache), not in a run's time
        start = time.perf_counter()
        from netdsl.backends.cupy import precompile

        built = precompile()
        notes.append(f"- The kernels were built before the runs ({built} parts missing from the disk cache, "
                     f"{time.perf_counter() - start:.1f} s; a machine builds them once).")
    apply_seconds, peak_gb, anon_gb, ours, timing = run_apply(args.recipe, folder, args.backend, dask)
    timings = [("default settings", timing)]
    written = sum(p.stat().st_size for p in ours.iterdir() if p.is_file())
    write_seconds = write_rate(args.dir / "write-rate", written, parallel)
    io_seconds = io_rate(files, args.dir / "io-rate", written / size, parallel)
    on = f", {args.workers} workers" if args.workers else f", --gpus {args.gpus}" if args.gpus else ""
    largest = max(int(np.prod(s)) * 2 for _, s in layer_tensors(0)) / 1e9
    group = 2 * INTERMEDIATE * HIDDEN * 2 / 1e9
    rows = [("read (64 MiB reads)", read_seconds), (f"read, {parallel} files at once", read4_seconds),
            ("read + SHA-256", hash_seconds), (f"read + SHA-256, {parallel} files at once", hash4_seconds),
            (f"netdsl apply {args.recipe.stem} ({args.backend}{on})", apply_seconds)]
    for variant in args.variant:
        extra = dict(item.split("=", 1) for item in variant.split(","))
        seconds, _, _, theirs, timing = run_apply(args.recipe, folder, args.backend, dask, extra)
        same = "same bytes" if same_files(ours, theirs) else "OUTPUT DIFFERS"
        rows.append((f"netdsl apply {args.recipe.stem} ({args.backend}{on}, {variant}; {same})", seconds))
        timings.append((variant, timing))
    peer_line = "ModelOpt: not measured (give --peer-python PYTHON with torch and nvidia-modelopt installed)"
    if args.peer_python:
        try:
            peer_seconds, peer_where, peer_out = run_peer(args.peer_python, folder)
        except RuntimeError as error:
            peer_line = str(error)
        else:
            rows.append((f"ModelOpt NVFP4QTensor.quantize ({peer_where}) + save_file", peer_seconds))
            if args.recipe.stem == "nvfp4_weights":
                peer_line = "netdsl vs ModelOpt on the same weights: " + compare_with_peer(ours, peer_out, folder)
            else:
                peer_line = "ModelOpt's NVFP4 quantizer is the peer of the NVFP4 recipe only: outputs not compared"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [f"## {datetime.date.today()}: {size / 1e9:.2f} GB checkpoint, {len(files)} shards, {os.cpu_count()} cores "
             f"({cpu}), backend {args.backend}", "", f"Load average at the end (1, 5, 15 min): {load}.", "",
             "| what | seconds | GB/s of checkpoint read | % of read | % of the fastest read | % of the job's I/O |",
             "|---|---|---|---|---|---|"]
    fastest = min(read_seconds, read4_seconds)

    def row(what: str, seconds: float) -> str:
        return (f"| {what} | {seconds:.2f} | {size / seconds / 1e9:.3f} | {100 * read_seconds / seconds:.1f}% "
                f"| {100 * fastest / seconds:.1f}% | {100 * io_seconds / seconds:.1f}% |")

    for what, seconds in rows:
        if what.startswith("netdsl apply") and write_seconds:  # the disk's rows before apply's
            lines.append(row(f"write + fsync the output's {written / 1e9:.2f} GB, {parallel} files at once",
                             write_seconds))
            lines.append(row(f"the job's I/O alone: read the input, write + fsync the output, {parallel} files "
                             f"at once", io_seconds))
            write_seconds = 0.0
        lines.append(row(what, seconds))
    lines += ["", f"- apply's peak memory: {anon_gb:.2f} GB anonymous (its own arrays), {peak_gb:.2f} GB resident "
              f"(with the checkpoint's memory-mapped pages); largest tensor {largest:.3f} GB, largest fused group "
              f"(gate + up) {group:.3f} GB{' (main process only)' if dask else ''}.", f"- {peer_line}", *notes, ""]
    for what, table in timings:
        lines += [f"`--timing` of the apply run ({what}):", "", "```", table, "```", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        previous = args.out.read_text() if args.out.exists() else "# netdsl apply: benchmark results\n\n" \
            "Written by `benchmarks/bench_apply.py`; newest first.\n\n"
        head, _, rest = previous.partition("## ")
        args.out.write_text(head + text + "\n" + ("## " + rest if rest else ""))


if __name__ == "__main__":
    main()
