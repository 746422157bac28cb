"""Issue 10: no network fault may hang ``edgeprune bench``, and no agent may outlive its pair on the device.

Each test strikes a real fault while a real bench runs against lab devices (tests/support/lab): a link that goes
silent in the middle of an SFTP upload (an nftables drop-everything table inside the device's namespace: nothing is
refused, packets just vanish), Ctrl-C during such an upload, a device whose sshd is frozen (SIGSTOP) while its agent
measures, an agent that outlives its deadline, a device whose host key changed. What is asserted is what a user
sees: the bench ends by itself within the deadline that should fire, with the exit code the docs give, every pair
stored with a reason, and no ``python -m device_agent`` left running on the device.

Since issue 12 a bench runs one ``plan`` per device (the variants asked for, plus the baseline and its A/A twin:
``plan_cells``), whose deadline is ``budget_s + cells x command_timeout`` (cells.plan_limit): the tests that strike a
measuring agent set a small ``budget_s`` as well as a small ``command_timeout``.

Every wait is bounded, so on a tree that hangs (check with ``PYTHONPATH=<older tree>``: the CLI runs from the test's
tmp folder, where ``python -m`` cannot pick up the repository's own package) a test fails instead of stalling the
suite. benchmarks/faults.py uses the fault helpers below to time each fault once.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, List, Tuple

import pytest

from support.faults import (AGENT_GRACE, TWO, UPLOAD_LINK, UPLOADS, agents, blackholed, describe, finish,
                            frozen, kill_agents, most_agent_runs, partial_uploads, poll, rekey,
                            run_bench, sha_of, start_bench, stored, wait)
from support.store_rows import latest_run_id, plan_cells
from support.lab import Lab, LabDevice, NetnsDevice
from support.login_device import LoginDevice, sweep_stale_users
from support.sshlab import ClientKeys, SshdDevice, write_fleet

pytestmark = pytest.mark.slow


@pytest.fixture
def reaped() -> Iterator[Callable[[Path], None]]:
    """Work dirs whose stray agents are killed at the end of the test, pass or fail."""
    workdirs: List[Path] = []
    yield workdirs.append
    for workdir in workdirs:
        left = kill_agents(workdir)
        if left:
            print(f"killed {len(left)} stray agent(s) of {workdir}")


@pytest.fixture
def login_device(tmp_path: Path) -> Iterator[Callable[[str], LoginDevice]]:
    """A device whose login is its own user with a ``.bashrc`` (tests/login_device.py); removed at the end."""
    sweep_stale_users()
    made: List[LoginDevice] = []

    def make(name: str) -> LoginDevice:
        device = LoginDevice(name, tmp_path / "devices" / name, ClientKeys(tmp_path / "client"), python=sys.executable)
        made.append(device)
        device.start()
        device.trust()
        return device

    yield make
    for device in made:
        device.remove()


# -- 1. a link that goes silent during an upload ------------------------------------------------------------------

def upload_under_way(make_lab: Callable[..., Lab], digits_run, tmp_path: Path,
                     transfer_timeout: float) -> Tuple[NetnsDevice, Path, Path, subprocess.Popen]:
    """A netns device on a 4 Mbit/s link and a bench of UPLOADS started against it, returned once the 1.1 MB model
    is on its way (its temporary file exists on the device): (device, fleet, store, bench)."""
    folder, manifest = digits_run
    running = make_lab(["netns"], link=UPLOAD_LINK)
    [device] = running.devices
    assert isinstance(device, NetnsDevice)
    fleet = running.write_fleet(connect_timeout=3, transfer_timeout=transfer_timeout, runs=5, warmup=1)
    db = tmp_path / "store.db"
    proc = start_bench(tmp_path, "bench", str(folder), "--fleet", str(fleet), "--db", str(db), "--variants",
                       ",".join(UPLOADS), "-q")
    wait(lambda: bool(partial_uploads(device, sha_of(manifest, UPLOADS[0]))), 120, "the model's upload", proc)
    return device, fleet, db, proc


def test_blackholed_upload_ends_on_its_own(digits_run, make_lab, tmp_path):
    """The link goes silent while the 1.1 MB model is on its way (4 Mbit/s, transfer_timeout 5 s): the bench ends by
    itself within the transfer deadline plus a margin, exit 1, every pair stored ``failed`` saying the upload timed
    out. (Before issue 10 paramiko's blocked write waited forever here.)"""
    device, _, db, proc = upload_under_way(make_lab, digits_run, tmp_path, transfer_timeout=5)
    with blackholed(device) as silent:
        code, _, err = finish(proc, 60, "a blackholed upload with transfer_timeout 5")
        took = time.monotonic() - silent
    print(f"blackholed upload: bench exited {code} {took:.1f} s after the link went silent")
    rows = stored(db)
    assert took < 30, f"ended {took:.1f} s after the blackhole (transfer_timeout 5)"
    assert code == 1, err
    assert sorted(r["variant"] for r in rows) == sorted(plan_cells(UPLOADS)), describe(rows)  # nothing lost
    for row in rows:
        assert row["status"] == "failed", describe(rows)
        assert "upload" in row["error_message"] and "timed out" in row["error_message"], describe(rows)


# -- 2. Ctrl-C during such an upload ------------------------------------------------------------------------------

def test_ctrl_c_stops_a_blackholed_upload_then_resume(digits_run, make_lab, tmp_path):
    """Same silent upload, but transfer_timeout 300: Ctrl-C must end the bench within seconds (exit 130), the pairs
    stored ``failed/interrupted``; with the link back, ``--resume`` measures every pair."""
    device, fleet, db, proc = upload_under_way(make_lab, digits_run, tmp_path, transfer_timeout=300)
    with blackholed(device):
        time.sleep(2.0)  # the transfer is stuck now
        proc.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        code, _, err = finish(proc, 60, "Ctrl-C during a blackholed upload")
        took = time.monotonic() - interrupted
    print(f"Ctrl-C during a blackholed upload: bench exited {code} {took:.1f} s after SIGINT")
    assert code == 130, err
    assert took < 25, f"exit took {took:.1f} s after Ctrl-C"
    rows = stored(db)
    assert rows and all(r["status"] == "failed" and r["error_kind"] == "interrupted" for r in rows), describe(rows)
    done = run_bench(tmp_path, "bench", "--resume", str(rows[0]["run_id"]), "--fleet", str(fleet), "--db", str(db),
                     "-q")  # the run keeps its selection of variants
    assert done.returncode == 0, done.stderr
    final = stored(db)
    assert sorted(r["variant"] for r in final) == sorted(plan_cells(UPLOADS)), describe(final)
    assert all(r["status"] == "ok" for r in final), describe(final)


# -- 3. a device that freezes while its agent measures ------------------------------------------------------------

def test_frozen_device_times_out_and_its_agent_does_not_survive(digits_run, make_lab, reaped, tmp_path):
    """sshd frozen (SIGSTOP) while the agent measures visits of 120 s, the plan's deadline 18 s (budget_s 2, two cells
    x command_timeout 8): the baseline and its twin end ``failed/timeout`` within a bounded time; after SIGCONT the
    agent must be gone no later than its own deadline (the plan's + 30 s from its start). Prints which path stopped
    it and when.

    The float model without XNNPACK (~130 us an invoke) keeps the agent busy for the whole 120 s: a fast model
    would reach the agent's cap of a million invokes in ~20 s and end on its own."""
    folder, _ = digits_run
    command_timeout, connect_timeout, budget = 8.0, 3.0, 2.0
    cells = plan_cells(["baseline-float32"])
    limit = budget + len(cells) * command_timeout  # cells.plan_limit
    running = make_lab(["netns"])
    [device] = running.devices
    reaped(device.workdir)
    fleet = running.write_fleet(connect_timeout=connect_timeout, command_timeout=command_timeout, budget_s=budget,
                                min_seconds=120, runs=5, warmup=1, no_xnnpack=True)
    db = tmp_path / "store.db"
    proc = start_bench(tmp_path, "bench", str(folder), "--fleet", str(fleet), "--db", str(db), "--variants",
                       "baseline-float32", "-q")
    wait(lambda: bool(agents(device.workdir)), 120, "the agent measuring", proc)
    agent_seen = time.monotonic()  # at or just after its start: the deadline bound below is a little generous
    time.sleep(1.0)
    with frozen(device) as freeze:
        recorded = wait(lambda: len(stored(db)) == len(cells), limit + 3 * connect_timeout + 30,
                        "the frozen plan's cells to be stored", proc)
        code, _, err = finish(proc, 60, "a frozen device")
        exited = time.monotonic()
        print(f"frozen device: pair stored {recorded:.1f} s after the freeze, bench exited {code} "
              f"{exited - freeze:.1f} s after it; sshd thawed then")
    rows = stored(db)
    assert sorted(r["variant"] for r in rows) == sorted(cells), describe(rows)
    assert all((r["status"], r["error_kind"]) == ("failed", "timeout") for r in rows), describe(rows)
    assert code == 1, err
    deadline = limit + AGENT_GRACE
    bound = deadline + 15  # the agent's own deadline, plus a margin for a loaded machine
    if poll(lambda: not agents(device.workdir), max(bound - (time.monotonic() - agent_seen), 0.1), 0.2) is None:
        pytest.fail(f"agent {agents(device.workdir)} still running {bound:g} s after it started "
                    f"(the plan's deadline {limit:g} + {AGENT_GRACE:g} s)")
    gone = time.monotonic() - agent_seen
    if gone < exited - agent_seen:
        path = "the host's stop"
    elif gone >= deadline - 2:
        path = "the agent's own --deadline"
    else:
        path = "its session ending once sshd was thawed"
    print(f"frozen device: agent gone {gone:.1f} s after it started ({gone - (exited - agent_seen):.1f} s after the "
          f"thaw), by {path}")


# -- 4. an agent that outlives command_timeout --------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["loopback", "login"])
def test_timed_out_agent_is_stopped_at_once(kind, digits_run, make_lab, login_device, reaped, tmp_path):
    """command_timeout 3 and budget_s 1 (a plan of four cells: a 13 s deadline), min_seconds 20, two variants: every
    cell ``failed/timeout``, no agent left once the bench returns (not 30 s later by the agent's own deadline), and
    never two agents at once on the device."""
    folder, _ = digits_run
    timeouts = dict(command_timeout=3, budget_s=1, min_seconds=20, runs=5, warmup=1, connect_timeout=5)
    if kind == "login":  # its own user, a .bashrc, python3 found on the PATH the .bashrc sets (as on a Pi)
        device: SshdDevice = login_device("login-0")
        fleet = write_fleet(tmp_path / "fleet.toml", [device], user=device.user, python="python3", **timeouts)
    else:
        device = make_lab(["loopback"]).devices[0]
        assert isinstance(device, LabDevice)
        fleet = write_fleet(tmp_path / "fleet.toml", [device], **timeouts)
    reaped(device.workdir)
    db = tmp_path / "store.db"
    proc = start_bench(tmp_path, "bench", str(folder), "--fleet", str(fleet), "--db", str(db), "--variants",
                       ",".join(TWO), "-q")
    started = time.monotonic()
    most = most_agent_runs(proc, device.workdir)
    code, _, err = finish(proc, 5, "two timed-out pairs")
    left = agents(device.workdir)
    rows = stored(db)
    print(f"{kind}: bench exited {code} after {time.monotonic() - started:.1f} s; at most {most} agent(s) at once; "
          f"{len(left)} left at exit")
    assert code == 1, err
    assert sorted(r["variant"] for r in rows) == sorted(plan_cells(TWO)), describe(rows)
    assert all((r["status"], r["error_kind"]) == ("failed", "timeout") for r in rows), describe(rows)
    assert not left, f"agents {left} still running when the bench returned"
    assert most <= 1, f"{most} agents measured at once on {device.name}"


# -- 5. a host key that changed between two benches ---------------------------------------------------------------

def test_changed_host_key_on_a_network_device_is_refused(digits_run, make_lab, tmp_path):
    """A netns device measured once, then reinstalled (new host key, same address): the next bench refuses it with
    HOST KEY CHANGED, uploads nothing (the variant it would have sent is not on the device) and exits 1."""
    folder, manifest = digits_run
    first, second = TWO[1], TWO[0]
    running = make_lab(["netns"])
    [device] = running.devices
    fleet = running.write_fleet(connect_timeout=3, runs=5, warmup=1)
    db = tmp_path / "store.db"
    ok = run_bench(tmp_path, "bench", str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", first, "-q")
    assert ok.returncode == 0, ok.stderr
    rekey(device)
    before = sorted(p.name for p in (device.workdir / "blobs").iterdir())
    refused = run_bench(tmp_path, "bench", str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", second,
                        "-q")
    assert refused.returncode == 1, refused.stderr
    assert "HOST KEY CHANGED" in refused.stderr
    refused_rows = [r for r in stored(db) if r["run_id"] == latest_run_id(db)]
    assert sorted(r["variant"] for r in refused_rows) == sorted(plan_cells([second])), describe(refused_rows)
    for row in refused_rows:
        assert (row["status"], row["error_kind"]) == ("failed", "host-key"), describe(refused_rows)
        assert "HOST KEY CHANGED" in row["error_message"]
    sha = sha_of(manifest, second)
    assert sorted(p.name for p in (device.workdir / "blobs").iterdir()) == before
    assert not any(name.startswith(sha) for name in before)


# -- 6. the orphan of a host that died ----------------------------------------------------------------------------

def test_resume_after_a_killed_host_never_measures_beside_its_orphan(digits_run, make_lab, reaped, tmp_path):
    """The bench SIGKILLed while its agent measures (a host crash, an OOM kill, a closed laptop): nobody is left to
    stop that agent, and it goes on until its own end or its --deadline (the plan's + 30 s: budget_s + 3 cells x
    command_timeout, 2130 s with the default profile). ``--resume`` right away starts the same plan again beside
    it, so two agents share the device's CPU and the stored latency is measured under that load. Never two agent
    runs at once on a device, also here.

    The agent now holds the device's agent lock while it measures; the resumed agent finds it taken (``busy``),
    and the bench stops the orphan (its controller, the killed bench, is gone) before measuring. An agent that only
    reported ``busy`` lives a fraction of a second: "measuring" counts agents older than 2 s.
    """
    folder, _ = digits_run
    device = make_lab(["loopback"]).devices[0]
    reaped(device.workdir)
    # visits of >= 3 s and a budget that ends the rounds after the first one: the orphan measures for ~10 s, and so
    # does the resumed plan
    fleet = write_fleet(tmp_path / "fleet.toml", [device], command_timeout=60, budget_s=1, min_seconds=3, runs=5,
                        warmup=1, connect_timeout=5)
    db = tmp_path / "store.db"
    proc = start_bench(tmp_path, "bench", str(folder), "--fleet", str(fleet), "--db", str(db), "--variants",
                       "pruned-int8", "-q")
    wait(lambda: bool(agents(device.workdir)), 120, "the agent measuring", proc)
    time.sleep(1.0)
    proc.kill()
    proc.communicate(timeout=30)
    resume = start_bench(tmp_path, "bench", "--resume", str(latest_run_id(db)), "--fleet", str(fleet), "--db",
                         str(db), "-q")
    most = most_agent_runs(resume, device.workdir, min_age=2.0)
    code, _, err = finish(resume, 5, "--resume after a killed host")
    print(f"--resume after a killed host: exit {code}, at most {most} agent run(s) at once on the device")
    assert code == 0, err
    assert [(r["variant"], r["status"]) for r in stored(db)] == [(c, "ok") for c in sorted(plan_cells(["pruned-int8"]))]
    assert most <= 1, f"{most} agents measured at once on {device.name} (the killed bench's orphan and --resume's)"
