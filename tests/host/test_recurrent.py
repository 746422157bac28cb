"""Recurrent models (issue 15): a GRU and an LSTM over the digits' rows, through the real CLI. Their kernels are
pruned (tfmot prunes LSTM/GRU cells), a conversion the dynamic form cannot lower is retried with a static batch
of 1, a failure is one line per variant (the converter's output in native.log), and a converted variant that does
not compute what its Keras model computes is marked, never reported as fine."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from edgeprune.results.manifest import validate

pytestmark = pytest.mark.slow


def _recurrent_model(kind: str, npz):
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    inputs = keras.layers.Input((8, 8, 1))
    rows = keras.layers.Reshape((8, 8))(inputs)  # 8 time steps of 8 features: the digit's rows
    hidden = getattr(keras.layers, kind)(32, name=kind.lower())(rows)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(hidden))
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    with np.load(npz) as data:
        model.fit(data["x_train"], data["y_train"], epochs=4, batch_size=32, verbose=0)
    return model


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
def test_a_recurrent_model_is_pruned_converted_and_checked_against_keras(cli, small_digits_npz, tmp_path, kind):
    path = tmp_path / f"{kind}.keras"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _recurrent_model(kind, small_digits_npz).save(str(path))
    out = tmp_path / "out"
    proc = cli("optimize", "--model", str(path), "--data", str(small_digits_npz), "--out", str(out),
               "--prune-epochs", "2", "--max-accuracy-drop", "100", "--variants", "pruned-float32,pruned-dynamic",
               "--quiet", timeout=900)
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == (proc.returncode != 0), proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    validate(manifest)
    coverage = {c["layer"]: c for c in manifest["pruning"]["coverage"]}
    assert coverage[kind.lower()]["status"] == "pruned", coverage  # its cell's kernels, as tfmot prunes them
    sparsity = {layer["layer"]: layer["sparsity"] for layer in manifest["pruning"]["layers"]}
    assert sparsity[kind.lower()] >= 0.7, sparsity
    for variant in manifest["variants"]:
        if variant["status"] != "ok":  # one line, the rest in native.log
            assert "\n" not in variant["error"] and "native.log" in variant["error"], variant["error"]
            continue
        agreement = variant["keras_agreement"]
        assert bool(variant.get("mismatch")) == (agreement < 0.9), variant
        if variant.get("mismatch"):
            assert variant["name"] in errors[0] and "do not compute what their Keras model does" in errors[0]
    assert any(v["status"] == "ok" for v in manifest["variants"] if v["name"] != "baseline-float32") or errors
