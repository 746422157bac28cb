"""The ``local`` device kind: this machine, the agent as a subprocess in a session of its own."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..errors import DeviceError
from ..results.agent_result import AgentOutcome, Expected, judge, new_token
from ..results.plan_result import PlanOutcome, judge_plan
from .bundle import AGENT_DIR, FileSpec, plan_argv, sha256_file
from .cells import plan_limit
from .command import MAX_OUTPUT_BYTES, CommandResult
from .device import Device


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

    def _run(self, argv: List[str], stop: Any = None, limit: Optional[float] = None) -> CommandResult:
        """The agent in a session of its own, so a timeout or Ctrl-C stops it and everything it forked. An agent
        that watches its stdin (``--watch-stdin``) gets a pipe held open until it ends: if this process dies, the
        pipe closes and the agent stops, freeing the device's lease."""
        limit = limit or self.profile.command_timeout
        watched = "--watch-stdin" in argv
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(argv, cwd=str(AGENT_DIR.parent), stdout=out, stderr=err,
                                        stdin=subprocess.PIPE if watched else subprocess.DEVNULL,
                                        start_new_session=True)
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
                _stop_local_group(proc.pid, proc)
                break
            proc.wait()
            if proc.stdin is not None:
                proc.stdin.close()
            out.seek(0)
            stdout = out.read(MAX_OUTPUT_BYTES + 1)
            err.seek(0, os.SEEK_END)
            err.seek(max(0, err.tell() - 65536))
            stderr = err.read()
        return CommandResult(proc.returncode if not any(ended.values()) else -1, stdout[:MAX_OUTPUT_BYTES], stderr,
                             len(stdout) > MAX_OUTPUT_BYTES, ended["timed_out"], ended["interrupted"], limit=limit)

    @property
    def lock(self) -> str:
        return str(Path(tempfile.gettempdir()) / f"edgeprune-agent-{os.getuid()}.lock")

    def plan_once(self, plan_file: str, cells: int, stop: Any = None,
                  expected: Optional[Dict[str, Expected]] = None, run_id: Optional[int] = None) -> PlanOutcome:
        token, limit = new_token(), plan_limit(self.profile, cells)
        result = self._run(plan_argv(self.python, plan_file, token, limit, self.lock, run_id), stop, limit)
        return judge_plan(result, token, expected, python=self.python)

    def stop_group(self, pgid: int) -> bool:
        return _stop_local_group(pgid, None)

    def probe(self) -> AgentOutcome:
        token = new_token()
        return judge(self._run([self.python, "-m", "device_agent", "probe", "--frame", token]), token, python=self.python)


def _stop_local_group(pgid: int, proc: "Optional[subprocess.Popen]") -> bool:
    """SIGTERM, then SIGKILL, to process group ``pgid``; True when none of it is left."""
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return True
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if proc is not None and proc.poll() is not None:
                return True
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
    return False
