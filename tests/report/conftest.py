"""Fixtures for the report tests: a real store filled by a real bench on ``local``, a loopback sshd device and a
device that is down (every pair failed, with its reason)."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, NamedTuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleet.conftest import client_keys, make_device  # noqa: E402,F401  (fixtures reused by the report tests)
from sshlab import ClientKeys, SshdDevice, stop_all, write_fleet  # noqa: E402

EDGEPRUNE = [sys.executable, "-m", "edgeprune"]


def edgeprune(*args: str, timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGEPRUNE, *args], capture_output=True, text=True, timeout=timeout, **kwargs)


class BenchDb(NamedTuple):
    db: Path
    run_id: int
    folder: Path
    manifest: Dict[str, Any]
    devices: Dict[str, SshdDevice]


def latest_run_id(db: Path) -> int:
    conn = sqlite3.connect(str(db))
    try:
        return int(conn.execute("SELECT max(id) FROM runs").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture(scope="module")
def bench_db(digits_run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchDb]:
    """``edgeprune bench`` (the CLI, as a user runs it) on local + an sshd device + a device that is down."""
    folder, manifest = digits_run
    root = tmp_path_factory.mktemp("report-lab")
    keys = ClientKeys(root / "client")
    up = SshdDevice("ssh-up", root / "ssh-up", keys, python=sys.executable)
    down = SshdDevice("ssh-down", root / "ssh-down", keys, python=sys.executable)  # never started: refused
    try:
        up.start()
        up.trust()
        down.trust()
        fleet = write_fleet(root / "fleet.toml", [up, down])
        fleet.write_text('[[device]]\nname = "local"\nprofile = "local"\nruns = 50\n\n' + fleet.read_text())
        db = root / "store.db"
        proc = edgeprune("bench", str(folder), "--fleet", str(fleet), "--db", str(db), "-q")
        assert proc.returncode == 1, proc.stderr  # the down device's pairs failed
        yield BenchDb(db, latest_run_id(db), folder, manifest, {"ssh-up": up, "ssh-down": down})
    finally:
        stop_all([up, down])
