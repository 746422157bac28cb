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

import json
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List

import pytest

from support import agent_envs, tflite_zoo
from support.agent_harness import REPO_ROOT, VARIANTS, AgentRun, reference_predictions, run_agent
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


@pytest.fixture(scope="session")
def zoo() -> Path:
    """The .tflite files of tests/support/tflite_zoo.py (multi-input/output, int8/uint8 inputs, dynamic shape,
    custom ops, mixed dtypes, a string input), built once and cached under .cache/tflite-zoo."""
    return tflite_zoo.zoo_dir()


class PlanRunner:
    """Runs ``plan`` as the host does, checking the plan and the document against their schemas."""

    PLAN_SCHEMA = REPO_ROOT / "schemas" / "agent-plan.schema.json"
    RESULT_SCHEMA = REPO_ROOT / "schemas" / "agent-plan-result.schema.json"

    def __init__(self) -> None:
        self._validators: Dict[Path, Any] = {}

    def validate(self, doc: Dict[str, Any], schema: Path) -> None:
        import jsonschema

        if schema not in self._validators:
            loaded = json.loads(schema.read_text())
            jsonschema.Draft202012Validator.check_schema(loaded)
            self._validators[schema] = jsonschema.Draft202012Validator(loaded)
        errors = sorted(self._validators[schema].iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, "%s violations:\n%s" % (schema.name, "\n".join(
            "%s: %s" % ("/".join(map(str, e.path)), e.message) for e in errors[:20]))

    def run(self, env: AgentEnv, plan: Dict[str, Any], tmp_path: Path, *extra: str,
            check_plan: bool = True) -> AgentRun:
        if check_plan:
            self.validate(plan, self.PLAN_SCHEMA)
        path = tmp_path / "plan.json"
        path.write_text(json.dumps(plan))
        res = run_agent(env.python, ["plan", path, *extra])
        self.validate(res.doc, self.RESULT_SCHEMA)
        assert res.doc["schema_version"] == 2 and res.doc["command"] == "plan", res.describe()
        return res


@pytest.fixture(scope="session")
def plans() -> PlanRunner:
    return PlanRunner()
