"""One benchmark at a time on a device: an OS file lock that the agent holds for its whole life.

The host stops an agent that times out or is interrupted; but when the host itself dies (a crash, a SIGKILL, a laptop
that sleeps), nothing can stop its agent, and the next bench would measure beside it. So with ``--lock PATH`` the
agent takes an exclusive ``flock`` on PATH before it loads anything, and writes who holds it: its pid and process
group, the controller that started it (``host:pid`` of the edgeprune process), and when. The kernel releases the lock
when the agent exits, however it exits. A second agent finds the lock taken, reports ``busy`` with the holder, and
measures nothing; the host then decides whether the holder is an orphan it may stop or a live bench to wait for.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import time
from typing import Any, Dict, Optional

from .protocol import BUSY, AgentError

#: The lock's file descriptor, kept open (and so held) until the process exits.
_HELD: Optional[int] = None
_LOG: Optional[str] = None
#: Set when the agent has written its document and is exiting: stdin closing now is not the controller dying.
_FINISHING = False
MAX_RECORD = 4096
#: The device's lease log (``<lock>.log``): one JSON line when an agent takes the lease and one when it lets it go,
#: so whoever runs the farm can see who used the board when, and that no two agents ever overlapped. Kept under
#: this size by dropping its older half.
MAX_LOG = 1 << 20


class Busy(AgentError):
    """The lock is held by another agent; ``holder`` is what that agent wrote (untrusted, as read)."""

    def __init__(self, path: str, holder: Optional[Dict[str, Any]]) -> None:
        who = holder or {}
        run = (", run %s" % who.get("run")) if who.get("run") is not None else ""
        until = (", lease until %s" % who.get("expires")) if who.get("expires") else ""
        super().__init__(
            BUSY, "another agent is measuring on this device (pid %s, controller %s%s, since %s%s)"
            % (who.get("pid"), who.get("controller"), run, who.get("started"), until),
            hint="wait for it (edgeprune does unless --no-wait); it stops by itself when its controller is gone")
        self.path = path
        self.holder = holder


def _read(fd: int) -> Optional[Dict[str, Any]]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        record = json.loads(os.read(fd, MAX_RECORD).decode("utf-8", "replace") or "null")
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _utc(seconds_from_now: float = 0.0) -> str:
    moment = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_from_now)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hold(path: str, controller: Optional[str], run: Optional[int] = None,
         lease_s: Optional[float] = None) -> Dict[str, Any]:
    """Take the lock at ``path`` for the rest of this process's life; raise Busy when another agent has it.

    The record is the lease other controllers read while they wait: who (controller ``host:pid``, this agent's
    pid and group), for which run, since when, and until when at the latest (``expires``: this agent's own
    deadline, after which it stops itself and the kernel releases the lock)."""
    global _HELD
    import fcntl  # POSIX only: the agent runs on Linux boards

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _read(fd)
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise Busy(path, holder)
        raise
    record = {"pid": os.getpid(), "pgid": os.getpgrp(), "controller": controller, "started": _utc()}
    if run is not None:
        record["run"] = run
    if lease_s:
        record["expires"] = _utc(lease_s)
    data = json.dumps(record).encode("utf-8")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    _HELD = fd
    _log_event(path + ".log", dict(record, event="take", t=time.time()))
    return record


def _log_event(path: str, event: Dict[str, Any]) -> None:
    """Append one line to the lease log (best effort: a full disk must not stop a measurement)."""
    global _LOG
    _LOG = path
    try:
        if os.path.exists(path) and os.path.getsize(path) > MAX_LOG:
            with open(path, "rb") as handle:
                handle.seek(-(MAX_LOG // 2), os.SEEK_END)
                kept = handle.read().split(b"\n", 1)[-1]
            with open(path, "wb") as handle:
                handle.write(kept)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(event, sort_keys=True) + "\n")
    except OSError:
        pass


def finishing() -> None:
    """The agent's work is done (its document is written next): from now on an end of stdin is not news."""
    global _FINISHING
    _FINISHING = True


def log_release(why: str = "done") -> None:
    """The lease log's second line for this agent: when and why it let the lease go (the kernel releases the lock
    itself when the process ends)."""
    if why == "done":
        finishing()
    if _HELD is not None and _LOG is not None:
        _log_event(_LOG, {"event": "release", "pid": os.getpid(), "t": time.time(), "at": _utc(), "why": why})


def holding() -> bool:
    """Whether this process holds the lock (it took it; a busy agent did not)."""
    return _HELD is not None


def released() -> str:
    """When this agent lets the lease go: the time its document is written, right before it exits (the kernel
    releases the lock then). With ``started``, what shows that two agents never overlapped on one device."""
    return _utc()


def watch_controller(fd: int) -> None:
    """End this agent when its controller is gone: the controller keeps the agent's stdin open for its whole life
    (a pipe for ``local``, the SSH channel otherwise), so end-of-file on stdin means the controller died or its
    connection did. Then nobody can read what the agent measures, and it holds the device's lease: it stops at
    once (its process group too) so the lease is free for the next controller, instead of at its deadline."""
    import signal
    import threading

    def wait() -> None:
        try:  # the raw descriptor: a buffered read blocked in a daemon thread aborts the interpreter at exit
            while os.read(fd, 65536):
                pass
        except OSError:  # stdin unusable: nothing to watch
            return
        if _FINISHING:  # the agent is done and exiting: its own exit frees the lease
            return
        try:
            os.write(2, b"edgeprune agent: the controller is gone (stdin closed); stopping\n")
        except OSError:
            pass
        log_release("controller gone")
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=wait, name="agent-controller-watch", daemon=True).start()
