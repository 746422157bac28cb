"""The agent on the real variants ``edgeprune optimize`` wrote for digits, in both environments.

In the Pi-like venv (Python 3.9, tflite-runtime 2.14, numpy<2, no TensorFlow) every variant the runtime can load
must score what the host measured for it, and the dynamic-range variant from TensorFlow 2.21 must come back as a
structured ``model-load`` result (FULLY_CONNECTED version 12 is newer than tflite-runtime 2.14).
"""
from __future__ import annotations

import pytest

from support.agent_harness import run_folder, validate

pytestmark = pytest.mark.slow


def test_agent_accuracy_matches_host_on_digits(env, digits_run):
    folder, manifest = digits_run
    host = {v["name"]: v for v in manifest["variants"] if v["status"] == "ok"}
    results = run_folder(env.python, folder, ["--runs", "20", "--warmup", "2"])
    assert set(results) == set(host)
    for name, run in results.items():
        validate(run.doc)
        assert run.doc["runtime"]["module"] == env.runtime
        assert run.doc["runtime"]["version"] == env.runtime_version
        if env.name == "pi" and name in ("pruned-dynamic", "baseline-dynamic"):
            assert run.returncode != 0
            assert run.doc["status"] == "error", run.describe()
            assert run.doc["error"]["kind"] == "model-load"
            assert "FULLY_CONNECTED" in run.doc["error"]["message"]
            continue
        assert run.returncode == 0, run.describe()
        assert run.doc["model"]["sha256"] == host[name]["sha256"]
        device_accuracy = run.doc["accuracy"]["accuracy"]
        assert abs(device_accuracy - host[name]["accuracy"]) * 100 <= 0.1, (name, device_accuracy, host[name])
        assert run.doc["accuracy"]["num_samples"] == manifest["dataset"]["test_samples"]
