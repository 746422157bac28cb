"""`probe`: which runtimes a device has, as `edgeprune devices check` sees it."""

from __future__ import annotations

import subprocess
from importlib import metadata

from support.agent_harness import run_agent, validate


def _by_module(doc):
    return {r["module"]: r for r in doc["runtimes"]}


def test_probe_host(host_env):
    res = run_agent(host_env.python, ["probe"])
    assert res.returncode == 0, res.describe()
    validate(res.doc)
    rts = _by_module(res.doc)
    assert list(rts) == ["ai_edge_litert", "tflite_runtime", "tensorflow"]
    assert rts["ai_edge_litert"]["available"] is True
    assert rts["ai_edge_litert"]["version"] == metadata.version("ai-edge-litert")
    assert rts["ai_edge_litert"]["can_disable_xnnpack"] is True
    assert rts["tflite_runtime"]["installed"] is False
    assert rts["tflite_runtime"]["available"] is False
    assert rts["tensorflow"]["installed"] is True
    assert rts["tensorflow"]["checked_by"] == "find_spec"
    assert rts["tensorflow"]["version"] == metadata.version("tensorflow")
    assert res.doc["runtime_auto"] == "ai_edge_litert"
    assert res.doc["numpy"] == metadata.version("numpy")
    assert res.doc["python"]["version"].startswith("3.11")
    assert res.doc["device"]["hostname"]


def test_probe_pi(pi_env):
    res = run_agent(pi_env.python, ["probe"])
    assert res.returncode == 0, res.describe()
    validate(res.doc)
    rts = _by_module(res.doc)
    assert rts["tflite_runtime"]["available"] is True
    assert rts["tflite_runtime"]["version"] == pi_env.runtime_version
    assert rts["ai_edge_litert"]["installed"] is False
    assert rts["tensorflow"]["installed"] is False
    assert rts["tensorflow"]["available"] is False
    assert res.doc["runtime_auto"] == "tflite_runtime"
    numpy_version = subprocess.run(
        [str(pi_env.python), "-c", "import numpy; print(numpy.__version__)"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert res.doc["numpy"] == numpy_version and numpy_version.startswith("1.")
    assert res.doc["python"]["version"].startswith("3.9.")
