"""A user's own Keras 2 model and data file, through the real CLI; and a variant that fails on its own."""
from __future__ import annotations

import json

import pytest

from edgeprune.optimize.config import VARIANTS
from edgeprune.results.manifest import validate

pytestmark = pytest.mark.slow

#: Small and fast: 400 training samples / 32 = 13 steps per epoch.
#: Two epochs on 400 samples cost a small model more than the default 5-point accuracy budget: these tests are
#: about formats and failures, so the budget is opened (test_outputs_and_budget.py tests it).
FAST_ARGS = ["--prune-epochs", "2", "--max-accuracy-drop", "100", "--json", "--quiet"]


@pytest.mark.parametrize("fmt", ["keras", "h5", "savedmodel"])
def test_user_model_formats(cli, user_models, small_digits_npz, tmp_path, fmt):
    model = user_models[fmt]
    out = tmp_path / "out"
    proc = cli("optimize", "--model", str(model), "--data", str(small_digits_npz), "--out", str(out), *FAST_ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    manifest = json.loads(proc.stdout)
    validate(manifest)
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["baseline"]["source"] == str(model)
    assert manifest["config"]["model"] == str(model)
    assert manifest["config"]["data"] == str(small_digits_npz)
    assert manifest["dataset"]["name"] == small_digits_npz.stem
    assert manifest["dataset"]["train_samples"] == 400 and manifest["dataset"]["test_samples"] == 150
    assert manifest["dataset"]["input_shape"] == [8, 8, 1]
    assert manifest["baseline"]["params"] == 8 * 8 * 64 + 64 + 64 * 10 + 10
    assert [v["name"] for v in manifest["variants"]] == list(VARIANTS)
    assert all(v["status"] == "ok" for v in manifest["variants"]), manifest["variants"]
    for v in manifest["variants"]:
        assert (out / v["file"]).stat().st_size == v["size_bytes"]
    assert {layer["layer"] for layer in manifest["pruning"]["layers"]} == {"hidden", "logits"}
    assert manifest["pruning"]["sparsity"] >= 0.75
    # The user's model was trained (2 epochs) before it came here: far better than chance (10 %).
    assert manifest["baseline"]["keras_accuracy"] > 0.5


def test_one_variant_fails_the_others_finish(cli, float16_input_model, small_digits_npz, tmp_path):
    """A model with a float16 input converts to every float variant, but full-integer calibration feeds it
    float32 samples and the converter fails: both full-integer variants (pruned-int8 and its unpruned control
    baseline-int8) are recorded with their reason, the rest is measured, the manifest is written and valid, and
    the command exits non-zero saying which variants failed."""
    out = tmp_path / "out"
    proc = cli("optimize", "--model", str(float16_input_model), "--data", str(small_digits_npz), "--out", str(out),
               *FAST_ARGS)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and "2 variant(s) failed: baseline-int8, pruned-int8" in error_lines[0], proc.stderr

    manifest = json.loads(proc.stdout)
    validate(manifest)
    assert json.loads((out / "manifest.json").read_text()) == manifest
    variants = {v["name"]: v for v in manifest["variants"]}
    assert list(variants) == list(VARIANTS)
    for name in ("baseline-int8", "pruned-int8"):
        failed = variants.pop(name)
        assert failed["status"] == "error"
        assert "conversion failed" in failed["error"] and "float16" in failed["error"].lower()
        assert "file" not in failed
        assert not (out / f"{name}.tflite").exists()
    for name, v in variants.items():
        assert v["status"] == "ok", (name, v.get("error"))
        assert (out / v["file"]).stat().st_size == v["size_bytes"]
        assert v["input"]["dtype"] == "float16"
        assert 0 < v["accuracy"] <= 1
