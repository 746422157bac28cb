"""The device lab: several kinds of real SSH devices on this machine, and the fleet file that lists them.

Kinds (see docs/lab.md):

- ``loopback``: an sshd on 127.0.0.1 whose Python is the host's venv (x86-64, ai-edge-litert).
- ``pi39``: an sshd on 127.0.0.1 whose Python is the Pi-like Python 3.9 venv (tflite-runtime 2.14, numpy<2).
- ``arm64``: an emulated Raspberry Pi: an sshd on 127.0.0.1 whose ``python`` is a wrapper that runs Debian
  bookworm's aarch64 ``python3`` (3.11) under ``qemu-aarch64-static``, with tflite-runtime 2.14 + numpy<2 aarch64
  wheels. Built once into ``.cache/pi-arm64`` (:func:`build_pi_arm64`, in ``pi_arm64.py``).
- ``netns``: an sshd inside its own network namespace, reached over a veth pair at 10.200.N.2 (host side
  10.200.N.1), optionally over a degraded link (:class:`LinkSpec`: tc tbf rate, nftables random loss, and a
  user-space delay proxy since this kernel has no netem); in ``netns.py`` and ``proxy.py``.

``with lab(["loopback", "arm64", "netns"], tmp) as running:`` starts them, trusts their host keys, writes
``running.fleet_path``, and on exit (also on error) stops sshd, the proxies, and deletes the namespaces.
Traffic only goes to 127.0.0.1 and to the 10.200.N.0/30 links this package creates. Needs root for ``netns``.
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

from support.agent_envs import pi_like_python
from support.lab.common import Log, quiet
from support.lab.devices import LabDevice, wait_for_ssh
from support.lab.netns import LinkSpec, NetnsDevice, claim_network, cleanup_leftovers
from support.lab.pi_arm64 import PiArm64, build_pi_arm64
from support.lab.proxy import DelayProxy
from support.sshlab import ClientKeys, write_fleet

__all__ = ["KINDS", "KIND_PROFILE", "DelayProxy", "Lab", "LabDevice", "LinkSpec", "NetnsDevice", "PiArm64",
           "build_pi_arm64", "cleanup_leftovers", "lab", "parse_kinds", "start_lab", "wait_for_ssh"]

KINDS = ("loopback", "pi39", "arm64", "netns")

#: Profile fields per kind. The emulated Pi is ~100x slower than native: a small timing workload (the accuracy
#: pass still covers the whole eval set).
KIND_PROFILE: Dict[str, Dict[str, object]] = {
    "loopback": {"description": "lab: loopback sshd, host venv python (x86-64)"},
    "pi39": {"description": "lab: loopback sshd, Pi-like Python 3.9 venv (tflite-runtime 2.14, numpy<2)"},
    "arm64": {"description": "lab: emulated Raspberry Pi (qemu-aarch64, Debian bookworm python3.11, "
                             "tflite-runtime 2.14)", "runs": 3, "warmup": 1, "command_timeout": 900},
    "netns": {"description": "lab: sshd in its own network namespace behind a veth pair"},
}


@dataclass
class Lab:
    root: Path
    client: ClientKeys
    devices: List[LabDevice] = field(default_factory=list)
    fleet_path: Optional[Path] = None
    pi_arm64: Optional[PiArm64] = None

    def device(self, name: str) -> LabDevice:
        return next(d for d in self.devices if d.name == name)

    def of_kind(self, kind: str) -> List[LabDevice]:
        return [d for d in self.devices if d.kind == kind]

    def write_fleet(self, **overrides: object) -> Path:
        self.fleet_path = write_fleet(self.root / "fleet.toml", list(self.devices), **overrides)
        return self.fleet_path

    def stop(self) -> None:
        """Stop every device and remove its network; safe to call twice, never raises for one device."""
        errors = []
        for device in reversed(self.devices):
            try:
                device.teardown()
            except Exception as exc:  # keep cleaning up the others
                errors.append(f"{device.name}: {exc}")
        if errors:
            raise RuntimeError("lab cleanup: " + "; ".join(errors))


def parse_kinds(kinds: Union[str, Sequence[str]]) -> List[str]:
    names = [k.strip() for k in (kinds.split(",") if isinstance(kinds, str) else kinds) if k.strip()]
    unknown = sorted(set(names) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown lab kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    return names


def start_lab(kinds: Union[str, Sequence[str]], tmp: Path, link: Optional[LinkSpec] = None,
              log: Log = quiet) -> Lab:
    """Start one device per entry of ``kinds`` (repeat a kind for more), trust them, write the fleet file."""
    names = parse_kinds(kinds)
    tmp = Path(tmp)
    running = Lab(tmp, ClientKeys(tmp / "client"))
    counts: Dict[str, int] = {}
    try:
        if "netns" in names:
            cleanup_leftovers()
        if "arm64" in names:
            running.pi_arm64 = build_pi_arm64(log=log)
        for kind in names:
            counts[kind] = counts.get(kind, -1) + 1
            name = f"{kind}-{counts[kind]}"
            device = _make_device(kind, name, running, link or LinkSpec())
            running.devices.append(device)
            if isinstance(device, NetnsDevice):
                claim_network(device)
            device.start()
            device.trust()
            log(f"started {name} ({kind}) at {':'.join(map(str, device.fleet_address))}")
        running.write_fleet()
    except BaseException:
        with contextlib.suppress(Exception):
            running.stop()
        raise
    return running


def _make_device(kind: str, name: str, running: Lab, link: LinkSpec) -> LabDevice:
    root = running.root / "devices" / name
    profile = dict(KIND_PROFILE[kind])
    if kind == "pi39":
        python = str(pi_like_python())
    elif kind == "arm64":
        assert running.pi_arm64 is not None
        python = str(running.pi_arm64.python)
    else:
        python = sys.executable
    if kind == "netns":
        if link.degraded:
            profile.update(connect_timeout=30, transfer_timeout=300, command_timeout=600,
                           description=f"{profile['description']} (degraded: rate={link.rate}, "
                                       f"loss={link.loss_percent}%, delay={link.delay_ms} ms)")
        return NetnsDevice(name, root, running.client, python=python, port=22, kind=kind, profile=profile,
                           link=link)
    return LabDevice(name, root, running.client, python=python, kind=kind, profile=profile)


@contextlib.contextmanager
def lab(kinds: Union[str, Sequence[str]], tmp: Path, link: Optional[LinkSpec] = None,
        log: Log = quiet) -> Iterator[Lab]:
    """``with lab(["loopback", "arm64"], tmp) as running: ... running.fleet_path``; everything is stopped and
    removed on exit, also when the body raises."""
    running = start_lab(kinds, tmp, link, log)
    try:
        yield running
    finally:
        running.stop()
