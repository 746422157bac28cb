"""Issue 17: a shared board farm. Several controllers (real `edgeprune bench` processes) on one fleet of lab devices
(real sshd, on loopback and in network namespaces), started so their runs overlap, writing to one store:

- PostgreSQL (a real server, Debian's binaries, on 127.0.0.1): three controllers x eight devices; one controller is
  SIGKILLed while it holds leases; the others proceed once its agents have let go (their stdin closed with the
  controller's connection), and `--resume` of the killed run completes it. Every pair is stored exactly once per
  run, and each device's lease log (what its agents wrote when they took and let go of the lease) shows that no
  device ever ran two agents at once.
- SQLite: two controllers, one file, the same guarantees.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

from support.postgres import start_postgres

pytestmark = pytest.mark.slow
BUDGET_S = 5
VARIANT = "pruned-int8"
CELLS = {"baseline-float32", "baseline-float32@aa", VARIANT}


@pytest.fixture(scope="module")
def postgres():
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


def _fleet(running, budget: float = BUDGET_S) -> Path:
    """The lab's fleet file with a short measuring budget per plan (the farm's point is the sharing)."""
    text = running.fleet_path.read_text().replace("[[device]]\n", f"[[device]]\nbudget_s = {budget}\n")
    path = running.fleet_path.with_name("farm.toml")
    path.write_text(text)
    return path


def _controller(folder: Path, fleet: Path, db: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgeprune", "bench", str(folder), "--fleet", str(fleet), "--db",
                             db, "--variants", VARIANT, "-q", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _locks(running) -> List[Path]:
    return [device.workdir / "agent.lock" for device in running.devices]


def _held_by(lock: Path, pid: int) -> bool:
    """The lock is held now, and its record names a controller with ``pid`` on this machine."""
    try:
        record = json.loads(lock.read_text() or "null")
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("controller") != f"{socket.gethostname()}:{pid}":
        return False
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _lease_spans(lock: Path) -> List[Dict]:
    """Each agent's (pid, run, taken, released, why) from the device's lease log, in order; fails on an agent
    that took the lease while another held it."""
    spans: List[Dict] = []
    holder = None
    for line in Path(str(lock) + ".log").read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "take":
            assert holder is None, f"{lock}: pid {event['pid']} took the lease while pid {holder['pid']} held it"
            holder = {"pid": event["pid"], "run": event.get("run"), "taken": event["t"]}
        else:
            assert holder is not None and event["pid"] == holder["pid"], f"{lock}: a release without its take"
            spans.append(dict(holder, released=event["t"], why=event["why"]))
            holder = None
    assert holder is None, f"{lock}: pid {holder['pid']} never let the lease go"
    return spans


def _check_no_overlap(running) -> List[Dict]:
    spans = []
    for lock in _locks(running):
        mine = _lease_spans(lock)
        for before, after in zip(mine, mine[1:]):
            assert after["taken"] >= before["released"], f"{lock}: two agents at once"
        spans += mine
    return spans


def _stored(db: str, run_ids: List[int]) -> Dict[int, List]:
    from edgeprune.results.store import Store

    with Store.open(db, create=False) as store:
        return {run: [(r["device"], r["variant"], r["status"]) for r in store.results(run)] for run in run_ids}


def _run_ids(db: str) -> List[int]:
    from edgeprune.results.store import Store

    with Store.open(db, create=False) as store:
        return sorted(int(r["id"]) for r in store.runs())


def _assert_every_pair_once(db: str, devices: List[str], runs: int) -> None:
    ids = _run_ids(db)
    assert len(ids) == runs
    for run, rows in _stored(db, ids).items():
        pairs = [(device, variant) for device, variant, _ in rows]
        assert len(pairs) == len(set(pairs)), f"run {run}: a pair stored twice"
        assert set(pairs) == {(d, c) for d in devices for c in CELLS}, f"run {run}: pairs missing"
        assert all(status == "ok" for _, _, status in rows), (run, [r for r in rows if r[2] != "ok"])


def test_three_controllers_share_eight_devices_through_postgresql(make_lab, digits_run, postgres):
    folder, _ = digits_run
    running = make_lab(["loopback"] * 6 + ["netns"] * 2)
    fleet = _fleet(running)
    db = postgres.url(postgres.create_database())
    first = _controller(folder, fleet, db)
    time.sleep(1.0)
    doomed = _controller(folder, fleet, db)
    time.sleep(1.0)
    third = _controller(folder, fleet, db)
    try:
        deadline = time.monotonic() + 240
        while not any(_held_by(lock, doomed.pid) for lock in _locks(running)):
            assert time.monotonic() < deadline, "the second controller never held a lease"
            assert doomed.poll() is None, doomed.stderr.read()
            time.sleep(0.1)
        doomed.kill()  # SIGKILL while it holds at least one device: nothing of it can clean up
        doomed.wait(timeout=10)
        for proc in (first, third):
            out, err = proc.communicate(timeout=900)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for proc in (first, doomed, third):
            if proc.poll() is None:
                proc.kill()
    ids = _run_ids(db)
    assert len(ids) == 3
    killed = [run for run, rows in _stored(db, ids).items() if len(rows) < 8 * len(CELLS)]
    assert len(killed) == 1, "exactly the killed controller's run is incomplete"
    spans = _check_no_overlap(running)
    gone = [s for s in spans if s["run"] == killed[0] and s["why"] == "controller gone"]
    assert gone, "the killed controller's agents did not stop when it died"
    resumed = subprocess.run([sys.executable, "-m", "edgeprune", "bench", "--resume", str(killed[0]), "--db", db,
                              "-q"], capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_every_pair_once(db, [d.name for d in running.devices], runs=3)
    _check_no_overlap(running)


def test_two_controllers_share_one_sqlite_file(make_lab, digits_run, tmp_path):
    folder, _ = digits_run
    running = make_lab(["loopback"] * 4)
    fleet = _fleet(running)
    db = str(tmp_path / "farm.db")
    procs = [_controller(folder, fleet, db)]
    time.sleep(0.5)
    procs.append(_controller(folder, fleet, db))
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    _assert_every_pair_once(db, [d.name for d in running.devices], runs=2)
    spans = _check_no_overlap(running)
    assert len(spans) == 2 * 4 and all(s["why"] == "done" for s in spans)
