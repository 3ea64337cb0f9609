"""netdsl and the tools its users already have: ONNX models (``onnx.py``; docs/onnx.md)."""
