"""What edgeprune puts on a device: the agent's own files (one folder per version of them) and content-addressed
input files, and the agent's command line."""
from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ..resources import agent_dir

AGENT_DIR = agent_dir()
#: Seconds the agent may outlive the host's deadline for it before it stops itself (when the host lost the link).
AGENT_DEADLINE_GRACE = 30.0


@dataclass
class FileSpec:
    """A local file to put on the device, with the sha256 it must have there."""

    local: Path
    sha256: str
    suffix: str = ""

    @property
    def blob_name(self) -> str:
        return f"{self.sha256}{self.suffix}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def agent_files() -> List[Path]:
    return sorted(p for p in AGENT_DIR.glob("*.py"))


def agent_bundle_hash() -> str:
    """One hash over the agent's sources: the remote folder name, so a changed agent is a new folder."""
    digest = hashlib.sha256()
    for path in agent_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def controller() -> str:
    """Who starts agents: ``host:pid`` of this edgeprune process, written into the device's agent lock."""
    return f"{socket.gethostname()}:{os.getpid()}"


def plan_argv(python: str, plan_file: str, token: str, limit: float, lock: Optional[str] = None,
              run_id: Optional[int] = None) -> List[str]:
    """The agent's ``plan`` command line; its own deadline a little after the host's (``limit``). With ``lock``,
    the agent holds the device's lease (``--run-id`` is in its record) and stops when its stdin closes
    (``--watch-stdin``): the caller keeps stdin open for the agent's life, so a dead controller frees the device."""
    argv = [python, "-m", "device_agent", "plan", plan_file, "--frame", token,
            "--deadline", str(limit + AGENT_DEADLINE_GRACE)]
    if lock:
        argv += ["--lock", lock, "--controller", controller(), "--watch-stdin"]
        if run_id is not None:
            argv += ["--run-id", str(int(run_id))]
    return argv
