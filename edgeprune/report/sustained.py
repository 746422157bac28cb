"""A sustained run in one sentence and one plot: a cell kept running for minutes on one device, sampled each second.

A bench measures for seconds per cell; a Pi without a heatsink reaches its soft temperature limit after a few
minutes, the firmware caps the ARM clock, and the same model gets slower. ``bench --sustained SECONDS`` keeps one
cell running and records, every second, the runs done, their p50, the CPU temperature, the CPU frequency and the
firmware's throttle bits. ``summarize`` compares the first minute with the last, says whether and when the device
throttled and why, and ``statement`` puts it in one plain sentence; ``plot`` draws latency and temperature over
time with the throttled spans shaded.

The data is plain (validated by the host's reader), but its strings (the cell, sources, an error) came from the
device: each renderer escapes them for its own output (``text.for_*``); the summary keeps them as sent.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .columns import latency_text, latency_unit
from .plots import DPI, SIZE
from ..text import for_html, for_markdown, for_matplotlib, for_rich

#: Bits of ``vcgencmd get_throttled`` (Raspberry Pi firmware documentation), as device_agent/sysinfo.py's
#: ``_THROTTLE_BITS`` names them; the report never imports the agent, so the table is kept here too. Bits 0-3 say
#: what is true now; the same bits + ``OCCURRED`` say it has happened since boot (they stay set until a reboot).
UNDER_VOLTAGE = 0
#: The bits that mean throttled, in the order a sentence names them.
REASONS: Tuple[Tuple[int, str], ...] = ((3, "soft temperature limit"), (1, "arm frequency capped"),
                                        (2, "firmware throttling"))
OCCURRED = 16
THROTTLE_MASK = sum(1 << bit for bit, _ in REASONS)
#: The first and last window compared: a minute, or a tenth of a shorter run (so the two never overlap).
WINDOW_S = 60.0
#: A p50 change within this fraction is "steady"; a frequency drop beyond this one is reported (no throttle bits).
STEADY = 0.05
FREQ_DROP = 0.10

THROTTLED = "throttled"
BRIEFLY = "throttled between samples"
BEFORE = "throttled before this run (since boot)"
NOT_THROTTLED = "not throttled"
NO_VCGENCMD = "throttle bits unavailable (no vcgencmd)"
NO_BITS = "throttle bits unavailable (vcgencmd gave none)"
HEADING = "Sustained runs"


def _mean_spacing(times: Sequence[float]) -> float:
    return (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 1.0


@dataclass(frozen=True)
class SustainedSummary:
    """What a sustained run of one cell on one device showed. Latencies in µs, temperatures in °C, MHz."""

    device: str
    cell: str
    asked_s: float  # the run's requested length
    duration_s: float  # the last sample's time: how long it really ran
    samples: int
    stopped_by: str  # "seconds", "deadline" or "error"
    error: str  # "kind: message" when stopped by an error
    window_s: float  # the length of the first and the last window compared
    first_p50_us: Optional[float]  # median of the samples' p50 in the first window
    last_p50_us: Optional[float]
    temp_min: Optional[float]
    temp_max: Optional[float]
    temp_first: Optional[float]
    temp_last: Optional[float]
    freq_min: Optional[float]
    freq_max: Optional[float]
    throttle: str  # THROTTLED, BRIEFLY, BEFORE, NOT_THROTTLED, NO_VCGENCMD or NO_BITS
    throttled_at_s: Optional[float]  # the first sample that showed it during the run
    reasons: Tuple[str, ...]  # named from the bits (for BEFORE, the ones set since boot)
    under_voltage_at_s: Optional[float]
    under_voltage_before: bool
    freq_fell: Optional[Tuple[float, float]]  # (first window's max, lowest after it) when it fell more than 10%
    sources: Dict[str, Optional[str]] = field(default_factory=dict)
    times: Tuple[float, ...] = field(default=(), repr=False)
    p50s: Tuple[Optional[float], ...] = field(default=(), repr=False)
    temps: Tuple[Optional[float], ...] = field(default=(), repr=False)
    spans: Tuple[Tuple[float, float], ...] = ()  # (from, to) in s where the throttle bits said throttled now

    @property
    def ratio(self) -> Optional[float]:
        """Last window's p50 over the first's (1.31 = 31% slower at the end)."""
        if self.first_p50_us is None or self.last_p50_us is None or self.first_p50_us <= 0:
            return None
        return self.last_p50_us / self.first_p50_us


@dataclass(frozen=True)
class _Throttle:
    state: str
    at_s: Optional[float] = None
    reasons: Tuple[str, ...] = ()
    under_voltage_at_s: Optional[float] = None
    under_voltage_before: bool = False
    spans: Tuple[Tuple[float, float], ...] = ()


def _names(bits: int) -> Tuple[str, ...]:
    return tuple(name for bit, name in REASONS if bits & (1 << bit))


def _spans(times: Sequence[float], now: Sequence[bool]) -> Tuple[Tuple[float, float], ...]:
    """Runs of samples throttled now, each from its first sample's time to the next (unthrottled) sample's, or a
    sample's spacing past the last one."""
    spans: List[Tuple[float, float]] = []
    start: Optional[float] = None
    for t, throttled in zip(times, now):
        if throttled and start is None:
            start = t
        elif not throttled and start is not None:
            spans.append((start, t))
            start = None
    if start is not None:
        spans.append((start, times[-1] + _mean_spacing(times)))
    return tuple(spans)


def _throttle(samples: Sequence[Mapping[str, Any]], source: Optional[str]) -> _Throttle:
    """Whether, when and why the firmware throttled during the run.

    The "occurred" bits are sticky since boot: those already set in the first sample happened before this run;
    one that appears later with no "now" bit seen means the device throttled for less than a sample's second.
    """
    known = [(float(s["t_s"]), int(s["throttled"])) for s in samples if s.get("throttled") is not None]
    if source is None or not known:
        return _Throttle(NO_VCGENCMD if source is None else NO_BITS)
    first = known[0][1]
    boot = (first >> OCCURRED) & ~first & 0xF  # occurred before the run: not explained by the first sample's now
    now_bits = new_bits = 0
    at = uv_at = None
    for t, bits in known:
        now, new = bits & 0xF, (bits >> OCCURRED) & 0xF & ~boot
        if (now | new) & THROTTLE_MASK and at is None:
            at = t
        if (now | new) & (1 << UNDER_VOLTAGE) and uv_at is None:
            uv_at = t
        now_bits, new_bits = now_bits | now, new_bits | new
    spans = _spans([t for t, _ in known], [bool(bits & THROTTLE_MASK) for _, bits in known])
    uv_before = bool(boot & (1 << UNDER_VOLTAGE)) and uv_at is None
    if now_bits & THROTTLE_MASK:
        return _Throttle(THROTTLED, at, _names(now_bits | new_bits), uv_at, uv_before, spans)
    if new_bits & THROTTLE_MASK:
        return _Throttle(BRIEFLY, at, _names(new_bits), uv_at, uv_before, spans)
    if boot & THROTTLE_MASK:
        return _Throttle(BEFORE, None, _names(boot), uv_at, uv_before)
    return _Throttle(NOT_THROTTLED, None, (), uv_at, uv_before)


def _known(values: Sequence[Optional[float]]) -> List[float]:
    return [float(v) for v in values if v is not None]


def _median(values: Sequence[Optional[float]]) -> Optional[float]:
    known = _known(values)
    return statistics.median(known) if known else None


def _error(data: Mapping[str, Any], limit: int = 200) -> str:
    error = data.get("error") or {}
    text = ": ".join(str(error[k]) for k in ("kind", "message") if error.get(k))
    return text if len(text) <= limit else text[:limit] + "…"


def summarize(device: str, data: Mapping[str, Any]) -> SustainedSummary:
    """The figures of one sustained run (``data`` as the host's reader gives it)."""
    samples = sorted(data.get("samples") or [], key=lambda s: float(s["t_s"]))
    sources = dict(data.get("sources") or {})
    times = tuple(float(s["t_s"]) for s in samples)
    duration = times[-1] if times else 0.0
    window = min(WINDOW_S, 0.1 * duration) if duration > 0 else WINDOW_S
    first = [s for s in samples if float(s["t_s"]) <= window] or samples[:1]
    last = [s for s in samples if float(s["t_s"]) >= duration - window] or samples[-1:]
    temps = _known([s.get("temp_c") for s in samples])
    freqs = _known([s.get("freq_mhz") for s in samples])
    first_freq = max(_known([s.get("freq_mhz") for s in first]), default=None)
    later = min(_known([s.get("freq_mhz") for s in samples if float(s["t_s"]) > window]), default=None)
    fell = (first_freq, later) if first_freq and later is not None and later < (1 - FREQ_DROP) * first_freq else None
    throttle = _throttle(samples, sources.get("throttle"))
    return SustainedSummary(
        device=str(device), cell=str(data.get("cell") or ""), asked_s=float(data.get("seconds") or 0.0),
        duration_s=duration, samples=len(samples), stopped_by=str(data.get("stopped_by") or ""),
        error=_error(data), window_s=window,
        first_p50_us=_median([s.get("p50_us") for s in first]), last_p50_us=_median([s.get("p50_us") for s in last]),
        temp_min=min(temps, default=None), temp_max=max(temps, default=None),
        temp_first=temps[0] if temps else None, temp_last=temps[-1] if temps else None,
        freq_min=min(freqs, default=None), freq_max=max(freqs, default=None),
        throttle=throttle.state, throttled_at_s=throttle.at_s, reasons=throttle.reasons,
        under_voltage_at_s=throttle.under_voltage_at_s, under_voltage_before=throttle.under_voltage_before,
        freq_fell=fell, sources=sources, times=times, p50s=tuple(s.get("p50_us") for s in samples),
        temps=tuple(s.get("temp_c") for s in samples), spans=throttle.spans)


# -- the sentence ------------------------------------------------------------------------------------------------

def _range(low: Optional[float], high: Optional[float], unit: str) -> str:
    if low is None or high is None:
        return ""
    return f"{low:.0f} {unit}" if round(low) == round(high) else f"{low:.0f}-{high:.0f} {unit}"


def _throttle_phrase(s: SustainedSummary) -> str:
    reasons = ", ".join(s.reasons)
    if s.throttle == THROTTLED:
        phrase = f"throttled after {s.throttled_at_s:.0f} s ({reasons})"
    elif s.throttle == BRIEFLY:
        phrase = f"throttled between samples, first seen at {s.throttled_at_s:.0f} s ({reasons})"
    elif s.throttle == BEFORE:
        phrase = f"throttled before this run (since boot: {reasons}), not during it"
    else:
        phrase = s.throttle
    if s.throttle in (NO_VCGENCMD, NO_BITS) and s.freq_fell:
        phrase += f", CPU frequency fell from {s.freq_fell[0]:.0f} to {s.freq_fell[1]:.0f} MHz"
    if s.under_voltage_at_s is not None:
        return f"under-voltage at {s.under_voltage_at_s:.0f} s; {phrase}"
    return f"under-voltage before this run (since boot); {phrase}" if s.under_voltage_before else phrase


def _latency_phrase(s: SustainedSummary) -> str:
    ratio = s.ratio
    if ratio is None:
        return "p50 unknown"
    unit, scale = latency_unit([s.first_p50_us, s.last_p50_us])
    a, b = (f"{latency_text(v / scale)} {unit}" for v in (s.first_p50_us, s.last_p50_us))  # type: ignore[operator]
    if abs(ratio - 1) <= STEADY:
        return f"p50 steady ({a} to {b}, {ratio:.2f}x)"
    return f"p50 {'rose' if ratio > 1 else 'fell'} from {a} to {b} ({ratio:.2f}x)"


def _stop_phrase(s: SustainedSummary) -> str:
    if s.stopped_by == "deadline":
        return f" (stopped by the deadline, {s.asked_s:.0f} s asked)"
    if s.stopped_by == "error":
        return f" (stopped by an error: {s.error or 'no reason given'})"
    return ""


def statement(summary: SustainedSummary) -> str:
    """One plain sentence, e.g. ``pi4: throttled after 212 s (soft temperature limit, arm frequency capped): p50
    rose from 1.21 ms to 1.58 ms (1.31x) over 600 s; CPU 48-81 °C, 600-1800 MHz`` (unescaped)."""
    s = summary
    if not s.samples:
        return f"{s.device}: no samples{_stop_phrase(s)}"
    text = f"{s.device}: {_throttle_phrase(s)}: {_latency_phrase(s)} over {s.duration_s:.0f} s{_stop_phrase(s)}"
    cpu = ", ".join(p for p in (_range(s.temp_min, s.temp_max, "°C"), _range(s.freq_min, s.freq_max, "MHz")) if p)
    return text + (f"; CPU {cpu}" if cpu else "")


def details(summary: SustainedSummary) -> str:
    """The figures behind the sentence, one line (unescaped): the cell, the windows, temperatures, sources."""
    s = summary
    parts = [f"cell {s.cell or '?'}, {s.samples} samples"]
    if s.first_p50_us is not None and s.last_p50_us is not None:
        unit, scale = latency_unit([s.first_p50_us, s.last_p50_us])
        parts.append(f"p50 first {s.window_s:.0f} s {latency_text(s.first_p50_us / scale)} {unit}, "
                     f"last {s.window_s:.0f} s {latency_text(s.last_p50_us / scale)} {unit}")
    if s.temp_first is not None and s.temp_last is not None:
        parts.append(f"temperature {s.temp_first:.1f} °C at the start, {s.temp_last:.1f} °C at the end")
    sources = ", ".join(f"{key} {value or 'none'}" for key, value in sorted(s.sources.items()))
    return "; ".join(parts + ([f"sources: {sources}"] if sources else []))


# -- renderers: each escapes the device's text for its own output ----------------------------------------------

def terminal_lines(summaries: Sequence[SustainedSummary]) -> List[str]:
    """Rich markup lines: a heading, then per run its sentence (bold) and its figures (dim). [] for none."""
    if not summaries:
        return []
    lines = [f"[bold]{HEADING}[/]"]
    for s in summaries:
        lines += [f"  [bold]{for_rich(statement(s), 800)}[/]", f"  [dim]{for_rich(details(s), 800)}[/]"]
    return lines


def markdown(summaries: Sequence[SustainedSummary]) -> str:
    """A section: per run its sentence as a list item and its figures under it. "" for none."""
    if not summaries:
        return ""
    lines = [f"## {HEADING}", ""]
    for s in summaries:
        lines += [f"- **{for_markdown(statement(s), 800)}**", f"  {for_markdown(details(s), 800)}"]
    return "\n".join(lines + [""])


def html(summaries: Sequence[SustainedSummary]) -> str:
    """A ``<section>``: per run its sentence and its figures. "" for none."""
    if not summaries:
        return ""
    items = "".join(f"<li><strong>{for_html(statement(s), 800)}</strong><br>"
                    f'<span class="meta">{for_html(details(s), 800)}</span></li>' for s in summaries)
    return f'<section class="sustained"><h2>{HEADING}</h2><ul>{items}</ul></section>'


# -- the plot ----------------------------------------------------------------------------------------------------

def figure(summary: SustainedSummary) -> Any:
    """p50 over time (left axis) and CPU temperature (right axis, only when there is one), throttled spans
    shaded; the same size as the report's other plots."""
    from matplotlib.figure import Figure

    s = summary
    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    unit, scale = latency_unit(_known(s.p50s))
    nan = float("nan")
    ax.plot(s.times, [v / scale if v is not None else nan for v in s.p50s], color="tab:blue", linewidth=1,
            label="p50 latency")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"p50 latency ({unit})")
    handles = list(ax.get_legend_handles_labels()[0])
    for i, (start, end) in enumerate(s.spans):
        span = ax.axvspan(start, end, color="tab:orange", alpha=0.2, linewidth=0)
        if i == 0:
            span.set_label("throttled")
            handles.append(span)
    if any(t is not None for t in s.temps):
        twin = ax.twinx()
        handles += twin.plot(s.times, [t if t is not None else nan for t in s.temps], color="tab:red",
                             linewidth=1, label="CPU temperature")
        twin.set_ylabel("CPU temperature (°C)")
    if not s.times:
        ax.text(0.5, 0.5, "no samples", transform=ax.transAxes, ha="center", va="center")
    ax.set_title(f"{for_matplotlib(s.device)}: {for_matplotlib(s.cell)} kept running for {s.duration_s:.0f} s; "
                 f"{for_matplotlib(_throttle_phrase(s), 120)}", fontsize=10)
    ax.grid(alpha=0.3)
    if handles:
        ax.legend(handles=handles, loc="upper left")
    return fig


def plot(source: Union[SustainedSummary, Mapping[str, Any]], path: Union[str, Path], device: str = "") -> Path:
    """Write the PNG of a sustained run (a summary, or the run's data with ``device`` to name it) to ``path``."""
    summary = source if isinstance(source, SustainedSummary) else summarize(device, source)
    path = Path(path)
    figure(summary).savefig(path, dpi=DPI, format="png")
    return path
