"""Bad inputs: every one must give the JSON document with a structured error
and the documented exit code, never a traceback on stdout."""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import pytest

from support.agent_harness import run_agent, validate

EXIT = {"internal": 1, "bad-arguments": 2, "runtime-missing": 3, "model-load": 4,
        "data-mismatch": 5, "delegate": 6}


def _assert_error(res, kind: str) -> dict:
    doc = res.doc
    validate(doc)
    assert doc["status"] == "error", res.describe()
    assert doc["error"]["kind"] == kind, res.describe()
    assert res.returncode == EXIT[kind], res.describe()
    assert doc["error"]["message"]
    assert "Traceback" not in res.stdout
    assert "Traceback" not in res.stderr, res.describe()  # anticipated errors are clean
    return doc


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, variants_dir) -> dict:
    d = tmp_path_factory.mktemp("bad")
    good = (variants_dir / "float32.tflite").read_bytes()
    files = {
        "not_tflite": d / "notes.tflite",
        "truncated": d / "truncated.tflite",
        "empty": d / "empty.tflite",
        "wrong_keys": d / "wrong_keys.npz",
        "wrong_shape": d / "wrong_shape.npz",
        "wrong_labels": d / "wrong_labels.npz",
        "not_npz": d / "not_npz.npz",
    }
    files["not_tflite"].write_text("this is a README, not a model\n" * 20)
    files["truncated"].write_bytes(good[: len(good) // 3])
    files["empty"].write_bytes(b"")
    x = np.zeros((4, 12, 12, 3), np.float32)
    np.savez(files["wrong_keys"], inputs=x, labels=np.zeros(4, np.int64))
    np.savez(files["wrong_shape"], x=np.zeros((4, 10, 10, 3), np.float32),
             y=np.zeros(4, np.int64))
    np.savez(files["wrong_labels"], x=x, y=np.zeros(3, np.int64))
    files["not_npz"].write_bytes(b"PK\x03\x04 definitely not a zip")
    return files


def _run(env, variants_dir, model=None, eval_path=None, extra: List[str] = ()):
    model = model if model is not None else variants_dir / "float32.tflite"
    eval_path = eval_path if eval_path is not None else variants_dir / "eval.npz"
    return run_agent(env.python, ["run", model, "--eval", eval_path, "--runs", "5",
                                  "--warmup", "1", *extra])


def test_missing_model(env, variants_dir, tmp_path):
    doc = _assert_error(_run(env, variants_dir, model=tmp_path / "nope.tflite"), "model-load")
    assert "not found" in doc["error"]["message"]
    assert doc["runtime"]["module"] == env.runtime  # measured before the error


def test_not_a_tflite_file(env, variants_dir, bad_files):
    doc = _assert_error(_run(env, variants_dir, model=bad_files["not_tflite"]), "model-load")
    assert doc["model"]["size_bytes"] == bad_files["not_tflite"].stat().st_size
    assert "hint" in doc["error"]


def test_truncated_tflite(env, variants_dir, bad_files):
    # tflite-runtime 2.14 segfaults parsing this; the agent must survive it.
    doc = _assert_error(_run(env, variants_dir, model=bad_files["truncated"]), "model-load")
    assert "timing" not in doc


def test_empty_tflite(env, variants_dir, bad_files):
    _assert_error(_run(env, variants_dir, model=bad_files["empty"]), "model-load")


@pytest.mark.parametrize("case,needle", [
    ("wrong_keys", "'x' and 'y'"),
    ("wrong_shape", "shape"),
    ("wrong_labels", "'y'"),
    ("not_npz", "cannot read"),
])
def test_bad_eval_data(env, variants_dir, bad_files, case, needle):
    doc = _assert_error(_run(env, variants_dir, eval_path=bad_files[case]), "data-mismatch")
    assert needle in doc["error"]["message"]
    # The model was loaded before the data was looked at: that is reported.
    assert doc["model"]["input"]["shape"] == [1, 12, 12, 3]
    assert doc["timing"]["init_ms"] > 0
    assert doc["memory"]["rss_after_load_kib"] > 0


def test_missing_eval(env, variants_dir, tmp_path):
    _assert_error(_run(env, variants_dir, eval_path=tmp_path / "none.npz"), "data-mismatch")


@pytest.mark.parametrize("args", [
    ["run", "m.tflite", "--eval", "e.npz", "--runtime", "onnxruntime"],
    ["run", "m.tflite", "--eval", "e.npz", "--runs", "0"],
    ["run", "m.tflite", "--eval", "e.npz", "--runs", "many"],
    ["run", "m.tflite", "--eval", "e.npz", "--min-seconds", "nan"],
    ["run", "m.tflite", "--eval", "e.npz", "--delegate-option", "novalue"],
    ["run", "m.tflite"],
    ["run"],
    ["frobnicate"],
    [],
], ids=["unknown-runtime", "zero-runs", "non-int-runs", "nan-seconds", "bad-delegate-option",
        "no-eval", "no-model", "unknown-command", "no-command"])
def test_bad_arguments(env, args):
    doc = _assert_error(run_agent(env.python, args), "bad-arguments")
    assert doc["command"] == ("run" if args and args[0] == "run" else None)


def test_delegate_path_missing(env, variants_dir, tmp_path):
    doc = _assert_error(_run(env, variants_dir,
                             extra=["--delegate", str(tmp_path / "libedgetpu.so.1")]),
                        "delegate")
    assert "hint" in doc["error"]


def test_delegate_library_not_loadable(env, variants_dir):
    # A bare name goes through the dynamic loader and the runtime's load_delegate.
    doc = _assert_error(_run(env, variants_dir,
                             extra=["--delegate", "libedgeprune-no-such-delegate.so.1"]),
                        "delegate")
    assert "libedgeprune-no-such-delegate.so.1" in doc["error"]["message"]


@pytest.mark.pi
@pytest.mark.parametrize("runtime", ["tensorflow", "ai_edge_litert"])
def test_runtime_not_installed_on_pi(pi_env, variants_dir, runtime):
    res = run_agent(pi_env.python, ["run", variants_dir / "float32.tflite", "--eval",
                                    variants_dir / "eval.npz", "--runtime", runtime])
    doc = _assert_error(res, "runtime-missing")
    assert runtime in doc["error"]["message"]
    assert "pip install ai-edge-litert" in doc["error"]["hint"]
    assert "pip install tflite-runtime" in doc["error"]["hint"]
    assert "device" in doc  # device facts are still reported


def test_tflite_runtime_missing_on_host(host_env, variants_dir):
    res = run_agent(host_env.python, ["run", variants_dir / "float32.tflite", "--eval",
                                      variants_dir / "eval.npz", "--runtime", "tflite_runtime"])
    _assert_error(res, "runtime-missing")
