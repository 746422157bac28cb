"""edgeprune: prune and quantize a Keras model, then measure what it bought on the device itself.

The host side lives here; the code that runs on the device is the separate ``device_agent`` package.
"""
import os as _os

# tensorflow-model-optimization 0.8.1 only works with Keras 2 (tf_keras). TensorFlow reads this variable once,
# at its first import, so it must be set before anything in the package can import TensorFlow.
_os.environ["TF_USE_LEGACY_KERAS"] = "1"

__version__ = "0.1.0"

__all__ = ["__version__", "compare"]


def compare(db, run_id=None):  # type: ignore[no-untyped-def]
    """The comparison table of a stored run (default: the latest) as a pandas DataFrame, one row per device x
    variant: ``edgeprune.compare("runs/edgeprune.db")``. See ``edgeprune.report`` for the columns."""
    from .report import compare as _compare

    return _compare(db, run_id)
