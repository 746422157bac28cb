"""Sustained mode (``bench --sustained SECONDS``): one cell kept running, sampled every second.

A Pi without a fan throttles within minutes, and a bench of interleaved rounds (seconds per cell, with pauses
between visits) never gets there: its numbers are those of a cool board. Here one interpreter invokes back to
back for the whole duration, and every second the agent records that second's p50 latency next to the CPU
temperature, the CPU frequency and the firmware's throttle bits (``vcgencmd get_throttled``), so the report can
say whether, when and why the device throttled and what it did to latency.

The sensors are read between the seconds' invokes, never inside a timed one. The temperature zone and the
frequency file are chosen once (the same zone ``sysinfo.temperature`` picks); a sensor that is missing is null
in every sample and named null in ``sources``: an x86 host has no ``vcgencmd``, a container may have no zones.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from . import sysinfo
from .protocol import AgentError, DATA_MISMATCH
from .runtime import runtime_message

#: At most this many samples are kept (a day at one a second); the run goes on, later samples are dropped.
MAX_SAMPLES = 86400
FREQ_FILE = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"


def _reader(path: Optional[str], scale: float) -> Callable[[], Optional[float]]:
    def read() -> Optional[float]:
        if path is None:
            return None
        try:
            with open(path) as fh:
                return int(fh.read(64).strip()) / scale
        except (OSError, ValueError):
            return None
    return read


def sensors() -> Dict[str, Any]:
    """The sources the samples come from (paths, or null where the device has none)."""
    zone = sysinfo.temperature()
    temp = "/sys/class/thermal/%s/temp" % zone["zone"] if zone else None
    freq = FREQ_FILE if _reader(FREQ_FILE, 1000.0)() is not None else None
    throttle = "vcgencmd" if sysinfo.throttled() is not None else None
    return {"temp": temp, "freq": freq, "throttle": throttle}


def run_sustained(interpreter: Any, feeds: List[Any], cell_id: str, seconds: float,
                  interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> Dict[str, Any]:
    """Invoke ``interpreter`` back to back for ``seconds``, one sample per ``interval``; the result's shape is
    the plan result's ``sustained`` (schemas/agent-plan-result.schema.json). An invoke that fails ends the run
    with ``stopped_by`` "error" and the samples taken so far."""
    sources = sensors()
    temp_c = _reader(sources["temp"], 1000.0)
    freq_mhz = _reader(sources["freq"], 1000.0)
    samples: List[Dict[str, Any]] = []
    out: Dict[str, Any] = {"cell": cell_id, "seconds": float(seconds), "stopped_by": "seconds",
                           "sources": sources, "samples": samples}
    set_tensor, invoke, ns = interpreter.set_tensor, interpreter.invoke, time.perf_counter_ns
    n = len(feeds)
    start = clock()
    end = start + seconds
    i = 0
    gc_was_enabled = gc.isenabled()
    try:
        while clock() < end:
            slice_end = min(clock() + interval, end)
            times: List[int] = []
            gc.disable()
            try:
                while True:
                    for index, value in feeds[i % n]:
                        set_tensor(index, value)
                    t0 = ns()
                    invoke()
                    times.append(ns() - t0)
                    i += 1
                    if clock() >= slice_end:
                        break
            finally:
                if gc_was_enabled:
                    gc.enable()
            bits = sysinfo.throttled() if sources["throttle"] else None
            if len(samples) < MAX_SAMPLES:
                samples.append({"t_s": round(clock() - start, 3), "runs": len(times),
                                "p50_us": float(np.median(np.asarray(times, dtype=np.float64))) / 1000.0,
                                "temp_c": temp_c(), "freq_mhz": freq_mhz(),
                                "throttled": bits["value"] if bits else None})
    except Exception as exc:  # this cell's kernels: the samples so far stay
        out["stopped_by"] = "error"
        out["error"] = AgentError(DATA_MISMATCH, "invoke failed after %.0f s of the sustained run: %s"
                                  % (clock() - start, runtime_message(exc))).to_json()
    return out

