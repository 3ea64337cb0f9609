import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EXAMPLES = ROOT / "examples"


def gpu_reason() -> str | None:
    """None when the cupy backend can run here, else why not."""
    from netdsl.backends.cupy_backend import BACKEND

    ok, reason = BACKEND.available()
    return None if ok else reason


def backends() -> list:
    """numpy always; cupy where a GPU is there (otherwise a skip that says why)."""
    reason = gpu_reason()
    return ["numpy", pytest.param("cupy", marks=pytest.mark.skipif(reason is not None, reason=f"no GPU: {reason}"))]


@pytest.fixture
def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"
