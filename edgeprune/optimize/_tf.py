"""The one place that imports TensorFlow, so the CLI stays fast for commands that never need it."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Iterator, Optional, Tuple

from ..errors import ConfigError


def load() -> Tuple[ModuleType, ModuleType]:
    """Return ``(tensorflow, tf_keras)``, checking that Keras 2 is what TensorFlow uses.

    The package sets TF_USE_LEGACY_KERAS=1 on import; if TensorFlow was imported before edgeprune, that came
    too late and tfmot would fail deep inside with an obscure error, so say so plainly here.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", module=r"tensorflow.*")
    warnings.filterwarnings("ignore", module=r"tf_keras.*")
    import tensorflow as tf
    import tf_keras

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TensorFlow
        pass
    if not getattr(tf.keras, "__name__", "").startswith("tf_keras"):
        raise ConfigError(
            "TensorFlow was imported before edgeprune with Keras 3; import edgeprune first "
            "or set TF_USE_LEGACY_KERAS=1 before importing TensorFlow"
        )
    return tf, tf_keras


def load_tfmot() -> ModuleType:
    load()
    import tensorflow_model_optimization as tfmot

    return tfmot


@contextlib.contextmanager
def native_stderr_to(path: Optional[Path]) -> Iterator[None]:
    """Send what C++ libraries write to fd 2 (TensorFlow's and LiteRT's log lines) to ``path``.

    Python's own ``sys.stderr`` keeps pointing at the terminal through a duplicate of the original fd, so
    progress bars and ``Error:`` lines still show; only the native chatter moves to the log file.
    ``path=None`` changes nothing (``--debug``).
    """
    if path is None:
        yield
        return
    sys.stderr.flush()
    saved_fd = os.dup(2)
    saved_stderr = sys.stderr
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    sys.stderr = os.fdopen(os.dup(saved_fd), "w", buffering=1, encoding=saved_stderr.encoding or "utf-8",
                           errors="replace")
    try:
        yield
    finally:
        sys.stderr.flush()
        replacement = sys.stderr
        sys.stderr = saved_stderr
        replacement.close()
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
