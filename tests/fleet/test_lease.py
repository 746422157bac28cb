"""Issue 17: the device's lease, as real agents hold it (on this host's Python and the Pi-like 3.9).

- the record other controllers read names the controller, the run, since when and until when (``expires``: the
  agent's own deadline), and a second agent's ``busy`` says all of it;
- a dead controller frees the device at once: the agent watches its stdin (``--watch-stdin``), which its
  controller holds open for its whole life, and stops when it closes, instead of at its deadline;
- the lease log (``<lock>.log``) gets one line when an agent takes the lease and one when it lets it go, with
  why: done, controller gone, deadline;
- the host's waiting: the progress line says who holds the device, ``--no-wait`` records the cells ``busy``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeprune.devices.device import busy_holder, describe_holder

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def start_agent(python: str, folder: Path, lock: Path, run_id: int, seconds: float, deadline: float = 120,
                watch: bool = True) -> subprocess.Popen:
    argv = [python, "-m", "device_agent", "run", str(folder / "pruned-int8.tflite"), "--eval",
            str(folder / "eval.npz"), "--min-seconds", str(seconds), "--lock", str(lock), "--controller",
            f"farm-{run_id}:4242", "--run-id", str(run_id), "--deadline", str(deadline)]
    return subprocess.Popen(argv + (["--watch-stdin"] if watch else []), cwd=str(REPO), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def wait_for(lock: Path, pid: int, within: float = 60) -> dict:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            record = json.loads(lock.read_text() or "null")
            if isinstance(record, dict) and record.get("pid") == pid:
                return record
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    pytest.fail(f"agent {pid} never took {lock}")


def log_lines(lock: Path) -> list:
    return [json.loads(line) for line in Path(str(lock) + ".log").read_text().splitlines()]


@pytest.fixture(params=["host", "pi39"])
def python(request) -> str:
    return str(request.getfixturevalue("pi_python")) if request.param == "pi39" else sys.executable


def test_the_lease_names_its_holder_and_dies_with_the_controller(python, digits_run, tmp_path):
    folder, _ = digits_run
    lock = tmp_path / "agent.lock"
    first = start_agent(python, folder, lock, run_id=7, seconds=60)
    try:
        record = wait_for(lock, first.pid)
        assert record["run"] == 7 and record["controller"] == "farm-7:4242"
        assert record["expires"] > record["started"]  # ISO UTC strings of one format sort as times
        second = subprocess.run([python, "-m", "device_agent", "run", str(folder / "pruned-int8.tflite"), "--eval",
                                 str(folder / "eval.npz"), "--lock", str(lock), "--run-id", "8"], cwd=str(REPO),
                                capture_output=True, text=True, timeout=60)
        doc = json.loads(second.stdout)
        assert doc["error"]["kind"] == "busy"
        assert "run 7" in doc["error"]["message"] and f"lease until {record['expires']}" in doc["error"]["message"]
        # the controller goes away: its end of the agent's stdin closes, the agent stops within seconds
        closed = time.monotonic()
        first.stdin.close()
        first.wait(timeout=10)
        assert time.monotonic() - closed < 5
        assert b"the controller is gone" in first.stderr.read()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    third = start_agent(python, folder, lock, run_id=9, seconds=0.5, watch=False)  # communicate() closes stdin
    out, _ = third.communicate(timeout=120)
    doc = json.loads(out)
    assert third.returncode == 0 and doc["lock"]["holder"]["run"] == 9 and doc["lock"]["released"]
    events = log_lines(lock)
    assert [(e["event"], e.get("run"), e.get("why")) for e in events] == [
        ("take", 7, None), ("release", None, "controller gone"), ("take", 9, None), ("release", None, "done")]
    times = [e["t"] for e in events]
    assert times == sorted(times)  # never two holders at once


def test_an_agent_past_its_deadline_lets_the_lease_go(digits_run, tmp_path):
    folder, _ = digits_run
    lock = tmp_path / "agent.lock"
    agent = start_agent(sys.executable, folder, lock, run_id=3, seconds=60, deadline=4, watch=False)
    agent.wait(timeout=30)
    events = log_lines(lock)
    assert [(e["event"], e.get("why")) for e in events] == [("take", None), ("release", "deadline")]
    assert json.loads(lock.read_text())["expires"] < events[1]["at"] or events[1]["t"] - events[0]["t"] >= 3.5


def test_the_host_reads_and_shows_a_hostile_holder():
    """What another agent wrote is untrusted: bad types are dropped, long text cut."""
    from edgeprune.results.plan_result import PlanOutcome

    outcome = PlanOutcome(status="failed", error_kind="busy", message="busy", document={"lock": {"holder": {
        "pid": 99, "pgid": 99, "controller": "x" * 5000, "run": "7; rm -rf /", "started": ["no"],
        "expires": "2026-12-07T10:00:00Z"}}})
    holder = busy_holder(outcome)
    assert holder["run"] is None and holder["started"] is None and len(holder["controller"]) == 200
    assert describe_holder(holder).endswith("lease until 2026-12-07 10:00:00Z")
    assert describe_holder({}) == "held by another agent (its record is unreadable)"


def test_bench_no_wait_records_busy_and_the_progress_names_the_holder(digits_run, tmp_path, make_device):
    """A device (a real sshd on loopback) held by another controller's agent: `--no-wait` stores its cells as
    failed/busy at once; the default waits, saying who holds it, and measures once it is free."""
    from support.cli import bench
    from support.sshlab import write_fleet
    from support.store_rows import rows

    folder, _ = digits_run
    device = make_device("shelf")
    fleet = write_fleet(tmp_path / "fleet.toml", [device])
    lock = device.workdir / "agent.lock"
    device.workdir.mkdir(parents=True, exist_ok=True)
    holder = start_agent(sys.executable, folder, lock, run_id=41, seconds=8)
    try:
        wait_for(lock, holder.pid)
        started = time.monotonic()
        proc = bench(str(folder), "--fleet", str(fleet), "--db", str(tmp_path / "s.db"), "--variants", "pruned-int8",
                     "--no-wait")
        assert proc.returncode == 1 and time.monotonic() - started < 30
        stored = rows(tmp_path / "s.db")
        assert stored and all((r["status"], r["error_kind"]) == ("failed", "busy") for r in stored)
        assert "run 41" in stored[0]["error_message"]
        waiting = subprocess.run([sys.executable, "-m", "edgeprune", "bench", str(folder), "--fleet", str(fleet),
                                  "--db", str(tmp_path / "s.db"), "--variants", "pruned-int8"],
                                 capture_output=True, text=True, timeout=300, env=dict(os.environ, COLUMNS="300"))
        assert waiting.returncode == 0, waiting.stderr[-2000:]
        assert holder.poll() is not None  # it measured after the holder was done, not beside it
        shown = waiting.stdout + waiting.stderr
        assert "waiting" in shown and "held by farm-41:4242 (run 41)" in shown, shown[-2000:]
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
