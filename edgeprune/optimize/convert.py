"""One TFLite variant from a Keras model, with the converter settings of its row in ``variants.TABLE``.

The converter writes chatter straight to file descriptor 2 from C++; it is captured per conversion so the
terminal stays readable and a failure can quote what the converter said.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from typing import Any, Iterator

import numpy as np

from . import _tf
from .structures import get as structure_of, untagged
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


def _converter(tf: Any, variant: Variant, model: Any, representative: np.ndarray, static: bool = False) -> Any:
    """A TFLiteConverter for ``model`` set up as the row says (names resolved against tf and tf.lite).

    ``static``: from a concrete function with the batch fixed at 1, for graphs the dynamic form cannot lower
    (a recurrent layer's TensorList needs a static element shape)."""
    settings = variant.converter
    if static:
        spec = tf.TensorSpec([1, *model.input_shape[1:]], model.inputs[0].dtype)
        concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    else:
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
    variant = stored_as(name)
    tf, _ = _tf.load()
    flatbuffer, error, said = _convert(tf, variant, model, representative, static=False)
    if error is not None and _has_recurrent_layer(model):  # TensorListReserve & co: retry with a static batch
        flatbuffer, error, said = _convert(tf, variant, model, representative, static=True)
    if error is not None:
        detail = str(error).strip().splitlines()
        tail = [line for line in said.splitlines() if "error" in line.lower()][-1:]
        reason = (detail[0] if detail else type(error).__name__) + (f" ({tail[0].strip()[:300]})" if tail else "")
        # the converter's whole story goes to native.log (fd 2), the terminal and manifest get one line
        os.write(2, f"--- {name}: conversion failed ---\n{error}\n{said}\n".encode("utf-8", "replace"))
        raise ConversionError(f"{name}: conversion failed: {reason[:500]} (the converter's output is in "
                              f"native.log)") from error
    return bytes(flatbuffer)


def stored_as(name: str) -> Variant:
    """The row of ``name`` with the converter settings its structure adds: a structure that stores its weights
    sparse (xnnpack-sparse) converts the float32 rows with EXPERIMENTAL_SPARSITY, which stores the pruned
    kernels sparse behind a DENSIFY op: the sign XNNPACK's sparse path looks for. Quantized rows stay dense: that
    path runs float models only."""
    variant = get(name)
    _, structure = untagged(name)
    settings = variant.converter
    if structure is not None and structure_of(structure).sparse_storage and variant.sparse_storage \
            and not settings.optimizations and not settings.supported_types:
        settings = dataclasses.replace(settings, optimizations=("EXPERIMENTAL_SPARSITY",))
        return dataclasses.replace(variant, converter=settings)
    return variant


def _has_recurrent_layer(model: Any) -> bool:
    return any(type(layer).__name__ in ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional")
               for layer in getattr(model, "layers", []))


def _convert(tf: Any, variant: Variant, model: Any, representative: np.ndarray, static: bool) -> tuple:
    """(flatbuffer, None, log) or (None, the exception, log) for one attempt."""
    flatbuffer, error = None, None
    with _captured_stderr() as log:
        try:
            flatbuffer = _converter(tf, variant, model, representative, static).convert()
        except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError...
            error = exc
    return flatbuffer, error, log[0] if log else ""
