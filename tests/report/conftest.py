"""Fixtures for the report tests: a real store filled by a real bench on ``local``, a loopback sshd device and a
device that is down (every pair failed, with its reason)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Iterator, NamedTuple

import pytest

from support.cli import edgeprune
from support.sshlab import ClientKeys, SshdDevice, stop_all, write_fleet
from support.store_rows import latest_run_id


class BenchDb(NamedTuple):
    db: Path
    run_id: int
    folder: Path
    manifest: Dict[str, Any]
    devices: Dict[str, SshdDevice]


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
