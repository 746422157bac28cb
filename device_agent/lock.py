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
from typing import Any, Dict, Optional

from .protocol import BUSY, AgentError

#: The lock's file descriptor, kept open (and so held) until the process exits.
_HELD: Optional[int] = None
MAX_RECORD = 4096


class Busy(AgentError):
    """The lock is held by another agent; ``holder`` is what that agent wrote (untrusted, as read)."""

    def __init__(self, path: str, holder: Optional[Dict[str, Any]]) -> None:
        who = holder or {}
        super().__init__(
            BUSY, "another agent is measuring on this device (pid %s, controller %s, since %s)"
            % (who.get("pid"), who.get("controller"), who.get("started")),
            hint="wait for it, or stop it if its controller is gone")
        self.path = path
        self.holder = holder


def _read(fd: int) -> Optional[Dict[str, Any]]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        record = json.loads(os.read(fd, MAX_RECORD).decode("utf-8", "replace") or "null")
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def hold(path: str, controller: Optional[str]) -> Dict[str, Any]:
    """Take the lock at ``path`` for the rest of this process's life; raise Busy when another agent has it."""
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
    record = {"pid": os.getpid(), "pgid": os.getpgrp(), "controller": controller,
              "started": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
              .isoformat().replace("+00:00", "Z")}
    data = json.dumps(record).encode("utf-8")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    _HELD = fd
    return record
