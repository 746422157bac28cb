"""Device profiles and fleet files (TOML), loaded and validated without touching the network.

A profile says how to reach one device and how to measure on it. A fleet file lists devices, each starting from
a profile and overriding fields, so 50 Pis are written once. Names become folder and database keys, so they are
restricted to a safe alphabet; every other string reaches a device only through ``shlex.quote``.
"""
from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from device_agent.runtime import RUNTIME_NAMES

from ..errors import ConfigError
from .kinds import KINDS
from ..resources import profiles_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PROFILES_DIR = profiles_dir()
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: "auto" or a runtime of the agent's own table (device_agent/runtime.py), so a new runtime is one row there.
RUNTIMES = ("auto",) + RUNTIME_NAMES

#: Inclusive ranges of the integer fields. Beyond them a value is a typo, not a wish: a port SSH cannot use,
#: more threads than any board has cores, or a benchmark that would not end this year.
INT_RANGES: Dict[str, Tuple[int, int]] = {
    "port": (1, 65535), "threads": (1, 1024), "runs": (1, 1_000_000), "warmup": (0, 1_000_000),
    "min_rounds": (1, 100_000), "max_rounds": (1, 100_000),
}
WEEK = 7 * 86400.0
#: Seconds: (the most, whether 0 is allowed). Every wait needs a finite limit: TOML has ``nan`` and ``inf``
#: literals, and a NaN timeout compares false with everything, so a hung agent would be waited on forever; a
#: timeout of 0 would fail every step at once. The most keeps values far below what OS timers accept;
#: ``min_seconds`` follows the agent's own cap; ``device_timeout`` 0 means "derived" (see its field).
SECOND_RANGES: Dict[str, Tuple[float, bool]] = {
    "connect_timeout": (WEEK, False), "command_timeout": (WEEK, False), "transfer_timeout": (WEEK, False),
    "min_seconds": (86400.0, True), "device_timeout": (30 * 86400.0, True), "budget_s": (86400.0, True),
}


def _shown(value: Any) -> str:
    """A bad value for a one-line message: repr (so newlines stay escaped), cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class DeviceProfile:
    """One device. ``kind = "local"`` runs the agent as a subprocess here; ``"ssh"`` reaches it with paramiko."""

    name: str
    kind: str = "ssh"
    host: str = ""
    port: int = 22
    user: Optional[str] = None
    key_file: Optional[str] = None
    use_agent: bool = True
    ssh_config: Optional[str] = "~/.ssh/config"
    known_hosts: str = "~/.ssh/known_hosts"
    #: Jump hosts, OpenSSH's ProxyJump syntax (``[user@]host[:port][,...]``), for users without an ssh_config.
    proxy_jump: Optional[str] = None
    workdir: str = ".edgeprune"
    python: str = "python3"
    runtime: str = "auto"
    threads: int = 1
    warmup: int = 20
    runs: int = 100
    min_seconds: float = 0.0
    #: The stopping rule of the rounds (issue 12, docs/statistics.md): at least ``min_rounds`` and at most
    #: ``max_rounds`` rounds, ending early once every cell's p50 interval is within ±``target_ci`` or when
    #: ``budget_s`` seconds of rounds are spent.
    min_rounds: int = 5
    max_rounds: int = 50
    target_ci: float = 0.02
    budget_s: float = 300.0
    no_xnnpack: bool = False
    delegate: Optional[str] = None
    #: A per-op profiler on the device for ``bench --op-profile`` (TFLite's ``benchmark_model``); None: the
    #: agent looks for it on PATH (device_agent/opprofile.py).
    op_profiler: Optional[str] = None
    connect_timeout: float = 10.0
    command_timeout: float = 600.0
    transfer_timeout: float = 300.0
    #: The deadline for one device in one bench (connect, uploads and every variant); 0 means derived from the
    #: other timeouts and the number of variants.
    device_timeout: float = 0.0
    tags: Tuple[str, ...] = ()
    description: str = ""
    #: The fields the user set for this device (their own profile file, a fleet's [defaults] or device entry, an
    #: override), as opposed to a shipped profile's or the built-in defaults. Only these override what
    #: ssh_config says about the host (issue 14): a shipped ``user = "pi"`` must not clobber ssh_config's User.
    explicit: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.match(self.name) or ".." in self.name:
            raise ConfigError(f"device name {self.name!r} must be 1-64 letters, digits, '.', '_' or '-'")
        if self.kind not in KINDS:
            raise ConfigError(f"device {self.name}: kind must be one of {', '.join(map(repr, KINDS))}, got {self.kind!r}")
        if self.kind == "ssh" and not self.host:
            raise ConfigError(f"device {self.name}: an ssh device needs a host")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"device {self.name}: runtime must be one of {', '.join(RUNTIMES)}")
        for name, (low, high) in INT_RANGES.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ConfigError(
                    f"device {self.name}: {name} must be an integer from {low} to {high}, got {_shown(value)}")
        for name, (most, zero_allowed) in SECOND_RANGES.items():
            value = getattr(self, name)
            number = (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, float) and math.isfinite(value))  # isfinite() overflows on huge ints
            if not number or value < 0 or value > most or (value == 0 and not zero_allowed):
                wanted = f"a finite number {'>=' if zero_allowed else '>'} 0"
                if name == "device_timeout":
                    wanted = "0 (derived) or a finite number > 0"
                raise ConfigError(f"device {self.name}: {name} must be {wanted} (at most {most:.0f} s), "
                                  f"got {_shown(value)}")
        if self.max_rounds < self.min_rounds:
            raise ConfigError(f"device {self.name}: max_rounds ({self.max_rounds}) must be >= min_rounds "
                              f"({self.min_rounds})")
        target = self.target_ci
        if (isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(float(target))
                or not 0 < target <= 1):
            raise ConfigError(f"device {self.name}: target_ci must be a fraction in (0, 1] (0.02 is ±2%), "
                              f"got {_shown(target)}")
        self._check_workdir()
        for name in ("delegate", "op_profiler", "proxy_jump"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 4096
                                      or not value.isprintable()):
                raise ConfigError(f"device {self.name}: {name} must be a library or program path or name, "
                                  f"got {_shown(value)}")
        self.tags = tuple(str(tag) for tag in self.tags)
        self.explicit = tuple(sorted(set(self.explicit)))

    def _check_workdir(self) -> None:
        """Relative to the login's home, absolute, or ``~``/``~/...`` (the login's home too). ``~user`` would
        need the device's password database to resolve, so it is refused rather than guessed."""
        workdir = self.workdir
        if not isinstance(workdir, str) or not workdir or "\0" in workdir:
            raise ConfigError(f"device {self.name}: workdir must be a non-empty path, got {_shown(workdir)}")
        if workdir.startswith("~") and workdir != "~" and not workdir.startswith("~/"):
            raise ConfigError(f"device {self.name}: workdir {_shown(workdir)}: ~user/ is not supported; use a path "
                              f"relative to the login's home or an absolute one")
        if any(part == ".." for part in Path(workdir).parts):
            raise ConfigError(f"device {self.name}: workdir must not contain '..', got {_shown(workdir)}")

    @property
    def address(self) -> str:
        return "local" if self.kind == "local" else f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    def to_dict(self) -> Dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["tags"] = list(self.tags)
        data["explicit"] = list(self.explicit)
        return data


_FIELDS = {f.name for f in fields(DeviceProfile)} - {"explicit"}


def _read_toml(path: Path) -> Dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def _shipped(path: Path) -> bool:
    """A profile edgeprune ships (its values are defaults, not the user's choices for a device)."""
    try:
        return path.resolve().parent == PROFILES_DIR.resolve()
    except OSError:
        return False


def _build(name: str, values: Dict[str, Any], where: str, explicit: Any = ()) -> DeviceProfile:
    unknown = sorted(set(values) - _FIELDS - {"profile"})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    values = {k: v for k, v in values.items() if k != "profile"}
    values["name"] = name
    values["explicit"] = tuple(k for k in explicit if k in _FIELDS)
    if "tags" in values and not isinstance(values["tags"], (list, tuple)):
        raise ConfigError(f"{where}: tags must be a list")
    try:
        return DeviceProfile(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def profile_path(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        return candidate
    if not NAME_RE.match(name_or_path):
        raise ConfigError(f"unknown device {name_or_path!r}")
    path = PROFILES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.toml") if not p.stem.startswith("fleet")))
        raise ConfigError(f"unknown device profile {name_or_path!r} (known: {known}; or give a .toml path)")
    return path


def load_profile(name_or_path: str, overrides: Optional[Dict[str, Any]] = None) -> DeviceProfile:
    """A profile by name (``profiles/<name>.toml``) or by path, with optional overrides."""
    path = profile_path(name_or_path)
    data = _read_toml(path)
    explicit = set(overrides or {}) | (set() if _shipped(path) else set(data))
    data.update(overrides or {})
    return _build(str(data.pop("name", path.stem)), data, str(path), explicit)


@dataclass
class Fleet:
    devices: List[DeviceProfile] = field(default_factory=list)

    def select(self, tags: Optional[List[str]] = None) -> "Fleet":
        if not tags:
            return self
        return Fleet([d for d in self.devices if set(tags) & set(d.tags)])


def load_fleet(path: str) -> Fleet:
    """``[defaults]`` apply to every ``[[device]]``; a device names its base ``profile`` (else the defaults')."""
    file = Path(path)
    data = _read_toml(file)
    unknown = sorted(set(data) - {"defaults", "device"})
    if unknown:
        raise ConfigError(f"{file}: unknown section(s) {', '.join(unknown)}; expected [defaults] and [[device]]")
    defaults = data.get("defaults", {})
    entries = data.get("device", [])
    if not isinstance(defaults, dict) or not isinstance(entries, list) or not entries:
        raise ConfigError(f"{file}: needs at least one [[device]] table")
    devices: List[DeviceProfile] = []
    seen = set()
    for index, entry in enumerate(entries):
        where = f"{file}: device #{index + 1}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{where}: every device needs a name")
        base_name = entry.get("profile", defaults.get("profile"))
        base: Dict[str, Any] = {}
        explicit = (set(defaults) | set(entry)) - {"profile", "name"}
        if base_name is not None:
            if not isinstance(base_name, str):
                raise ConfigError(f"{where}: profile must be a name")
            base_path = profile_path(base_name)
            base = _read_toml(base_path)
            base.pop("name", None)
            explicit |= set() if _shipped(base_path) else set(base)
        merged = {**base, **{k: v for k, v in defaults.items() if k != "profile"}, **entry}
        name = merged.pop("name")
        device = _build(name, merged, f"{where} ({name!r})", explicit)
        if device.name in seen:
            raise ConfigError(f"{file}: device name {device.name!r} appears twice")
        seen.add(device.name)
        devices.append(device)
    return Fleet(devices)
