"""edgeprune: prune and quantize a Keras model, then measure what it bought on the device itself.

The host side lives here; the code that runs on the device is the separate ``device_agent`` package. The Python
API (``optimize``, ``bench``, ``compare``) is the command line's own code, for notebooks: see ``edgeprune.api``.
"""
import os as _os

# tensorflow-model-optimization 0.8.1 only works with Keras 2 (tf_keras). TensorFlow reads this variable once,
# at its first import, so it must be set before anything in the package can import TensorFlow.
_os.environ["TF_USE_LEGACY_KERAS"] = "1"

from ._version import __version__  # noqa: E402 - after the environment variable, as documented above

__all__ = ["__version__", "bench", "compare", "optimize"]


def optimize(model, train=None, test=None, out=None, data=None, **options):  # type: ignore[no-untyped-def]
    """Prune and convert a Keras model (in memory or a path) and measure each variant on the host:
    ``edgeprune.optimize(model, train=(x, y), test=(x, y), out="runs/mine")``. See ``edgeprune.api.optimize``."""
    from .api import optimize as _optimize

    return _optimize(model, train, test, out, data, **options)


def bench(run_or_files, device=None, fleet=None, db="runs/edgeprune.db", **options):  # type: ignore[no-untyped-def]
    """Benchmark a run folder or .tflite files on a device or fleet: ``edgeprune.bench(result.folder)``. See
    ``edgeprune.api.bench``."""
    from .api import bench as _bench

    return _bench(run_or_files, device, fleet, db, **options)


def compare(db, run_id=None):  # type: ignore[no-untyped-def]
    """The comparison table of a stored run (default: the latest) as a pandas DataFrame, one row per device x
    variant: ``edgeprune.compare("runs/edgeprune.db")``. See ``edgeprune.report`` for the columns."""
    from .report import compare as _compare

    return _compare(db, run_id)
