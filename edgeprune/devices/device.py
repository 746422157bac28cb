"""A device, as the fleet sees it: put files there, run the agent on one model, probe it.

Kinds implement it (``local``, ``ssh``: see :mod:`edgeprune.devices.kinds`); a hung or failing device is the
kind's problem to turn into an outcome or a DeviceError, never a hang.
"""
from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, TypeVar

from ..results.agent_result import BUSY, AgentOutcome, Expected
from ..results.plan_result import PlanOutcome
from .bundle import FileSpec

_Outcome = TypeVar("_Outcome", AgentOutcome, PlanOutcome)

if TYPE_CHECKING:  # annotations only: profiles imports the kinds registry
    from .profiles import DeviceProfile


class Device:
    """One device: ``prepare`` puts files there, ``run_plan`` measures a plan. Never raises mid-fleet
    for agent problems (those are outcomes); raises DeviceError when the device itself fails.

    ``stop`` is anything with ``is_set()``: Ctrl-C, or the device's overall deadline (see fleet.DeviceStop).
    """

    def __init__(self, profile: DeviceProfile, host_keys: Any = None) -> None:
        """``host_keys`` is the HostKeyPolicy, for kinds that check host keys; every kind takes the same arguments."""
        self.profile = profile

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release by default."""

    def prepare(self, files: Sequence[FileSpec], stop: Any = None) -> Dict[str, str]:
        raise NotImplementedError

    def run_plan(self, plan_file: str, cells: int, stop: Any = None,
                 expected: Optional[Dict[str, Expected]] = None) -> PlanOutcome:
        """Measure a plan (its file already on the device, see ``prepare``) of ``cells`` cells, never beside
        another agent: the agent holds the device's lock while it measures; ``expected`` is per cell id.

        When the lock is taken, the holder is either an orphan (its controller was an edgeprune process on this
        machine that is gone: a crashed or SIGKILLed bench) and is stopped, or a live bench, and is waited for,
        every LOCK_POLL seconds until ``stop`` (Ctrl-C or the device's deadline). A holder is never stopped on
        another controller's behalf.
        """
        return self._with_lock(lambda: self.plan_once(plan_file, cells, stop, expected), stop)

    def _with_lock(self, attempt: Callable[[], _Outcome], stop: Any) -> _Outcome:
        stopped: set = set()
        while True:
            outcome = attempt()
            holder = busy_holder(outcome)
            if holder is None:
                return outcome
            if orphan(holder) and holder["pgid"] not in stopped:
                stopped.add(holder["pgid"])
                self.stop_group(holder["pgid"])
                continue
            if stop is not None and stop.is_set():
                return outcome
            time.sleep(LOCK_POLL)

    def plan_once(self, plan_file: str, cells: int, stop: Any,
                  expected: Optional[Dict[str, Expected]]) -> PlanOutcome:
        """One ``plan`` run with the device's lock; the kind's own transport (deadline: cells.plan_limit)."""
        raise NotImplementedError

    def discard(self, path: str) -> None:
        """Remove a file put there for one bench only (its plan), best effort; nothing by default."""

    def stop_group(self, pgid: int) -> bool:
        """Stop a process group on the device (an orphaned agent); True when it is gone."""
        raise NotImplementedError

    def probe(self) -> AgentOutcome:
        raise NotImplementedError


#: Seconds between two looks at a device whose agent lock another live bench holds.
LOCK_POLL = 2.0


def busy_holder(outcome: "AgentOutcome | PlanOutcome") -> Optional[Dict[str, Any]]:
    """Who holds the device's agent lock when the agent reported ``busy`` (its record, checked), else None."""
    if outcome.error_kind != BUSY:
        return None
    holder = ((outcome.document or {}).get("lock") or {}).get("holder")
    if not isinstance(holder, dict):
        return {}
    pid, pgid, who = holder.get("pid"), holder.get("pgid"), holder.get("controller")
    valid = all(isinstance(v, int) and not isinstance(v, bool) and 1 < v < 2 ** 31 for v in (pid, pgid))
    return {"pid": pid, "pgid": pgid, "controller": who if isinstance(who, str) else None} if valid else {}


def orphan(holder: Dict[str, Any]) -> bool:
    """The lock's holder is an agent whose edgeprune process on this machine is gone, and the agent leads a group
    of its own (so stopping the group stops nothing else)."""
    host, _, pid = str(holder.get("controller") or "").rpartition(":")
    if not holder or holder.get("pgid") != holder.get("pid") or host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def stopped_note(outcome: _Outcome, gone: bool, where: str) -> _Outcome:
    if not gone:
        outcome.message = (f"{outcome.message}; WARNING: the agent could not be confirmed stopped on {where}: "
                           f"check for a stray `python -m device_agent` there")
    return outcome
