import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EXAMPLES = ROOT / "examples"


def python_path(first: Path | str) -> str:
    """A PYTHONPATH for a subprocess: ``first``, then the caller's entries (where a machine keeps
    dependencies such as lark) minus the repository root."""
    kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if p and Path(p).resolve() != ROOT]
    return os.pathsep.join([str(first), *kept])


def gpu_reason() -> str | None:
    """None when the cupy backend can run here, else why not."""
    from netdsl.backends.cupy import BACKEND

    ok, reason = BACKEND.available()
    return None if ok else reason


def backends() -> list:
    """numpy always; cupy where a GPU is there (otherwise a skip that says why)."""
    reason = gpu_reason()
    return ["numpy", pytest.param("cupy", marks=pytest.mark.skipif(reason is not None, reason=f"no GPU: {reason}"))]


@pytest.fixture
def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"
