"""A copy of a run folder in which one variant is deliberately slower: the regression the gate must catch (issue 17).

``slower_copy(folder, dest, variant)`` copies the run folder's files and replaces ``variant``'s .tflite with a much
bigger float32 model of the same signature (the digits' [1, 8, 8, 1] float input, [1, 10] float output: Flatten ->
Dense(2048) -> Dense(2048) -> Dense(10), about 17 MB of weights against the digits CNN's 1 MB), and updates that
variant's sha256 and sizes in the copy's manifest, so ``edgeprune bench`` accepts the folder and measures the same
variant name running many times more work. The model is untrained: its accuracy is near chance, which is
irrelevant to a latency gate (and lets a test see an accuracy drop too).

The model is built by running this file as a script with the host venv's Python, so TensorFlow is imported in a
throw-away process (as model_factory.py does) and never in the pytest process.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

WIDTH = 2048


def build(out: Path, input_shape: "list[int]", classes: int) -> None:
    """Write the bigger model to ``out`` (runs in the throw-away process)."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input(input_shape[1:]), keras.layers.Flatten(),
        keras.layers.Dense(WIDTH, activation="relu"), keras.layers.Dense(WIDTH, activation="relu"),
        keras.layers.Dense(classes, activation="softmax"),
    ])
    out.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())


def slower_copy(folder: Path, dest: Path, variant: str) -> Path:
    """``dest``: ``folder``'s files, with ``variant`` replaced by the bigger model (a float32-input variant)."""
    from support.store_rows import copy_run  # not at the top: this file also runs as a script, without pytest

    copy_run(folder, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    entry = next(v for v in manifest["variants"] if v["name"] == variant)
    assert entry["input"]["dtype"] == "float32", f"{variant} must take float input like the bigger model"
    target = dest / entry["file"]
    proc = subprocess.run([sys.executable, __file__, str(target), json.dumps(entry["input"]["shape"]),
                           str(entry["output"]["shape"][-1])], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    blob = target.read_bytes()
    entry.update(sha256=hashlib.sha256(blob).hexdigest(), size_bytes=len(blob),
                 gzip_bytes=len(gzip.compress(blob, compresslevel=9)))
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return dest


if __name__ == "__main__":
    build(Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]))
