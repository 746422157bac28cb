"""``edgeprune devices setup``: a venv on the device with a TFLite runtime that fits its Python.

ai-edge-litert has aarch64 wheels for CPython 3.10-3.13 only, so a Bookworm Pi (3.11) gets it and a Bullseye Pi
(3.9) gets tflite-runtime 2.14, which needs numpy < 2. Everything runs on the device through the same quoted
commands as the benchmark; the device must reach a package index itself.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .remote import RemoteDevice
from .ssh import HostKeyPolicy
from .profiles import DeviceProfile
from ..errors import ConfigError, DeviceError


@dataclass
class SetupResult:
    device: str
    python: str
    python_version: str
    packages: List[str]


def runtime_packages(version: Tuple[int, int], runtime: str) -> List[str]:
    """What to pip-install for a device Python of ``version`` and the profile's runtime preference."""
    if runtime == "tensorflow":
        raise ConfigError("devices setup installs ai-edge-litert or tflite-runtime, not TensorFlow")
    if runtime == "tflite_runtime" or (runtime == "auto" and version < (3, 10)):
        if version > (3, 11):
            raise ConfigError(f"tflite-runtime 2.14 has no wheels for Python {version[0]}.{version[1]}")
        return ["tflite-runtime==2.14.0", "numpy<2"]
    if version < (3, 10) or version > (3, 13):
        raise ConfigError(f"ai-edge-litert has no wheels for Python {version[0]}.{version[1]} (3.10-3.13)")
    return ["ai-edge-litert>=2.3,<3", "numpy"]


def setup(profile: DeviceProfile, host_keys: HostKeyPolicy = HostKeyPolicy.REJECT, base_python: Optional[str] = None,
          index_url: Optional[str] = None) -> SetupResult:
    if profile.kind != "ssh":
        raise ConfigError("devices setup is for SSH devices; the local device uses edgeprune's own venv")
    device = RemoteDevice(profile, host_keys)
    python = base_python or profile.python or "python3"
    venv = posixpath.join(device.workdir, "venv")
    venv_python = posixpath.join(venv, "bin", "python")
    with device:
        probe = device.connection.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], timeout=60)
        if probe.exit_status != 0:
            raise DeviceError(f"{profile.name}: cannot run {python}: {probe.stderr_tail()}")
        # the last line: a login banner (conda, pyenv, a MOTD script) may come first
        lines = probe.stdout.decode("utf-8", "replace").strip().splitlines()
        try:
            major, minor = (int(x) for x in lines[-1].strip().split("."))
        except (IndexError, ValueError):
            raise DeviceError(f"{profile.name}: {python} did not print its version") from None
        packages = runtime_packages((major, minor), profile.runtime)
        steps = [
            [python, "-m", "venv", venv],
            [venv_python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             *(["--index-url", index_url] if index_url else []), *packages],
        ]
        for argv in steps:
            result = device.connection.run(argv, timeout=max(profile.command_timeout, 900))
            if result.exit_status != 0:
                raise DeviceError(f"{profile.name}: `{' '.join(argv[:4])} ...` failed: {result.stderr_tail()}")
    return SetupResult(profile.name, venv_python, f"{major}.{minor}", packages)
