"""A device, as the fleet sees it: put files there, run the agent on one model, probe it.

Kinds implement it (``local``, ``ssh``: see :mod:`edgeprune.devices.kinds`); a hung or failing device is the
kind's problem to turn into an outcome or a DeviceError, never a hang.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence

from ..results.agent_result import AgentOutcome, Expected
from .bundle import FileSpec

if TYPE_CHECKING:  # annotations only: profiles imports the kinds registry
    from .profiles import DeviceProfile


class Device:
    """One device: ``prepare`` puts files there, ``run_agent`` measures one model. Never raises mid-fleet
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

    def run_agent(self, model: str, eval_file: str, stop: Any = None,
                  expected: Optional[Expected] = None) -> AgentOutcome:
        raise NotImplementedError

    def probe(self) -> AgentOutcome:
        raise NotImplementedError


def stopped_note(outcome: AgentOutcome, gone: bool, where: str) -> AgentOutcome:
    if not gone:
        outcome.message = (f"{outcome.message}; WARNING: the agent could not be confirmed stopped on {where}: "
                           f"check for a stray `python -m device_agent` there")
    return outcome
