"""The five TFLite variants.

The converter writes chatter straight to file descriptor 2 from C++; it is captured per conversion so the
terminal stays readable and a failure can quote what the converter said.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Iterator

import numpy as np

from . import _tf
from ..errors import ConversionError

#: What each variant is made from and how.
DESCRIPTIONS = {
    "baseline-float32": "baseline model, float32",
    "pruned-float32": "pruned + stripped, float32",
    "pruned-dynamic": "pruned, dynamic-range quantization (int8 weights, float activations)",
    "pruned-int8": "pruned, full integer quantization (int8 weights, activations, input and output)",
    "pruned-float16": "pruned, float16 weights",
}


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list]:
    """Redirect fd 2 into a temp file; the list receives its text when the block ends."""
    captured: list = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


def convert_variant(name: str, baseline: Any, pruned: Any, representative: np.ndarray) -> bytes:
    """Convert one variant; raise ConversionError with the converter's own words on failure."""
    tf, _ = _tf.load()
    model = baseline if name == "baseline-float32" else pruned
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if name in ("pruned-dynamic", "pruned-int8", "pruned-float16"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if name == "pruned-float16":
        converter.target_spec.supported_types = [tf.float16]
    if name == "pruned-int8":
        samples = representative.astype(np.float32)

        def representative_dataset() -> Iterator[list]:
            for i in range(len(samples)):
                yield [samples[i : i + 1]]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    if name not in DESCRIPTIONS:
        raise ConversionError(f"unknown variant {name!r}")
    with _captured_stderr() as log:
        try:
            flatbuffer = converter.convert()
        except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError...
            error = exc
        else:
            error = None
    if error is not None:
        detail = str(error).strip().splitlines()
        tail = [line for line in log[0].splitlines() if "error" in line.lower()][-1:]
        reason = (detail[0] if detail else type(error).__name__) + (f" ({tail[0].strip()})" if tail else "")
        raise ConversionError(f"{name}: conversion failed: {reason}") from error
    return bytes(flatbuffer)
