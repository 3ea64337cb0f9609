import io
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
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


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of an .npy file (NumPy's own writer)."""
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


def npz_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip (an .npz) of the given member names and bytes (zipfile's own writer)."""
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return stream.getvalue()


def gpu_reason() -> str | None:
    """None when the cupy backend can run here, else why not."""
    from netdsl.backends.cupy import BACKEND

    ok, reason = BACKEND.available()
    return None if ok else reason


def needs_gpu() -> pytest.MarkDecorator:
    """A skip, saying why, where the cupy backend can't run."""
    reason = gpu_reason()
    return pytest.mark.skipif(reason is not None, reason=f"no GPU: {reason}")


def backends() -> list:
    """numpy always; cupy where a GPU is there (otherwise a skip that says why)."""
    return ["numpy", pytest.param("cupy", marks=needs_gpu())]


@pytest.fixture
def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"
