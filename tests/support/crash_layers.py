"""Custom layers for the crash-safety tests (issue 15): a user's model that dies natively while it trains.

Imported by `edgeprune optimize --custom-objects crash_layers:NAME` from the test's working folder (a copy of this
file there, as a user keeps their layers next to their model). Both layers are the identity except in a training
step, where the process ends as TensorFlow's oneDNN bug ends it: ``os.abort()`` (SIGABRT, exit 134).
"""
from __future__ import annotations

import os

import tensorflow as tf
import tf_keras as keras


def _abort() -> int:
    os.abort()
    return 0  # pragma: no cover


def _onednn_like_abort() -> int:
    """What the real crash leaves in native.log, then the abort; not when oneDNN is off (the known remedy)."""
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0":
        os.write(2, b"free(): invalid size\n")
        os.abort()
    return 0


@keras.saving.register_keras_serializable(package="edgeprune_tests")
class AbortInTraining(keras.layers.Layer):
    """Identity at inference (conversion and evaluation run fine); aborts the process in a training step."""

    def call(self, inputs, training=None):
        if training:
            tf.py_function(_abort, [], [tf.int32])
        return inputs


@keras.saving.register_keras_serializable(package="edgeprune_tests")
class OneDnnLikeCrash(keras.layers.Layer):
    """Identity at inference; in a training step, the oneDNN abort unless TF_ENABLE_ONEDNN_OPTS=0."""

    def call(self, inputs, training=None):
        if training:
            done = tf.py_function(_onednn_like_abort, [], [tf.int32])
            with tf.control_dependencies(done):
                return tf.identity(inputs)
        return inputs
