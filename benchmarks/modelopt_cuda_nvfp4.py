"""ModelOpt's NVFP4 quantizer on CUDA against its CPU path and netdsl: which formula the CUDA run follows.

    python3 benchmarks/modelopt_cuda_nvfp4.py --out DIR [--quick]      # on the device (torch with CUDA)
    python3 benchmarks/modelopt_cuda_nvfp4.py --bench-layers 15        # CPU only: bench_apply's checkpoint

Issue 14: ``benchmarks/bench_apply.py --peer-python`` found, on the H100, codes that differ from netdsl's
where the block scales agree, which ModelOpt 0.47's quantizer on the CPU never gave. ModelOpt's
``NVFP4QTensor.quantize`` (``modelopt/torch/quantization/qtensor/nvfp4_tensor.py``) is plain torch on both
devices, so the difference is in torch's kernels. For bfloat16 tensors of the benchmark's kind (N(0, 0.02),
and heavier-tailed ones) this script runs, in one process, ModelOpt's quantizer on CUDA and on the CPU, each
with the global scale the benchmark's peer computes on that device (``amax.float() / (6.0 * 448.0)``), also
each with the other device's global scale, and netdsl's recipe (``examples/recipes/nvfp4_weights.net``,
NumPy backend; CuPy too where installed). Each candidate formula for the CUDA path is written below in
NumPy, float32 op by op, from ModelOpt's source (``modelopt_nvfp4``); the summary counts, for each, how many
of the codes where netdsl and ModelOpt-on-CUDA differ (block scales agreeing) it reproduces, and how far its
whole output is from ModelOpt's CUDA output. ModelOpt's own outputs are the truth; netdsl's are what is
classified. ``--out`` gets summary.json, summary.txt and differences.npz (the differing codes: input,
scales, codes of each path; at most 10000 a tensor). The H100 run: benchmarks/results-modelopt-cuda.md
(run by benchmarks/device/modelopt_cuda_nvfp4.sh, which installs the carried ModelOpt wheel).

``--bench-layers N`` (no GPU needed) regenerates bench_apply's synthetic checkpoint (N layers; the 6 GB run
has 15) group by group and counts, against netdsl, ModelOpt's CPU quantizer given the global scale torch's
CUDA division gives (the formula this script's device run confirmed), i.e. the classes of bench_apply's
H100 comparison (benchmarks/results-apply.md, docs/checkpoints.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

F32 = np.float32
FP8 = ml_dtypes.float8_e4m3fn
# ModelOpt's e2m1_bounds (nvfp4_tensor.py): searchsorted (left) gives the code; a value equal to an odd
# bound (a tie whose lower neighbour has an odd mantissa) goes one code up, to the even neighbour
MODELOPT_BOUNDS = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5], F32)
TIES = MODELOPT_BOUNDS  # the midpoints between fp4 magnitudes
FP4_MAX_TIMES_FP8_MAX = 6.0 * 448.0  # the peer's Python float, as ModelOpt's get_weights_scaling_factor_2


def divide_by_scalar(value: F32, scalar: float, reciprocal: bool) -> F32:
    """A float32 tensor divided by a Python float in torch: on the CPU one IEEE division; on CUDA
    (aten/src/ATen/native/cuda/BinaryDivTrueKernel.cu, a CPU-scalar divisor) times the float32 reciprocal."""
    if reciprocal:
        return F32(F32(value) * (F32(1) / F32(scalar)))
    return F32(F32(value) / F32(scalar))


def modelopt_codes(quotient: np.ndarray) -> np.ndarray:
    """ModelOpt's ``_cast_fp4``: sign from ``< 0``, magnitude code by its bounds."""
    magnitude = np.abs(quotient)
    code = np.searchsorted(MODELOPT_BOUNDS, magnitude, side="left").astype(np.uint8)
    code += ((magnitude == F32(0.75)) | (magnitude == F32(1.75)) | (magnitude == F32(3.5))).astype(np.uint8)
    return code | ((quotient < 0).astype(np.uint8) << 3)


def modelopt_nvfp4(x: np.ndarray, gs: F32, scale_reciprocal: bool = False, code_reciprocal: bool = False,
                   bf16_quotient: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """ModelOpt 0.47's ``NVFP4QTensor.quantize`` (``get_weights_scaling_factor``, the division, ``_cast_fp4``)
    in NumPy, float32 op by op, given the global scale ``gs``: (fp8 block scales as uint8, fp4 codes).
    The switches are candidate CUDA variants: the block scale's quotient as ``amax * fl(1 / fl(6 gs))``, the
    codes' quotient as ``x * fl(1 / fl(s gs))``, the quotient rounded to bfloat16 before the fp4 cast."""
    blocks = x.astype(F32).reshape(x.shape[0], -1, 16)
    amax = np.abs(blocks).max(axis=-1)
    six_gs = F32(6) * F32(gs)
    scale = amax * (F32(1) / six_gs) if scale_reciprocal else amax / six_gs
    scale[scale == 0] = 1
    scale8 = np.clip(scale, F32(2.0 ** -9), F32(448)).astype(FP8)
    divisor = (scale8.astype(F32) * F32(gs))[..., None]
    quotient = blocks * (F32(1) / divisor) if code_reciprocal else blocks / divisor
    if bf16_quotient:
        quotient = quotient.astype(ml_dtypes.bfloat16).astype(F32)
    return scale8.view(np.uint8), modelopt_codes(quotient).reshape(x.shape)


def in_rows(function: Any, x: np.ndarray, *args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """``function(x, ...)`` over row chunks on a thread per core (NumPy releases the GIL)."""
    chunks = np.array_split(np.arange(x.shape[0]), min(os.cpu_count() or 1, 16))
    with ThreadPoolExecutor(len(chunks)) as pool:
        parts = list(pool.map(lambda rows: function(x[rows[0]:rows[-1] + 1], *args, **kwargs), chunks))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def netdsl_nvfp4(x: np.ndarray, backend: str) -> tuple[np.ndarray, np.ndarray, F32]:
    """netdsl's shipped recipe on ``x``: (block scales as uint8, codes, global scale)."""
    from netdsl.model import load

    recipe = load(ROOT / "examples" / "recipes" / "nvfp4_weights.net", recipe=True)
    out = recipe.run({"w": x}, backend=backend)
    return (np.asarray(out["weight_scale"]).view(np.uint8), np.asarray(out["weight"]).view(np.uint8),
            F32(np.asarray(out["weight_scale_2"])))


def torch_modelopt(NVFP4QTensor: Any, w: Any, gs: Any) -> tuple[np.ndarray, np.ndarray]:
    """ModelOpt's own quantizer on the torch tensor ``w`` (its device): (block scales as uint8, codes)."""
    import torch

    packed, scale, _ = NVFP4QTensor.quantize(w.clone(), 16, weights_scaling_factor_2=gs)
    data = packed._quantized_data.cpu().numpy()
    codes = np.empty((data.shape[0], data.shape[1] * 2), np.uint8)
    codes[:, 0::2], codes[:, 1::2] = data & 15, data >> 4
    return scale.view(torch.uint8).cpu().numpy(), codes


def tensors(quick: bool) -> list[tuple[str, np.ndarray]]:
    """The inputs: bench-like bfloat16 weights (N(0, 0.02) as bench_apply's, Student-t with 3 degrees of
    freedom and Laplace for heavier tails); one N(0, 0.02) tensor has one element set to 0.12890625, an amax
    whose global scale the CPU and CUDA divisions give differently."""
    rows, wide = (256, 688) if quick else (4096, 11008)
    rng = np.random.default_rng(20261207)

    def bf16(values: np.ndarray) -> np.ndarray:
        return values.astype(F32).astype(ml_dtypes.bfloat16)

    forced = bf16(rng.standard_normal((rows, 4096), dtype=F32) * F32(0.02))
    forced[rows // 3, 1234] = 0.12890625
    return [(f"normal-{i}", bf16(rng.standard_normal((rows, 4096), dtype=F32) * F32(0.02))) for i in range(3)] + [
        ("normal-amax-0.12890625", forced),
        ("normal-wide", bf16(rng.standard_normal((wide, 4096), dtype=F32) * F32(0.02))),
        ("student-t3", bf16(rng.standard_t(3, (rows, 4096)) * 0.01)),
        ("laplace-wide", bf16(rng.laplace(0, 0.014, (wide, 4096))))]


def quotients(x: np.ndarray, scale8: np.ndarray, gs: F32) -> np.ndarray:
    """ModelOpt's float32 ``|x / fl(s gs)|`` (``scale8``: each element's block scale as uint8)."""
    return np.abs(x.astype(F32) / (scale8.view(FP8).astype(F32) * gs))


def exact_midpoint(x: np.ndarray, scale8: np.ndarray, amax: F32) -> np.ndarray:
    """1 + the index in TIES of the real number ``|x| * 2688 / (s * amax)`` where it is exactly a midpoint
    between two fp4 magnitudes, else 0: in float64, where x and amax (bfloat16) and s (fp8) have at most 8
    significant bits, so the quotient is a midpoint only when the real one is."""
    real = np.abs(x.astype(np.float64)) * FP4_MAX_TIMES_FP8_MAX / (scale8.view(FP8).astype(np.float64) * float(amax))
    where = np.searchsorted(TIES.astype(np.float64), real)
    hit = (where < len(TIES)) & (TIES.astype(np.float64)[np.minimum(where, len(TIES) - 1)] == real)
    return np.where(hit, where + 1, 0).astype(np.uint8)


def compare(ours: tuple, cuda: tuple) -> tuple[dict, np.ndarray]:
    """netdsl (``ours``: scales, codes) against ModelOpt on CUDA: counts and the mask of codes that differ
    where the block scales agree and the difference is not the sign of a zero (docs/checkpoints.md)."""
    scales_differ = ours[0] != cuda[0]
    agree = np.repeat(~scales_differ, 16, axis=1)
    mismatch = (ours[1] != cuda[1]) & agree
    signed_zero = mismatch & (ours[1] == 8) & (cuda[1] == 0)
    other = mismatch & ~signed_zero
    return {"blocks": int(scales_differ.size), "scales_differ": int(scales_differ.sum()),
            "codes": int(ours[1].size), "codes_signed_zero": int(signed_zero.sum()),
            "codes_other": int(other.sum())}, other


# candidate CUDA formulas: name -> (global scale by the float32 reciprocal, switches of modelopt_nvfp4)
HYPOTHESES: dict[str, tuple[bool, dict[str, bool]]] = {
    "CPU formula (gs = fl(amax / 2688))": (False, {}),
    "gs = fl(amax * fl(1/2688)) (torch CUDA scalar division), rest as CPU": (True, {}),
    "codes x * fl(1 / fl(s gs)), gs by division": (False, {"code_reciprocal": True}),
    "block scale amax * fl(1 / fl(6 gs)), gs by division": (False, {"scale_reciprocal": True}),
    "quotient rounded to bfloat16 before the fp4 cast": (False, {"bf16_quotient": True}),
    "gs by reciprocal and codes by reciprocal": (True, {"code_reciprocal": True}),
}
RECORD_KEYS = ("tensor", "index", "x_bits", "scale", "gs_cpu_bits", "gs_cuda_bits", "code_netdsl", "code_cuda",
               "code_cpu", "quotient_cpu", "quotient_cuda", "exact_midpoint")


def load_nvfp4qtensor() -> Any:
    """ModelOpt's NVFP4QTensor, imported as bench_apply's peer imports it."""
    from bench_apply import IMPORT_NVFP4QTENSOR

    namespace: dict[str, Any] = {}
    exec(IMPORT_NVFP4QTENSOR, namespace)
    return namespace["NVFP4QTensor"]


def differ(a: tuple, b: tuple) -> dict[str, int]:
    return {"scales_differ": int((a[0] != b[0]).sum()), "codes_differ": int((a[1] != b[1]).sum())}


def one_tensor(NVFP4QTensor: Any, number: int, name: str, x: np.ndarray, cuda: bool, netdsl_cupy: bool,
               records: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    """Every path and hypothesis on one tensor: its summary entry; appends its differing codes to ``records``."""
    import torch

    w_cpu = torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
    amax = F32(np.abs(x.astype(F32)).max())
    by_division = divide_by_scalar(amax, FP4_MAX_TIMES_FP8_MAX, False)
    by_reciprocal = divide_by_scalar(amax, FP4_MAX_TIMES_FP8_MAX, True)
    entry: dict[str, Any] = {"name": name, "shape": list(x.shape), "amax": float(amax)}
    # the global scale as bench_apply's peer computes it, on each device, and ModelOpt's own
    gs_cpu = w_cpu.abs().amax().float() / FP4_MAX_TIMES_FP8_MAX
    entry["gs_cpu"] = float(gs_cpu)
    entry["gs_cpu_is_division"] = bool(F32(gs_cpu.item()) == by_division)
    entry["modelopt_own_gs_cpu_equal"] = bool(NVFP4QTensor.get_weights_scaling_factor_2(w_cpu) == gs_cpu)
    cpu = torch_modelopt(NVFP4QTensor, w_cpu, gs_cpu)
    ours = netdsl_nvfp4(x, "numpy")
    entry["netdsl_gs_equals_cpu_gs"] = bool(ours[2] == F32(gs_cpu.item()))
    entry["netdsl_vs_modelopt_cpu"], _ = compare(ours, cpu)
    if netdsl_cupy:
        from netdsl.diagnostics import UsageError

        try:
            on_gpu = netdsl_nvfp4(x, "cupy")
        except UsageError as error:  # no usable GPU for CuPy
            entry["netdsl_cupy_equals_numpy"] = str(error)
        else:
            entry["netdsl_cupy_equals_numpy"] = bool(np.array_equal(on_gpu[0], ours[0]) and on_gpu[2] == ours[2]
                                                     and np.array_equal(on_gpu[1], ours[1]))
    if not cuda:
        return entry
    w_cuda = w_cpu.cuda()
    gs_cuda = w_cuda.abs().amax().float() / FP4_MAX_TIMES_FP8_MAX
    gs_value = F32(gs_cuda.item())
    entry.update(gs_cuda=float(gs_value), gs_cuda_is_division=bool(gs_value == by_division),
                 gs_cuda_is_reciprocal=bool(gs_value == by_reciprocal),
                 modelopt_own_gs_cuda_equal=bool(NVFP4QTensor.get_weights_scaling_factor_2(w_cuda).cpu()
                                                 == gs_cuda.cpu()))
    on_cuda = torch_modelopt(NVFP4QTensor, w_cuda, gs_cuda)
    entry["modelopt_cuda_vs_cpu"] = differ(on_cuda, cpu)
    # each device given the other's global scale
    entry["modelopt_cuda_given_cpu_gs_vs_cpu"] = differ(torch_modelopt(NVFP4QTensor, w_cuda, gs_cpu.cuda()), cpu)
    entry["modelopt_cpu_given_cuda_gs_vs_cuda"] = differ(torch_modelopt(NVFP4QTensor, w_cpu, gs_cuda.cpu()), on_cuda)
    entry["netdsl_vs_modelopt_cuda"], other = compare(ours, on_cuda)
    entry["hypotheses"] = {}
    for label, (reciprocal, switches) in HYPOTHESES.items():
        emulated = in_rows(modelopt_nvfp4, x, by_reciprocal if reciprocal else by_division, **switches)
        off = differ(emulated, on_cuda)
        entry["hypotheses"][label] = {"explains": int((other & (emulated[1] == on_cuda[1])).sum()),
                                      "scales_off_cuda": off["scales_differ"], "codes_off_cuda": off["codes_differ"]}
    index = np.flatnonzero(other)
    scale_cpu, scale_cuda = (np.repeat(s, 16, axis=1) for s in (cpu[0], on_cuda[0]))
    x_at = x.reshape(-1)[index]
    quotient_cpu = quotients(x_at, scale_cpu.reshape(-1)[index], F32(gs_cpu.item()))
    quotient_cuda = quotients(x_at, scale_cuda.reshape(-1)[index], gs_value)
    midpoint = exact_midpoint(x_at, scale_cuda.reshape(-1)[index], amax)
    code_netdsl, code_cuda, code_cpu = (codes.reshape(-1)[index] for codes in (ours[1], on_cuda[1], cpu[1]))
    entry["differing_codes_cpu_quotient_at_midpoint"] = int(np.isin(quotient_cpu, TIES).sum())
    entry["differing_codes_cuda_quotient_at_midpoint"] = int(np.isin(quotient_cuda, TIES).sum())
    entry["differing_codes_exact_midpoint"] = {str(m): int((midpoint == i + 1).sum()) for i, m in enumerate(TIES)}
    entry["differing_codes_exact_midpoint"]["none"] = int((midpoint == 0).sum())
    entry["differing_codes_cuda_one_step_smaller"] = int(((code_cuda & 7) + 1 == (code_netdsl & 7)).sum())
    keep = np.sort(np.random.default_rng(number).permutation(index.size)[:10000])
    kept = index[keep]
    for key, value in zip(RECORD_KEYS, (
            np.full(kept.size, number, np.uint8), kept.astype(np.int32), x.view(np.uint16).reshape(-1)[kept],
            scale_cuda.reshape(-1)[kept], np.full(kept.size, F32(gs_cpu.item())).view(np.uint32),
            np.full(kept.size, gs_value).view(np.uint32), code_netdsl[keep], code_cuda[keep], code_cpu[keep],
            quotient_cpu[keep], quotient_cuda[keep], midpoint[keep])):
        records[key].append(value)
    return entry


def device_run(out: Path, quick: bool) -> None:
    import modelopt
    import torch

    NVFP4QTensor = load_nvfp4qtensor()
    torch.set_num_threads(os.cpu_count() or 1)
    cuda = torch.cuda.is_available()
    try:
        import cupy  # noqa: F401
        netdsl_cupy = cuda
    except ImportError:
        netdsl_cupy = False
    summary: dict[str, Any] = {"torch": torch.__version__, "modelopt": modelopt.__version__,
                               "device": torch.cuda.get_device_name() if cuda else "none (CPU only)",
                               "tensors": []}
    records: dict[str, list[np.ndarray]] = {key: [] for key in RECORD_KEYS}
    inputs = tensors(quick)
    for number, (name, x) in enumerate(inputs):
        start = time.perf_counter()
        entry = one_tensor(NVFP4QTensor, number, name, x, cuda, netdsl_cupy, records)
        entry["seconds"] = round(time.perf_counter() - start, 2)
        summary["tensors"].append(entry)
        print(json.dumps(entry), flush=True)
    summary["total"] = totals(summary["tensors"])
    text = report(summary)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.txt").write_text(text + "\n")
    if cuda:
        np.savez_compressed(out / "differences.npz", names=np.array([name for name, _ in inputs]),
                            **{key: np.concatenate(value) for key, value in records.items()})


def totals(entries: list[dict]) -> dict[str, Any]:
    """Sums over the tensors of every count in the entries (a true flag counts 1)."""
    skip = ("amax", "gs_cpu", "gs_cuda", "seconds")

    def add(into: dict, item: dict) -> None:
        for key, value in item.items():
            if isinstance(value, dict):
                add(into.setdefault(key, {}), value)
            elif isinstance(value, (bool, int, float)) and key not in skip:
                into[key] = into.get(key, 0) + int(value)
    result: dict[str, Any] = {}
    for entry in entries:
        add(result, entry)
    return result


def report(summary: dict) -> str:
    total = summary["total"]
    lines = [f"torch {summary['torch']}, modelopt {summary['modelopt']}, {summary['device']}; "
             f"{len(summary['tensors'])} tensors"]
    for entry in summary["tensors"]:
        lines.append(f"- {entry['name']} {entry['shape']}: amax {entry['amax']}, gs cpu {entry['gs_cpu']!r}"
                     + (f", gs cuda {entry['gs_cuda']!r} (division {entry['gs_cuda_is_division']}, reciprocal "
                        f"{entry['gs_cuda_is_reciprocal']})" if "gs_cuda" in entry else "")
                     + f"; netdsl vs ModelOpt CPU {entry['netdsl_vs_modelopt_cpu']}"
                     + (f"; netdsl vs ModelOpt CUDA {entry['netdsl_vs_modelopt_cuda']}" if "gs_cuda" in entry else ""))
    lines.append("totals: " + json.dumps({k: v for k, v in total.items() if k != "hypotheses"}))
    if "netdsl_vs_modelopt_cuda" in total:
        lines.append(f"differing codes (netdsl vs ModelOpt CUDA, block scales agreeing, not -0): "
                     f"{total['netdsl_vs_modelopt_cuda']['codes_other']}; real quotient |x| 2688 / (s amax) exactly "
                     f"a midpoint: {total['differing_codes_exact_midpoint']}; CUDA's code one step smaller in "
                     f"magnitude: {total['differing_codes_cuda_one_step_smaller']}")
    for label, counts in total.get("hypotheses", {}).items():
        lines.append(f"hypothesis {label}: explains {counts['explains']} of "
                     f"{total['netdsl_vs_modelopt_cuda']['codes_other']} differing codes; its output vs ModelOpt CUDA: "
                     f"{counts['scales_off_cuda']} scales, {counts['codes_off_cuda']} codes off")
    return "\n".join(lines)


def bench_prediction(layers: int) -> None:
    """bench_apply's checkpoint (``layers`` layers), each fused group's global scale as the peer computes it
    on CUDA; netdsl (NumPy) against ModelOpt's quantizer on the CPU given that scale."""
    import torch
    from bench_apply import draw_weight, layer_tensors

    NVFP4QTensor = load_nvfp4qtensor()
    torch.set_num_threads(os.cpu_count() or 1)
    groups = {"qkv": (0, 1, 2), "o": (3,), "gate_up": (4, 5), "down": (6,)}
    total = {"blocks": 0, "scales_differ": 0, "codes": 0, "codes_signed_zero": 0, "codes_other": 0}
    affected = 0
    for layer in range(layers):
        specs = layer_tensors(layer)
        for group, members in groups.items():
            weights = [draw_weight(specs[i][1], [0, layer, i]) for i in members]
            amax = F32(max(np.abs(w).max() for w in weights))
            gs = divide_by_scalar(amax, FP4_MAX_TIMES_FP8_MAX, reciprocal=True)
            ours = netdsl_nvfp4(np.concatenate(weights), "numpy")  # one global scale over the group
            first = 0
            for w in weights:
                mine = (ours[0][first:first + len(w)], ours[1][first:first + len(w)])
                first += len(w)
                peer = torch_modelopt(NVFP4QTensor, torch.from_numpy(w.view(np.int16)).view(torch.bfloat16),
                                      torch.tensor(gs))
                counts, _ = compare(mine, peer)
                for key in total:
                    total[key] += counts[key]
            differs = gs != divide_by_scalar(amax, FP4_MAX_TIMES_FP8_MAX, reciprocal=False)
            affected += int(differs)
            print(layer, group, float(amax), "gs differs" if differs else "", json.dumps(total), flush=True)
    print(f"{affected} of {layers * len(groups)} groups' global scales differ between the CPU's and CUDA's division")
    print("netdsl vs ModelOpt (CPU, given the CUDA global scale):", json.dumps(total))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("modelopt-cuda-out"))
    parser.add_argument("--quick", action="store_true", help="small tensors (a check of the script)")
    parser.add_argument("--bench-layers", type=int, help="CPU only: bench_apply's checkpoint of N layers")
    args = parser.parse_args()
    if args.bench_layers:
        bench_prediction(args.bench_layers)
    else:
        device_run(args.out, args.quick)


if __name__ == "__main__":
    main()
