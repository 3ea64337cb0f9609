"""netdsl: a network-definition language and interpreter for TensorRT-style quantization.

    import netdsl
    net = netdsl.load("examples/quantize.net")
    outs = net.run({"input1": x}, backend="numpy")
"""

from netdsl.diagnostics import Diagnostic, ModelError
from netdsl.model import Network, load, loads

__all__ = ["Diagnostic", "ModelError", "Network", "load", "loads"]
__version__ = "0.1.0"
