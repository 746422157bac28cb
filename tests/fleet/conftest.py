"""Fixtures for the SSH and fleet tests: real sshd processes on loopback ports, a real digits run."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_envs import pi_like_python  # noqa: E402
from sshlab import ClientKeys, SshdDevice, stop_all  # noqa: E402

HOST_PYTHON = sys.executable


@pytest.fixture(scope="session")
def pi_python() -> Path:
    return pi_like_python()


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
        started.append(device)
        if start:
            device.start()
        if trust:
            device.trust()
        return device

    yield make
    stop_all(started)
