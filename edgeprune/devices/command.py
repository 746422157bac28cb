"""One remote or local command's outcome, and how its output is collected: capped, with the pid it reported.

Shared by the SSH layer (which fills it) and the agent-result reader (which judges it); no paramiko here.
"""
from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

#: A device's output beyond this is cut (a hostile or broken agent must not exhaust the host's memory).
MAX_OUTPUT_BYTES = 8 * 1024 * 1024


def quote_command(argv: Sequence[str]) -> str:
    """The only way a remote command line is built."""
    return " ".join(shlex.quote(str(arg)) for arg in argv)


def missing_python_message(python: str, result: "CommandResult") -> str:
    """Why a command that starts with the device's Python ended in exit 126/127, in one line."""
    reason = "not found" if result.exit_status == 127 else "not executable"
    tail = result.stderr.decode("utf-8", "replace").strip().splitlines()
    detail = f": {tail[-1][:200]}" if tail else ""
    return (f"the device's Python interpreter {python!r} is {reason} (exit {result.exit_status}{detail}); set "
            f"`python` in the profile to one that exists")


@dataclass
class CommandResult:
    """How one command ended. ``stderr`` keeps the first and the last 32 KiB: a chatty device cannot make the host
    drop a valid result, and the start (a pid line, the first error) survives."""

    exit_status: int
    stdout: bytes
    stderr: bytes
    truncated: bool = False
    timed_out: bool = False
    interrupted: bool = False
    connection_lost: bool = False
    limit: float = 0.0
    pid: Optional[int] = None

    def stderr_tail(self, lines: int = 3) -> str:
        text = self.stderr.decode("utf-8", "replace").strip().splitlines()
        return " | ".join(text[-lines:]) or f"exit status {self.exit_status}"


#: The remote shell writes this (and its pid) to stderr before it execs the command: the pid is the process group
#: to stop on a timeout or Ctrl-C (sshd makes each session's shell a session and group leader).
PID_MARK = b"edgeprune-pid:"
_PID_RE = re.compile(rb"edgeprune-pid:(\d{1,10})\n")
STDERR_KEEP = 32 * 1024


class _Stream:
    """Collects one stream: all of it up to ``cap`` (stdout), or its head and tail (stderr)."""

    def __init__(self, cap: int, keep_tail: bool) -> None:
        self.cap, self.keep_tail = cap, keep_tail
        self.head = bytearray()
        self.tail = bytearray()
        self.overflow = False

    def add(self, chunk: bytes) -> None:
        room = self.cap - len(self.head)
        self.head += chunk[:max(0, room)]
        rest = chunk[max(0, room):]
        if rest:
            self.overflow = True
            if self.keep_tail:
                self.tail = (self.tail + rest)[-self.cap:]

    def value(self) -> bytes:
        if self.tail:
            return bytes(self.head) + b"\n[...]\n" + bytes(self.tail)
        return bytes(self.head)


def collect(channel: Any, limit: float, stop: Any) -> CommandResult:
    deadline = time.monotonic() + limit
    out, err = _Stream(MAX_OUTPUT_BYTES, keep_tail=False), _Stream(STDERR_KEEP, keep_tail=True)
    ended = dict(timed_out=False, interrupted=False)
    while True:
        progressed = False
        for ready, recv, sink in ((channel.recv_ready, channel.recv, out),
                                  (channel.recv_stderr_ready, channel.recv_stderr, err)):
            while ready():
                chunk = recv(65536)
                if not chunk:
                    break
                progressed = True
                sink.add(chunk)
        if out.overflow:
            break
        if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            break
        if channel.closed and not channel.recv_ready() and not channel.recv_stderr_ready():
            break  # closed without an exit status: the connection went away
        if stop is not None and stop.is_set():
            ended["interrupted"] = True
            break
        if time.monotonic() > deadline:
            ended["timed_out"] = True
            break
        if not progressed:
            time.sleep(0.02)
    stderr = err.value()
    match = _PID_RE.search(bytes(err.head[:4096]))
    pid = int(match.group(1)) if match else None
    if match:
        stderr = stderr.replace(match.group(0), b"", 1)
    status, lost = -1, False
    if not out.overflow and not any(ended.values()):
        status = channel.recv_exit_status()  # ready: the process exited, or the channel closed (-1)
        transport = channel.get_transport()
        lost = status == -1 and (transport is None or not transport.is_active())
    channel.close()
    return CommandResult(status, out.value(), stderr, out.overflow, ended["timed_out"], ended["interrupted"],
                         lost, limit, pid)
