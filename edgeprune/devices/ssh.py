"""SSH and SFTP to one device, with OpenSSH's safety defaults.

Unknown host keys are rejected unless the user opted in for this run (like ``StrictHostKeyChecking=accept-new``,
the accepted key is appended to the known_hosts file); a changed host key is always refused. There are no
passwords: keys, the ssh-agent, or the keys ``~/.ssh/config`` names. Every remote command is an argument list
joined with ``shlex.quote``, and every step has a timeout. paramiko is imported here only.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shlex
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

from ..errors import DeviceError, HostKeyError, PythonMissingError

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


#: Stops a process group: SIGTERM, up to ``grace`` seconds, SIGKILL; prints "gone" or "alive".
_STOP_GROUP = (
    "import os, signal, sys, time\n"
    "group, grace = int(sys.argv[1]), float(sys.argv[2])\n"
    "def alive():\n"
    "    try:\n"
    "        os.killpg(group, 0)\n"
    "        return True\n"
    "    except ProcessLookupError:\n"
    "        return False\n"
    "    except PermissionError:\n"
    "        return True\n"
    "for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):\n"
    "    if not alive():\n"
    "        break\n"
    "    try:\n"
    "        os.killpg(group, sig)\n"
    "    except ProcessLookupError:\n"
    "        break\n"
    "    end = time.time() + wait\n"
    "    while alive() and time.time() < end:\n"
    "        time.sleep(0.05)\n"
    "print('alive' if alive() else 'gone')\n"
)


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


def missing_python_message(python: str, result: "CommandResult") -> str:
    """Why a command that starts with the device's Python ended in exit 126/127, in one line."""
    reason = "not found" if result.exit_status == 127 else "not executable"
    tail = result.stderr.decode("utf-8", "replace").strip().splitlines()
    detail = f": {tail[-1][:200]}" if tail else ""
    return (f"the device's Python interpreter {python!r} is {reason} (exit {result.exit_status}{detail}); set "
            f"`python` in the profile to one that exists")


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
        self._home: Optional[str] = None

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
        self._home = None

    def abort(self) -> None:
        """Break the connection from another thread: a blocked read or write in paramiko returns with an error.

        paramiko's writes have no timeout of their own (its packetizer retries a full socket forever), so a
        blackholed or frozen device would hang an upload for good; shutting the socket down is what ends it.
        """
        client = self._client
        transport = client.get_transport() if client is not None else None
        if transport is None:
            return
        sock = getattr(transport, "sock", None)
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        transport.close()

    @contextlib.contextmanager
    def guard(self, seconds: float, what: str, stop: Any = None) -> Iterator[None]:
        """Run the block under a deadline that fires: past ``seconds`` (or once ``stop`` is set) the connection
        is aborted and the block ends with a DeviceError that says which deadline it was."""
        watchdog = _Watchdog(self, seconds, stop)
        try:
            yield
        except BaseException:
            if not watchdog.fired:
                raise
        finally:
            watchdog.cancel()
        if watchdog.fired == "stop":
            raise DeviceError(f"{what} on {self.target.host}: interrupted")
        if watchdog.fired:
            raise DeviceError(f"{what} on {self.target.host} timed out after {seconds:g} s "
                              f"(the device stopped answering)")

    # -- commands ---------------------------------------------------------------------------------------------
    def run(self, argv: Sequence[str], timeout: Optional[float] = None, cwd: Optional[str] = None,
            stop: Any = None, report_pid: bool = False) -> "CommandResult":
        """Run one command; output is capped at MAX_OUTPUT_BYTES, the whole call at ``timeout`` seconds.

        ``stop`` (Ctrl-C, a device deadline) ends the wait early: the result says ``interrupted``. With
        ``report_pid`` the remote shell first writes its pid (the command's process group) to stderr, so the
        caller can stop the command on the device (:meth:`stop_group`).
        """
        import paramiko

        command = quote_command(argv)
        if cwd:
            command = f"cd {shlex.quote(cwd)} && exec {command}"
        if report_pid:
            command = f"echo {PID_MARK.decode()}$$ >&2; {command}"
        limit = timeout or self.target.command_timeout
        # The watchdog is the backstop for paramiko calls that wait without a timeout (exec_command waits for the
        # server's reply forever); _collect itself ends at ``limit``.
        with self.guard(limit + self.target.connect_timeout + 5, "command"):
            client = self.open()
            try:
                channel = client.get_transport().open_session(timeout=self.target.connect_timeout)
                channel.settimeout(1.0)
                channel.exec_command(command)
                return _collect(channel, limit, stop)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise DeviceError(f"command failed on {self.target.host}: {exc or type(exc).__name__}") from exc

    def stop_group(self, pid: int, python: str, grace: float = 2.0) -> bool:
        """Stop process group ``pid`` on the device (SIGTERM, then SIGKILL) and check that it is gone.

        Done with the device's Python rather than the shell: dash's ``kill`` cannot signal a process group.
        Returns True when nothing of it is left. Never raises: it runs after something already went wrong.
        """
        try:
            result = self.run([python, "-c", _STOP_GROUP, str(int(pid)), str(grace)], timeout=grace + 10)
        except DeviceError:
            return False
        return result.stdout.strip().endswith(b"gone")

    def home(self) -> str:
        """The login's home folder on the device (where SFTP and the login shell start)."""
        if self._home is None:
            import paramiko

            with self.guard(self.target.transfer_timeout, "finding the home folder"):
                try:
                    self._home = self.sftp().normalize(".")
                except (OSError, paramiko.SSHException) as exc:
                    raise DeviceError(f"cannot find the home folder on {self.target.host}: {exc}") from exc
        return self._home

    # -- files ------------------------------------------------------------------------------------------------
    def sftp(self) -> Any:
        if self._sftp is None:
            import paramiko

            try:
                with self.guard(self.target.transfer_timeout, "opening SFTP"):
                    self._sftp = self.open().open_sftp()
            except (paramiko.SSHException, paramiko.SFTPError, OSError, EOFError) as exc:
                reason = str(exc) or type(exc).__name__
                if reason in ("Garbage packet received", "Incompatible sftp protocol"):
                    # sftp-server is started through the login shell: what ~/.bashrc prints lands in the protocol
                    reason = ("the login shell printed text before the SFTP server started (a banner in ~/.bashrc "
                              "or similar): print it only in interactive shells, e.g. inside `case $- in *i*)`")
                raise DeviceError(f"cannot open SFTP on {self.target.host}: {reason}") from exc
            self._sftp.get_channel().settimeout(self.target.transfer_timeout)
        return self._sftp

    def remote_sha256(self, python: str, paths: Iterable[str], stop: Any = None) -> Dict[str, Optional[str]]:
        paths = list(paths)
        if not paths:
            return {}
        result = self.run([python, "-c", _REMOTE_SHA256, *paths], timeout=self.target.transfer_timeout, stop=stop)
        if result.interrupted:
            raise DeviceError(f"hashing files on {self.target.host}: interrupted")
        if result.timed_out or result.connection_lost:
            raise DeviceError(f"hashing files on {self.target.host} did not finish "
                              f"({'timed out' if result.timed_out else 'connection lost'})")
        if result.exit_status in (126, 127) and not result.stdout.strip():
            raise PythonMissingError(missing_python_message(python, result))
        if result.exit_status != 0:
            raise DeviceError(f"hashing files on {self.target.host} failed: {result.stderr_tail()}")
        hashes: Dict[str, Optional[str]] = {}
        for line in result.stdout.decode("utf-8", "replace").splitlines():
            digest, _, path = line.partition(" ")
            hashes[path] = None if digest == "-" else digest
        return hashes


class _Watchdog:
    """A thread that aborts a connection when a deadline passes or a stop event is set."""

    def __init__(self, connection: Connection, seconds: float, stop: Any) -> None:
        self.connection, self.stop = connection, stop
        self.deadline = time.monotonic() + seconds
        self.fired: Optional[str] = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="edgeprune-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.1):
            if self.stop is not None and self.stop.is_set():
                self.fired = "stop"
            elif time.monotonic() > self.deadline:
                self.fired = "deadline"
            else:
                continue
            self.connection.abort()
            return

    def cancel(self) -> None:
        self._done.set()
        self._thread.join()


def route_library_logs(path: Optional[Path] = None) -> Path:
    """Send paramiko's log (its tracebacks for dead hosts included) to a file instead of the terminal.

    Every failure already reaches the user as one line with its reason; paramiko's own multi-line reports
    ("Exception (client): Error reading SSH protocol banner") would otherwise be printed by logging's
    last-resort handler.
    """
    path = path or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeprune" / "ssh.log"
    logger = logging.getLogger("paramiko")
    logger.propagate = False
    if not any(getattr(h, "_edgeprune", False) for h in logger.handlers):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler: logging.Handler = logging.FileHandler(path, delay=True)
        except OSError:
            handler = logging.NullHandler()
        handler._edgeprune = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return path


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


def _collect(channel: Any, limit: float, stop: Any) -> CommandResult:
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
