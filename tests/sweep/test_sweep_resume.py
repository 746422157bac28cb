"""A sweep killed midway (Ctrl-C, then SIGKILL) and resumed finishes only the missing points and says what it
skips; the store's timestamps show that nothing finished before was optimized or benched again."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from sweep_support import POINTS, RUNS, SWEEP, cli, rows, sweep_env

pytestmark = pytest.mark.slow

FIRST, SECOND = RUNS
PATIENCE = 600


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgeprune", "sweep", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(cwd), env=sweep_env())


def _wait_for(check, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not check():
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended ({proc.returncode}) before {what}:\n{proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} within {PATIENCE} s")
        time.sleep(0.2)


def _descendants(pid: int) -> List[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def _gone(pids: List[int], seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return True
        time.sleep(0.2)
    return False


def test_a_killed_sweep_resumes_only_the_missing_points(tmp_path):
    folder, db = tmp_path / "s", tmp_path / "edgeprune.db"
    args = [*SWEEP, "--out", str(folder), "--db", str(db), "--device", "local", "--jobs", "1", "-q"]
    first_points = [p for p in POINTS if p.startswith(FIRST)]

    # 1. Ctrl-C once the first run's points are stored: exit 130, the children stopped, the second run not kept
    proc = _start(tmp_path, *args)
    _wait_for(lambda: len(rows(db, "SELECT key FROM sweep_points")) >= 2, proc, "a stored point")
    children = _descendants(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"--resume {folder}" in err and "Traceback" not in err
    assert _gone(children), "an optimize child outlived the interrupted sweep"
    stored = rows(db, "SELECT key, optimized FROM sweep_points ORDER BY key")
    assert [r["key"] for r in stored] == first_points
    assert not (folder / "points" / SECOND).exists()
    assert rows(db, "SELECT * FROM sweep_benches") == []  # local is benched only after all optimize work

    # 2. the same command, SIGKILLed while it optimizes the second run: nothing half-done counts
    proc = _start(tmp_path, *args)
    _wait_for(lambda: any((folder / "points").glob(f"{SECOND}.attempt-*/native.log")), proc, "the second run")
    orphans = _descendants(proc.pid)
    proc.kill()
    proc.communicate(timeout=60)
    try:
        assert rows(db, "SELECT key, optimized FROM sweep_points ORDER BY key") == stored
        assert not (folder / "points" / SECOND).exists()

        # 3. --resume: the first run is not optimized again, the second is; then both are benched
        done = cli(tmp_path, "sweep", "--resume", str(folder))
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"optimizing 1 of 2 runs on this machine: {SECOND}" in done.stderr
        assert f"optimized before, still to bench: {', '.join(first_points)}" in done.stderr
        assert "sweep: 4 of 4 points done" in done.stderr
    finally:
        for pid in orphans:  # the killed sweep's child may still be training; it is this test's to stop
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    after = rows(db, "SELECT key, optimized FROM sweep_points ORDER BY key")
    assert [r for r in after if r["key"] in first_points] == stored
    assert [r["key"] for r in after] == sorted(POINTS)
    benches = rows(db, "SELECT key, run_id FROM sweep_benches ORDER BY key")
    assert [b["key"] for b in benches] == sorted(POINTS) and len(rows(db, "SELECT id FROM runs")) == 2
    assert not list((folder / "points").glob("*.attempt-*"))

    # 4. once more: everything is skipped, by name, and nothing is optimized or benched
    again = cli(tmp_path, "sweep", "--resume", str(folder))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"4 of 4 points already done, skipped: {', '.join(POINTS)}" in again.stderr
    assert rows(db, "SELECT key, optimized FROM sweep_points ORDER BY key") == after
    assert rows(db, "SELECT key, run_id FROM sweep_benches ORDER BY key") == benches
