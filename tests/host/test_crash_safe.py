"""A user's model that crashes natively, and the loading switches (issue 15), through the real CLI.

`optimize` runs the pipeline in a child process: a native abort during the fine-tune is one `Error:` line naming
the stage, the signal and what to do, never a silent exit 134; the oneDNN abort (its glibc message in native.log)
is retried once with TF_ENABLE_ONEDNN_OPTS=0, said, and the run completes. Custom layers come in with
`--custom-objects module:name`, and a Lambda layer only with `--unsafe-deserialization`.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from support.paths import REPO_ROOT

pytestmark = pytest.mark.slow
FAST = ["--prune-epochs", "1", "--variants", "pruned-float32", "--quiet"]
LAYERS = REPO_ROOT / "tests" / "support" / "crash_layers.py"


def _model_with(layer_name: str, folder: Path, fmt: str = "keras") -> Path:
    """A small digits model with one of crash_layers' layers (or a Lambda) between its Dense layers."""
    import tf_keras as keras

    import importlib.util

    spec = importlib.util.spec_from_file_location("crash_layers", LAYERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # registers the layers, as the user's import would
    inputs = keras.layers.Input((8, 8, 1))
    hidden = keras.layers.Dense(64, activation="relu", name="hidden")(keras.layers.Flatten()(inputs))
    if layer_name == "Lambda":
        hidden = keras.layers.Lambda(lambda t: t * 1.0, name="scale")(hidden)
    else:
        hidden = getattr(module, layer_name)(name="custom")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(hidden))
    path = folder / f"{layer_name}.{fmt}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.save(str(path))
    return path


@pytest.fixture()
def project(cli) -> Path:
    """The user's project folder: their layers module beside their model (the CLI runs from here)."""
    shutil.copy(LAYERS, cli.cwd / "crash_layers.py")
    return cli.cwd


def test_a_native_abort_while_fine_tuning_is_one_error_line(cli, project, small_digits_npz, assert_one_line_error):
    model = _model_with("AbortInTraining", project)
    proc = cli("optimize", "--model", str(model), "--data", str(small_digits_npz), "--out", str(project / "out"),
               "--custom-objects", "crash_layers:AbortInTraining", *FAST)
    line = assert_one_line_error(proc)
    assert "optimize crashed in stage 'Pruning (fine-tune)' (signal SIGABRT)" in line, line
    assert "--debug" in line  # no known remedy: where to see the native output
    assert (project / "out" / "native.log").is_file()
    # what was measured before the crash stays: the baseline, in a manifest marked incomplete
    assert f"kept in {project / 'out' / 'manifest.json'}: baseline-float32" in line
    manifest = json.loads((project / "out" / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["pruning"] is None
    status = {v["name"]: v for v in manifest["variants"]}
    assert status["baseline-float32"]["status"] == "ok" and (project / "out" / "baseline-float32.tflite").is_file()
    assert status["pruned-float32"]["status"] == "error"
    assert "crashed in stage 'Pruning (fine-tune)'" in status["pruned-float32"]["error"]


def test_the_onednn_abort_is_retried_with_onednn_off_and_said(cli, project, small_digits_npz):
    model = _model_with("OneDnnLikeCrash", project)
    out = project / "out"
    proc = cli("optimize", "--model", str(model), "--data", str(small_digits_npz), "--out", str(out),
               "--custom-objects", "crash_layers:OneDnnLikeCrash", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "running it again with TF_ENABLE_ONEDNN_OPTS=0" in proc.stderr, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert {v["name"]: v["status"] for v in manifest["variants"]} == {"baseline-float32": "ok",
                                                                      "pruned-float32": "ok"}
    assert "free(): invalid size" in (out / "native.log").read_text()


def test_a_custom_layer_without_custom_objects_names_the_flag(cli, project, small_digits_npz,
                                                              assert_one_line_error):
    model = _model_with("AbortInTraining", project)
    (project / "crash_layers.py").unlink()  # a fresh process knows nothing of the layer
    proc = cli("optimize", "--model", str(model), "--data", str(small_digits_npz), "--out", str(project / "o"),
               *FAST)
    assert "--custom-objects module:name" in assert_one_line_error(proc)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_a_lambda_layer_is_refused_unless_the_user_opts_in(cli, tmp_path, small_digits_npz, assert_one_line_error,
                                                           fmt):
    model = _model_with("Lambda", tmp_path, fmt)
    refused = cli("optimize", "--model", str(model), "--data", str(small_digits_npz), "--out", str(tmp_path / "a"),
                  *FAST)
    line = assert_one_line_error(refused)
    assert "Lambda layer" in line and "--unsafe-deserialization" in line, line
    assert not (tmp_path / "a" / "manifest.json").exists()
    accepted = cli("optimize", "--model", str(model), "--data", str(small_digits_npz), "--out", str(tmp_path / "b"),
                   "--unsafe-deserialization", *FAST)
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["config"]["unsafe_deserialization"] is True


@pytest.mark.parametrize("value", ["nocolon", "a:b:c", "1mod:Name"])
def test_bad_custom_objects_are_one_line(cli, small_digits_npz, assert_one_line_error, value):
    proc = cli("optimize", "--data", str(small_digits_npz), "--model", "m.keras", "--custom-objects", value)
    assert "--custom-objects takes module:name pairs" in assert_one_line_error(proc)
