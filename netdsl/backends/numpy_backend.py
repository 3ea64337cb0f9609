"""The NumPy executor: runs each layer's reference implementation in graph order."""

from __future__ import annotations

from typing import Any

import numpy as np

from netdsl.backends import Backend
from netdsl.ir import Graph
from netdsl.ops import OPS


class NumpyBackend(Backend):
    def run(self, graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        env: dict[str, Any] = dict(inputs)
        for value in graph.constants:
            env[value.name] = value.data
        for node in graph.nodes:
            results = self.impls[node.op](node.plan, [env[name] for name in node.inputs])
            env.update(zip(node.outputs, results))
        return {name: env[name] for name in graph.outputs}


BACKEND = NumpyBackend("numpy")
for _op in OPS.values():
    BACKEND.impl(_op)(_op.evaluate)
