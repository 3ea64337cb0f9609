"""The GPU backend: netdsl's kernels (``kernels/*.cu``) through CuPy. Every module imports without CuPy.

- :mod:`~netdsl.backends.cupy.abi`: the kernels' constants, enums and instantiation names, as the host sees them
- :mod:`~netdsl.backends.cupy.device`: device tensors, upload / download, the current device
- :mod:`~netdsl.backends.cupy.loader`: NVRTC compilation, the disk cache of cubins, :func:`precompile`
- :mod:`~netdsl.backends.cupy.geometry`: collapsed block geometry, the scale-index map, grid sizes
- :mod:`~netdsl.backends.cupy.dynamic`: which kernels run a DynamicQuantize geometry
- :mod:`~netdsl.backends.cupy.launch`: the launchers (quantize, dequantize, the fused pair and chain,
  dynamic_quantize) and their launch cache
- :mod:`~netdsl.backends.cupy.recipe_layers`: the recipe layers (unary, reduce, elementwise, cast, shuffle)
  through ``kernels/recipe.cu``
- :mod:`~netdsl.backends.cupy.fusion`: the fusion pass, a graph as a schedule of steps
- :mod:`~netdsl.backends.cupy.executor`: the backend, running a checked graph

docs/gpu.md describes the kernels and this package.
"""

from __future__ import annotations

from netdsl.backends.cupy.device import DeviceTensor, available, download, upload
from netdsl.backends.cupy.executor import BACKEND
from netdsl.backends.cupy.launch import dequantize, dequantize_double, dynamic_quantize, quantize, quantize_dequantize
from netdsl.backends.cupy.loader import precompile

__all__ = ["BACKEND", "DeviceTensor", "available", "dequantize", "dequantize_double", "download", "dynamic_quantize",
           "precompile", "quantize", "quantize_dequantize", "upload"]
