"""Fixtures for the SSH and fleet tests: real sshd processes on loopback ports, a real digits run."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterator, List, Optional, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_envs import pi_like_python  # noqa: E402
from login_device import ClientHome, LoginDevice, sweep_stale_users  # noqa: E402
from sshlab import ClientKeys, SshdDevice, stop_all  # noqa: E402

HOST_PYTHON = sys.executable


@pytest.fixture(scope="session")
def pi_python() -> Path:
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
    """Start a device whose SSH login is its own user with its own home (see tests/login_device.py).

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
