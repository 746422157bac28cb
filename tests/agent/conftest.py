"""Fixtures for the device-agent tests.

The agent is only ever run as a subprocess, in two real environments:
``host`` (this venv: Python 3.11, ai-edge-litert, TensorFlow installed) and
``pi`` (a cached Python 3.9 venv with tflite-runtime 2.14.0 and numpy<2 and
no TensorFlow, like a Raspberry Pi OS Bullseye device; see tests/support/agent_envs.py).

Test dependencies beyond the host venv: ``vermin`` (``.venv/bin/pip install
vermin``) for the Python-3.9 compatibility check, and a Python 3.9
interpreter (pyenv) for the pi environment.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Dict, List

import pytest

from support import agent_envs
from support.agent_harness import VARIANTS, reference_predictions
from support.paths import SUPPORT_DIR


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pi: needs the Pi-like Python 3.9 + tflite-runtime venv "
                   "(built on first use under .cache/venv-pi39)")


@dataclass(frozen=True)
class AgentEnv:
    name: str
    python: Path
    runtime: str           # module the agent should pick with --runtime auto
    runtime_version: str   # and the version it should report


def _pi_runtime_version() -> str:
    for req in agent_envs.PI_REQUIREMENTS:
        if req.startswith("tflite-runtime=="):
            return req.split("==", 1)[1]
    raise AssertionError("PI_REQUIREMENTS pins no tflite-runtime version")


@pytest.fixture(scope="session")
def host_env() -> AgentEnv:
    return AgentEnv("host", agent_envs.host_python(), "ai_edge_litert",
                    metadata.version("ai-edge-litert"))


@pytest.fixture(scope="session")
def pi_env() -> AgentEnv:
    return AgentEnv("pi", agent_envs.pi_like_python(), "tflite_runtime",
                    _pi_runtime_version())


@pytest.fixture(scope="session", params=[
    pytest.param("host"), pytest.param("pi", marks=pytest.mark.pi)])
def env(request: pytest.FixtureRequest) -> AgentEnv:
    """Both environments; tests using it run once in each."""
    return request.getfixturevalue(request.param + "_env")


@pytest.fixture(scope="session")
def variants_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """float32/dynamic/int8/float16 .tflite + eval.npz, built with TensorFlow
    in a separate process (see tests/support/model_factory.py for why)."""
    out = tmp_path_factory.mktemp("variants")
    proc = subprocess.run([sys.executable, str(SUPPORT_DIR / "model_factory.py"), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, "building test models failed:\n" + proc.stderr[-5000:]
    for name in VARIANTS:
        assert (out / (name + ".tflite")).is_file()
    assert (out / "eval.npz").is_file()
    return out


@pytest.fixture(scope="session")
def reference(variants_dir: Path) -> Dict[str, List[int]]:
    """Host ai_edge_litert predictions per variant (the accuracy oracle)."""
    return {name: reference_predictions(variants_dir / (name + ".tflite"),
                                        variants_dir / "eval.npz")
            for name in VARIANTS}


@pytest.fixture(scope="session")
def labels(variants_dir: Path):
    import numpy as np

    with np.load(variants_dir / "eval.npz") as data:
        return data["y"].copy()
