"""Device kinds, looked up by a profile's ``kind``: adding a kind is a module and one row here."""
from __future__ import annotations

from typing import Dict, Type

from .device import Device
from .local import LocalDevice
from .profiles import DeviceProfile
from .remote import RemoteDevice
from .ssh import HostKeyPolicy

KINDS: Dict[str, Type[Device]] = {"local": LocalDevice, "ssh": RemoteDevice}


def open_device(profile: DeviceProfile, host_keys: HostKeyPolicy = HostKeyPolicy.REJECT) -> Device:
    """The device a profile describes; nothing is connected until it is used."""
    if profile.kind == "local":
        return LocalDevice(profile)
    return KINDS[profile.kind](profile, host_keys)  # type: ignore[call-arg]
