"""SSH and SFTP to one device, with OpenSSH's safety defaults.

Unknown host keys are rejected unless the user opted in for this run (like ``StrictHostKeyChecking=accept-new``,
the accepted key is appended to the known_hosts file); a changed host key is always refused. There are no
passwords: keys, the ssh-agent, or the keys ``~/.ssh/config`` names. Every remote command is an argument list
joined with ``shlex.quote``, and every step has a timeout. paramiko is imported here only.
"""
from __future__ import annotations

import contextlib
import enum
import hashlib
import logging
import os
import shlex
import socket
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence

from ..errors import DeviceError, HostKeyError, PythonMissingError
from .command import PID_MARK, CommandResult, collect, missing_python_message, quote_command
from .sshconfig import SSHTarget


class HostKeyPolicy(enum.Enum):
    """What to do with a host key that is not in known_hosts (a changed key is refused under every policy).

    One value chosen once, by the CLI's ``--accept-new-host-keys``, and handed down to the connection.
    """

    REJECT = "reject"
    ACCEPT_NEW = "accept-new"  # OpenSSH's StrictHostKeyChecking=accept-new

    @classmethod
    def from_flag(cls, accept_new: bool) -> "HostKeyPolicy":
        return cls.ACCEPT_NEW if accept_new else cls.REJECT

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

    def __init__(self, target: SSHTarget, host_keys: HostKeyPolicy = HostKeyPolicy.REJECT) -> None:
        self.target = target
        self.host_keys = host_keys
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
        accept = self.host_keys is HostKeyPolicy.ACCEPT_NEW
        policy = _AcceptNewPolicy(known_hosts) if accept else _RejectPolicy()
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
            raise DeviceError(f"{what} on {self.target.host} timed out after {seconds:g} s (the device stopped "
                              f"answering, or the link is too slow for this limit)")

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
                return collect(channel, limit, stop)
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


