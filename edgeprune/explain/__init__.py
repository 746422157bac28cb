"""The "why not faster" check (issue 16): which ops XNNPACK takes, and whether its sparse path can apply.

``explain_file(path)`` / ``explain_bytes(data, label)`` read a .tflite (no TensorFlow, no interpreter) and
return an ``Explanation``; ``render`` draws it for the terminal. The rules and their sources: docs/explain.md.
"""
from .check import CHECK_VERSION, Explanation, explain_bytes, explain_file

__all__ = ["CHECK_VERSION", "Explanation", "explain_bytes", "explain_file"]
