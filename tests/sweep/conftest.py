"""Fixtures for ``edgeprune sweep``: one real 4-point sweep on digits (shared by the tests that read it) and a local
Ray instance on loopback only (helpers in sweep_support)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from sweep_support import RAY_LOOPBACK, RayHead, SweepRun, namespace, run_sweep, sweep_env


@pytest.fixture(scope="session")
def local_sweep(tmp_path_factory: pytest.TempPathFactory) -> SweepRun:
    """The 4-point sweep on the ``local`` device, two runs optimized at once (``--jobs 2``)."""
    root = tmp_path_factory.mktemp("sweep-local")
    proc = run_sweep(root, root / "s1", root / "edgeprune.db", "--device", "local", "--jobs", "2")
    if proc.returncode != 0:
        pytest.fail(f"edgeprune sweep exited {proc.returncode}\n--- stderr ---\n{proc.stderr[-4000:]}\n"
                    f"--- stdout ---\n{proc.stdout[-3000:]}")
    return SweepRun(root / "s1", root / "edgeprune.db", proc)


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[RayHead]:
    """A one-node Ray instance with 2 CPUs on 127.0.0.1 (in its own network namespace when root), stopped with
    ``ray stop`` at the end, pass or fail."""
    import socket

    ray = str(Path(sys.executable).with_name("ray"))
    prefix = namespace()
    with socket.socket() as probe:  # a free port (in a fresh namespace every port is)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(sweep_env(), **RAY_LOOPBACK)
    start = subprocess.run([*prefix, ray, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                            "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                           capture_output=True, text=True, timeout=180, env=env, cwd=str(tmp_path))
    try:
        if start.returncode != 0:
            pytest.fail(f"ray start failed:\n{start.stdout[-2000:]}\n{start.stderr[-3000:]}")
        yield RayHead(f"127.0.0.1:{port}", prefix)
    finally:
        subprocess.run([*prefix, ray, "stop", "--force"], capture_output=True, timeout=120, env=env)
        if prefix:
            subprocess.run(["ip", "netns", "delete", prefix[-1]], capture_output=True)
