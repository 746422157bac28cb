"""Small .tflite files of the kinds people bring from elsewhere (issue 13), built by TensorFlow itself.

``zoo_dir()`` returns a folder holding every model of ``MODELS``; they are built once by running this file as a
script with the host venv's Python (TensorFlow is imported in that throw-away process only, with
TF_USE_LEGACY_KERAS=1 set before the import, as model_factory.py does) and cached under
``.cache/tflite-zoo/<hash of this file>``, so changing a builder rebuilds them all.

- ``multi_io``: two float inputs of different shapes (``image`` [1, 8, 8, 3], ``features`` [1, 5]) and two outputs
  (``logits`` [1, 4], ``aux`` [1, 2]);
- ``int8_input`` / ``uint8_input``: full-integer models whose input and output are int8 / uint8;
- ``dynamic``: converted from a tf.function whose input is [None, None, 8, 3] (batch and height dynamic);
- ``custom_op``: tf.math.erfc converted with ``allow_custom_ops``: the custom op ``Erfc``, no runtime has it;
- ``mediapipe_op``: the same file with the custom op renamed ``Convolution2DTransposeBias`` (MediaPipe's name),
  rewritten through the LiteRT schema's object API;
- ``mixed_dtypes``: inputs ``ids`` int32 [1, 6], ``ids64`` int64 [1, 6], ``mask`` bool [1, 6], ``half`` float16
  [1, 6] (a 64-row embedding table: ids in [0, 64) are valid);
- ``small_vocab``: ids int32 [1, 4] into a 10-row table: generated ids (in [0, 64)) make its GATHER fail;
- ``string_input``: a string input [2] (GATHER on strings);
- ``cumsum_fallback``: float image [1, 8, 8, 3] -> CONV_2D, MEAN, CUMSUM, FULLY_CONNECTED: XNNPACK takes every op
  but CUMSUM, so it runs as two delegate partitions around one op on the builtin CPU kernels (``--op-profile``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS = ("multi_io", "int8_input", "uint8_input", "dynamic", "custom_op", "mediapipe_op", "mixed_dtypes",
          "small_vocab", "string_input", "cumsum_fallback")
SEED = 4321


def zoo_dir() -> Path:
    """The folder of built models (built on first use, then reused until this file changes)."""
    from support.paths import CACHE_DIR

    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    root = CACHE_DIR / "tflite-zoo"
    root.mkdir(parents=True, exist_ok=True)
    folder = root / key
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all((folder / (name + ".tflite")).is_file() for name in MODELS):
            return folder
        work = Path(tempfile.mkdtemp(prefix="build-", dir=str(root)))
        try:
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
            env.pop("PYTHONPATH", None)
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(work)], capture_output=True,
                                  text=True, env=env, timeout=900)
            if proc.returncode != 0:
                raise RuntimeError("building the tflite zoo failed:\n" + proc.stderr[-5000:])
            if folder.exists():
                shutil.rmtree(folder)
            work.chmod(0o755)
            work.rename(folder)
        finally:
            if work.exists():
                shutil.rmtree(work)
    return folder


def build(out: Path) -> None:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow is imported, or tf.keras is Keras 3
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(SEED)
    out.mkdir(parents=True, exist_ok=True)

    def write(name: str, blob: bytes) -> None:
        (out / (name + ".tflite")).write_bytes(blob)

    def from_function(function, **settings) -> bytes:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], function)
        for key, value in settings.items():
            setattr(converter, key, value)
        return converter.convert()

    image = keras.layers.Input((8, 8, 3), name="image")
    features = keras.layers.Input((5,), name="features")
    trunk = keras.layers.Concatenate()([keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(image)),
                                        keras.layers.Dense(6, activation="relu")(features)])
    multi = keras.Model([image, features], [keras.layers.Dense(4, name="logits")(trunk),
                                            keras.layers.Dense(2, name="aux")(trunk)])
    write("multi_io", tf.lite.TFLiteConverter.from_keras_model(multi).convert())

    small = keras.Sequential([keras.layers.Input((10, 10, 3)), keras.layers.Conv2D(6, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    rng = np.random.default_rng(SEED)
    samples = rng.random((32, 10, 10, 3), dtype=np.float32)

    def representative():
        for i in range(samples.shape[0]):
            yield [samples[i:i + 1]]

    for name, dtype in (("int8_input", tf.int8), ("uint8_input", tf.uint8)):
        converter = tf.lite.TFLiteConverter.from_keras_model(small)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = dtype
        converter.inference_output_type = dtype
        write(name, converter.convert())

    kernel = tf.constant(rng.normal(size=(3, 3, 3, 5)).astype(np.float32))
    dense = tf.constant(rng.normal(size=(5, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, None, 8, 3], tf.float32, name="frames")])
    def dynamic(frames):
        hidden = tf.nn.relu(tf.nn.conv2d(frames, kernel, strides=1, padding="SAME"))
        return tf.matmul(tf.reduce_mean(hidden, axis=[1, 2]), dense)

    write("dynamic", from_function(dynamic))

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x")])
    def erfc(x):
        return tf.math.erfc(x) + 1.0

    custom = from_function(erfc, allow_custom_ops=True)
    write("custom_op", custom)
    write("mediapipe_op", _rename_custom_op(custom, b"Erfc", b"Convolution2DTransposeBias"))

    table = tf.constant(rng.normal(size=(64, 3)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 6], tf.int32, name="ids"),
                                  tf.TensorSpec([1, 6], tf.int64, name="ids64"),
                                  tf.TensorSpec([1, 6], tf.bool, name="mask"),
                                  tf.TensorSpec([1, 6], tf.float16, name="half")])
    def mixed(ids, ids64, mask, half):
        embedded = tf.reduce_sum(tf.gather(table, ids) + tf.gather(table, ids64), axis=-1)
        return tf.where(mask, embedded, tf.cast(half, tf.float32))

    write("mixed_dtypes", from_function(mixed))

    vocab = tf.constant(rng.normal(size=(10, 2)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.int32, name="ids")])
    def small_vocab(ids):
        return tf.gather(vocab, ids) * 2.0

    write("small_vocab", from_function(small_vocab))

    @tf.function(input_signature=[tf.TensorSpec([2], tf.string, name="words")])
    def strings(words):
        return tf.gather(words, [1, 0])

    write("string_input", from_function(strings))

    cumsum_kernel = tf.constant(rng.normal(size=(3, 3, 3, 4)).astype(np.float32))
    cumsum_dense = tf.constant(rng.normal(size=(4, 3)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32, name="image")])
    def cumsum_fallback(image):
        hidden = tf.nn.relu(tf.nn.conv2d(image, cumsum_kernel, strides=1, padding="SAME"))
        return tf.matmul(tf.math.cumsum(tf.reduce_mean(hidden, axis=[1, 2]), axis=1), cumsum_dense)

    write("cumsum_fallback", from_function(cumsum_fallback))


def _rename_custom_op(blob: bytes, old: bytes, new: bytes) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(blob), 0)
    renamed = 0
    for code in model.operatorCodes:
        if code.customCode == old:
            code.customCode = new
            renamed += 1
    assert renamed == 1, "expected one custom op %r" % old
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


if __name__ == "__main__":
    build(Path(sys.argv[1]))
