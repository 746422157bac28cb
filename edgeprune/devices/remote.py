"""The ``ssh`` device kind: files by SFTP (content-addressed, sha256-verified on the device), the agent over SSH.

Every path given to the device is absolute (the workdir is resolved against the login's home once), every SFTP
step runs under a deadline that fires, and an agent that times out or is interrupted is stopped on the device,
its whole process group, and checked to be gone.
"""
from __future__ import annotations

import os
import posixpath
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import DeviceError
from ..results.agent_result import AgentOutcome, Expected, judge, new_token
from ..results.plan_result import PlanOutcome, judge_plan
from .bundle import FileSpec, agent_bundle_hash, agent_files, plan_argv, sha256_file
from .cells import plan_limit
from .device import Device, stopped_note
from .ssh import Connection, HostKeyPolicy
from .sshconfig import ssh_target

if TYPE_CHECKING:  # annotations only: profiles imports the kinds registry
    from .profiles import DeviceProfile

UPLOAD_ATTEMPTS = 3
#: Temporary upload files (``*.part-<pid>-<thread>``) older than this are left-overs of a broken transfer and are
#: removed before the next upload; younger ones may belong to another edgeprune process sending right now.
STALE_PART_SECONDS = 3600


@dataclass
class TransferStats:
    """``seconds`` is the transfer phase (hash check, uploads, verification), without the SSH handshake."""

    sent: int = 0
    skipped: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    connect_seconds: float = 0.0


class RemoteDevice(Device):
    """A device over SSH/SFTP."""

    def __init__(self, profile: DeviceProfile, host_keys: HostKeyPolicy = HostKeyPolicy.REJECT) -> None:
        super().__init__(profile)
        self.connection = Connection(ssh_target(profile), host_keys)
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

    def _run_framed(self, argv: List[str], token: str, stop: Any, expected: Any,
                    judge_with: Callable[..., Any] = judge, limit: Optional[float] = None) -> Any:
        """Run the agent, judge its output, and make sure it is not left running when it did not finish."""
        result = self.connection.run(argv, timeout=limit, cwd=self.agent_root, stop=stop, report_pid=True)
        outcome = judge_with(result, token, expected, python=self.python)
        if result.connection_lost and result.pid is not None:
            # The link may be back (a flaky Wi-Fi): try once on a new connection, so the agent does not go on
            # measuring beside the next one. A device that is really gone refuses quickly (connect_timeout).
            self.connection.close()
            self.connection.stop_group(result.pid, self.python)
        elif (result.timed_out or result.interrupted) and result.pid is not None:
            gone = self.connection.stop_group(result.pid, self.python)
            outcome = stopped_note(outcome, gone, self.profile.name)
        elif result.timed_out or result.interrupted:
            outcome = stopped_note(outcome, False, self.profile.name)
        return outcome

    def plan_once(self, plan_file: str, cells: int, stop: Any = None,
                  expected: Optional[Dict[str, Expected]] = None, run_id: Optional[int] = None) -> PlanOutcome:
        token, limit = new_token(), plan_limit(self.profile, cells)
        argv = plan_argv(self.python, plan_file, token, limit, posixpath.join(self.workdir, "agent.lock"), run_id)
        return self._run_framed(argv, token, stop, expected, judge_plan, limit)

    def stop_group(self, pgid: int) -> bool:
        return self.connection.stop_group(pgid, self.python)

    def discard(self, path: str) -> None:
        """A bench's plan is used once (a new seed every time): it does not stay in the device's blobs."""
        self._remove_quietly(path)

    def probe(self) -> AgentOutcome:
        self.prepare([])
        token = new_token()
        return self._run_framed([self.python, "-m", "device_agent", "probe", "--frame", token], token, None, None)
