"""Facts about the device that explain a measurement.

Latency on a Raspberry Pi depends heavily on the board, its temperature and
whether the firmware is throttling the CPU (heat or a weak power supply), so
these are recorded before and after every run.  Every probe is best-effort:
a missing file or tool yields null, never an error, because the agent must
work on any Linux board (and on a developer's laptop).
"""

from __future__ import annotations

import glob
import os
import platform
import shutil
import socket
import subprocess
import sys
from typing import Any, Dict, List, Optional

_VCGENCMD_TIMEOUT_S = 3.0

# Bits of `vcgencmd get_throttled` (Raspberry Pi firmware documentation).
_THROTTLE_BITS = {
    0: "under_voltage",
    1: "arm_frequency_capped",
    2: "throttled",
    3: "soft_temperature_limit",
    16: "under_voltage_occurred",
    17: "arm_frequency_capped_occurred",
    18: "throttled_occurred",
    19: "soft_temperature_limit_occurred",
}


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def os_pretty_name(path: str = "/etc/os-release") -> Optional[str]:
    text = _read_text(path)
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"').strip("'") or None
    return None


def cpu_model(path: str = "/proc/cpuinfo") -> Optional[str]:
    """x86 and some ARM kernels say "model name"; 32-bit Pi kernels say
    "Hardware" (the SoC) and 64-bit ones only "Model" (the board)."""
    text = _read_text(path)
    if not text:
        return platform.processor() or None
    fields: Dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            if key not in fields and value.strip():
                fields[key] = value.strip()
    for key in ("model name", "hardware", "model", "cpu model", "processor"):
        if key in fields:
            return fields[key]
    return None


def pi_model(path: str = "/proc/device-tree/model") -> Optional[str]:
    text = _read_text(path)
    if text is None:
        return None
    return text.replace("\x00", "").strip() or None


def temperature() -> Optional[Dict[str, Any]]:
    """CPU temperature in °C from the kernel's thermal zones.

    ``celsius`` is the zone whose type names the CPU/SoC when one does
    (cpu-thermal on a Pi), else the hottest zone.
    """
    zones: List[Dict[str, Any]] = []
    for zone_dir in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        raw = _read_text(os.path.join(zone_dir, "temp"))
        if raw is None:
            continue
        try:
            celsius = int(raw.strip()) / 1000.0
        except ValueError:
            continue
        ztype = (_read_text(os.path.join(zone_dir, "type")) or "").strip() or None
        zones.append({"zone": os.path.basename(zone_dir), "type": ztype,
                      "celsius": celsius})
    if not zones:
        return None
    cpu = [z for z in zones if z["type"] and any(
        k in z["type"].lower() for k in ("cpu", "soc", "x86_pkg"))]
    chosen = cpu[0] if cpu else max(zones, key=lambda z: z["celsius"])
    return {"celsius": chosen["celsius"], "zone": chosen["zone"], "zones": zones}


def throttled() -> Optional[Dict[str, Any]]:
    """Parse ``vcgencmd get_throttled``; null where the tool does not exist."""
    exe = shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, "get_throttled"], capture_output=True,
                              text=True, timeout=_VCGENCMD_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    out = proc.stdout.strip()
    if proc.returncode != 0 or "=" not in out:
        return None
    raw = out.split("=", 1)[1].strip()
    try:
        value = int(raw, 16)
    except ValueError:
        return None
    return {"raw": raw, "value": value,
            "flags": [name for bit, name in sorted(_THROTTLE_BITS.items())
                      if value & (1 << bit)]}


def loadavg() -> Optional[List[float]]:
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def _cpu_freq() -> Dict[str, Any]:
    base = "/sys/devices/system/cpu/cpu0/cpufreq/"
    governor = (_read_text(base + "scaling_governor") or "").strip() or None
    cur = (_read_text(base + "scaling_cur_freq") or "").strip()
    return {"governor": governor, "cur_freq_khz": int(cur) if cur.isdigit() else None}


def _usable_cores() -> Optional[int]:
    getter = getattr(os, "sched_getaffinity", None)
    if getter is None:
        return None
    try:
        return len(getter(0))
    except OSError:
        return None


def numpy_version() -> Optional[str]:
    mod = sys.modules.get("numpy")
    if mod is not None:
        return getattr(mod, "__version__", None)
    try:
        from importlib import metadata
        return metadata.version("numpy")
    except Exception:
        return None


def volatile_state() -> Dict[str, Any]:
    """The part that changes during a run; taken before and after it."""
    return {"temperature": temperature(), "throttled": throttled(), "loadavg": loadavg()}


def collect_device() -> Dict[str, Any]:
    cpu: Dict[str, Any] = {"model": cpu_model(), "cores": os.cpu_count(),
                           "usable_cores": _usable_cores()}
    cpu.update(_cpu_freq())
    info: Dict[str, Any] = {
        "hostname": socket.gethostname(),
        "os": {"platform": platform.platform(), "system": platform.system(),
               "release": platform.release(), "pretty_name": os_pretty_name()},
        "machine": platform.machine(),
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation()},
        "numpy": numpy_version(),
        "cpu": cpu,
        "pi_model": pi_model(),
    }
    info.update(volatile_state())
    return info
