"""A model that ends in softmax is fine-tuned with a probability loss, and a variant that loses more accuracy
than --max-accuracy-drop allows is marked in the manifest, the table and the exit status (issue 15)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from edgeprune.results.manifest import validate

pytestmark = pytest.mark.slow


def _save(model, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.save(str(path))
    return path


def _trained(model, npz: Path, from_logits: bool):
    import numpy as np
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    with np.load(npz) as data:
        model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
                      metrics=["accuracy"])
        model.fit(data["x_train"], data["y_train"], epochs=3, batch_size=32, verbose=0)
    return model


def test_a_model_ending_in_tf_nn_softmax_is_fine_tuned_as_probabilities(cli, small_digits_npz, tmp_path):
    import tensorflow as tf
    import tf_keras as keras

    inputs = keras.layers.Input((8, 8, 1))
    hidden = keras.layers.Dense(64, activation="relu", name="hidden")(keras.layers.Flatten()(inputs))
    outputs = tf.nn.softmax(keras.layers.Dense(10, name="scores")(hidden))  # a TFOpLambda, no "activation"
    model = _trained(keras.Model(inputs, outputs), small_digits_npz, from_logits=False)
    assert type(model.layers[-1]).__name__ == "TFOpLambda"
    out = tmp_path / "out"
    proc = cli("optimize", "--model", str(_save(model, tmp_path / "softmax.keras")), "--data",
               str(small_digits_npz), "--out", str(out), "--prune-epochs", "2", "--variants", "pruned-float32",
               "--max-accuracy-drop", "100", "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads(proc.stdout)
    assert any("outputs probabilities" in note for note in manifest["pruning"]["notes"]), manifest["pruning"]
    assert all(v["status"] == "ok" for v in manifest["variants"])


def test_a_variant_over_the_accuracy_budget_is_marked_and_fails_the_run(cli, small_digits_npz, tmp_path):
    import tf_keras as keras

    inputs = keras.layers.Input((8, 8, 1))
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(keras.layers.Flatten()(inputs))
    model = _trained(keras.Model(inputs, keras.layers.Dense(10, name="logits")(hidden)), small_digits_npz, True)
    path = _save(model, tmp_path / "compact.keras")
    args = ["--model", str(path), "--data", str(small_digits_npz), "--prune-epochs", "1", "--final-sparsity",
            "0.95", "--initial-sparsity", "0.9", "--variants", "pruned-float32,pruned-int8"]
    proc = cli("optimize", *args, "--out", str(tmp_path / "strict"), "--max-accuracy-drop", "0.5")
    manifest = json.loads((tmp_path / "strict" / "manifest.json").read_text())
    validate(manifest)
    base = next(v for v in manifest["variants"] if v["name"] == "baseline-float32")
    over = []
    for v in manifest["variants"]:
        drop = (base["accuracy"] - v["accuracy"]) * 100
        assert bool(v.get("over_budget")) == (drop > 0.5), (v["name"], drop, v.get("over_budget"))
        if v.get("over_budget"):
            over.append(v["name"])
            assert f"lost {drop:.1f} accuracy points" in v["over_budget"] and "--final-sparsity" in v["over_budget"]
    assert over, "a compact model at 95% sparsity after one epoch should lose more than half a point"
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert error == [f"Error: {len(over)} variant(s) lost more accuracy than --max-accuracy-drop allows: "
                     f"{', '.join(over)}"], proc.stderr
    assert "!" in proc.stdout  # the table marks them
    relaxed = cli("optimize", *args, "--out", str(tmp_path / "relaxed"), "--max-accuracy-drop", "100", "--quiet")
    assert relaxed.returncode == 0, relaxed.stderr[-2000:]
    assert not any(v.get("over_budget") for v in json.loads((tmp_path / "relaxed" / "manifest.json").read_text())
                   ["variants"])


def test_a_model_with_two_inputs_is_refused_before_training_in_one_line(cli, small_digits_npz, tmp_path,
                                                                        assert_one_line_error):
    import tf_keras as keras

    first, second = keras.layers.Input((8, 8, 1)), keras.layers.Input((4,))
    merged = keras.layers.Concatenate()([keras.layers.Flatten()(first), second])
    model = keras.Model([first, second], keras.layers.Dense(10)(merged))
    proc = cli("optimize", "--model", str(_save(model, tmp_path / "two.keras")), "--data", str(small_digits_npz),
               "--out", str(tmp_path / "out"), "--quiet")
    assert "several inputs or outputs are not supported" in assert_one_line_error(proc)
    assert not (tmp_path / "out" / "manifest.json").exists()
