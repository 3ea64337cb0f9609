"""netdsl: a network-definition language and interpreter for TensorRT-style quantization.

    import netdsl
    net = netdsl.load("examples/quantize.net")
    outs = net.run({"input1": x}, backend="numpy")
"""

from netdsl.diagnostics import Diagnostic, ModelError
from netdsl.model import Network, Recipe, load, loads

__all__ = ["Diagnostic", "ModelError", "Network", "Recipe", "Report", "compare_outputs", "load", "loads"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``compare_outputs`` and ``Report`` (docs/compare.md), imported when first used."""
    if name in ("Report", "compare_outputs"):
        from netdsl import compare

        return getattr(compare, name)
    raise AttributeError(f"module 'netdsl' has no attribute {name!r}")
