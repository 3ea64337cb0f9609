"""Every op has exactly one implementation in every backend; backend selection."""

from __future__ import annotations

import pytest

from netdsl.backends import get_backend
from netdsl.backends.cupy import BACKEND as CUPY
from netdsl.backends.numpy import BACKEND as NUMPY
from netdsl.diagnostics import UsageError
from netdsl.ops import OPS


@pytest.mark.parametrize("backend", [NUMPY, CUPY], ids=lambda b: b.name)
def test_every_op_in_every_backend(backend) -> None:
    assert set(backend.impls) == set(OPS.values())


def test_duplicate_registration_refused() -> None:
    op = next(iter(OPS.values()))
    with pytest.raises(ValueError, match="implemented twice"):
        NUMPY.impl(op)(lambda resolution, args: args)


def test_auto_falls_back_to_numpy_without_gpu() -> None:
    if CUPY.available()[0]:
        assert get_backend("auto") is CUPY
    else:
        assert get_backend("auto") is NUMPY


def test_unknown_backend() -> None:
    with pytest.raises(UsageError, match="unknown backend"):
        get_backend("tpu")
