"""Prune-preserving quantization-aware training: an int8 variant that keeps the pruned model's zeros.

Post-training int8 (``pruned-int8``) quantizes the pruned weights once; the zeros survive because zero maps to
zero, but the accuracy lost to quantization is not recovered. Quantization-aware training fine-tunes with
fake-quantized weights and activations, and tfmot's plain QAT scheme would let that fine-tune refill the zeros.
tfmot's ``Default8BitPrunePreserveQuantizeScheme`` keeps each pruned kernel's zero mask fixed during it, so the
int8 file is both quantization-aware and as sparse as the pruned model (the manifest's ``sparsity`` of
``pruned-pqat-int8`` shows it, read back from the .tflite). Half the pruning fine-tune's epochs (at least one) at a
fifth of its learning rate: the weights are already trained, QAT only adapts them to the int8 grid.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

from . import _tf
from .config import PruneConfig
from .data import Dataset
from .finetune import clone_with_weights, fine_tune
from .model import EpochCallback
from ..errors import PruningError


def epochs(config: PruneConfig) -> int:
    """The QAT fine-tune's epochs: half the pruning fine-tune's, at least one."""
    return max(1, math.ceil(config.epochs / 2))


def pqat_clone(pruned: Any, data: Dataset, config: PruneConfig, seed: int,
               on_epoch: Optional[EpochCallback] = None) -> Any:
    """A quantization-aware clone of the stripped ``pruned`` model, fine-tuned with its zeros kept."""
    tfmot = _tf.load_tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
        default_8bit_prune_preserve_quantize_scheme as scheme,
    )

    try:
        annotated = tfmot.quantization.keras.quantize_annotate_model(clone_with_weights(pruned))
        with tfmot.quantization.keras.quantize_scope():
            model = tfmot.quantization.keras.quantize_apply(annotated,
                                                            scheme.Default8BitPrunePreserveQuantizeScheme())
    except (ValueError, RuntimeError, TypeError) as exc:  # a layer tfmot's QAT does not know
        raise PruningError(f"prune-preserving QAT cannot quantize this model: {str(exc).splitlines()[0][:300]}") \
            from exc
    settings = dataclasses.replace(config, epochs=epochs(config), learning_rate=config.learning_rate / 5)
    fine_tune(model, data, settings, seed, on_epoch)
    return model
