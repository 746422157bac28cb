"""Build the small .tflite variants the agent tests measure.

Run as a script with the host venv's Python (``python model_factory.py OUT``)
so TensorFlow is imported in a throw-away process: setting
TF_USE_LEGACY_KERAS in the pytest process would change what ``tf.keras``
means for every other test in the same session.

The model is tiny but has the shape of the real thing (conv -> dense ->
logits) and is trained for a few epochs on separable random data, so its
accuracy is far from chance and a wrong quantization or a wrong argmax in the
agent shows up as a changed accuracy.  The Dense kernel has more than 1024
weights, so dynamic-range quantization really quantizes it (smaller layers
are left in float and the "dynamic" model would be a float model).

Writes float32, dynamic (Optimize.DEFAULT without representative data),
int8 (full integer, int8 input and output) and float16 variants plus
eval.npz (x float32 [N, 12, 12, 3], y int64 [N]), the layout of an
``edgeprune optimize`` run folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

INPUT_SHAPE = (12, 12, 3)
NUM_CLASSES = 5
TRAIN_SAMPLES = 600
EVAL_SAMPLES = 200
SEED = 1234


def make_data(n: int, seed: int):
    """Noisy copies of one fixed template per class: learnable, not trivial."""
    import numpy as np

    templates = np.random.default_rng(SEED).normal(size=(NUM_CLASSES,) + INPUT_SHAPE)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, NUM_CLASSES, size=n)
    x = 0.35 * templates[y] + rng.normal(size=(n,) + INPUT_SHAPE)
    return x.astype("float32"), y.astype("int64")


def build(out_dir: Path) -> None:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(SEED)
    x_train, y_train = make_data(TRAIN_SAMPLES, SEED + 1)
    x_eval, y_eval = make_data(EVAL_SAMPLES, SEED + 2)

    model = keras.Sequential([
        keras.layers.Input(INPUT_SHAPE),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(48, activation="relu"),
        keras.layers.Dense(NUM_CLASSES),
    ])
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=8, batch_size=32, verbose=0)

    def convert(**settings) -> bytes:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        for key, value in settings.items():
            setattr(converter, key, value)
        return converter.convert()

    def representative():
        for i in range(100):
            yield [x_train[i:i + 1]]

    variants = {
        "float32": convert(),
        "dynamic": convert(optimizations=[tf.lite.Optimize.DEFAULT]),
        "int8": convert(
            optimizations=[tf.lite.Optimize.DEFAULT],
            representative_dataset=representative,
            target_spec=_int8_spec(tf),
            inference_input_type=tf.int8,
            inference_output_type=tf.int8,
        ),
        "float16": convert(optimizations=[tf.lite.Optimize.DEFAULT],
                           target_spec=_float16_spec(tf)),
    }
    for name, blob in variants.items():
        (out_dir / (name + ".tflite")).write_bytes(blob)
    np.savez(out_dir / "eval.npz", x=x_eval, y=y_eval)


def _int8_spec(tf):
    spec = tf.lite.TargetSpec()
    spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return spec


def _float16_spec(tf):
    spec = tf.lite.TargetSpec()
    spec.supported_types = [tf.float16]
    return spec


if __name__ == "__main__":
    build(Path(sys.argv[1]))
