"""The GPU executor: runs a checked graph through the CUDA kernels of ``kernels/`` (via CuPy).

Inputs and constants are uploaded once, tensors stay on the device between layers, and outputs are
downloaded once and decoded to the ``ml_dtypes`` arrays of the Python API. The launch code lives in
:mod:`netdsl.backends.cuda`; CuPy is imported only when this backend runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from netdsl.backends import Backend
from netdsl.ir import Graph
from netdsl.ops.dequantize import DEQUANTIZE
from netdsl.ops.dynamic_quantize import DYNAMIC_QUANTIZE, DynamicPlan
from netdsl.ops.quantize import QUANTIZE, ScalePlan


class CupyBackend(Backend):
    def available(self) -> tuple[bool, str]:
        try:
            from netdsl.backends import cuda
        except ImportError as error:  # pragma: no cover - depends on the machine
            return False, f"cannot import the CUDA launch layer ({error})"
        return cuda.available()

    def run(self, graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from netdsl.backends import cuda

        env: dict[str, Any] = {}
        for value in graph.values.values():
            if value.kind in ("input", "const"):
                assert value.type is not None  # a checked graph types every tensor
                data = inputs[value.name] if value.kind == "input" else value.data
                assert data is not None
                env[value.name] = cuda.upload(data, value.type.dtype)
        for node in graph.nodes:
            results = self.impls[node.op](node.plan, [env[name] for name in node.inputs])
            env.update(zip(node.outputs, results))
        return {name: cuda.download(env[name]) for name in graph.outputs}


BACKEND = CupyBackend("cupy")


def _reshaped(tensor: Any, shape: tuple[int, ...]) -> Any:
    from netdsl.backends import cuda

    return cuda.DeviceTensor(dtype=tensor.dtype, shape=tuple(shape), data=tensor.data)


@BACKEND.impl(QUANTIZE)
def _quantize(plan: ScalePlan, args: list[Any]) -> list[Any]:
    from netdsl.backends import cuda

    granularity = plan.granularity
    scale = _reshaped(args[1], granularity.scale_shape)
    return [cuda.quantize(args[0], scale, granularity.block, plan.to_type)]


@BACKEND.impl(DEQUANTIZE)
def _dequantize(plan: ScalePlan, args: list[Any]) -> list[Any]:
    from netdsl.backends import cuda

    granularity = plan.granularity
    scale = _reshaped(args[1], granularity.scale_shape)
    return [cuda.dequantize(args[0], scale, granularity.block, plan.to_type)]


@BACKEND.impl(DYNAMIC_QUANTIZE)
def _dynamic_quantize(plan: DynamicPlan, args: list[Any]) -> list[Any]:
    from netdsl.backends import cuda

    return list(cuda.dynamic_quantize(args[0], plan.block, plan.output_type, plan.scale_type,
                                      plan.double_quant_scale))
