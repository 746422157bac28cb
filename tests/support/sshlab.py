"""Real OpenSSH servers on loopback ports, with generated host and client keys, for the SSH and fleet tests.

Each device is an ``sshd -D`` process with its own config, host key, port and remote work dir. All traffic stays
on 127.0.0.1. The test command installs openssh-server when it is missing (scripts/test.sh).
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from support.paths import PROFILES_DIR

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SSHD = "/usr/sbin/sshd"
FLEET_EXAMPLE = PROFILES_DIR / "fleet.example.toml"
#: What docs/devices.md tells a user to change in a copy of a shipped profile; a test that needs to change more
#: is no longer testing what users run (issue 10), so copy_profile refuses anything else.
USER_CHANGES = ("host", "port", "user", "key_file", "known_hosts")
#: The rounds' stopping rule (issue 12), which a test may shorten (``length``): a shipped profile measures until
#: every cell's p50 settles or ``budget_s`` (300 s by default) is spent, and on a loaded 2-core test machine cells
#: rarely settle. How long a bench measures is tested elsewhere (tests/agent/test_agent_plan.py); a test of the way
#: to the device (connection, workdir, python) keeps every other line as shipped.
LENGTH_CHANGES = ("budget_s", "min_rounds")


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
    """The client's key pair and a known_hosts file the tests fill.

    ``key_name`` lets a test put the key where a shipped file expects it (the fleet example names
    ``~/.ssh/edgeprune_ed25519``).
    """

    root: Path
    key_name: str = "id_ed25519"
    key: Path = field(init=False)
    known_hosts: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.key = self.root / self.key_name
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
    #: internal-sftp runs inside sshd; "/usr/lib/openssh/sftp-server" is started through the login shell, as on a Pi
    sftp_subsystem: str = "internal-sftp"

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
            Subsystem sftp {self.sftp_subsystem}
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


# -- copies of the shipped profiles, changed only where a user changes them --------------------------------------

_ASSIGNMENT = re.compile(r"^(?P<head>\s*(?P<key>[A-Za-z0-9_-]+)\s*=\s*)(?P<rest>.*)$")


def toml_value(value: object) -> str:
    """One TOML value (the few types profiles use)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return _toml_string(str(value))


def _value_end(rest: str) -> int:
    """Where the value at the start of ``rest`` ends, so what follows it (spaces, a comment) is kept verbatim."""
    if rest[:1] in ('"', "'"):
        quote, index = rest[0], 1
        while index < len(rest):
            if quote == '"' and rest[index] == "\\":
                index += 2
                continue
            if rest[index] == quote:
                return index + 1
            index += 1
        return len(rest)
    cut = rest.find("#")
    return len((rest if cut < 0 else rest[:cut]).rstrip())


def _edit_lines(lines: Sequence[str], changes: Dict[str, object], insert_after: Optional[str] = None) -> List[str]:
    """Set each key on the line that assigns it; keys assigned nowhere (absent, or only in a comment) are added
    after the ``insert_after`` key's line, else after the last non-blank line. Every other line is kept as is."""
    out: List[str] = []
    done = set()
    for line in lines:
        match = _ASSIGNMENT.match(line)
        if match and match["key"] in changes:
            key, rest = match["key"], match["rest"]
            line = match["head"] + toml_value(changes[key]) + rest[_value_end(rest):]
            done.add(key)
        out.append(line)
    added = [f"{key} = {toml_value(value)}" for key, value in changes.items() if key not in done]
    if not added:
        return out
    anchors = [i for i, line in enumerate(out) if (m := _ASSIGNMENT.match(line)) and m["key"] == insert_after]
    if anchors:
        at = anchors[0] + 1
    else:
        at = max((i + 1 for i, line in enumerate(out) if line.strip()), default=0)
    return out[:at] + added + out[at:]


def _length(length: Optional[Dict[str, object]]) -> Dict[str, object]:
    unknown = sorted(set(length or {}) - set(LENGTH_CHANGES))
    if unknown:
        raise ValueError(f"a test may shorten only {', '.join(LENGTH_CHANGES)} (the rounds), not {unknown}")
    return dict(length or {})


def copy_profile(name: str, dest: Path, length: Optional[Dict[str, object]] = None, **changes: object) -> Path:
    """Copy ``profiles/<name>.toml`` to ``dest`` as the docs tell a user to: only host, port, user, key_file and
    known_hosts change; every other line, comments included, stays exactly as shipped. ``length`` shortens the
    rounds (only ``LENGTH_CHANGES``; see there)."""
    unknown = sorted(set(changes) - set(USER_CHANGES))
    if unknown:
        raise ValueError(f"a user changes only {', '.join(USER_CHANGES)} in a copied profile, not {unknown}")
    lines = (PROFILES_DIR / f"{name}.toml").read_text().splitlines()
    if any(line.lstrip().startswith("[") for line in lines):
        raise ValueError(f"profiles/{name}.toml has tables: appended keys would land in the last one")
    dest.write_text("\n".join(_edit_lines(lines, {**changes, **_length(length)})) + "\n")
    return dest


#: name -> (host, port or None to keep the file's/ssh_config's, user or None to keep the file's)
FleetHosts = Dict[str, Tuple[str, Optional[int], Optional[str]]]


def copy_fleet_example(dest: Path, hosts: FleetHosts, length: Optional[Dict[str, object]] = None) -> Path:
    """Copy profiles/fleet.example.toml with only each ``[[device]]``'s host line rewritten (and its port/user set
    in that device's table). Every device must be named, so no address of the example is left to connect to.
    ``length`` shortens the rounds of every device (only ``LENGTH_CHANGES``, set in ``[defaults]``)."""
    blocks: List[List[str]] = [[]]
    for line in FLEET_EXAMPLE.read_text().splitlines():
        if line.strip() == "[[device]]":
            blocks.append([])
        blocks[-1].append(line)
    out = list(blocks[0])
    shorter = _length(length)
    if shorter:
        if not any(line.strip() == "[defaults]" for line in out):
            raise ValueError("the fleet example has no [defaults] table to shorten the rounds in")
        out = _edit_lines(out, shorter, insert_after="profile")
    seen = []
    for block in blocks[1:]:
        names = [tomllib.loads(line)["name"] for line in block if (m := _ASSIGNMENT.match(line)) and m["key"] == "name"]
        if len(names) != 1 or names[0] not in hosts:
            raise KeyError(f"fleet example device {names} has no address in {sorted(hosts)}")
        host, port, user = hosts[names[0]]
        changes: Dict[str, object] = {"host": host}
        if port is not None:
            changes["port"] = port
        if user is not None:
            changes["user"] = user
        out += _edit_lines(block, changes, insert_after="host")
        seen.append(names[0])
    if sorted(seen) != sorted(hosts):
        raise KeyError(f"not in the fleet example: {sorted(set(hosts) - set(seen))}")
    dest.write_text("\n".join(out) + "\n")
    return dest
