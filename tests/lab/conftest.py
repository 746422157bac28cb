"""Fixtures for the lab tests: the emulated Raspberry Pi (built once, cached in .cache/pi-arm64) and labs of
real SSH devices (loopback, Pi-like 3.9, emulated aarch64, network-namespaced) that are torn down after each test,
pass or fail. Leftovers of a crashed earlier run are removed at session start (only in sessions that run lab
tests: this folder's fixtures; the shared ones are in tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence

import pytest

from support.lab import Lab, LinkSpec, PiArm64, build_pi_arm64, cleanup_leftovers, start_lab


@pytest.fixture(scope="session", autouse=True)
def lab_leftovers() -> Iterator[None]:
    removed = cleanup_leftovers()
    if removed:
        print(f"removed lab leftovers of an earlier run: {', '.join(removed)}")
    yield
    cleanup_leftovers(include_own=True)


@pytest.fixture(scope="session")
def pi_arm64() -> PiArm64:
    pi = build_pi_arm64(log=print)
    print(f"emulated Pi: {pi.build}")
    return pi


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    """``make_lab(["loopback", "netns"], link=LinkSpec(...))``: every lab started is stopped after the test."""
    labs: List[Lab] = []

    def make(kinds: Sequence[str], link: Optional[LinkSpec] = None) -> Lab:
        running = start_lab(kinds, tmp_path / f"lab{len(labs)}", link, log=print)
        labs.append(running)
        return running

    yield make
    for running in labs:
        running.stop()
