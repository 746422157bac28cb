"""Honest pruning coverage (issue 15) on real architectures the test builds: keras.applications MobileNetV2
(small alpha, 32x32x3, weights=None) and a SeparableConv2D model. Every layer with weights is in the manifest as
pruned or dense with the reason, the notes say what stayed dense and its share of all weights, and the share of
all weights that are zero is recorded beside the pruned kernels' sparsity."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgeprune.results.manifest import validate

pytestmark = pytest.mark.slow
FAST = ["--prune-epochs", "1", "--variants", "pruned-float32", "--json", "--quiet"]


@pytest.fixture(scope="module")
def rgb32_npz(tmp_path_factory) -> Path:
    """Digits upsampled to 32x32x3 (MobileNetV2's smallest input): 400 train, 150 test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.kron(digits.images / 16.0, np.ones((4, 4)))[..., None].repeat(3, axis=-1).astype("float32")
    y = digits.target.astype("int64")
    path = tmp_path_factory.mktemp("rgb32") / "digits32.npz"
    np.savez(path, x_train=x[:400], y_train=y[:400], x_test=x[400:550], y_test=y[400:550])
    return path


def _save(model, folder: Path, name: str) -> Path:
    path = folder / f"{name}.keras"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.save(str(path))
    return path


def _optimize(cli, model: Path, npz: Path, out: Path) -> dict:
    proc = cli("optimize", "--model", str(model), "--data", str(npz), "--out", str(out), *FAST, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads(proc.stdout)
    validate(manifest)
    return manifest


def test_mobilenetv2_lists_every_depthwise_layer_as_left_dense(cli, tmp_path, rgb32_npz):
    import tf_keras as keras

    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10,
                                           classifier_activation=None)
    depthwise = [layer.name for layer in model.layers if type(layer).__name__ == "DepthwiseConv2D"]
    assert len(depthwise) == 17
    manifest = _optimize(cli, _save(model, tmp_path, "mobilenetv2"), rgb32_npz, tmp_path / "out")
    pruning = manifest["pruning"]
    coverage = {c["layer"]: c for c in pruning["coverage"]}
    with_weights = [layer.name for layer in model.layers if layer.weights]
    assert set(coverage) == set(with_weights)  # every layer with weights, none invented
    for name in depthwise:
        assert coverage[name]["status"] == "dense" and "depthwise" in coverage[name]["reason"], coverage[name]
    pruned = [c for c in coverage.values() if c["status"] == "pruned"]
    assert {c["type"] for c in pruned} == {"Conv2D", "Dense"}
    assert pruning["total_weights"] == model.count_params()
    assert 0 < pruning["all_weights_sparsity"] < pruning["sparsity"]
    notes = " ".join(pruning["notes"])
    assert "17 DepthwiseConv2D layers left dense" in notes and "tfmot does not prune depthwise kernels" in notes
    assert "BatchNormalization layers left dense" in notes


def test_separable_conv_is_pruned_in_part_and_says_which_half_stayed_dense(cli, tmp_path, rgb32_npz):
    import tf_keras as keras

    inputs = keras.layers.Input((32, 32, 3))
    hidden = keras.layers.SeparableConv2D(16, 3, strides=2, activation="relu", name="sep")(inputs)
    hidden = keras.layers.GlobalAveragePooling2D()(hidden)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(hidden))
    manifest = _optimize(cli, _save(model, tmp_path, "separable"), rgb32_npz, tmp_path / "out")
    coverage = {c["layer"]: c for c in manifest["pruning"]["coverage"]}
    assert coverage["sep"]["status"] == "pruned"
    assert "depthwise_kernel stays dense" in coverage["sep"]["reason"], coverage["sep"]
    assert coverage["logits"] == {"layer": "logits", "type": "Dense", "weights": 170, "status": "pruned",
                                  "reason": ""}
    assert any("SeparableConv2D layer pruned in part (sep)" in note for note in manifest["pruning"]["notes"])
