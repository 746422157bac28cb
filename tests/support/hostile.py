"""Hostile device parts for the fault tests: agent wrappers that lie, a fake SSH server, and process checks.

A wrapper stands where the profile's ``python`` is: anything but ``-m device_agent plan`` (what a bench runs since
issue 12: one plan per device, every cell in it) or ``run`` is passed to the real interpreter untouched (uploads are
hashed with it), and the agent's answer may be code that edits the real agent's document before emitting it
(``cell(doc, id)`` is one cell of a plan's document). Hosts before issue 10 did not pass ``--frame TOKEN``; a
wrapper handles both, and frames its forged document with the host's token when there is one, so a test fails on old
code for the reason it is about (a lie believed) rather than because an unframed reply was refused.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from support.sshlab import SshdDevice

HOST_PYTHON = sys.executable
#: Two variants in manifest order (after the baseline and its A/A twin in the plan): the first is the cell a
#: wrapper attacks.
FIRST, SECOND = "pruned-float32", "pruned-int8"
TWO = f"{FIRST},{SECOND}"

#: The wrapper's own prelude: ``real()`` runs the real agent (unframed) and returns its document, ``emit(doc)``
#: or ``emit(text=...)`` prints a forged reply the way the host asked for it, ``cell(doc, id)`` is one cell of a
#: plan's document, ``digest(predictions)`` is the agent's predictions digest.
_PRELUDE = """\
#!{python}
import hashlib, json, os, struct, subprocess, sys
REAL = {python!r}
ARGV = sys.argv[1:]
if ARGV[:2] != ["-m", "device_agent"] or ARGV[2:3] not in (["plan"], ["run"]):
    os.execv(REAL, [REAL] + ARGV)
TOKEN = None
if "--frame" in ARGV:
    at = ARGV.index("--frame")
    TOKEN = ARGV[at + 1]
    del ARGV[at:at + 2]

def real():
    return json.loads(subprocess.run([REAL] + ARGV, capture_output=True, check=True).stdout)

def emit(doc=None, text=None):
    text = json.dumps(doc) if text is None else text
    if TOKEN:
        text = "\\n<<<edgeprune-result %s>>>\\n%s\\n<<<edgeprune-end %s>>>\\n" % (TOKEN, text, TOKEN)
    sys.stdout.write(text)
    sys.stdout.flush()

def cell(doc, cell_id):
    return next(c for c in doc["cells"] if c["id"] == cell_id)

def digest(predictions):
    return hashlib.sha256(struct.pack("<%di" % len(predictions), *predictions)).hexdigest()[:16]
"""


def agent_wrapper(path: Path, body: str) -> Path:
    """Write an executable "python" at ``path`` whose agent plans (and runs) are answered by ``body`` (Python, see
    _PRELUDE). A plan answers every cell of the device at once: a body that edits one cell (``cell(doc, FIRST)``)
    leaves the device's other cells as the real agent measured them."""
    path.write_text(_PRELUDE.format(python=HOST_PYTHON) + textwrap.dedent(body) + "\n")
    path.chmod(0o755)
    return path


def device_toml(device: SshdDevice, **overrides: object) -> str:
    """One ``[[device]]`` table; small ``runs``/``warmup`` so a fleet of honest agents stays quick."""
    values: Dict[str, object] = {"runs": 5, "warmup": 1}
    values.update(overrides)
    return "[[device]]\n" + device.profile_toml(**values)


def write_mixed_fleet(path: Path, entries: Sequence[Tuple[SshdDevice, Dict[str, object]]]) -> Path:
    """A fleet file whose devices each have their own overrides (sshlab.write_fleet gives all the same)."""
    path.write_text("\n".join(device_toml(device, **overrides) for device, overrides in entries))
    return path


def client_env(home: Path) -> Dict[str, str]:
    """The CLI's environment: its own HOME (so ``~/.cache/edgeprune`` is the test's), no ssh-agent, no XDG cache."""
    home.mkdir(parents=True, exist_ok=True)
    drop = ("SSH_AUTH_SOCK", "SSH_AGENT_PID", "XDG_CACHE_HOME")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["HOME"] = str(home)
    return env


# -- processes on a loopback device ------------------------------------------------------------------------------

def agent_pids(workdir: Path) -> List[int]:
    """Agents still running for a device: a ``device_agent plan`` (or ``run``) command line naming a file under its
    work dir (the plan file is in its blobs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if ("device_agent plan " in cmdline or "device_agent run " in cmdline) and str(workdir) in cmdline:
            found.append(int(entry.name))
    return found


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               proc: Optional[subprocess.Popen] = None) -> None:
    """Poll ``condition`` every 0.1 s; on timeout kill ``proc`` (the background CLI) and raise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the CLI exited ({proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.1)
    if proc is not None:
        proc.kill()
        proc.communicate()
    raise AssertionError(f"timed out waiting for {what}")


def kill_agents(workdir: Path) -> None:
    """Kill agents a test left on its own device (found by their command line); the finalizer's last resort."""
    for pid in agent_pids(workdir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- a TCP server that is not an SSH server -----------------------------------------------------------------------

#: What the fake server does with each connection.
FAKE_SSH_MODES = {
    "hang-up": b"",  # accepts, then closes at once
    "http": b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",  # not an SSH banner at all
    "bad-packet": b"SSH-2.0-OpenSSH_9.2p1\r\n" + b"\xff" * 64 + b"\r\n",  # a banner, then no SSH packet
}


@contextlib.contextmanager
def fake_ssh_server(mode: str) -> Iterator[int]:
    """Listen on a loopback port; each connection gets ``FAKE_SSH_MODES[mode]`` and is closed. Yields the port."""
    reply = FAKE_SSH_MODES[mode]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                with contextlib.suppress(OSError):
                    if reply:
                        conn.sendall(reply)
                        conn.settimeout(0.5)
                        conn.recv(4096)  # let the client speak before the hang-up, as a confused server would

    thread = threading.Thread(target=serve, name=f"fake-ssh-{mode}", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join(timeout=5)
        listener.close()
