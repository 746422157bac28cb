"""A lab of devices behind SSH jump hosts (issue 14): real OpenSSH servers in a network namespace of their own.

``start_jump_lab(root, count)`` (or ``with jump_lab(root, count) as lab:``) builds, as root:

- a namespace ``eplab-N-<pid>`` behind a veth pair (support.lab.netns's naming, allocation lock, fallback route and
  cleanup of a crashed run's leftovers: it *is* a :class:`NetnsDevice`'s network);
- ``bastion``: sshd on the namespace's veth address 10.200.N.2:22, the only thing the host can reach;
- ``bastion2`` (optional): sshd on 127.0.0.1:P inside the namespace, for two-hop chains (bastion -> bastion2 -> pi);
- ``pi-1`` .. ``pi-<count>``: sshd on 127.0.0.1:<port> inside the namespace, unreachable from the host. Each port is
  also bound (never listened on) on the host's own loopback for the lab's life, so a connection the host makes to
  127.0.0.1:<port> directly is refused: it can only have reached a device through a bastion.

Every sshd has its own host key, logs at VERBOSE to ``<its root>/sshd.log`` (``logins()`` counts its "Accepted
publickey" lines), allows TCP forwarding and 100 sessions/startups; the devices are edgeprune devices like
sshlab's (the client key authorized, ``python`` the host's, which the namespace shares, a work dir each).

The client side (``lab.client``): one key pair and two known_hosts files, ``known_hosts`` (the bastion by its
address ``10.200.N.2``, bastion2 and the devices by their HostKeyAlias names ``bastion2``, ``pi-<i>``) and
``known_hosts_by_address`` (``[127.0.0.1]:<port>`` for bastion2 and the devices, as OpenSSH names them without an
alias). ``write_ssh_config`` describes everything for OpenSSH and edgeprune, one hop, two hops or ProxyCommand;
``write_fleet`` / ``write_field_fleet`` write fleet files through that config or with the profile's own fields
(``proxy_jump``). Traffic stays on loopback and on the namespace's /30 link. ``stop()`` removes everything.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

from support.lab.devices import LabDevice
from support.lab.netns import NetnsDevice, claim_network, cleanup_leftovers
from support.sshlab import SSHD, ClientKeys, require_sshd, toml_value

#: How a device is reached in ``write_ssh_config``: the lines its ``Host pi-<i>`` block gets ({config}: the file).
VIAS: Dict[str, str] = {
    "one-hop": "ProxyJump bastion",
    "two-hops": "ProxyJump bastion,bastion2",
    "proxy-command": "ProxyCommand ssh -F {config} -W %h:%p bastion",
}
ACCEPTED = b"Accepted publickey"


def fingerprint(public_key: Path) -> str:
    """``SHA256:<43 base64 characters>`` of an OpenSSH public key file, as ``ssh-keygen -l`` prints it."""
    blob = base64.b64decode(public_key.read_text().split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class _JumpSshd:
    """What every sshd of this lab adds to sshlab's: VERBOSE logs (logins counted), TCP forwarding, fingerprints."""

    root: Path
    client: ClientKeys
    host_public_key: List[str]

    def write_config(self) -> Path:
        config = super().write_config()  # type: ignore[misc]
        # sshd keeps a keyword's first value: replace sshlab's LogLevel rather than append another
        text = config.read_text().replace("LogLevel ERROR", "LogLevel VERBOSE")
        config.write_text(text + "AllowTcpForwarding yes\n")
        return config

    @property
    def log(self) -> Path:
        return self.root / "sshd.log"

    def logins(self) -> int:
        """Public-key logins this sshd accepted so far (its log, across restarts)."""
        return self.log.read_bytes().count(ACCEPTED) if self.log.exists() else 0

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.root / "ssh_host_ed25519_key.pub")

    def line_for(self, name: str) -> str:
        """A known_hosts line for this host key under ``name``."""
        kind, b64 = self.host_public_key
        return f"{name} {kind} {b64}\n"


class Bastion(_JumpSshd, NetnsDevice):
    """The jump host: sshd at 10.200.N.2:22 in the lab's namespace (``link_down``/``stop``/``start`` as netns's)."""

    def refuse_keys(self) -> None:
        """Empty its authorized_keys: the client's key is refused from the next login on."""
        (self.root / "authorized_keys").write_text("")

    def accept_keys(self) -> None:
        (self.root / "authorized_keys").write_text(Path(str(self.client.key) + ".pub").read_text())


@dataclass
class InnerSshd(_JumpSshd, LabDevice):
    """sshd on 127.0.0.1:<port> inside namespace ``netns``: reachable only from inside it (through a bastion)."""

    netns: str = ""

    def start(self) -> "InnerSshd":
        require_sshd()
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        seen = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:  # `ip netns exec` execs sshd: self.process is sshd (SshdDevice.stop)
            self.process = subprocess.Popen(["ip", "netns", "exec", self.netns, SSHD, "-D", "-e", "-f", str(config)],
                                            stdout=log, stderr=log, start_new_session=True)
        # the host cannot connect to it to see it answer: its own log says when it listens
        ready = f"Server listening on 127.0.0.1 port {self.port}.".encode()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd for {self.name} exited: {self.log.read_text()[-500:]}")
            if ready in self.log.read_bytes()[seen:]:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"sshd for {self.name} did not listen on 127.0.0.1:{self.port} in {self.netns}")


def reserve_loopback_port() -> socket.socket:
    """A port bound on the host's 127.0.0.1 and never listened on: connections to it are refused, and nothing else
    on the host can take it while the socket is open (no SO_REUSEADDR)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class JumpLab:
    root: Path
    client: ClientKeys
    bastion: Bastion
    python: str = sys.executable
    bastion2: Optional[InnerSshd] = None
    devices: List[InnerSshd] = field(default_factory=list)
    reserved: List[socket.socket] = field(default_factory=list)

    @property
    def known_hosts(self) -> Path:
        """Bastion by address, bastion2 and the devices by their HostKeyAlias (what ``write_ssh_config`` uses)."""
        return self.client.root / "known_hosts"

    @property
    def known_hosts_by_address(self) -> Path:
        """Bastion by address, bastion2 and the devices as ``[127.0.0.1]:<port>`` (no aliases)."""
        return self.client.root / "known_hosts_by_address"

    @property
    def jump(self) -> str:
        """The bastion in OpenSSH ProxyJump syntax, without any config: ``root@10.200.N.2:22``."""
        return f"root@{self.bastion.device_ip}:22"

    def device(self, name: str) -> InnerSshd:
        return next(d for d in self.devices if d.name == name)

    def sshds(self) -> List[_JumpSshd]:
        return [self.bastion, *([self.bastion2] if self.bastion2 else []), *self.devices]

    def logins(self) -> Dict[str, int]:
        """Logins accepted so far, per sshd name."""
        return {sshd.name: sshd.logins() for sshd in self.sshds()}  # type: ignore[attr-defined]

    def write_known_hosts(self, path: Path, by: str = "alias", without: Sequence[str] = ()) -> Path:
        """known_hosts for every sshd but those named in ``without``; ``by``: "alias" or "address"."""
        lines = []
        for sshd in self.sshds():
            name = sshd.name  # type: ignore[attr-defined]
            if name in without:
                continue
            if sshd is self.bastion or by == "address":
                lines.append(sshd.known_hosts_line())  # type: ignore[attr-defined]
            else:
                lines.append(sshd.line_for(name))
        path.write_text("".join(lines))
        return path

    def write_ssh_config(self, path: Path, via: str = "one-hop", known_hosts: Optional[Path] = None,
                         connect_timeout: Optional[int] = None) -> Path:
        """An ssh_config: ``Host bastion`` (10.200.N.2:22), ``Host bastion2`` (127.0.0.1:P, ProxyJump bastion,
        HostKeyAlias bastion2), ``Host pi-<i>`` (127.0.0.1:<port>, HostKeyAlias pi-<i>, reached as ``VIAS[via]``
        says). Each block names the user, key and ``known_hosts`` (default: the alias file), strictly checked, and
        ``ConnectTimeout`` when given (for OpenSSH: the ssh a jump starts gets no ``-o`` of the command line)."""
        known = known_hosts or self.known_hosts
        timeout = [f"ConnectTimeout {connect_timeout}"] if connect_timeout else []

        def block(alias: str, hostname: str, port: int, *extra: str) -> str:
            lines = [f"Host {alias}", f"HostName {hostname}", f"Port {port}", "User root",
                     f"IdentityFile {self.client.key}", "IdentitiesOnly yes", f"UserKnownHostsFile {known}",
                     "GlobalKnownHostsFile /dev/null", "StrictHostKeyChecking yes", "BatchMode yes", *timeout, *extra]
            return "\n    ".join(lines) + "\n\n"

        text = block("bastion", self.bastion.device_ip, 22)
        if self.bastion2 is not None:
            text += block("bastion2", "127.0.0.1", self.bastion2.port, "ProxyJump bastion", "HostKeyAlias bastion2")
        for device in self.devices:
            text += block(device.name, "127.0.0.1", device.port, VIAS[via].format(config=path),
                          f"HostKeyAlias {device.name}")
        path.write_text(text)
        return path

    def _fleet(self, path: Path, defaults: Dict[str, object], entries: List[Dict[str, object]]) -> Path:
        text = "[defaults]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in defaults.items())
        for entry in entries:
            text += "\n[[device]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in entry.items())
        path.write_text(text)
        return path

    def _chosen(self, devices: Optional[Sequence[str]]) -> List[InnerSshd]:
        return [self.device(n) for n in devices] if devices is not None else list(self.devices)

    def write_fleet(self, path: Path, ssh_config: Path, devices: Optional[Sequence[str]] = None,
                    **defaults: object) -> Path:
        """A fleet whose devices are ``host = "pi-<i>"`` aliases of ``ssh_config`` (everything else from there);
        each device gets its own work dir (devices share the filesystem, and the agent lock is per work dir)."""
        values = {"kind": "ssh", "ssh_config": str(ssh_config), "python": self.python, "use_agent": False,
                  "budget_s": 10, "min_rounds": 2, **defaults}
        entries = [{"name": d.name, "host": d.name, "workdir": str(d.workdir)} for d in self._chosen(devices)]
        return self._fleet(path, values, entries)

    def write_field_fleet(self, path: Path, devices: Optional[Sequence[str]] = None, **defaults: object) -> Path:
        """A fleet without ssh_config (it names a file that does not exist): each device is ``host = "127.0.0.1"``,
        its port, ``proxy_jump = "root@10.200.N.2:22"``, with ``known_hosts_by_address`` and the client key."""
        values = {"kind": "ssh", "ssh_config": str(self.root / "no-ssh-config"), "python": self.python,
                  "user": "root", "key_file": str(self.client.key), "known_hosts": str(self.known_hosts_by_address),
                  "use_agent": False, "budget_s": 10, "min_rounds": 2, **defaults}
        entries = [{"name": d.name, "host": "127.0.0.1", "port": d.port, "proxy_jump": self.jump,
                    "workdir": str(d.workdir)} for d in self._chosen(devices)]
        return self._fleet(path, values, entries)

    def openssh(self, config: Path, host: str, *options: str, command: str = "true",
                timeout: float = 60) -> subprocess.CompletedProcess:
        """``ssh -F config [options] host command`` with the real OpenSSH client."""
        return subprocess.run(["ssh", "-F", str(config), "-o", "ConnectTimeout=5", *options, host, command],
                              capture_output=True, text=True, timeout=timeout)

    def heal(self) -> None:
        """Undo what a fault test did: the bastion's link up, its sshd running, the client key accepted."""
        self.bastion.link_up()
        self.bastion.accept_keys()
        if self.bastion.process is None:
            self.bastion.start()

    def stop(self) -> None:
        """Stop every sshd, remove the namespace, free the reserved ports; safe twice, never stops half-way."""
        errors = []
        for sshd in [*reversed(self.devices), *([self.bastion2] if self.bastion2 else [])]:
            try:
                sshd.stop()
            except Exception as exc:  # keep cleaning up the others
                errors.append(f"{sshd.name}: {exc}")
        try:
            self.bastion.teardown()  # its sshd, then the namespace (killing any sshd left in it), veth and route
        except Exception as exc:
            errors.append(f"bastion: {exc}")
        for sock in self.reserved:
            sock.close()
        self.reserved.clear()
        if errors:
            raise RuntimeError("jump lab cleanup: " + "; ".join(errors))


def _inner(lab: JumpLab, name: str) -> InnerSshd:
    reserved = reserve_loopback_port()
    lab.reserved.append(reserved)
    sshd = InnerSshd(name, lab.root / name, lab.client, python=lab.python, port=reserved.getsockname()[1],
                     kind="jump", netns=lab.bastion.netns)
    return sshd.start()


def start_jump_lab(root: Path, count: int = 2, second_bastion: bool = True, python: str = sys.executable) -> JumpLab:
    """The namespace, the bastion(s) and ``count`` devices ``pi-1``..``pi-<count>``, and the client's files (see the
    module docstring). Removes a crashed run's leftovers first; on any failure removes what it started."""
    root = Path(root)
    cleanup_leftovers()
    client = ClientKeys(root / "client")
    bastion = Bastion("bastion", root / "bastion", client, python=python, kind="bastion")
    lab = JumpLab(root, client, bastion, python=python)
    try:
        claim_network(bastion)  # the lowest free index, under netns's allocation lock
        bastion.start()
        if second_bastion:
            lab.bastion2 = _inner(lab, "bastion2")
        for i in range(1, count + 1):
            lab.devices.append(_inner(lab, f"pi-{i}"))
        lab.write_known_hosts(lab.known_hosts, by="alias")
        lab.write_known_hosts(lab.known_hosts_by_address, by="address")
    except BaseException:
        with contextlib.suppress(Exception):
            lab.stop()
        raise
    return lab


@contextlib.contextmanager
def jump_lab(root: Path, count: int = 2, second_bastion: bool = True,
             python: str = sys.executable) -> Iterator[JumpLab]:
    lab = start_jump_lab(root, count, second_bastion, python)
    try:
        yield lab
    finally:
        lab.stop()


__all__ = ["ACCEPTED", "VIAS", "Bastion", "InnerSshd", "JumpLab", "fingerprint", "jump_lab", "reserve_loopback_port",
           "start_jump_lab"]
