"""One TFLite variant from a Keras model, with the converter settings of its row in ``variants.TABLE``.

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
from .variants import Variant, get
from ..errors import ConversionError


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


def _converter(tf: Any, variant: Variant, model: Any, representative: np.ndarray) -> Any:
    """A TFLiteConverter for ``model`` set up as the row says (names resolved against tf and tf.lite)."""
    settings = variant.converter
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if settings.optimizations:
        converter.optimizations = [getattr(tf.lite.Optimize, name) for name in settings.optimizations]
    if settings.supported_types:
        converter.target_spec.supported_types = [getattr(tf, name) for name in settings.supported_types]
    if settings.representative_dataset:
        samples = representative.astype(np.float32)

        def representative_dataset() -> Iterator[list]:
            for i in range(len(samples)):
                yield [samples[i : i + 1]]

        converter.representative_dataset = representative_dataset
    if settings.supported_ops:
        converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, name) for name in settings.supported_ops]
    if settings.input_type:
        converter.inference_input_type = getattr(tf, settings.input_type)
    if settings.output_type:
        converter.inference_output_type = getattr(tf, settings.output_type)
    return converter


def convert_variant(name: str, model: Any, representative: np.ndarray) -> bytes:
    """Convert ``model`` (the one the row's ``source`` names) to variant ``name``; raise ConversionError with the
    converter's own words on failure."""
    variant = get(name)
    tf, _ = _tf.load()
    converter = _converter(tf, variant, model, representative)
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
