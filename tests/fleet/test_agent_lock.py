"""Never two benchmarks at once on one device, also when a bench died and left its agent behind.

The agent holds an OS lock on the device while it measures (``--lock``, device_agent/lock.py). These tests use the
``local`` device (the lock in the temp folder, as a bench on it uses) and real agents: a second agent reports
``busy`` with its holder; a bench finds an orphan (an agent whose edgeprune process on this machine is gone) and stops
it; a bench finds a live holder and waits for it instead of measuring beside it.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
import pytest

from support.cli import bench
from support.store_rows import plan_cells, rows

pytestmark = pytest.mark.slow
LOCAL_LOCK = Path(tempfile.gettempdir()) / f"edgeprune-agent-{os.getuid()}.lock"
REPO = Path(__file__).resolve().parents[2]


def agent(folder: Path, variant: str, lock: Path, controller: str, min_seconds: float,
          python: str = sys.executable) -> subprocess.Popen:
    """A real agent in a session of its own (as edgeprune starts one), holding ``lock``."""
    return subprocess.Popen([python, "-m", "device_agent", "run", str(folder / f"{variant}.tflite"),
                             "--eval", str(folder / "eval.npz"), "--min-seconds", str(min_seconds), "--lock",
                             str(lock), "--controller", controller],
                            cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)


def wait_for_holder(lock: Path, pid: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if json.loads(lock.read_text() or "null").get("pid") == pid:
                return
        except (OSError, ValueError, AttributeError):
            pass
        time.sleep(0.05)
    pytest.fail(f"agent {pid} never took {lock}")


def dead_pid() -> int:
    """A pid that no process has (a finished child's)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("where", ["host", "pi39"])
def test_second_agent_is_busy_and_names_the_holder(where, digits_run, tmp_path, request):
    folder, _ = digits_run
    python = str(request.getfixturevalue("pi_python")) if where == "pi39" else sys.executable
    lock = tmp_path / "agent.lock"
    first = agent(folder, "pruned-int8", lock, "laptop:1234", min_seconds=3, python=python)
    try:
        wait_for_holder(lock, first.pid)
        second = subprocess.run([python, "-m", "device_agent", "run", str(folder / "pruned-int8.tflite"),
                                 "--eval", str(folder / "eval.npz"), "--lock", str(lock)], cwd=str(REPO),
                                capture_output=True, text=True, timeout=60)
        doc = json.loads(second.stdout)
        assert second.returncode == 7 and doc["error"]["kind"] == "busy", second.stdout
        assert doc["lock"]["holder"]["pid"] == first.pid and doc["lock"]["holder"]["controller"] == "laptop:1234"
        assert "timing" not in doc  # it measured nothing
        out, _ = first.communicate(timeout=60)
        assert first.returncode == 0 and json.loads(out)["status"] == "ok"  # undisturbed
    finally:
        first.kill()
    third = subprocess.run([python, "-m", "device_agent", "run", str(folder / "pruned-int8.tflite"), "--eval",
                            str(folder / "eval.npz"), "--lock", str(lock)], cwd=str(REPO), capture_output=True,
                           text=True, timeout=60)
    assert third.returncode == 0, third.stdout  # the lock died with its holder


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_bench_stops_an_orphaned_agent_then_measures(digits_run, tmp_path):
    """An agent whose controller (an edgeprune process on this machine) is gone holds the lock: the bench stops it
    rather than measuring beside it or waiting for its whole run."""
    folder, _ = digits_run
    orphan = agent(folder, "baseline-float32", LOCAL_LOCK, f"{socket.gethostname()}:{dead_pid()}", min_seconds=120)
    try:
        wait_for_holder(LOCAL_LOCK, orphan.pid)
        started = time.monotonic()
        proc = bench(str(folder), "--device", "local", "--db", str(tmp_path / "s.db"), "--variants", "pruned-int8")
        assert proc.returncode == 0, proc.stderr
        assert time.monotonic() - started < 60  # not the orphan's 120 s
        assert orphan.wait(timeout=10) is not None and not running(orphan.pid)
        stored = rows(tmp_path / "s.db")
        assert [(r["variant"], r["status"]) for r in stored] == [(c, "ok") for c in sorted(plan_cells(["pruned-int8"]))]
    finally:
        if orphan.poll() is None:
            os.killpg(orphan.pid, signal.SIGKILL)


def test_bench_waits_for_a_live_holder(digits_run, tmp_path):
    """A holder whose controller is alive (another bench) is never stopped: the bench waits, then measures."""
    folder, _ = digits_run
    holder = agent(folder, "baseline-float32", LOCAL_LOCK, f"{socket.gethostname()}:{os.getpid()}", min_seconds=6)
    try:
        wait_for_holder(LOCAL_LOCK, holder.pid)
        proc = subprocess.Popen([sys.executable, "-m", "edgeprune", "bench", str(folder), "--device", "local", "--db",
                                 str(tmp_path / "s.db"), "--variants", "pruned-int8", "-q"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ended = {}
        deadline = time.monotonic() + 120
        while len(ended) < 2 and time.monotonic() < deadline:  # when each one exits, seen side by side
            for name, process in (("holder", holder), ("bench", proc)):
                if name not in ended and process.poll() is not None:
                    ended[name] = time.monotonic()
            time.sleep(0.02)
        assert len(ended) == 2, "the bench or the holder never finished"
        assert ended["bench"] > ended["holder"]  # measuring beside it would have ended first (a ~2 s plan)
        assert holder.returncode == 0 and json.loads(holder.stdout.read())["status"] == "ok"  # undisturbed
        assert proc.returncode == 0, proc.stderr.read()
        stored = rows(tmp_path / "s.db")
        assert [(r["variant"], r["status"]) for r in stored] == [(c, "ok") for c in sorted(plan_cells(["pruned-int8"]))]
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)


def test_busy_is_a_retryable_failure_not_a_result():
    from edgeprune.devices.command import CommandResult
    from edgeprune.results.agent_result import judge

    doc = {"schema_version": 1, "agent_version": "0.1.0", "command": "run", "status": "error",
           "started_at": "2026-01-01T00:00:00Z", "wall_s": 0.1,
           "error": {"kind": "busy", "message": "another agent is measuring on this device"},
           "lock": {"path": "/x/agent.lock", "holder": {"pid": 5, "pgid": 5, "controller": "h:1"}}}
    outcome = judge(CommandResult(7, json.dumps(doc).encode(), b""))
    assert outcome.status == "failed" and outcome.error_kind == "busy"
