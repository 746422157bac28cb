"""SSH and SFTP to one device, with OpenSSH's safety defaults.

Unknown host keys are rejected unless the user opted in for this run (like ``StrictHostKeyChecking=accept-new``,
the accepted key is appended to the known_hosts file); a changed host key is always refused. There are no
passwords: keys, the ssh-agent, or the keys ``~/.ssh/config`` names. Every remote command is an argument list
joined with ``shlex.quote``, and every step has a timeout. paramiko is imported here and in sshroute only
(the route to the device: jump hosts, ProxyCommand, the host key checks).
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
import socket
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence

from ..errors import DeviceError, PythonMissingError
from .command import PID_MARK, CommandResult, collect, missing_python_message, quote_command
from .sshconfig import SSHTarget
from .sshroute import HostKeyPolicy, fingerprint, open_client

__all__ = ["Connection", "HostKeyPolicy", "fingerprint", "route_library_logs"]


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










class Connection:
    """A lazily opened SSH connection; use as a context manager so it is always closed."""

    def __init__(self, target: SSHTarget, host_keys: HostKeyPolicy = HostKeyPolicy.REJECT) -> None:
        self.target = target
        self.host_keys = host_keys
        self._client: Any = None
        self._release: Any = None
        self._sftp: Any = None
        self._home: Optional[str] = None

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> Any:
        """The authenticated client, along the target's route (sshroute: direct, jump hosts, ProxyCommand)."""
        if self._client is not None:
            return self._client
        self._client, self._release = open_client(self.target, self.host_keys)
        return self._client

    def host_key(self) -> Optional[str]:
        """The connected host's key as OpenSSH shows it (``ssh-ed25519 SHA256:<43 characters>``), whole."""
        transport = self._client.get_transport() if self._client is not None else None
        key = transport.get_remote_server_key() if transport is not None else None
        return f"{key.get_name()} SHA256:{fingerprint(key)}" if key is not None else None

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
            release, self._release = self._release, None
            if release is not None:
                release()  # the shared jump-host login, when this was its last user
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


