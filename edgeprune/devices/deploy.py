"""Putting the agent and the files on one device, and running the agent there.

Files are content-addressed: ``<workdir>/blobs/<sha256><suffix>``, so a file already on the device with the right
hash is not sent again and two runs never overwrite each other's inputs. An upload goes to a temporary name, is
hashed on the device, and only a match with the manifest's sha256 is renamed into place. Every path given to the
device is absolute (the workdir is resolved against the login's home once), every SFTP step runs under a deadline
that fires, and an agent that times out or is interrupted is stopped on the device, its whole process group, and
checked to be gone. The agent's output is judged by :mod:`edgeprune.agent_result`.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..results.agent_result import AgentOutcome, Expected, judge, new_token
from .profiles import DeviceProfile
from ..errors import DeviceError
from ..resources import agent_dir
from .ssh import MAX_OUTPUT_BYTES, CommandResult, Connection, SSHTarget, resolve_alias

AGENT_DIR = agent_dir()
UPLOAD_ATTEMPTS = 3
#: Seconds the agent may outlive the host's command_timeout before it stops itself (when the host lost the link).
AGENT_DEADLINE_GRACE = 30.0
#: Temporary upload files (``*.part-<pid>-<thread>``) older than this are left-overs of a broken transfer and are
#: removed before the next upload; younger ones may belong to another edgeprune process sending right now.
STALE_PART_SECONDS = 3600


@dataclass
class FileSpec:
    """A local file to put on the device, with the sha256 it must have there."""

    local: Path
    sha256: str
    suffix: str = ""

    @property
    def blob_name(self) -> str:
        return f"{self.sha256}{self.suffix}"


@dataclass
class TransferStats:
    """``seconds`` is the transfer phase (hash check, uploads, verification), without the SSH handshake."""

    sent: int = 0
    skipped: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    connect_seconds: float = 0.0


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


def agent_argv(python: str, profile: DeviceProfile, model: str, eval_file: str, token: str) -> List[str]:
    argv = [python, "-m", "device_agent", "run", model, "--eval", eval_file,
            "--runtime", profile.runtime, "--threads", str(profile.threads),
            "--warmup", str(profile.warmup), "--runs", str(profile.runs),
            "--min-seconds", str(profile.min_seconds), "--samples", "--frame", token,
            "--deadline", str(profile.command_timeout + AGENT_DEADLINE_GRACE)]
    if profile.no_xnnpack:
        argv.append("--no-xnnpack")
    if profile.delegate:
        argv += ["--delegate", profile.delegate]
    return argv


class Device:
    """One device: ``prepare`` puts files there, ``run_agent`` measures one model. Never raises mid-fleet
    for agent problems (those are outcomes); raises DeviceError when the device itself fails.

    ``stop`` is anything with ``is_set()``: Ctrl-C, or the device's overall deadline (see fleet.DeviceStop).
    """

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release by default."""

    def prepare(self, files: Sequence[FileSpec], stop: Any = None) -> Dict[str, str]:
        raise NotImplementedError

    def run_agent(self, model: str, eval_file: str, stop: Any = None,
                  expected: Optional[Expected] = None) -> AgentOutcome:
        raise NotImplementedError

    def probe(self) -> AgentOutcome:
        raise NotImplementedError


def _stopped_note(outcome: AgentOutcome, gone: bool, where: str) -> AgentOutcome:
    if not gone:
        outcome.message = (f"{outcome.message}; WARNING: the agent could not be confirmed stopped on {where}: "
                           f"check for a stray `python -m device_agent` there")
    return outcome


class LocalDevice(Device):
    """This machine: the agent runs as a subprocess on the files where they are."""

    @property
    def python(self) -> str:
        return os.path.expanduser(self.profile.python) if self.profile.python else sys.executable

    def prepare(self, files: Sequence[FileSpec], stop: Any = None) -> Dict[str, str]:
        mapping = {}
        for spec in files:
            actual = sha256_file(spec.local)
            if actual != spec.sha256:
                raise DeviceError(f"{spec.local.name}: sha256 {actual[:12]} does not match the manifest's {spec.sha256[:12]}")
            mapping[spec.sha256] = str(spec.local.resolve())
        return mapping

    def _run(self, argv: List[str], stop: Any = None) -> CommandResult:
        """The agent in a session of its own, so a timeout or Ctrl-C stops it and everything it forked."""
        import signal
        import tempfile

        limit = self.profile.command_timeout
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(argv, cwd=str(AGENT_DIR.parent), stdout=out, stderr=err,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as exc:
                raise DeviceError(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc
            deadline = time.monotonic() + limit
            ended = {"timed_out": False, "interrupted": False}
            while proc.poll() is None:
                if stop is not None and stop.is_set():
                    ended["interrupted"] = True
                elif time.monotonic() > deadline:
                    ended["timed_out"] = True
                else:
                    time.sleep(0.02)
                    continue
                for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
                    try:
                        os.killpg(proc.pid, sig)
                    except ProcessLookupError:
                        break
                    try:
                        proc.wait(wait)
                        break
                    except subprocess.TimeoutExpired:
                        continue
                break
            proc.wait()
            out.seek(0)
            stdout = out.read(MAX_OUTPUT_BYTES + 1)
            err.seek(0, os.SEEK_END)
            err.seek(max(0, err.tell() - 65536))
            stderr = err.read()
        return CommandResult(proc.returncode if not any(ended.values()) else -1, stdout[:MAX_OUTPUT_BYTES], stderr,
                             len(stdout) > MAX_OUTPUT_BYTES, ended["timed_out"], ended["interrupted"], limit=limit)

    def run_agent(self, model: str, eval_file: str, stop: Any = None,
                  expected: Optional[Expected] = None) -> AgentOutcome:
        token = new_token()
        result = self._run(agent_argv(self.python, self.profile, model, eval_file, token), stop)
        return judge(result, token, expected, python=self.python)

    def probe(self) -> AgentOutcome:
        token = new_token()
        return judge(self._run([self.python, "-m", "device_agent", "probe", "--frame", token]), token, python=self.python)


class RemoteDevice(Device):
    """A device over SSH/SFTP."""

    def __init__(self, profile: DeviceProfile, accept_new_host_keys: bool = False) -> None:
        super().__init__(profile)
        self.connection = Connection(ssh_target(profile), accept_new_host_keys)
        self.stats = TransferStats()

    def close(self) -> None:
        self.connection.close()

    def on_device(self, path: str) -> str:
        """A profile path as an absolute path on the device: ``~``, ``~/x`` and relative paths are the login's
        home. The agent runs in its own folder, so a path that stayed relative would point somewhere else."""
        if path.startswith("/"):
            return posixpath.normpath(path)
        home = self.connection.home()
        rest = path[1:].lstrip("/") if path == "~" or path.startswith("~/") else path
        return posixpath.normpath(posixpath.join(home, rest)) if rest else home

    @property
    def workdir(self) -> str:
        """The absolute work folder on the device (connects to learn the home folder when needed)."""
        return self.on_device(self.profile.workdir.rstrip("/") or ".")

    def _mkdirs(self, path: str) -> None:
        sftp = self.connection.sftp()
        current = "/"
        for part in [p for p in path.split("/") if p]:
            current = posixpath.join(current, part)
            try:
                sftp.stat(current)
            except FileNotFoundError:
                try:
                    sftp.mkdir(current)
                except OSError as exc:
                    raise DeviceError(f"cannot create {current} on {self.profile.name}: {exc}") from exc
            except OSError as exc:
                raise DeviceError(f"cannot access {current} on {self.profile.name}: {exc}") from exc

    def _send(self, local: Path, tmp: str, stop: Any) -> None:
        """SFTP one file to ``tmp`` under the transfer deadline, reconnecting and resending when the connection
        breaks."""
        import paramiko

        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            try:
                with self.connection.guard(self.profile.transfer_timeout, f"upload of {local.name}", stop):
                    self.connection.sftp().put(str(local), tmp, confirm=True)
                return
            except (OSError, paramiko.SSHException, EOFError, DeviceError) as exc:
                # SFTP's generic "Failure" status is the server refusing the write (a full disk, typically):
                # sending again will not help. A broken connection will: reconnect and resend.
                # A short file ("size mismatch in put! 81920 != 1138536") is the same: the device stored less
                # than was sent, which on Linux means ENOSPC or a quota. A deadline that fired is final too.
                message = str(exc)
                server_refused = isinstance(exc, OSError) and (
                    message in ("Failure", "[Errno None] Failure") or message.startswith("size mismatch in put"))
                if isinstance(exc, DeviceError) or server_refused or attempt == UPLOAD_ATTEMPTS:
                    if not isinstance(exc, DeviceError):
                        self._remove_quietly(tmp)
                    reason = message or type(exc).__name__
                    if server_refused:
                        reason = f"the device did not store the whole file ({message}): disk full?"
                    raise DeviceError(f"upload of {local.name} to {self.profile.name} failed: {reason}") from exc
                self.connection.close()
                time.sleep(0.5 * attempt)

    def _upload_all(self, uploads: Dict[str, Tuple[Path, str]], stop: Any) -> None:
        """Send every file to a temporary name, hash them all on the device in one command, and move into
        place only what matches; one mismatch fails the device (and leaves nothing half-written behind)."""
        import paramiko

        suffix = f".part-{os.getpid()}-{threading.get_ident()}"
        sent: List[str] = []
        try:
            for remote, (local, _) in uploads.items():
                if stop is not None and stop.is_set():
                    raise DeviceError("interrupted")
                self._send(local, remote + suffix, stop)
                sent.append(remote)
            hashes = self.connection.remote_sha256(self.python, [remote + suffix for remote in sent], stop)
            for remote in sent:
                local, digest = uploads[remote]
                found = hashes.get(remote + suffix)
                if found != digest:
                    raise DeviceError(
                        f"sha256 mismatch after upload of {local.name} to {self.profile.name}: expected "
                        f"{digest[:16]}, device has {(found or 'nothing')[:16]}"
                    )
            with self.connection.guard(self.profile.transfer_timeout, "moving uploads into place", stop):
                for remote in sent:
                    try:
                        self.connection.sftp().posix_rename(remote + suffix, remote)
                    except (OSError, paramiko.SSHException) as exc:
                        raise DeviceError(f"cannot move {posixpath.basename(remote)} into place on "
                                          f"{self.profile.name}: {exc}") from exc
                    self.stats.sent += 1
                    self.stats.bytes_sent += uploads[remote][0].stat().st_size
        except DeviceError:
            for remote in sent:
                self._remove_quietly(remote + suffix)
            raise

    def _sweep_stale_parts(self, folder: str) -> None:
        import paramiko

        try:
            entries = self.connection.sftp().listdir_attr(folder)
        except (OSError, paramiko.SSHException):
            return  # only housekeeping: the upload itself reports real problems
        cutoff = time.time() - STALE_PART_SECONDS
        for entry in entries:
            if ".part-" in entry.filename and (entry.st_mtime or 0) < cutoff:
                self._remove_quietly(posixpath.join(folder, entry.filename))

    def _present(self, remote: str, local: Path) -> bool:
        import paramiko

        try:
            return self.connection.sftp().stat(remote).st_size == local.stat().st_size
        except FileNotFoundError:
            return False
        except (OSError, paramiko.SSHException) as exc:
            raise DeviceError(f"cannot look for {remote} on {self.profile.name}: {exc}") from exc

    def _remove_quietly(self, path: str) -> None:
        try:
            with self.connection.guard(min(self.profile.transfer_timeout, 10.0), "removing a left-over"):
                self.connection.sftp().remove(path)
        except Exception:  # best effort: the real error is already being reported
            pass

    @property
    def python(self) -> str:
        python = self.profile.python or "python3"
        return self.on_device(python) if python.startswith("~") else python

    @property
    def agent_root(self) -> str:
        return posixpath.join(self.workdir, "agent", agent_bundle_hash())

    def prepare(self, files: Sequence[FileSpec], stop: Any = None) -> Dict[str, str]:
        started = time.perf_counter()
        with self.connection.guard(self.profile.connect_timeout * 3 + 5, "connecting", stop):
            self.connection.open()
        self.stats.connect_seconds += time.perf_counter() - started
        started = time.perf_counter()
        blobs = posixpath.join(self.workdir, "blobs")
        agent_pkg = posixpath.join(self.agent_root, "device_agent")
        wanted: Dict[str, tuple] = {}
        for spec in files:
            wanted[posixpath.join(blobs, spec.blob_name)] = (spec.local, spec.sha256)
        for path in agent_files():
            wanted[posixpath.join(agent_pkg, path.name)] = (path, sha256_file(path))
        # A file only ever reaches its final, hash-named path after its sha256 was verified on the device, so a
        # present path of the right size is the verified file: an SFTP stat (no process on the device) is the
        # whole cache check. The agent reports the sha256 of the model it measured, and the fleet checks that
        # too, so a copy damaged later on the device's disk is still caught.
        with self.connection.guard(self.profile.transfer_timeout, "looking for files already there", stop):
            missing = [remote for remote, (local, _) in wanted.items() if not self._present(remote, local)]
        if missing:
            with self.connection.guard(self.profile.transfer_timeout, "creating the work folder", stop):
                self._mkdirs(blobs)
                self._mkdirs(agent_pkg)
                self._sweep_stale_parts(blobs)
            self._upload_all({remote: wanted[remote] for remote in missing}, stop)
        self.stats.skipped += len(wanted) - len(missing)
        self.stats.seconds += time.perf_counter() - started
        return {spec.sha256: posixpath.join(blobs, spec.blob_name) for spec in files}

    def _run_framed(self, argv: List[str], token: str, stop: Any, expected: Optional[Expected]) -> AgentOutcome:
        """Run the agent, judge its output, and make sure it is not left running when it did not finish."""
        result = self.connection.run(argv, cwd=self.agent_root, stop=stop, report_pid=True)
        outcome = judge(result, token, expected, python=self.python)
        if result.connection_lost and result.pid is not None:
            # The link may be back (a flaky Wi-Fi): try once on a new connection, so the agent does not go on
            # measuring beside the next one. A device that is really gone refuses quickly (connect_timeout).
            self.connection.close()
            self.connection.stop_group(result.pid, self.python)
        elif (result.timed_out or result.interrupted) and result.pid is not None:
            gone = self.connection.stop_group(result.pid, self.python)
            outcome = _stopped_note(outcome, gone, self.profile.name)
        elif result.timed_out or result.interrupted:
            outcome = _stopped_note(outcome, False, self.profile.name)
        return outcome

    def run_agent(self, model: str, eval_file: str, stop: Any = None,
                  expected: Optional[Expected] = None) -> AgentOutcome:
        token = new_token()
        return self._run_framed(agent_argv(self.python, self.profile, model, eval_file, token), token, stop, expected)

    def probe(self) -> AgentOutcome:
        self.prepare([])
        token = new_token()
        return self._run_framed([self.python, "-m", "device_agent", "probe", "--frame", token], token, None, None)


def ssh_target(profile: DeviceProfile) -> SSHTarget:
    """Profile + ~/.ssh/config -> where to connect. The profile's own fields win over the config's."""
    config = resolve_alias(profile.host, profile.ssh_config)
    identity = config.get("identityfile")
    key_file = profile.key_file or (identity[0] if isinstance(identity, list) and identity else None)
    if key_file and not Path(os.path.expanduser(key_file)).is_file():
        key_file = None if not profile.key_file else key_file
    return SSHTarget(
        host=config.get("hostname", profile.host),
        port=int(config.get("port", profile.port)) if profile.port == 22 else profile.port,
        user=profile.user or config.get("user"),
        key_file=key_file,
        use_agent=profile.use_agent,
        known_hosts=profile.known_hosts,
        connect_timeout=profile.connect_timeout,
        command_timeout=profile.command_timeout,
        transfer_timeout=profile.transfer_timeout,
    )


def open_device(profile: DeviceProfile, accept_new_host_keys: bool = False) -> Device:
    if profile.kind == "local":
        return LocalDevice(profile)
    return RemoteDevice(profile, accept_new_host_keys)
