"""netdsl/settings.py: the one place that reads NETDSL_* environment variables, each documented in
docs/settings.md, and what each value means."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from netdsl import settings
from tests.conftest import ROOT

READ = re.compile(r"""(?:environ(?:\.get)?\s*[\[(]|getenv\s*\(|_one_of\()\s*["'](NETDSL_\w+)""")


def test_variables_are_read_in_settings_only() -> None:
    read_elsewhere = {str(path.relative_to(ROOT)): READ.findall(path.read_text())
                      for path in (ROOT / "netdsl").rglob("*.py") if path != ROOT / "netdsl" / "settings.py"}
    assert not {path: names for path, names in read_elsewhere.items() if names}


def test_every_variable_documented() -> None:
    read = set(READ.findall((ROOT / "netdsl" / "settings.py").read_text()))
    assert read == {"NETDSL_FUSION", "NETDSL_NUMBA", "NETDSL_CUDA_DEFINES", "NETDSL_KERNEL_CACHE",
                    "NETDSL_APPLY_SHARDS", "NETDSL_APPLY_FSYNC", "NETDSL_APPLY_READ"}
    documented = (ROOT / "docs" / "settings.md").read_text()
    for name in read:
        assert f"`{name}`" in documented, name


@pytest.mark.parametrize("text, enabled", [(None, True), ("1", True), ("0", False), ("false", False), (" OFF ", False),
                                           ("no", False), ("yes", True), ("", True), ("2", True)])
def test_fusion(monkeypatch, text, enabled) -> None:
    if text is None:
        monkeypatch.delenv("NETDSL_FUSION", raising=False)
    else:
        monkeypatch.setenv("NETDSL_FUSION", text)
    assert settings.fusion() is enabled


def test_cuda_defines(monkeypatch) -> None:
    monkeypatch.setenv("NETDSL_CUDA_DEFINES", " NETDSL_TILE_CTAS=4  OTHER=1 ")
    assert settings.cuda_defines() == ("NETDSL_TILE_CTAS=4", "OTHER=1")
    assert settings.cuda_define("NETDSL_TILE_CTAS") == 4
    assert settings.cuda_define("NETDSL_MIN_CTAS_PER_SM") is None
    monkeypatch.delenv("NETDSL_CUDA_DEFINES")
    assert settings.cuda_defines() == ()


def test_kernel_cache(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NETDSL_KERNEL_CACHE", str(tmp_path))
    assert settings.kernel_cache() == tmp_path
    monkeypatch.delenv("NETDSL_KERNEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert settings.kernel_cache() == tmp_path / "xdg" / "netdsl" / "kernels"
