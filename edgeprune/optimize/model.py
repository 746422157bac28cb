"""The baseline: the built-in digits CNN, or a user's Keras 2 model.

The built-in model has no BatchNorm on purpose: with few training steps its moving statistics lag the weights
and the model scores at chance at inference. Most of its weights sit in one Dense layer, so pruning and
quantization show what they do to a file's size.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

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


def build_mobilenet(input_shape: Sequence[int], num_classes: int) -> Any:
    """A MobileNetV1-like network built so XNNPACK's sparse path can take it: a 3x3 stride-2 stem on 3 channels
    with padding 1 on each side (ZeroPadding2D + valid, not TF's asymmetric SAME), depthwise 3x3 + 1x1 blocks
    (stride-2 ones padded the same way), and a spatial mean (global average pooling, keepdims) ending the part that
    runs in CHW layout; the classifier after it runs as usual. Every layer is one tfmot's PruneForLatencyOnXNNPack
    accepts. Unlike the CNN it needs BatchNorm: without it this depth stays at chance (10% on the digits, measured);
    momentum 0.9 lets the moving statistics catch up within a short training (0.99 left the test set at chance).
    The converter folds each BatchNorm into the convolution before it, zeros included."""
    _, keras = _tf.load()
    layers = keras.layers
    pad = ((1, 1), (1, 1))

    def norm_relu(x: Any, name: str) -> Any:
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)

    x = inputs = layers.Input(tuple(input_shape))
    x = layers.ZeroPadding2D(pad, name="stem_pad")(x)
    x = norm_relu(layers.Conv2D(32, 3, strides=2, padding="valid", use_bias=False, name="stem")(x), "stem")
    for index, (channels, stride) in enumerate(((64, 1), (128, 2), (128, 1), (256, 2), (256, 1))):
        if stride == 2:
            x = layers.ZeroPadding2D(pad, name=f"pad{index}")(x)
            x = layers.DepthwiseConv2D(3, strides=2, padding="valid", use_bias=False, name=f"dw{index}")(x)
        else:
            x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{index}")(x)
        x = norm_relu(x, f"dw{index}")
        x = norm_relu(layers.Conv2D(channels, 1, use_bias=False, name=f"pw{index}")(x), f"pw{index}")
    x = layers.GlobalAveragePooling2D(keepdims=True, name="mean")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="edgeprune_digits_mobilenet")


#: ``--builtin`` name -> the function that builds it (input shape, classes).
BUILDERS: Dict[str, Callable[[Sequence[int], int], Any]] = {"cnn": build_default_model, "mobilenet": build_mobilenet}


def outputs_probabilities(model: Any, sample: Any = None) -> bool:
    """True when the model's output is probabilities (it ends in a softmax), so the loss must not treat it as
    logits. The last layer says so when it is a Softmax or has ``activation="softmax"``; a ``tf.nn.softmax``
    call (a TFOpLambda), a pruning wrapper around the last layer, or a custom head say nothing, so with
    ``sample`` inputs the output itself decides: every row non-negative and summing to 1."""
    last = model.layers[-1]
    config = last.get_config()
    inner = config.get("layer", {}).get("config", {}) if isinstance(config.get("layer"), dict) else {}
    if (type(last).__name__ == "Softmax" or config.get("activation") == "softmax"
            or inner.get("activation") == "softmax"
            or (type(last).__name__ == "TFOpLambda" and "softmax" in str(config.get("function", "")))):
        return True
    if sample is None:
        return False
    import numpy as np

    out = np.asarray(model(sample[:64], training=False), dtype=np.float64)
    return bool(out.ndim == 2 and np.all(out >= 0) and np.allclose(out.sum(axis=-1), 1.0, atol=1e-3))


def compile_for_training(model: Any, learning_rate: float, sample: Any = None) -> None:
    _, keras = _tf.load()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not outputs_probabilities(model, sample)),
        metrics=["accuracy"],
    )


def keras_callback(on_epoch: Optional[EpochCallback]) -> list:
    if on_epoch is None:
        return []
    _, keras = _tf.load()
    return [keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: on_epoch(epoch, dict(logs or {})))]


def train_baseline(data: Dataset, config: TrainConfig, seed: int, on_epoch: Optional[EpochCallback] = None,
                   builtin: str = "cnn") -> Any:
    _, keras = _tf.load()
    keras.utils.set_random_seed(seed)
    model = BUILDERS[builtin](data.input_shape, data.num_classes)
    fit(model, data, config, on_epoch)
    return model


def fit(model: Any, data: Dataset, config: Union[TrainConfig, PruneConfig], on_epoch: Optional[EpochCallback] = None,
        callbacks: Sequence[Any] = ()) -> None:
    """Compile ``model`` and fit it on the training arrays with the config's epochs, batch size and learning rate."""
    compile_for_training(model, config.learning_rate, data.x_train)
    model.fit(
        data.x_train,
        data.y_train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        verbose=0,
        shuffle=True,
        callbacks=list(callbacks) + keras_callback(on_epoch),
    )


def resolve_custom_objects(names: Sequence[str]) -> Dict[str, Any]:
    """``module:name`` -> {name: the object}, the module imported from the current folder or the Python path
    (where a user running ``edgeprune optimize`` from their project keeps their layers)."""
    import importlib

    found: Dict[str, Any] = {}
    here = os.getcwd()
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        for spec in names:
            module_name, _, attribute = spec.partition(":")
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:  # the user's module may fail in any way while it imports
                raise ModelError(f"--custom-objects {spec}: cannot import {module_name} ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
            if not hasattr(module, attribute):
                raise ModelError(f"--custom-objects {spec}: {module_name} has no {attribute}")
            found[attribute] = getattr(module, attribute)
    finally:
        if added:
            sys.path.remove(here)
    return found


#: What Keras says when a .keras file holds a Lambda layer and safe_mode is on.
_LAMBDA_REFUSED = ("lambda", "safe_mode")


def _custom_classes(path: Path) -> List[str]:
    """The classes a saved model's config names that are not Keras' own (a .keras file's config.json, an .h5
    file's model_config): what ``--custom-objects`` must provide."""
    import json
    import zipfile

    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
        elif path.suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as handle:
                raw = handle.attrs.get("model_config")
            config = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
        else:
            return []
    except Exception:  # unreadable: Keras says why
        return []
    found: List[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            name, module = node.get("class_name"), node.get("module")
            registered = node.get("registered_name") or ""
            if isinstance(name, str) and (">" in str(registered) or ">" in name
                                          or (module is not None and not str(module).startswith(("keras", "tf_keras")))):
                found.append(str(registered or name))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return list(dict.fromkeys(found))


def _h5_has_lambda(path: Path) -> bool:
    """A legacy .h5 model's config names a Lambda layer (Keras loads those without asking: we ask)."""
    try:
        import h5py

        with h5py.File(path, "r") as handle:
            config = handle.attrs.get("model_config")
    except Exception:  # not readable as HDF5: Keras will say why
        return False
    text = config.decode("utf-8", "replace") if isinstance(config, bytes) else str(config or "")
    return '"class_name": "Lambda"' in text


def load_model(path: str, custom_objects: Sequence[str] = (), unsafe: bool = False) -> Any:
    """Load a .keras, .h5 or SavedModel directory with Keras 2 (what tfmot needs).

    ``custom_objects`` are ``module:name`` pairs; a Lambda layer (code that runs while loading) is refused
    unless ``unsafe``, with the flag named.
    """
    source = Path(path)
    if not source.exists():
        raise ModelError(f"model not found: {path}")
    if source.is_file() and source.suffix not in (".keras", ".h5", ".hdf5"):
        raise ModelError(f"{path}: expected a .keras or .h5 file or a SavedModel directory")
    if source.is_dir() and not (source / "saved_model.pb").exists():
        raise ModelError(f"{path}: directory has no saved_model.pb, so it is not a SavedModel")
    refused = (f"{path}: the model has a Lambda layer, whose code runs when it is loaded; refused. If you trust "
               f"this file, pass --unsafe-deserialization")
    if source.suffix in (".h5", ".hdf5") and not unsafe and _h5_has_lambda(source):
        raise ModelError(refused)
    objects = resolve_custom_objects(custom_objects)
    _, keras = _tf.load()
    try:
        if source.suffix == ".keras":
            model = keras.models.load_model(str(source), compile=False, custom_objects=objects or None,
                                            safe_mode=not unsafe)
        else:
            model = keras.models.load_model(str(source), compile=False, custom_objects=objects or None)
    except Exception as exc:  # Keras raises many unrelated types for unreadable files
        text = str(exc).strip()
        if not unsafe and all(word in text.lower() for word in _LAMBDA_REFUSED):
            raise ModelError(refused) from exc
        first_line = text.splitlines()[0] if text else type(exc).__name__
        custom = _custom_classes(source)
        hint = ""
        if custom:
            hint = (f"; it uses custom objects ({', '.join(custom[:5])}): name where they are defined with "
                    f"--custom-objects module:name")
        elif "unknown" in first_line.lower() or "custom" in first_line.lower():
            hint = "; a custom layer or function? name it with --custom-objects module:name"
        raise ModelError(f"{path}: cannot load the model ({first_line[:300]}){hint}") from exc
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
