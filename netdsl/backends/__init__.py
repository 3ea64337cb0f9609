"""Executors for checked graphs. Each backend registers one implementation per op, keyed by the op
object; registering twice is an error, and a test asserts every op has one in every backend.

- :mod:`netdsl.backends.numpy`: the CPU backend (NumPy, and numba's compiled loop where installed)
- :mod:`netdsl.backends.cupy`: the GPU backend (the CUDA kernels of ``kernels/`` through CuPy)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netdsl.check import CheckedGraph
from netdsl.diagnostics import UsageError
from netdsl.ir import Node
from netdsl.ops.base import OpDef


class Backend:
    """A named executor: ``run`` takes a checked graph and storage arrays for its inputs. Each op's
    implementation takes the layer's resolution and its input arrays and returns its outputs."""

    def __init__(self, name: str):
        self.name = name
        self.impls: dict[OpDef[Any, Any], Callable[..., Any]] = {}

    def impl(self, op: OpDef[Any, Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            if op in self.impls:
                raise ValueError(f"{self.name} backend: {op.name} is implemented twice")
            self.impls[op] = function
            return function
        return register

    def available(self) -> tuple[bool, str]:
        return True, ""

    def run(self, graph: CheckedGraph, inputs: dict[str, Any],
            on_node: Callable[[Node], None] | None = None) -> dict[str, Any]:
        """The outputs of ``graph`` (netdsl.check.check's result, ``Network.graph``) on ``inputs``;
        ``on_node`` (a progress bar's tick) is called as each layer's work is done."""
        if not isinstance(graph, CheckedGraph):
            raise TypeError(f"{self.name} backend: run takes a CheckedGraph (netdsl.check.check's result, "
                            f"Network.graph), not {type(graph).__name__}")
        return self.execute(graph, inputs, on_node)

    def execute(self, graph: CheckedGraph, inputs: dict[str, Any],
                on_node: Callable[[Node], None] | None = None) -> dict[str, Any]:  # pragma: no cover - abstract
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
