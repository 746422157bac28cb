"""Device kinds, looked up by a profile's ``kind``: adding a kind is a module and one row in KINDS.

Each row loads its class when a device of that kind is opened, so profiles can validate ``kind`` against this
table without importing the SSH layer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, Type

if TYPE_CHECKING:
    from .device import Device
    from .profiles import DeviceProfile
    from .ssh import HostKeyPolicy


def _local() -> "Type[Device]":
    from .local import LocalDevice

    return LocalDevice


def _ssh() -> "Type[Device]":
    from .remote import RemoteDevice

    return RemoteDevice


KINDS: Dict[str, Callable[[], "Type[Device]"]] = {"local": _local, "ssh": _ssh}


def open_device(profile: "DeviceProfile", host_keys: "HostKeyPolicy | None" = None) -> "Device":
    """The device a profile describes (``host_keys``: the policy for SSH kinds; default reject unknown keys);
    nothing is connected until it is used."""
    from .ssh import HostKeyPolicy

    return KINDS[profile.kind]()(profile, host_keys or HostKeyPolicy.REJECT)  # type: ignore[call-arg]
