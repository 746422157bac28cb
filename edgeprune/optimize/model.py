"""The baseline: the built-in digits CNN, or a user's Keras 2 model.

The built-in model has no BatchNorm on purpose: with few training steps its moving statistics lag the weights
and the model scores at chance at inference. Most of its weights sit in one Dense layer, so pruning and
quantization show what they do to a file's size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from . import _tf
from .config import PruneConfig, TrainConfig
from .data import Dataset
from ..errors import ModelError

EpochCallback = Callable[[int, dict], None]


def build_default_model(input_shape: Sequence[int], num_classes: int) -> Any:
    _, keras = _tf.load()
    layers = keras.layers
    return keras.Sequential(
        [
            layers.Input(tuple(input_shape)),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(name="pool"),
            layers.Flatten(name="flatten"),
            layers.Dense(256, activation="relu", name="dense1"),
            layers.Dense(num_classes, name="logits"),
        ],
        name="edgeprune_digits_cnn",
    )


def outputs_probabilities(model: Any) -> bool:
    """True when the model ends in a softmax (so the loss must not treat its output as logits)."""
    last = model.layers[-1]
    return type(last).__name__ == "Softmax" or last.get_config().get("activation") == "softmax"


def compile_for_training(model: Any, learning_rate: float) -> None:
    _, keras = _tf.load()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not outputs_probabilities(model)),
        metrics=["accuracy"],
    )


def keras_callback(on_epoch: Optional[EpochCallback]) -> list:
    if on_epoch is None:
        return []
    _, keras = _tf.load()
    return [keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: on_epoch(epoch, dict(logs or {})))]


def train_baseline(data: Dataset, config: TrainConfig, seed: int, on_epoch: Optional[EpochCallback] = None) -> Any:
    _, keras = _tf.load()
    keras.utils.set_random_seed(seed)
    model = build_default_model(data.input_shape, data.num_classes)
    fit(model, data, config, on_epoch)
    return model


def fit(model: Any, data: Dataset, config: Union[TrainConfig, PruneConfig], on_epoch: Optional[EpochCallback] = None,
        callbacks: Sequence[Any] = ()) -> None:
    """Compile ``model`` and fit it on the training arrays with the config's epochs, batch size and learning rate."""
    compile_for_training(model, config.learning_rate)
    model.fit(
        data.x_train,
        data.y_train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        verbose=0,
        shuffle=True,
        callbacks=list(callbacks) + keras_callback(on_epoch),
    )


def load_model(path: str) -> Any:
    """Load a .keras, .h5 or SavedModel directory with Keras 2 (what tfmot needs)."""
    source = Path(path)
    if not source.exists():
        raise ModelError(f"model not found: {path}")
    if source.is_file() and source.suffix not in (".keras", ".h5", ".hdf5"):
        raise ModelError(f"{path}: expected a .keras or .h5 file or a SavedModel directory")
    if source.is_dir() and not (source / "saved_model.pb").exists():
        raise ModelError(f"{path}: directory has no saved_model.pb, so it is not a SavedModel")
    _, keras = _tf.load()
    try:
        model = keras.models.load_model(str(source), compile=False)
    except Exception as exc:  # Keras raises many unrelated types for unreadable files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: cannot load the model ({first_line})") from exc
    if not isinstance(model, keras.Model) or not hasattr(model, "layers"):
        raise ModelError(f"{path}: loaded object is not a Keras model")
    return model


def check_fits(model: Any, data: Dataset) -> None:
    """Fail early (before any training) when the model and the arrays cannot work together."""
    try:
        input_shape = model.input_shape
        output_shape = model.output_shape
    except (AttributeError, ValueError) as exc:
        raise ModelError(f"model has no single defined input/output ({exc})") from exc
    if isinstance(input_shape, list) or isinstance(output_shape, list):
        raise ModelError("models with several inputs or outputs are not supported")
    expected = tuple(input_shape[1:])
    got = data.input_shape
    if len(expected) != len(got) or any(e is not None and e != g for e, g in zip(expected, got)):
        raise ModelError(f"model input is {tuple(input_shape)} but the data samples are {got}")
    classes = output_shape[-1]
    if len(output_shape) != 2 or classes is None:
        raise ModelError(f"model output must be [batch, classes], got {tuple(output_shape)}")
    if classes < data.num_classes:
        raise ModelError(f"model predicts {classes} classes but the labels go up to {data.num_classes - 1}")
