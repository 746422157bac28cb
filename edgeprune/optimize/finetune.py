"""The fine-tune, defined once: what the pruning runs under its schedule, and what the finetuned control runs bare.

The finetuned-float32 control answers "what did fine-tuning alone buy?": it must get exactly the pruning fine-tune
(the same clone of the baseline, epochs, batch size, steps, optimizer, learning rate, data and seed), minus the
pruning. Both go through ``fine_tune`` so a change to one is a change to both. The seed is set right before
fitting, after any wrapping, so the shuffling starts from the same seed in both.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from . import _tf
from .config import PruneConfig
from .data import Dataset
from .model import EpochCallback, fit


def clone_with_weights(model: Any) -> Any:
    """A new model with new layer objects and the same weights: what gets fine-tuned, so the baseline stays put."""
    _, keras = _tf.load()
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def fine_tune(model: Any, data: Dataset, config: PruneConfig, seed: int, on_epoch: Optional[EpochCallback] = None,
              callbacks: Sequence[Any] = ()) -> None:
    """Fit ``model`` in place with the pruning fine-tune's settings (``config``: epochs, batch size, learning rate)."""
    _, keras = _tf.load()
    keras.utils.set_random_seed(seed)
    fit(model, data, config, on_epoch, callbacks=callbacks)


def finetuned_clone(model: Any, data: Dataset, config: PruneConfig, seed: int,
                    on_epoch: Optional[EpochCallback] = None) -> Any:
    """The control: a clone of ``model`` fine-tuned as the pruning fine-tune is, without pruning."""
    clone = clone_with_weights(model)
    fine_tune(clone, data, config, seed, on_epoch)
    return clone
