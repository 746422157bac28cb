"""A SIGKILLed `optimize` takes its TensorFlow child with it (PR_SET_PDEATHSIG), instead of leaving it training
for minutes with no one to read its result (the sweep's resume test found such orphans)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def _children(pid: int) -> list:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_the_optimize_child_dies_with_its_parent(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "edgeprune", "optimize", "--train-epochs", "200", "--out",
                             str(tmp_path / "run"), "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        child = None
        while time.monotonic() < deadline and child is None:  # the spawned child, once it imports TensorFlow
            for pid in _children(proc.pid):
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if b"multiprocessing" in handle.read():
                        child = pid
            time.sleep(0.5)
        assert child is not None, "optimize started no child"
        time.sleep(3)
        assert _alive(child)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(child), "the optimize child outlived its SIGKILLed parent"
    finally:
        if proc.poll() is None:
            proc.kill()
