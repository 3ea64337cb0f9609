"""netdsl: a network-definition language and interpreter for TensorRT-style quantization.

    import netdsl
    net = netdsl.load("examples/quantize.net")
    outs = net.run({"input1": x}, backend="numpy")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from netdsl.diagnostics import Diagnostic, ModelError

if TYPE_CHECKING:
    from netdsl.compare import Report, compare_outputs
    from netdsl.model import Network, Recipe, load, loads

__all__ = ["Diagnostic", "ModelError", "Network", "Recipe", "Report", "compare_outputs", "load", "loads"]
__version__ = "0.1.0"

#: the names imported when first used, so that ``import netdsl`` (and the command line, whose commands import
#: what they need) doesn't load the language's front end, NumPy and lark before they are needed
_LAZY = {"Network": "model", "Recipe": "model", "load": "model", "loads": "model", "Report": "compare",
         "compare_outputs": "compare"}


def __getattr__(name: str) -> object:
    """``Network``, ``Recipe``, ``load``, ``loads`` (netdsl.model) and ``compare_outputs``, ``Report``
    (docs/compare.md), imported when first used."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'netdsl' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"netdsl.{module}"), name)
    globals()[name] = value
    return value
