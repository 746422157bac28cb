"""Fault controls and bench helpers for the network-fault tests (tests/lab/test_lab_hangs.py) and
benchmarks/faults.py: blackhole a namespaced device's link, freeze its sshd, change its host key, count and stop the
agents running on a device, read the store. Every wait is bounded.
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

from support.lab import LinkSpec, NetnsDevice
from support.lab.common import need as _need, run as _run
from support.sshlab import SshdDevice, _comm, _descendants, keygen
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
    """Agents running for one device: a ``device_agent plan`` (what a bench runs since issue 12) or ``run`` command
    line naming its (absolute) work dir. Zombies have no command line, so an agent that was stopped and reaped is
    not counted."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if ("device_agent plan " in cmdline or "device_agent run " in cmdline) and str(workdir) in cmdline:
            found.append(int(entry.name))
    return found


def _age(pid: int) -> float:
    """Seconds since process ``pid`` started (from /proc: its start time in clock ticks since boot)."""
    start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def agent_runs(workdir: Path, min_age: float = 0.0) -> int:
    """How many agent runs are under way for one device: its agents' distinct sessions (each SSH command is a
    session of its own). The agent forks a child to parse the model, and the child has the same command line: it
    is the same run, not a second agent. ``min_age``: count only agents older than that, i.e. measuring ones (an
    agent that finds the device's lock taken reports ``busy`` and exits within a fraction of a second)."""
    sessions = set()
    for pid in agents(workdir):
        try:
            if min_age and _age(pid) < min_age:
                continue
            sessions.add(int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3]))
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    return len(sessions)


def most_agent_runs(proc: subprocess.Popen, workdir: Path, within: float = 120, min_age: float = 0.0) -> int:
    """The most agent runs seen at once on the device (sampled every 50 ms) until the bench exits, ``within`` s at
    most."""
    most = 0
    started = time.monotonic()
    while proc.poll() is None and time.monotonic() - started < within:
        most = max(most, agent_runs(workdir, min_age))
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
