"""edgeprune.optimize.prune.prune with real tfmot on a tiny Dense model: it prunes, and it leaves the baseline alone."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import edgeprune  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from edgeprune.optimize.config import PruneConfig
from edgeprune.optimize.data import Dataset
from edgeprune.errors import PruningError

FINAL_SPARSITY = 0.8


@pytest.fixture(scope="module")
def tiny_data() -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 16)).astype(np.float32)
    y = (x[:, :4].argmax(axis=1)).astype(np.int64)  # learnable, so fine-tuning really moves the weights
    return Dataset("random", x[:192], y[:192], x[192:], y[192:])


def tiny_model():
    import tf_keras

    tf_keras.utils.set_random_seed(1)
    layers = tf_keras.layers
    return tf_keras.Sequential(
        [layers.Input((16,)), layers.Dense(32, activation="relu", name="d1"), layers.Dense(4, name="d2")],
        name="tiny",
    )


@pytest.fixture(scope="module")
def pruned_tiny(tiny_data):
    """Prune once for the whole module: the baseline, a copy of its weights taken before, and the result."""
    from edgeprune.optimize.prune import prune

    baseline = tiny_model()
    before = [w.copy() for w in baseline.get_weights()]
    config = PruneConfig(final_sparsity=FINAL_SPARSITY, epochs=3, batch_size=32, learning_rate=1e-2)
    result = prune(baseline, tiny_data, config, seed=0)
    return SimpleNamespace(baseline=baseline, before=before, result=result, config=config)


def test_prune_reaches_target_sparsity(pruned_tiny):
    result = pruned_tiny.result
    assert result.schedule.pruning_steps >= 1
    assert result.sparsity == pytest.approx(FINAL_SPARSITY, abs=0.02)
    assert {layer.layer for layer in result.layers} == {"d1", "d2"}
    for layer in result.layers:
        assert layer.sparsity == pytest.approx(FINAL_SPARSITY, abs=0.02), layer


def test_sparsity_recounted_on_stripped_kernels(pruned_tiny):
    """Count zeros in the stripped model's kernels directly, not through edgeprune.measure_sparsity."""
    import tf_keras

    model = pruned_tiny.result.model
    # Stripped: plain Dense layers again, no tfmot wrappers left.
    assert [type(layer) for layer in model.layers] == [tf_keras.layers.Dense, tf_keras.layers.Dense]
    kernels = [layer.kernel.numpy() for layer in model.layers]
    zeros = sum(int(np.count_nonzero(k == 0)) for k in kernels)
    total = sum(k.size for k in kernels)
    assert zeros / total == pytest.approx(FINAL_SPARSITY, abs=0.02)
    assert zeros / total == pytest.approx(pruned_tiny.result.sparsity)
    counted = {layer.layer: layer.zeros for layer in pruned_tiny.result.layers}
    assert counted == {layer.name: int(np.count_nonzero(layer.kernel.numpy() == 0)) for layer in model.layers}
    # Biases are not pruned.
    assert all(np.count_nonzero(layer.bias.numpy() == 0) < layer.bias.shape[0] for layer in model.layers)


def test_dense_kernels_pruned_in_4x1_blocks(pruned_tiny):
    """block_size (4, 1) on Dense kernels: zeros come in whole blocks of 4 along the kernel's first axis."""
    for layer in pruned_tiny.result.model.layers:
        kernel = layer.kernel.numpy()
        blocks = (kernel == 0).reshape(kernel.shape[0] // 4, 4, kernel.shape[1])
        assert np.all(blocks.all(axis=1) == blocks.any(axis=1)), f"{layer.name}: zeros not in 4x1 blocks"


def test_baseline_weights_unchanged_by_fine_tuning(pruned_tiny):
    after = pruned_tiny.baseline.get_weights()
    assert len(after) == len(pruned_tiny.before)
    for before, now in zip(pruned_tiny.before, after):
        np.testing.assert_array_equal(before, now)
    # The baseline's kernels are dense: no pruning mask was applied to them.
    assert all(np.count_nonzero(w == 0) == 0 for w in pruned_tiny.baseline.get_weights() if w.ndim == 2)


def test_pruned_model_is_a_different_model(pruned_tiny):
    pruned = pruned_tiny.result.model
    assert pruned is not pruned_tiny.baseline
    assert not {id(layer) for layer in pruned.layers} & {id(layer) for layer in pruned_tiny.baseline.layers}
    for before, now in zip(pruned_tiny.before, pruned.get_weights()):
        assert before.shape == now.shape
        assert not np.array_equal(before, now)


def test_too_short_fine_tune_raises_before_training(tiny_data):
    """192 samples / 32 = 6 steps per epoch: frequency 100 can never fire; refused, baseline untouched."""
    from edgeprune.optimize.prune import prune

    baseline = tiny_model()
    before = [w.copy() for w in baseline.get_weights()]
    with pytest.raises(PruningError, match="every 100 steps"):
        prune(baseline, tiny_data, PruneConfig(epochs=2, frequency=100), seed=0)
    for b, a in zip(before, baseline.get_weights()):
        np.testing.assert_array_equal(b, a)


def test_the_control_is_the_same_fine_tune_without_pruning(tiny_data, pruned_tiny):
    """finetuned_clone (the finetuned-float32 control) fine-tunes a clone exactly as long as the pruning did, with
    the same optimizer and learning rate, and prunes nothing; the baseline stays as it was."""
    from edgeprune.optimize.finetune import finetuned_clone

    baseline = tiny_model()
    before = [w.copy() for w in baseline.get_weights()]
    config = pruned_tiny.config
    tuned = finetuned_clone(baseline, tiny_data, config, seed=0)
    for b, a in zip(before, baseline.get_weights()):
        np.testing.assert_array_equal(b, a)
    assert not {id(layer) for layer in tuned.layers} & {id(layer) for layer in baseline.layers}
    assert all(not np.array_equal(b, w) for b, w in zip(before, tuned.get_weights()) if w.ndim == 2)
    # As long as the pruning fine-tune: every step its schedule counted, with the same optimizer settings.
    assert int(tuned.optimizer.iterations.numpy()) == pruned_tiny.result.schedule.total_steps == 3 * 6
    assert type(tuned.optimizer).__name__ == "Adam"
    assert float(tuned.optimizer.learning_rate.numpy()) == pytest.approx(config.learning_rate)
    # Not pruned: the kernels are dense.
    assert all(np.count_nonzero(w == 0) == 0 for w in tuned.get_weights() if w.ndim == 2)
