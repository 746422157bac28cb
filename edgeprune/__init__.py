"""edgeprune: prune and quantize a Keras model, then measure what it bought on the device itself.

The host side lives here; the code that runs on the device is the separate ``device_agent`` package.
"""
import os as _os

# tensorflow-model-optimization 0.8.1 only works with Keras 2 (tf_keras). TensorFlow reads this variable once,
# at its first import, so it must be set before anything in the package can import TensorFlow.
_os.environ["TF_USE_LEGACY_KERAS"] = "1"

__version__ = "0.1.0"

__all__ = ["__version__"]
