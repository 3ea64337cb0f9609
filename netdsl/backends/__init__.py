"""Executors for checked graphs. Each backend registers one implementation per op, keyed by the op
object; registering twice is an error, and a test asserts every op has one in every backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netdsl.diagnostics import UsageError
from netdsl.ir import Graph
from netdsl.ops import OpDef


class Backend:
    """A named executor: ``run`` takes a checked graph and storage arrays for its inputs."""

    def __init__(self, name: str):
        self.name = name
        self.impls: dict[OpDef, Callable[..., Any]] = {}

    def impl(self, op: OpDef) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            if op in self.impls:
                raise ValueError(f"{self.name} backend: {op.name} is implemented twice")
            self.impls[op] = function
            return function
        return register

    def available(self) -> tuple[bool, str]:
        return True, ""

    def run(self, graph: Graph, inputs: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


BACKEND_NAMES = ("numpy", "cupy")


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (``auto``: CuPy when it and a GPU are there, else NumPy);
    UsageError when it isn't available."""
    if name not in ("auto",) + BACKEND_NAMES:
        raise UsageError(f"unknown backend '{name}' (choose auto, numpy or cupy)")
    if name in ("auto", "cupy"):
        from netdsl.backends.cupy import BACKEND as gpu

        ok, reason = gpu.available()
        if ok:
            return gpu
        if name == "cupy":
            raise UsageError(f"the cupy backend is not available: {reason}")
    from netdsl.backends.numpy import BACKEND as cpu

    return cpu
