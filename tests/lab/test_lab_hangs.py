"""Issue 10: no network fault may hang ``edgeprune bench``, and no agent may outlive its pair on the device.

Each test strikes a real fault while a real bench runs against lab devices (tests/lab_devices.py): a link that goes
silent in the middle of an SFTP upload (an nftables drop-everything table inside the device's namespace: nothing is
refused, packets just vanish), Ctrl-C during such an upload, a device whose sshd is frozen (SIGSTOP) while its agent
measures, an agent that outlives ``command_timeout``, a device whose host key changed. What is asserted is what a user
sees: the bench ends by itself within the deadline that should fire, with the exit code the docs give, every pair
stored with a reason, and no ``python -m device_agent`` left running on the device.

Every wait is bounded, so on a tree that hangs (check with ``PYTHONPATH=<older tree>``: the CLI runs from the test's
tmp folder, where ``python -m`` cannot pick up the repository's own package) a test fails instead of stalling the
suite. benchmarks/faults.py uses the fault helpers below to time each fault once.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from lab_devices import Lab, LabDevice, LinkSpec, NetnsDevice, _need, _run
from login_device import LoginDevice, sweep_stale_users
from sshlab import ClientKeys, SshdDevice, _comm, _descendants, keygen, write_fleet

pytestmark = pytest.mark.slow
EDGEPRUNE = [sys.executable, "-m", "edgeprune"]
#: Two small variants (about 300 KB each), measured in this order.
TWO = ("pruned-dynamic", "pruned-int8")
#: The 1.1 MB float model first (uploaded first too): struck while it is on its way, it has far more left to send
#: than the socket buffers hold, so the sender's writes block (a 100 KB file would already sit in the buffers).
UPLOADS = ("baseline-float32", "pruned-int8")
#: 1.1 MB takes ~2.5 s at this rate: well inside a 5 s transfer_timeout when nothing goes wrong.
UPLOAD_LINK = LinkSpec(rate="4mbit")
#: The agent stops itself this long after the host's command_timeout (deploy.AGENT_DEADLINE_GRACE).
AGENT_GRACE = 30.0
BLACKHOLE_TABLE = "eplab_blackhole"
SSHD_COMMS = ("sshd", "sshd-session")


# -- the bench as a user runs it ----------------------------------------------------------------------------------

def start_bench(cwd: Path, *args: str) -> subprocess.Popen:
    """``python -m edgeprune ARGS`` in the background, from ``cwd``: outside the repository, so that a PYTHONPATH
    pointing at another tree is what gets imported (``python -m`` puts its working folder first on sys.path)."""
    return subprocess.Popen([*EDGEPRUNE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(cwd))


def run_bench(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([*EDGEPRUNE, *args], capture_output=True, text=True, timeout=timeout, cwd=str(cwd))
    except subprocess.TimeoutExpired:
        pytest.fail(f"`edgeprune {' '.join(args[:1])}` did not finish in {timeout:g} s")


def finish(proc: subprocess.Popen, within: float, what: str) -> Tuple[int, str, str]:
    """Wait up to ``within`` s for the background bench; a bench that is still running then is killed and the test
    fails (that is the hang the test is about, not a slow machine: the bounds are several times the deadlines)."""
    try:
        out, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"{what}: the bench was still running {within:g} s later (killed it); stderr: {err[-1500:]}")
    return proc.returncode, out, err


def poll(condition: Callable[[], bool], within: float, step: float = 0.05) -> Optional[float]:
    """Seconds until ``condition`` held, or None if it did not within ``within`` s."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started >= within:
            return None
        time.sleep(step)


def wait(condition: Callable[[], bool], within: float, what: str, proc: subprocess.Popen) -> float:
    """Poll ``condition`` while the background bench runs; returns the seconds it took. Fails (killing the bench)
    past ``within``, or when the bench exits without the condition having come true."""
    took = poll(lambda: condition() or proc.poll() is not None, within)
    if took is not None and condition():
        return took
    if proc.poll() is not None:
        pytest.fail(f"the bench exited ({proc.returncode}) before {what}: {proc.communicate()[1][-1500:]}")
    proc.kill()
    proc.communicate(timeout=30)
    pytest.fail(f"{what}: not reached in {within:g} s")


def stored(db: Path) -> List[Dict[str, object]]:
    """Every stored result; empty while the store does not exist yet (read-only: never creates or migrates it)."""
    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return []
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM results ORDER BY run_id, device, variant")]
    except sqlite3.Error:  # tables not created yet, or a writer's lock held for longer than 5 s
        return []
    finally:
        conn.close()


def describe(rows: Sequence[Dict[str, object]]) -> List[str]:
    return [f"{r['device']} {r['variant']}: {r['status']}/{r['error_kind']}: {r['error_message']}" for r in rows]


# -- what runs on a device -----------------------------------------------------------------------------------------

def agents(workdir: Path) -> List[int]:
    """Agents running for one device: a ``device_agent run`` command line naming its (absolute) work dir. Zombies
    have no command line, so an agent that was stopped and reaped is not counted."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if "device_agent run " in cmdline and str(workdir) in cmdline:
            found.append(int(entry.name))
    return found


def agent_runs(workdir: Path) -> int:
    """How many agent runs are under way for one device: its agents' distinct sessions (each SSH command is a
    session of its own). The agent forks a child to parse the model, and the child has the same command line: it
    is the same run, not a second agent."""
    sessions = set()
    for pid in agents(workdir):
        try:
            sessions.add(int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3]))
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    return len(sessions)


def most_agent_runs(proc: subprocess.Popen, workdir: Path, within: float = 120) -> int:
    """The most agent runs seen at once on the device (sampled every 50 ms) until the bench exits, ``within`` s at
    most."""
    most = 0
    started = time.monotonic()
    while proc.poll() is None and time.monotonic() - started < within:
        most = max(most, agent_runs(workdir))
        time.sleep(0.05)
    return most


def kill_agents(workdir: Path) -> List[int]:
    """The finalizer's last resort for agents an older tree leaves behind (agents only: never a login shell)."""
    pids = agents(workdir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def partial_uploads(device: SshdDevice, sha256: str = "") -> List[Path]:
    """Temporary upload files in the device's blobs (of the blob ``sha256`` only, when given)."""
    blobs = device.workdir / "blobs"
    try:
        return [p for p in blobs.iterdir() if ".part-" in p.name and p.name.startswith(sha256)]
    except OSError:
        return []


def sha_of(manifest: Dict[str, object], variant: str) -> str:
    return next(v["sha256"] for v in manifest["variants"] if v["name"] == variant)  # type: ignore[union-attr]


# -- faults -------------------------------------------------------------------------------------------------------

def blackhole(device: NetnsDevice) -> None:
    """Drop every packet on the device's veth, both ways, inside its namespace: the link goes silent (no RST, no
    ICMP), as when a Wi-Fi drops or a device hangs in its kernel. The interface stays up."""
    veth = device.veth_device
    rules = (f"table inet {BLACKHOLE_TABLE} {{\n"
             f"  chain input {{ type filter hook input priority -300; policy accept; iifname \"{veth}\" drop; }}\n"
             f"  chain output {{ type filter hook output priority -300; policy accept; oifname \"{veth}\" drop; }}\n"
             f"}}\n")
    _run(["ip", "netns", "exec", device.netns, _need("nft", "nftables"), "-f", "-"], input=rules)


def unblackhole(device: NetnsDevice) -> None:
    """Remove the drop table (no error if it is gone, e.g. with the namespace)."""
    _run(["ip", "netns", "exec", device.netns, _need("nft", "nftables"), "delete", "table", "inet",
          BLACKHOLE_TABLE], check=False)


@contextlib.contextmanager
def blackholed(device: NetnsDevice) -> Iterator[float]:
    """The link is silent inside the block (yields the monotonic time it went silent); restored on the way out."""
    blackhole(device)
    try:
        yield time.monotonic()
    finally:
        unblackhole(device)


def sshd_pids(device: SshdDevice) -> List[int]:
    """The device's sshd listener and every sshd process serving a connection (not the commands they run)."""
    if device.process is None:
        return []
    root = device.process.pid
    return [root] + [pid for pid in _descendants(root) if _comm(pid) in SSHD_COMMS]


@contextlib.contextmanager
def frozen(device: SshdDevice) -> Iterator[float]:
    """SIGSTOP the device's sshd processes (its agent keeps running, as on a device whose network stack or sshd
    hangs); SIGCONT them on the way out, whatever happened. Yields the monotonic time of the freeze."""
    pids = sshd_pids(device)
    stopped = []
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield time.monotonic()
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def rekey(device: SshdDevice) -> None:
    """Give the device a new host key (a reinstalled device at the same address): known_hosts still has the old."""
    device.stop()
    for suffix in ("", ".pub"):
        Path(str(device.host_key) + suffix).unlink()
    keygen(device.host_key)
    device.start()


# -- fixtures -----------------------------------------------------------------------------------------------------

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
    assert sorted(r["variant"] for r in rows) == sorted(UPLOADS), describe(rows)  # nothing lost
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
    assert sorted(r["variant"] for r in final) == sorted(UPLOADS) and all(r["status"] == "ok" for r in final), \
        describe(final)


# -- 3. a device that freezes while its agent measures ------------------------------------------------------------

def test_frozen_device_times_out_and_its_agent_does_not_survive(digits_run, make_lab, reaped, tmp_path):
    """sshd frozen (SIGSTOP) while the agent measures a 120 s run, command_timeout 8: the pair ends
    ``failed/timeout`` within a bounded time; after SIGCONT the agent must be gone no later than its own deadline
    (command_timeout + 30 s from its start). Prints which path stopped it and when.

    The float model without XNNPACK (~130 us an invoke) keeps the agent busy for the whole 120 s: a fast model
    would reach the agent's cap of a million invokes in ~20 s and end on its own."""
    folder, _ = digits_run
    command_timeout, connect_timeout = 8.0, 3.0
    running = make_lab(["netns"])
    [device] = running.devices
    reaped(device.workdir)
    fleet = running.write_fleet(connect_timeout=connect_timeout, command_timeout=command_timeout, min_seconds=120,
                                runs=5, warmup=1, no_xnnpack=True)
    db = tmp_path / "store.db"
    proc = start_bench(tmp_path, "bench", str(folder), "--fleet", str(fleet), "--db", str(db), "--variants",
                       "baseline-float32", "-q")
    wait(lambda: bool(agents(device.workdir)), 120, "the agent measuring", proc)
    agent_seen = time.monotonic()  # at or just after its start: the deadline bound below is a little generous
    time.sleep(1.0)
    with frozen(device) as freeze:
        recorded = wait(lambda: bool(stored(db)), command_timeout + 3 * connect_timeout + 30,
                        "the frozen pair to be stored", proc)
        code, _, err = finish(proc, 60, "a frozen device")
        exited = time.monotonic()
        print(f"frozen device: pair stored {recorded:.1f} s after the freeze, bench exited {code} "
              f"{exited - freeze:.1f} s after it; sshd thawed then")
    [row] = stored(db)
    assert (row["status"], row["error_kind"]) == ("failed", "timeout"), describe([row])
    assert code == 1, err
    deadline = command_timeout + AGENT_GRACE
    bound = deadline + 15  # the agent's own deadline, plus a margin for a loaded machine
    if poll(lambda: not agents(device.workdir), max(bound - (time.monotonic() - agent_seen), 0.1), 0.2) is None:
        pytest.fail(f"agent {agents(device.workdir)} still running {bound:g} s after it started "
                    f"(command_timeout {command_timeout:g} + {AGENT_GRACE:g} s)")
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
    """command_timeout 3, min_seconds 20, two variants: both pairs ``failed/timeout``, no agent left once the bench
    returns (not 33 s later by the agent's own deadline), and never two agents at once on the device."""
    folder, _ = digits_run
    timeouts = dict(command_timeout=3, min_seconds=20, runs=5, warmup=1, connect_timeout=5)
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
    assert len(rows) == 2 and all((r["status"], r["error_kind"]) == ("failed", "timeout") for r in rows), \
        describe(rows)
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
    row = next(r for r in stored(db) if r["variant"] == second)
    assert (row["status"], row["error_kind"]) == ("failed", "host-key") and "HOST KEY CHANGED" in row["error_message"]
    sha = sha_of(manifest, second)
    assert sorted(p.name for p in (device.workdir / "blobs").iterdir()) == before
    assert not any(name.startswith(sha) for name in before)


# -- 6. the orphan of a host that died ----------------------------------------------------------------------------

def latest_run_id(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT MAX(id) FROM runs").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.xfail(strict=True, reason="nothing stops or waits for the agent of a bench that was SIGKILLed: "
                                       "--resume measures beside it (see the test's docstring)")
def test_resume_after_a_killed_host_never_measures_beside_its_orphan(digits_run, make_lab, reaped, tmp_path):
    """The bench SIGKILLed while its agent measures (a host crash, an OOM kill, a closed laptop): nobody is left to
    stop that agent, and it goes on until its own end or its --deadline (command_timeout + 30 s: 630 s with the
    default profile). ``--resume`` right away starts the same pair again beside it, so two agents share the device's
    CPU and the stored latency is measured under that load. Never two agent runs at once on a device, also here.

    Where it happens: deploy.RemoteDevice._run_framed / device_agent's ``run``: nothing on the device marks an agent
    as running (no lock, no pid file in the work dir), so a new bench cannot see the orphan, wait for it or stop it.
    """
    folder, _ = digits_run
    device = make_lab(["loopback"]).devices[0]
    reaped(device.workdir)
    fleet = write_fleet(tmp_path / "fleet.toml", [device], command_timeout=60, min_seconds=10, runs=5, warmup=1,
                        connect_timeout=5)
    db = tmp_path / "store.db"
    proc = start_bench(tmp_path, "bench", str(folder), "--fleet", str(fleet), "--db", str(db), "--variants",
                       "pruned-int8", "-q")
    wait(lambda: bool(agents(device.workdir)), 120, "the agent measuring", proc)
    time.sleep(1.0)
    proc.kill()
    proc.communicate(timeout=30)
    resume = start_bench(tmp_path, "bench", "--resume", str(latest_run_id(db)), "--fleet", str(fleet), "--db",
                         str(db), "-q")
    most = most_agent_runs(resume, device.workdir)
    code, _, err = finish(resume, 5, "--resume after a killed host")
    print(f"--resume after a killed host: exit {code}, at most {most} agent run(s) at once on the device")
    assert code == 0, err
    assert [r["status"] for r in stored(db)] == ["ok"]
    assert most <= 1, f"{most} agents measured at once on {device.name} (the killed bench's orphan and --resume's)"
