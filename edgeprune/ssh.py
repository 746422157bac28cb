"""SSH and SFTP to one device, with OpenSSH's safety defaults.

Unknown host keys are rejected unless the user opted in for this run (like ``StrictHostKeyChecking=accept-new``,
the accepted key is appended to the known_hosts file); a changed host key is always refused. There are no
passwords: keys, the ssh-agent, or the keys ``~/.ssh/config`` names. Every remote command is an argument list
joined with ``shlex.quote``, and every step has a timeout. paramiko is imported here only.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from .errors import DeviceError

#: A device's output beyond this is cut (a hostile or broken agent must not exhaust the host's memory).
MAX_OUTPUT_BYTES = 8 * 1024 * 1024

#: Hashes remote files in one round trip; prints "<sha256> <path>" or "- <path>" per argument.
_REMOTE_SHA256 = (
    "import hashlib, sys\n"
    "for p in sys.argv[1:]:\n"
    "    try:\n"
    "        h = hashlib.sha256()\n"
    "        with open(p, 'rb') as f:\n"
    "            for b in iter(lambda: f.read(1 << 20), b''):\n"
    "                h.update(b)\n"
    "        print(h.hexdigest(), p)\n"
    "    except OSError:\n"
    "        print('-', p)\n"
)


class HostKeyError(DeviceError):
    """The device's host key is unknown (and not accepted) or has changed."""


@dataclass
class SSHTarget:
    """Where and how to connect; resolved from a profile (and ~/.ssh/config) before any network I/O."""

    host: str
    port: int = 22
    user: Optional[str] = None
    key_file: Optional[str] = None
    use_agent: bool = True
    known_hosts: str = "~/.ssh/known_hosts"
    connect_timeout: float = 10.0
    command_timeout: float = 600.0
    transfer_timeout: float = 300.0

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH names this host in known_hosts."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def quote_command(argv: Sequence[str]) -> str:
    """The only way a remote command line is built."""
    return " ".join(shlex.quote(str(arg)) for arg in argv)


def resolve_alias(host: str, ssh_config: Optional[str]) -> Dict[str, Any]:
    """What ``~/.ssh/config`` says about ``host`` (HostName, Port, User, IdentityFile), via paramiko."""
    import paramiko

    path = Path(os.path.expanduser(ssh_config or "~/.ssh/config"))
    if not path.is_file():
        return {}
    try:
        return dict(paramiko.SSHConfig.from_path(str(path)).lookup(host))
    except (OSError, ValueError) as exc:
        raise DeviceError(f"cannot read ssh config {path}: {exc}") from exc


class _AcceptNewPolicy:
    """accept-new: trust a host seen for the first time and remember it; never a changed key."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with open(self.known_hosts, "a") as handle:
            handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class _RejectPolicy:
    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        raise HostKeyError(
            f"host key for {hostname} is not in known_hosts ({key.get_name()} "
            f"SHA256:{_fingerprint(key)}); check it and rerun with --accept-new-host-keys to trust it"
        )


def _fingerprint(key: Any) -> str:
    import base64

    return base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


class Connection:
    """A lazily opened SSH connection; use as a context manager so it is always closed."""

    def __init__(self, target: SSHTarget, accept_new_host_keys: bool = False) -> None:
        self.target = target
        self.accept_new = accept_new_host_keys
        self._client: Any = None
        self._sftp: Any = None

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> Any:
        if self._client is not None:
            return self._client
        import paramiko

        t = self.target
        known_hosts = Path(os.path.expanduser(t.known_hosts))
        client = paramiko.SSHClient()
        if known_hosts.is_file():
            try:
                client.load_host_keys(str(known_hosts))
            except (OSError, paramiko.SSHException) as exc:
                raise DeviceError(f"cannot read known_hosts {known_hosts}: {exc}") from exc
        # RejectPolicy semantics, with a clearer message; accept-new only when the user opted in for this run.
        policy = _AcceptNewPolicy(known_hosts) if self.accept_new else _RejectPolicy()
        client.set_missing_host_key_policy(policy)  # type: ignore[arg-type]
        key_files = [os.path.expanduser(t.key_file)] if t.key_file else None
        started = time.monotonic()
        try:
            client.connect(
                t.host,
                port=t.port,
                username=t.user,
                key_filename=key_files,
                allow_agent=t.use_agent,
                look_for_keys=key_files is None,
                timeout=t.connect_timeout,
                banner_timeout=t.connect_timeout,
                auth_timeout=t.connect_timeout,
                channel_timeout=t.connect_timeout,
            )
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"HOST KEY CHANGED for {t.known_hosts_name}: known_hosts has SHA256:{_fingerprint(exc.expected_key)}, "
                f"the device offered SHA256:{_fingerprint(exc.key)}; refusing to connect (if the device was "
                f"reinstalled, remove its line from {known_hosts})"
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise DeviceError(f"authentication to {t.user or ''}@{t.host}:{t.port} failed: {exc}") from exc
        except (socket.timeout, TimeoutError) as exc:
            client.close()
            raise DeviceError(f"connection to {t.host}:{t.port} timed out after {t.connect_timeout:g} s") from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            if time.monotonic() - started >= 0.95 * t.connect_timeout:
                # paramiko words a stalled handshake variously ("No existing session", "Error reading SSH
                # protocol banner"); what the user needs to know is that the device did not answer in time.
                raise DeviceError(
                    f"connection to {t.host}:{t.port} timed out after {t.connect_timeout:g} s (no SSH handshake)"
                ) from exc
            reason = str(exc) or type(exc).__name__
            raise DeviceError(f"cannot connect to {t.host}:{t.port}: {reason}") from exc
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)
        self._client = client
        return client

    def close(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:  # closing a broken channel must not hide the real error
                pass
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- commands ---------------------------------------------------------------------------------------------
    def run(self, argv: Sequence[str], timeout: Optional[float] = None, cwd: Optional[str] = None,
            stop: Optional[threading.Event] = None) -> "CommandResult":
        """Run one command; output is capped at MAX_OUTPUT_BYTES, the whole call at ``timeout`` seconds.

        ``stop`` (Ctrl-C in the fleet) closes the channel early and the result counts as timed out.
        """
        import paramiko

        command = quote_command(argv)
        if cwd:
            command = f"cd {shlex.quote(cwd)} && {command}"
        limit = timeout or self.target.command_timeout
        client = self.open()
        try:
            channel = client.get_transport().open_session(timeout=self.target.connect_timeout)
            channel.settimeout(1.0)
            channel.exec_command(command)
            return _collect(channel, limit, stop)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise DeviceError(f"command failed on {self.target.host}: {exc or type(exc).__name__}") from exc

    # -- files ------------------------------------------------------------------------------------------------
    def sftp(self) -> Any:
        if self._sftp is None:
            import paramiko

            try:
                self._sftp = self.open().open_sftp()
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise DeviceError(f"cannot open SFTP on {self.target.host}: {exc}") from exc
            self._sftp.get_channel().settimeout(self.target.transfer_timeout)
        return self._sftp

    def remote_sha256(self, python: str, paths: Iterable[str]) -> Dict[str, Optional[str]]:
        paths = list(paths)
        if not paths:
            return {}
        result = self.run([python, "-c", _REMOTE_SHA256, *paths], timeout=self.target.transfer_timeout)
        if result.exit_status != 0:
            raise DeviceError(f"hashing files on {self.target.host} failed: {result.stderr_tail()}")
        hashes: Dict[str, Optional[str]] = {}
        for line in result.stdout.decode("utf-8", "replace").splitlines():
            digest, _, path = line.partition(" ")
            hashes[path] = None if digest == "-" else digest
        return hashes


@dataclass
class CommandResult:
    exit_status: int
    stdout: bytes
    stderr: bytes
    truncated: bool = False
    timed_out: bool = False

    def stderr_tail(self, lines: int = 3) -> str:
        text = self.stderr.decode("utf-8", "replace").strip().splitlines()
        return " | ".join(text[-lines:]) or f"exit status {self.exit_status}"


def _collect(channel: Any, limit: float, stop: Optional[threading.Event]) -> CommandResult:
    deadline = time.monotonic() + limit
    out: List[bytes] = []
    err: List[bytes] = []
    sizes = [0, 0]
    truncated = False
    while True:
        progressed = False
        for index, (ready, recv, sink) in enumerate(
            ((channel.recv_ready, channel.recv, out), (channel.recv_stderr_ready, channel.recv_stderr, err))
        ):
            while ready():
                chunk = recv(65536)
                if not chunk:
                    break
                progressed = True
                if sizes[index] + len(chunk) > MAX_OUTPUT_BYTES:
                    truncated = True
                    chunk = chunk[: max(0, MAX_OUTPUT_BYTES - sizes[index])]
                sizes[index] += len(chunk)
                if chunk:
                    sink.append(chunk)
        if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            break
        if time.monotonic() > deadline or (stop is not None and stop.is_set()):
            channel.close()
            return CommandResult(-1, b"".join(out), b"".join(err), truncated, timed_out=True)
        if truncated:
            channel.close()
            return CommandResult(-1, b"".join(out), b"".join(err), truncated=True)
        if not progressed:
            time.sleep(0.02)
    return CommandResult(channel.recv_exit_status(), b"".join(out), b"".join(err), truncated)
