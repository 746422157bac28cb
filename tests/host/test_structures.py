"""Issue 16: each pruning structure prunes what it claims, with real tfmot.

- 2:4 (tfmot's sparsity_m_by_n): every group of four consecutive input-channel weights holds at least two zeros,
  checked group by group in every pruned kernel;
- xnnpack-sparse (PruneForLatencyOnXNNPack): the stem, the depthwise and the classifier stay dense, every 1x1
  kernel reaches the target; a model its policy refuses gets one PruningError line;
- unstructured and block: the target reached, 4x1 blocks only under block;
- names and storage: pruned variants carry the structure's tag; xnnpack-sparse float32 is stored sparse (DENSIFY),
  its dense control is not, quantized rows are never stored sparse.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import edgeprune  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from edgeprune.errors import ConfigError, PruningError
from edgeprune.optimize import structures, variants
from edgeprune.optimize.config import OptimizeConfig, PruneConfig
from edgeprune.optimize.data import Dataset, load_digits_dataset


def test_structure_names_tags_and_targets():
    assert [row.name for row in structures.TABLE] == ["unstructured", "block", "2:4", "xnnpack-sparse"]
    assert structures.parse("2x4") == "2:4" and structures.parse("XNNPACK") == "xnnpack-sparse"
    with pytest.raises(ConfigError, match="unknown pruning structure 'diagonal'"):
        PruneConfig(structure="diagonal")
    assert structures.tagged("pruned-int8", "2:4") == "pruned-2by4-int8"
    assert structures.tagged("pruned-int8", "block") == "pruned-int8"  # the default keeps the plain names
    assert structures.tagged("baseline-int8", "xnnpack-sparse") == "baseline-int8"  # not pruned: no tag
    assert structures.untagged("pruned-xnnpack-sparse-pqat-int8") == ("pruned-pqat-int8", "xnnpack-sparse")
    assert variants.get("pruned-unstructured-float16").name == "pruned-float16"
    assert not variants.known("pruned-4by8-int8") and not variants.known("baseline-2by4-int8")
    assert PruneConfig(structure="2:4", final_sparsity=0.9).target_sparsity == 0.5
    assert PruneConfig(structure="unstructured").block == (1, 1)
    assert PruneConfig(block_size=(2, 1)).block == (2, 1)


def test_converter_storage_per_structure():
    from edgeprune.optimize.convert import stored_as

    assert stored_as("pruned-xnnpack-sparse-float32").converter.optimizations == ("EXPERIMENTAL_SPARSITY",)
    assert stored_as("pruned-xnnpack-sparse-dense-float32").converter.optimizations == ()
    assert stored_as("pruned-xnnpack-sparse-int8").converter.optimizations == ("DEFAULT",)
    assert stored_as("pruned-2by4-float32").converter.optimizations == ()
    assert stored_as("baseline-float32").converter.optimizations == ()


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits_dataset()


def _cnn():
    import tf_keras

    from edgeprune.optimize.model import build_default_model

    tf_keras.utils.set_random_seed(0)
    return build_default_model((8, 8, 1), 10)


def _prune(model, data, **settings):
    from edgeprune.optimize.prune import prune

    config = PruneConfig(epochs=2, batch_size=64, **settings)
    return prune(model, data, config, seed=0)


def _kernels(result):
    """The pruned layers' kernels of the stripped model, by layer name."""
    return {layer.layer: result.model.get_layer(layer.layer).get_weights()[0] for layer in result.layers}


@pytest.fixture(scope="module")
def two_by_four(digits):
    return _prune(_cnn(), digits, structure="2:4", final_sparsity=0.9)


def test_2by4_every_group_of_four_input_weights_has_two_zeros(two_by_four):
    """tfmot groups along the input channels (TFLite's last axis): Conv2D [h, w, in, out], Dense [in, out]."""
    kernels = _kernels(two_by_four)
    assert set(kernels) == {"conv1", "conv2", "dense1", "logits"}
    for name, kernel in kernels.items():
        rows = kernel.reshape(-1, kernel.shape[-2], kernel.shape[-1]).transpose(0, 2, 1).reshape(-1, kernel.shape[-2])
        whole = rows.shape[1] - rows.shape[1] % 4
        groups = rows[:, :whole].reshape(rows.shape[0], -1, 4)
        if not whole:  # conv1 has one input channel: no group of four to check
            continue
        zeros = (groups == 0).sum(axis=-1)
        assert zeros.min() >= 2, f"{name}: a group of four with {zeros.min()} zeros"
        assert (zeros == 2).mean() > 0.95, name  # exactly the pattern, not more pruning than it says
    # 2:4 fixes the sparsity at 50% whatever --final-sparsity said (conv1's 1 input channel has no group of 4)
    assert two_by_four.sparsity == pytest.approx(0.5, abs=0.02)
    assert any("buys size, not speed" in note for note in two_by_four.notes)
    assert two_by_four.record().structure == "2:4"


def test_unstructured_and_block_reach_the_target(digits):
    unstructured = _prune(_cnn(), digits, structure="unstructured", final_sparsity=0.7)
    block = _prune(_cnn(), digits, structure="block", final_sparsity=0.7, block_size=(4, 1))
    for result in (unstructured, block):
        assert result.sparsity == pytest.approx(0.7, abs=0.03)
    # 4x1 blocks in the Dense kernel ([in, out] in Keras: 4 consecutive inputs of one output, contiguous in
    # TFLite's [out, in] buffer): all-or-nothing blocks
    def block_purity(kernel):
        blocks = kernel.reshape(-1, 4, kernel.shape[1]).transpose(0, 2, 1).reshape(-1, 4)
        mixed = ((blocks == 0).sum(axis=1) % 4 != 0).mean()
        return 1 - mixed

    assert block_purity(_kernels(block)["dense1"]) > 0.99
    assert block_purity(_kernels(unstructured)["dense1"]) < 0.9


@pytest.fixture(scope="module")
def xnnpack_sparse():
    """The built-in mobilenet (at 32x32 here, to keep it quick) pruned for XNNPACK's sparse path."""
    import tf_keras

    from edgeprune.optimize.model import build_mobilenet

    rng = np.random.default_rng(0)
    x = rng.random((128, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 128)
    tf_keras.utils.set_random_seed(0)
    model = build_mobilenet((32, 32, 3), 10)
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}
    result = _prune(model, Dataset("random", x, y, x[:32], y[:32]), structure="xnnpack-sparse", final_sparsity=0.8)
    return SimpleNamespace(model=model, before=before, result=result)


def test_xnnpack_sparse_prunes_only_the_1x1_kernels(xnnpack_sparse):
    result = xnnpack_sparse.result
    stripped = result.model
    pointwise = [layer.name for layer in stripped.layers if type(layer).__name__ == "Conv2D"
                 and layer.kernel_size == (1, 1)]
    assert len(pointwise) == 5 and {layer.layer for layer in result.layers} == set(pointwise)
    for name in pointwise:
        kernel = stripped.get_layer(name).get_weights()[0]
        assert np.mean(kernel == 0) == pytest.approx(0.8, abs=0.02), name
    for layer in stripped.layers:
        kind = type(layer).__name__
        if kind in ("DepthwiseConv2D", "Dense") or layer.name == "stem":
            assert np.mean(layer.get_weights()[0] == 0) < 0.01, f"{layer.name} ({kind}) was pruned"
    dense = {c.layer: c.reason for c in result.coverage if c.status == "dense"}
    assert "stem" in dense and "only 1x1 Conv2D" in dense["stem"] and "logits" in dense
    # the model it was given is not touched
    for layer in xnnpack_sparse.model.layers:
        for a, b in zip(layer.get_weights(), xnnpack_sparse.before[layer.name]):
            assert np.array_equal(a, b)


def test_xnnpack_sparse_refuses_a_model_its_policy_rejects(digits):
    """The digits CNN has no 3x3 stride-2 stem on 3 channels: tfmot's policy refuses it, in one line."""
    with pytest.raises(PruningError) as caught:
        _prune(_cnn(), digits, structure="xnnpack-sparse")
    message = str(caught.value)
    assert "PruneForLatencyOnXNNPack refuses this model" in message and "--builtin mobilenet" in message
    assert "\n" not in message


def test_builtin_option_checks():
    assert OptimizeConfig(builtin="mobilenet").builtin == "mobilenet"
    with pytest.raises(ConfigError, match="--builtin must be one of cnn, mobilenet"):
        OptimizeConfig(builtin="resnet")
