"""Real OpenSSH servers on loopback ports, with generated host and client keys, for the SSH and fleet tests.

Each device is an ``sshd -D`` process with its own config, host key, port and remote work dir. All traffic stays
on 127.0.0.1. The test command installs openssh-server when it is missing (scripts/test.sh).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

SSHD = "/usr/sbin/sshd"


def require_sshd() -> None:
    if not Path(SSHD).exists():
        raise RuntimeError(f"{SSHD} is missing: run scripts/test.sh, which installs openssh-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return path


@dataclass
class ClientKeys:
    """The client's key pair and a known_hosts file the tests fill."""

    root: Path
    key: Path = field(init=False)
    known_hosts: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.key = self.root / "id_ed25519"
        if not self.key.exists():
            keygen(self.key)
        self.known_hosts = self.root / "known_hosts"
        self.known_hosts.touch()


@dataclass
class SshdDevice:
    name: str
    root: Path
    client: ClientKeys
    python: str
    port: int = 0
    process: Optional[subprocess.Popen] = None
    extra_config: str = ""

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.host_key = self.root / "ssh_host_ed25519_key"
        if not self.host_key.exists():
            keygen(self.host_key)
        self.workdir = self.root / "work"
        self.port = self.port or free_port()

    @property
    def host_public_key(self) -> str:
        return (self.root / "ssh_host_ed25519_key.pub").read_text().split()[:2]  # type: ignore[return-value]

    def known_hosts_line(self) -> str:
        kind, b64 = self.host_public_key
        return f"[127.0.0.1]:{self.port} {kind} {b64}\n"

    def trust(self) -> None:
        """Write this device's host key into the client's known_hosts (what a user does once per device)."""
        with open(self.client.known_hosts, "a") as handle:
            handle.write(self.known_hosts_line())

    def write_config(self) -> Path:
        authorized = self.root / "authorized_keys"
        authorized.write_text(Path(str(self.client.key) + ".pub").read_text())
        config = self.root / "sshd_config"
        config.write_text(textwrap.dedent(f"""\
            Port {self.port}
            ListenAddress 127.0.0.1
            HostKey {self.host_key}
            PidFile {self.root / 'sshd.pid'}
            AuthorizedKeysFile {authorized}
            PermitRootLogin prohibit-password
            PubkeyAuthentication yes
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            StrictModes no
            MaxStartups 100
            MaxSessions 100
            LogLevel ERROR
            Subsystem sftp internal-sftp
            """) + self.extra_config)
        return config

    def start(self) -> "SshdDevice":
        require_sshd()
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        log = open(self.root / "sshd.log", "ab")
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log,
                                        start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd for {self.name} exited: {(self.root / 'sshd.log').read_text()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd for {self.name} did not listen on port {self.port}")

    def stop(self) -> None:
        """Kill sshd and every connection it serves, like a device losing power.

        sshd's per-connection children call setsid(), so killing the listener's process group is not enough:
        walk /proc for its sshd descendants and kill them too. The commands they run are left to die of the
        hang-up, as on a real network loss: SIGKILLing a login shell in the middle of its rc files would leave
        stale locks behind (pyenv's rehash lock stalls every later login by 60 s).
        """
        if self.process is None:
            return
        sshd_pids = [pid for pid in _descendants(self.process.pid) if _comm(pid) == "sshd"]
        for pid in [*sshd_pids, self.process.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)
        self.process = None

    def profile_toml(self, **overrides: object) -> str:
        values = {
            "name": self.name, "kind": "ssh", "host": "127.0.0.1", "port": self.port, "user": "root",
            "key_file": str(self.client.key), "use_agent": False, "ssh_config": str(self.root / "no-ssh-config"),
            "known_hosts": str(self.client.known_hosts), "workdir": str(self.workdir), "python": self.python,
            "threads": 1, "warmup": 2, "runs": 10, "connect_timeout": 5, "command_timeout": 120,
            "transfer_timeout": 60,
        }
        values.update(overrides)
        lines = []
        for key, value in values.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, (int, float)):
                lines.append(f"{key} = {value}")
            else:
                lines.append(f"{key} = {_toml_string(str(value))}")
        return "\n".join(lines) + "\n"


def _descendants(root: int) -> List[int]:
    children: dict = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_fleet(path: Path, devices: List[SshdDevice], **overrides: object) -> Path:
    blocks = []
    for device in devices:
        blocks.append("[[device]]\n" + device.profile_toml(**overrides))
    path.write_text("\n".join(blocks))
    return path


def stop_all(devices: List[SshdDevice]) -> None:
    for device in devices:
        device.stop()
