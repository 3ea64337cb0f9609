"""``netdsl apply`` on Dask with shards split into tasks by tensor groups (docs/scale.md): a two-worker local
cluster (processes) gives the bytes of one process, byte for byte, and a killed run resumes from the parts
it finished, to the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netdsl.apply import apply
from netdsl.apply.checkpoint import open_checkpoint
from netdsl.apply.plan import make_plan
from netdsl.cli import main
from netdsl.diagnostics import UsageError
from tests.test_apply import NVFP4, SHARD1, SHARD2, make_checkpoint

TASK_BYTES = 20_000  # the test checkpoint's shards hold 37 KB and 74 KB of input: 2 and 5 tasks


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    make_checkpoint(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def files(out: Path) -> dict[str, bytes]:
    """Every file of OUTDIR, hidden ones (the manifest, leftover parts) included."""
    return {path.name: path.read_bytes() for path in sorted(out.iterdir())}


def test_parts_follow_the_tensors(folder: Path) -> None:
    """Parts are consecutive runs of a shard's entries that never cut one input tensor's outputs, each at
    most TASK_BYTES of input unless one tensor alone is larger; None gives one part."""
    plan = make_plan(NVFP4, open_checkpoint(folder), "modelopt", [], None, None)
    for shard in (SHARD1, SHARD2):
        entries = plan.shards[shard]
        units = plan.units(shard)
        assert units[0][0] == 0 and units[-1][1] == len(entries)
        assert all(a[1] == b[0] for a, b in zip(units, units[1:]))
        parts = plan.parts(shard, TASK_BYTES)
        assert len(parts) > 1 and parts[0][0] == 0 and parts[-1][1] == len(entries)
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        starts = {first for first, _, _ in units}
        for part in parts:
            assert part[0] in starts
            size = plan.part_input_bytes(shard, part)
            assert size <= TASK_BYTES or sum(1 for first in starts if part[0] <= first < part[1]) == 1
        assert sum(plan.part_input_bytes(shard, p) for p in parts) == plan.input_bytes(shard)
        assert plan.parts(shard, None) == [(0, len(entries))]
    assert plan.default_task_bytes() == 4 * 2 * 128 * 64 * 2  # gate + up, bfloat16
    assert len(plan.parts(SHARD2, plan.default_task_bytes())) == 1


def test_split_shards_on_two_workers_write_the_same_bytes(folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason='Dask is the "dask" extra')
    apply(NVFP4, folder, tmp_path / "one", backend="numpy")
    apply(NVFP4, folder, tmp_path / "two", backend="numpy", workers=2, task_size=TASK_BYTES)
    assert files(tmp_path / "two") == files(tmp_path / "one")  # no part left behind, the same manifest


class Killed(Exception):
    pass


def test_a_killed_split_run_resumes_from_its_parts(folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason='Dask is the "dask" extra')
    apply(NVFP4, folder, tmp_path / "one", backend="numpy")
    out = tmp_path / "out"
    manifest = out / ".netdsl-apply.json"

    def kill_after_a_part(done: int, total: int) -> None:
        if manifest.is_file() and json.loads(manifest.read_text()).get("parts"):
            raise Killed

    with pytest.raises(Killed):
        apply(NVFP4, folder, out, backend="numpy", workers=2, task_size=TASK_BYTES, progress=kill_after_a_part)
    record = json.loads(manifest.read_text())
    assert record["complete"] is False and record["parts"]
    assert not (out / "model.safetensors.index.json").exists() and not (out / "config.json").exists()
    finished = set(record["shards"])
    assert finished != {SHARD1, SHARD2}  # a killed run: some shard is missing or not recorded
    parts = sorted(record["parts"])
    for name in parts:
        assert (out / name).is_file() and name.startswith(".")  # hidden, never a shard a loader would read
    # a recorded part damaged after the kill is written again; the others are kept
    damaged = out / parts[0]
    damaged.write_bytes(bytes([damaged.read_bytes()[0] ^ 1]) + damaged.read_bytes()[1:])
    # a part of another --task-size's layout, and a part's temporary a killed worker left half-written
    (out / f".{SHARD2}.part-0-999").write_bytes(b"another layout")
    (out / f"..{SHARD2}.part-0-999.partial").write_bytes(b"left by a SIGKILL")
    apply(NVFP4, folder, out, backend="numpy", workers=2, task_size=TASK_BYTES)
    assert files(out) == files(tmp_path / "one")


def test_task_size_options(folder: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(UsageError, match="--task-size splits shards into Dask tasks"):
        apply(NVFP4, folder, tmp_path / "a", backend="numpy", task_size=1000)
    assert main(["apply", str(NVFP4), str(folder), "-o", str(tmp_path / "b"), "--task-size", "lots",
                 "--workers", "2"]) == 2
    assert "netdsl: error: --task-size: a size takes a number" in capsys.readouterr().err
    assert main(["apply", str(NVFP4), str(folder), "-o", str(tmp_path / "c"), "--task-size", "1M"]) == 2
    assert capsys.readouterr().err == ("netdsl: error: --task-size splits shards into Dask tasks: give it with "
                                       "--workers, --scheduler or --gpus\n")
    assert not any((tmp_path / name).exists() for name in "abc")
