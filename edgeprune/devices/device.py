"""A device, as the fleet sees it: put files there, run the agent on one model, probe it.

Kinds implement it (``local``, ``ssh``: see :mod:`edgeprune.devices.kinds`); a hung or failing device is the
kind's problem to turn into an outcome or a DeviceError, never a hang.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, TypeVar

from ..results.agent_result import BUSY, AgentOutcome, Expected
from ..results.plan_result import PlanOutcome
from .bundle import FileSpec

_Outcome = TypeVar("_Outcome", AgentOutcome, PlanOutcome)

if TYPE_CHECKING:  # annotations only: profiles imports the kinds registry
    from .profiles import DeviceProfile


@dataclass
class Lease:
    """How a controller takes a device for one plan (issue 17): the agent holds the device's lock as its lease
    (with this run's id in the record other controllers read); when another live controller's agent holds it, this
    one waits (``on_wait`` gets the holder's record and the seconds waited, for the progress line) or, without
    ``wait``, gives up at once and the plan's cells are recorded ``busy``."""

    run_id: Optional[int] = None
    wait: bool = True
    on_wait: Optional[Callable[[Dict[str, Any], float], None]] = None


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
                 expected: Optional[Dict[str, Expected]] = None, lease: Optional[Lease] = None) -> PlanOutcome:
        """Measure a plan (its file already on the device, see ``prepare``) of ``cells`` cells, never beside
        another agent: the agent holds the device's lock while it measures; ``expected`` is per cell id.

        When the lock is taken, the holder is either an orphan (its controller was an edgeprune process on this
        machine that is gone: a crashed or SIGKILLed bench) and is stopped, or a live bench, and is waited for,
        every LOCK_POLL seconds until ``stop`` (Ctrl-C or the device's deadline), or not at all without
        ``lease.wait``. A holder is never stopped on another controller's behalf: a dead controller's agent stops
        itself (its stdin closes: ``--watch-stdin``), and at the latest at its own deadline (the lease's expiry).
        """
        lease = lease or Lease()
        return self._with_lock(lambda: self.plan_once(plan_file, cells, stop, expected, lease.run_id), stop, lease)

    def _with_lock(self, attempt: Callable[[], _Outcome], stop: Any, lease: Lease) -> _Outcome:
        stopped: set = set()
        began = time.monotonic()
        while True:
            outcome = attempt()
            holder = busy_holder(outcome)
            if holder is None:
                return outcome
            if orphan(holder) and holder["pgid"] not in stopped:
                stopped.add(holder["pgid"])
                self.stop_group(holder["pgid"])
                continue
            if not lease.wait or (stop is not None and stop.is_set()):
                return outcome
            if lease.on_wait is not None:
                lease.on_wait(holder, time.monotonic() - began)
            time.sleep(LOCK_POLL)

    def plan_once(self, plan_file: str, cells: int, stop: Any,
                  expected: Optional[Dict[str, Expected]], run_id: Optional[int] = None) -> PlanOutcome:
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
    if not valid:
        return {}
    run = holder.get("run")
    found = {"pid": pid, "pgid": pgid, "controller": who[:200] if isinstance(who, str) else None,
             "run": run if isinstance(run, int) and not isinstance(run, bool) and 0 < run < 2 ** 63 else None}
    for key in ("started", "expires"):  # ISO times as the agent wrote them; shown, never computed with
        value = holder.get(key)
        found[key] = value[:40] if isinstance(value, str) else None
    return found


def describe_holder(holder: Dict[str, Any]) -> str:
    """The lease's holder as the progress line shows it: "held by lab-2:4711 (run 7) since 10:02:11Z, lease
    until 10:12:11Z" (what the device's record says; the caller escapes it for its display)."""
    if not holder:
        return "held by another agent (its record is unreadable)"
    text = f"held by {holder.get('controller') or 'pid ' + str(holder.get('pid'))}"
    if holder.get("run") is not None:
        text += f" (run {holder['run']})"
    if holder.get("started"):
        text += f" since {str(holder['started']).replace('T', ' ')}"
    if holder.get("expires"):
        text += f", lease until {str(holder['expires']).replace('T', ' ')}"
    return text


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
