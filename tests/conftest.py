"""Fixtures shared by every test package (tests/host, tests/agent, ...).

``digits_run`` runs the real default pipeline once per session, as a user would, and hands the run folder and
its manifest to whichever tests need a real run: host checks here, device-agent checks later.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, NamedTuple

import pytest

# The package sets TF_USE_LEGACY_KERAS=1 on import; it must happen before any test module imports TensorFlow,
# or tf.keras would be Keras 3 and tfmot would fail. Importing edgeprune itself does not import TensorFlow.
import edgeprune  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Generous: a default run takes ~20 s on a laptop, much more on a loaded CI machine.
DIGITS_RUN_TIMEOUT = 900


class DigitsRun(NamedTuple):
    """What the default ``edgeprune optimize`` produced: unpacks as ``folder, manifest = digits_run``."""

    folder: Path
    manifest: Dict[str, Any]


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> DigitsRun:
    """Run ``python -m edgeprune optimize --out <tmp> --json`` once (real TensorFlow, built-in digits CNN)."""
    folder = tmp_path_factory.mktemp("digits-run") / "run"
    command = [sys.executable, "-m", "edgeprune", "optimize", "--out", str(folder), "--json"]
    env = {key: value for key, value in os.environ.items() if key != "TF_USE_LEGACY_KERAS"}  # as a user has it
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=DIGITS_RUN_TIMEOUT, cwd=str(folder.parent), env=env
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"edgeprune optimize did not finish in {DIGITS_RUN_TIMEOUT} s: {exc}")
    if proc.returncode != 0:
        pytest.fail(
            f"edgeprune optimize exited {proc.returncode}\n--- stderr ---\n{proc.stderr[-4000:]}"
            f"\n--- stdout ---\n{proc.stdout[-2000:]}"
        )
    try:
        manifest = json.loads(proc.stdout)
    except ValueError as exc:
        pytest.fail(f"--json did not print a JSON manifest on stdout ({exc}):\n{proc.stdout[:2000]}")
    return DigitsRun(folder, manifest)
