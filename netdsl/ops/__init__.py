"""The layers netdsl knows, one module each; importing this package registers them all in :data:`OPS`.

- :mod:`~netdsl.ops.base`: :class:`OpDef`, what a shape rule sees (:class:`Operand`, :class:`InferContext`),
  and the registry :data:`OPS`
- :mod:`~netdsl.ops.common`: the rules Quantize and Dequantize share (types, scale sources and values,
  zero points, the scale's granularity)
- :mod:`~netdsl.ops.granularity`: how a scale maps onto the tensor it scales
- :mod:`~netdsl.ops.quantize`, :mod:`~netdsl.ops.dequantize`, :mod:`~netdsl.ops.dynamic_quantize`: one layer
  each: its attribute schema (a frozen dataclass with TensorRT's names and defaults), its pure
  shape/type rule (``infer``) and its NumPy reference (``evaluate``). Nothing about CUDA or files.
- :mod:`~netdsl.ops.unary`, :mod:`~netdsl.ops.reduce`, :mod:`~netdsl.ops.elementwise`, :mod:`~netdsl.ops.cast`,
  :mod:`~netdsl.ops.shuffle`: the layers a recipe computes scales with (docs/semantics.md, "Recipe layers")
"""

from __future__ import annotations

from netdsl.ops import cast, dequantize, dynamic_quantize, elementwise, quantize, reduce, shuffle, unary
from netdsl.ops.base import OPS, InferContext, OpDef, Operand, register

__all__ = ["OPS", "InferContext", "OpDef", "Operand", "cast", "dequantize", "dynamic_quantize", "elementwise",
           "quantize", "reduce", "register", "shuffle", "unary"]
