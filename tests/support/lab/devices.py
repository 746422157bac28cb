"""A lab device: an SshdDevice with a lab kind and the profile fields and tags it gets in the lab's fleet file."""
from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Tuple

from support.sshlab import SshdDevice, _toml_string


@dataclass
class LabDevice(SshdDevice):
    """An SshdDevice with a lab kind, profile fields for the fleet file and tags."""

    kind: str = "loopback"
    profile: Dict[str, object] = field(default_factory=dict)

    @property
    def fleet_address(self) -> Tuple[str, int]:
        return "127.0.0.1", self.port

    def known_hosts_line(self) -> str:
        host, port = self.fleet_address
        kind, b64 = self.host_public_key
        return f"{host if port == 22 else f'[{host}]:{port}'} {kind} {b64}\n"

    def profile_toml(self, **overrides: object) -> str:
        host, port = self.fleet_address
        values = {"host": host, "port": port, **self.profile, **overrides}
        tags = values.pop("tags", [self.kind])
        return (super().profile_toml(**values)
                + "tags = [" + ", ".join(_toml_string(str(t)) for t in tags) + "]\n")  # type: ignore[union-attr]

    def teardown(self) -> None:
        self.stop()


def wait_for_ssh(host: str, port: int, process: subprocess.Popen, log: Path, name: str,
                 timeout: float = 10) -> None:
    """Until ``host:port`` sends an SSH banner; raises if sshd exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd for {name} exited: {log.read_text()[-500:]}")
        try:
            with socket.create_connection((host, port), timeout=0.5) as sock:
                sock.settimeout(2)
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd for {name} did not answer on {host}:{port}")
