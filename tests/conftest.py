"""Fixtures shared by every test folder (tests/host, tests/agent, tests/fleet, tests/report, tests/lab).

``digits_run`` runs the real default pipeline once per session, as a user would, and hands the run folder and
its manifest to whichever tests need a real run. The device fixtures start real sshd processes on loopback ports
(support.sshlab, support.login_device) and stop every one at the end of the test, pass or fail.

Helpers live in the ``support`` package (tests/support/), on sys.path through pytest's ``pythonpath`` setting;
folder conftests keep only what their own folder uses, and no test imports a conftest.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator, List, Optional, TypeVar

import pytest

# The package sets TF_USE_LEGACY_KERAS=1 on import; it must happen before any test module imports TensorFlow,
# or tf.keras would be Keras 3 and tfmot would fail. Importing edgeprune itself does not import TensorFlow.
import edgeprune  # noqa: F401
from support.agent_envs import pi_like_python
from support.cli import DigitsRun
from support.login_device import ClientHome, LoginDevice, sweep_stale_users
from support.sshlab import ClientKeys, SshdDevice, stop_all

#: Generous: a default run takes ~20 s on a laptop, much more on a loaded CI machine.
DIGITS_RUN_TIMEOUT = 900
HOST_PYTHON = sys.executable


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


@pytest.fixture(scope="session")
def pi_python() -> Path:
    """The Pi-like Python 3.9 venv (tflite-runtime 2.14, numpy<2), built once under .cache/venv-pi39."""
    return pi_like_python()


Device = TypeVar("Device", bound=SshdDevice)


def _bring_up(device: Device, made: List[SshdDevice], start: bool, trust: bool) -> Device:
    """Register the device for the finalizer before starting it, so a failed start is cleaned up too."""
    made.append(device)
    if start:
        device.start()
    if trust:
        device.trust()
    return device


@pytest.fixture
def client_keys(tmp_path: Path) -> ClientKeys:
    return ClientKeys(tmp_path / "client")


@pytest.fixture
def make_device(tmp_path: Path, client_keys: ClientKeys) -> Iterator[Callable[..., SshdDevice]]:
    """Start an sshd device; every device started is killed at the end of the test, pass or fail."""
    started: List[SshdDevice] = []

    def make(name: str, python: str = HOST_PYTHON, trust: bool = True, start: bool = True,
             extra_config: str = "") -> SshdDevice:
        device = SshdDevice(name, tmp_path / "devices" / name, client_keys, python=python, extra_config=extra_config)
        return _bring_up(device, started, start, trust)

    yield make
    stop_all(started)


@pytest.fixture
def client_home(tmp_path: Path) -> ClientHome:
    """A client user's home holding ``~/.ssh/edgeprune_ed25519`` (the key the fleet example names),
    ``~/.ssh/known_hosts`` and ``~/.ssh/config``; run edgeprune with ``env=client_home.env()``."""
    return ClientHome(tmp_path / "client-home")


@pytest.fixture
def make_login_device(tmp_path: Path, client_home: ClientHome) -> Iterator[Callable[..., LoginDevice]]:
    """Start a device whose SSH login is its own user with its own home (see tests/support/login_device.py).

    ``python`` is what ``python3`` on the device's PATH runs. Every device is stopped and its user deleted at the
    end of the test, pass or fail; users left by a killed run are swept first.
    """
    sweep_stale_users()
    made: List[LoginDevice] = []

    def make(name: str, python: str = HOST_PYTHON, banner: Optional[str] = None, bashrc_extra: str = "",
             client: Optional[ClientKeys] = None, trust: bool = True, start: bool = True) -> LoginDevice:
        device = LoginDevice(name, tmp_path / "devices" / name, client or client_home.keys, python=python,
                             banner=banner, bashrc_extra=bashrc_extra)
        return _bring_up(device, made, start, trust)

    yield make
    errors = []
    for device in made:
        try:
            device.remove()
        except Exception as exc:  # remove every other device's user anyway
            errors.append(f"{device.name}: {exc}")
    assert not errors, errors
