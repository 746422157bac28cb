"""The comparison table's columns, each described once: adding a column is one entry in ``COLUMNS``.

An entry says where the value comes from (``when`` and ``read``), what it is in the DataFrame and the CSV (``name``,
``unit``), how people see it (``header`` for Markdown and HTML, ``terminal`` for the narrow terminal table,
``show`` for the cell text, ``legend`` for the line under the tables), and whether it is a figure of the host
(``host``: a failed pair still shows it). ``frame`` builds the DataFrame from these entries; ``views``, and through
it the terminal, Markdown and HTML, shows them; the CSV holds every ``name`` in this order. Latency is stored in µs
and shown in the one unit ``latency_unit`` picks for a table (the report's tables, ``diff`` and ``plots`` alike).

A new figure of the stored result, say its mean, is this one entry (placed where it should stand)::

    Column("mean_us", "µs", MEASURED, _stored("mean_us"), header="mean {latency}", terminal="mean\\n{latency}",
           show=_latency),
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from . import stats

#: ``when`` a column is read: set by ``frame`` itself; from the variant, always; from the stored result, when the
#: device answered; from the result, when it measured ok; against the baseline on the same device, both ok; from
#: the device's own figures (its A/A band and verdict), on every row of the device.
SET, HOST, ANSWERED, MEASURED, VS_BASELINE, DEVICE = "set", "host", "answered", "measured", "vs-baseline", "device"


@dataclass(frozen=True)
class Pair:
    """What one device x variant row is read from (``read`` of HOST, ANSWERED and MEASURED columns)."""

    variant: Dict[str, Any]  # the store's variants row
    base: Optional[Dict[str, Any]]  # the baseline's variants row, when it was built
    result: Optional[Dict[str, Any]]  # the store's results row (None: never measured)
    rounds: Optional[List[float]]  # the cell's p50 per round (µs, NaN where not visited); None: no rounds
    ci: Optional[stats.Interval]  # the p50's 95% interval between rounds (the agent's, as stored)


@dataclass(frozen=True)
class Relative:
    """A row beside the baseline's row on the same device (``read`` of VS_BASELINE columns)."""

    row: Mapping[str, Any]
    base: Mapping[str, Any]
    is_baseline: bool
    verdict: Optional[stats.Verdict]  # the speed-up judged against the device's A/A band (None for the baseline)

    @property
    def ratio(self) -> Optional[stats.Interval]:
        """baseline p50 / this p50, paired by round (None without rounds, and for the baseline itself)."""
        return self.verdict.ratio if self.verdict else None


@dataclass(frozen=True)
class Device:
    """One device's own figures (``read`` of DEVICE columns): the same on every row of that device."""

    band: Optional[stats.Interval]  # the A/A noise band (None: no noise floor)
    verdict: str  # what pruning, quantization and both bought, one part per line


@dataclass(frozen=True)
class View:
    """How one display table is shown: its latency unit and whether it is the narrow terminal table."""

    unit: str = "µs"
    scale: float = 1.0
    terminal: bool = False


#: Cell text from (the value, its whole row, the view).
Show = Callable[[Any, Mapping[str, Any], View], str]


@dataclass(frozen=True)
class Column:
    """One column of the comparison table, everything about it in one place."""

    name: str  # in the DataFrame and the CSV
    unit: str = ""  # of the value in the DataFrame and the CSV
    when: str = SET
    read: Optional[Callable[[Any], Any]] = None  # Pair or Relative -> value
    header: str = ""  # for Markdown and HTML; "" = not shown to people; {latency} = the table's latency unit
    terminal: Optional[str] = None  # in the terminal (two lines keep it narrow); None = as header; "" = not shown
    show: Optional[Show] = None  # cell text; None = the value itself
    legend: str = ""
    host: bool = False  # a figure of the host, shown also for a pair that failed
    dtype: Optional[str] = None  # "object" keeps True/False/None apart from a missing value

    def heading(self, view: View) -> str:
        header = self.header if not view.terminal or self.terminal is None else self.terminal
        return header.format(latency=view.unit)

    def cell(self, row: Mapping[str, Any], view: View) -> str:
        value = row[self.name]
        return value if self.show is None else self.show(value, row, view)


def latency_unit(values: Iterable[Any]) -> Tuple[str, float]:
    """The one ms/µs choice: ms once the largest latency (µs) reaches 1000, else µs; returns (unit, divisor)."""
    finite = [float(v) for v in values if present(v) and math.isfinite(float(v))]
    return ("ms", 1000.0) if finite and max(finite) >= 1000 else ("µs", 1.0)


# -- reading and showing values ---------------------------------------------------------------------------------

def present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value != ""


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if present(value) else ""


def _kb(value: Optional[float]) -> float:
    return math.nan if value is None else value / 1024


def _num(value: Optional[float]) -> float:
    return math.nan if value is None else float(value)


def _stored(key: str) -> Callable[[Pair], float]:
    return lambda pair: _num(pair.result[key])  # type: ignore[index]


def _number(spec: str, suffix: str = "", times: float = 1) -> Show:
    return lambda v, row, view: _fmt(v * times, spec) + suffix if present(v) else ""


def latency_text(value: float) -> str:
    """Three significant digits or so, at most 5 characters below 100000: 7.12, 27.7, 123, 4567."""
    return _fmt(value, ".2f" if abs(value) < 10 else ".1f" if abs(value) < 100 else ".0f") if value == value else ""


def _latency(v: Any, row: Mapping[str, Any], view: View) -> str:
    return latency_text(v / view.scale)


def _ci(v: Any, row: Mapping[str, Any], view: View) -> str:
    low, high = latency_text(v / view.scale), latency_text(row["p50_ci_high_us"] / view.scale)
    return f"{low}-{high}" if low else ""


def _speedup(v: Any, row: Mapping[str, Any], view: View) -> str:
    """``~`` within the noise (no measurable change), ``?`` not judged (no rounds, too few, no noise floor)."""
    text = _fmt(v, ".2f")
    if not text:
        return ""
    judged = row["speedup_significant"]
    if judged is None and present(row["verdict"]):
        return text + "x?"
    return ("~" if judged is False else "") + text + "x"


def _ratio_ci(v: Any, row: Mapping[str, Any], view: View) -> str:
    return stats.span_text(v, row["speedup_ci_high"]) if present(v) else ""


def _half_width(v: Any, row: Mapping[str, Any], view: View) -> str:
    """``±0.7%``; ``*`` after it when the cell did not settle (it is listed under the table)."""
    if not present(v):
        return ""
    return stats.percent(v) + ("*" if row["settled"] is False else "")


def _answered(key: str) -> Callable[[Pair], Any]:
    return lambda pair: pair.result[key]  # type: ignore[index]


def _gzip_ratio(pair: Pair) -> float:
    variant, base = pair.variant, pair.base
    return base["gzip_bytes"] / variant["gzip_bytes"] if base and variant["gzip_bytes"] else math.nan


def _flag(key: str) -> Callable[[Pair], Optional[bool]]:
    """A stored 1/0/NULL as True/False/None."""
    return lambda p: None if p.result.get(key) is None else bool(p.result[key])  # type: ignore[union-attr]


def _half(pair: Pair) -> float:
    """The p50 interval's half-width as a fraction of the p50: the agent's, else from the interval."""
    stored = pair.result.get("ci_half_width")  # type: ignore[union-attr]
    return _num(stored if stored is not None else stats.relative_half_width(pair.ci))


def _called(r: Relative) -> Any:
    """True: called faster or slower; False: no measurable change; None: not judged (see ``verdict``)."""
    if r.is_baseline:
        return math.nan
    return r.verdict.real if r.verdict and r.verdict.kind in _JUDGED else None


_JUDGED = (stats.FASTER, stats.SLOWER, stats.NO_CHANGE)


def _band(side: str) -> Callable[[Device], float]:
    return lambda d: getattr(d.band, side) if d.band else math.nan


# -- the table --------------------------------------------------------------------------------------------------

COLUMNS: Tuple[Column, ...] = (
    Column("run_id"),
    Column("device"),
    Column("variant", header="variant", host=True),
    Column("status", header="status", host=True, show=lambda v, row, view: "" if v == "ok" else v),
    Column("error"),
    Column("runtime", when=ANSWERED, read=_answered("runtime")),
    Column("runtime_version", when=ANSWERED, read=_answered("runtime_version")),
    Column("threads", when=ANSWERED, read=_answered("threads")),
    Column("machine", when=ANSWERED, read=_answered("machine")),
    Column("plan_id", when=ANSWERED, read=_answered("plan_id")),
    Column("size_kb", "KB", HOST, lambda p: _kb(p.variant["size_bytes"]),
           header="size KB", terminal="size\nKB", show=_number(".1f"), host=True),
    Column("gzip_kb", "KB", HOST, lambda p: _kb(p.variant["gzip_bytes"]),
           header="gzip KB", terminal="", show=_number(".1f"), host=True),
    Column("gzip_ratio", "x", HOST, _gzip_ratio,
           header="gzip ratio", terminal="gzip\nratio", show=_number(".2f", "x"), host=True,
           legend="gzip ratio = baseline gzip size / variant gzip size"),
    Column("sparsity", "fraction", HOST, lambda p: _num(p.variant["sparsity"]),
           header="sparsity", terminal="sparse", show=_number(".0%"), host=True),
    Column("host_accuracy", "fraction", HOST, lambda p: _num(p.variant["accuracy"]),
           header="host acc", terminal="", show=_number(".2%"), host=True),
    Column("device_accuracy", "fraction", MEASURED, _stored("accuracy"),
           header="acc", show=lambda v, row, view: _fmt(v, ".1%" if view.terminal else ".2%")),
    Column("accuracy_delta", "fraction", VS_BASELINE, lambda r: r.row["device_accuracy"] - r.base["device_accuracy"],
           header="Δ acc pts", terminal="Δ acc\npts", show=_number("+.2f", times=100),
           legend="Δ acc = device accuracy minus the baseline's on the same device"),
    Column("agreement", "fraction", MEASURED, _stored("agreement"),
           header="agree", show=lambda v, row, view: "100%" if v == 1 else _fmt(v, ".1%"),
           legend="agree = share of the device's predictions equal to the host's for that variant"),
    Column("p50_us", "µs", MEASURED, _stored("p50_us"),
           header="p50 {latency}", terminal="p50\n{latency}", show=_latency),
    Column("p50_ci_low_us", "µs", MEASURED, lambda p: p.ci.low if p.ci else math.nan,
           header="p50 95% CI", terminal="", show=_ci),
    Column("p50_ci_high_us", "µs", MEASURED, lambda p: p.ci.high if p.ci else math.nan),
    Column("p50_half_width", "fraction", MEASURED, _half, header="p50 ±", terminal="p50\n±", show=_half_width,
           legend="p50 = median of the per-round p50s, ± = half its 95% interval between rounds, * = did not "
                  "settle (listed under the table)"),
    Column("settled", when=MEASURED, read=_flag("settled"), dtype="object"),
    Column("rounds", when=MEASURED, read=_stored("rounds"), header="rounds", terminal="", show=_number(".0f")),
    Column("p90_us", "µs", MEASURED, _stored("p90_us"),
           header="p90 {latency}", terminal="", show=_latency),
    Column("p99_us", "µs", MEASURED, _stored("p99_us"),
           header="p99 {latency}", terminal="p99\n{latency}", show=_latency),
    Column("speedup", "x", VS_BASELINE, lambda r: r.ratio.mid if r.ratio else r.base["p50_us"] / r.row["p50_us"],
           header="speed-up", terminal="speed\nup", show=_speedup,
           legend="speed-up = baseline p50 / variant p50 on the same device, paired by round (the median of the "
                  "per-round ratios), ~ = no measurable change (its 95% interval includes 1 or lies within the "
                  "device's A/A noise band), ? = not judged (see the verdict)"),
    Column("speedup_ci_low", "x", VS_BASELINE, lambda r: r.ratio.low if r.ratio else math.nan,
           header="speed-up 95% CI", terminal="", show=_ratio_ci),
    Column("speedup_ci_high", "x", VS_BASELINE, lambda r: r.ratio.high if r.ratio else math.nan),
    Column("speedup_significant", when=VS_BASELINE, dtype="object", read=_called),
    Column("verdict", when=VS_BASELINE, dtype="object", read=lambda r: r.verdict.kind if r.verdict else math.nan,
           header="verdict", terminal="", show=lambda v, row, view: v if present(v) else "",
           legend="verdict = what the speed-up's interval says against the A/A band: faster, slower, no measurable "
                  "change, or why it is not judged"),
    Column("verdict_text", when=VS_BASELINE, dtype="object",
           read=lambda r: r.verdict.phrase if r.verdict else math.nan),
    Column("noise", "fraction", DEVICE, lambda d: _num(stats.noise_fraction(d.band))),
    Column("noise_band_low", "x", DEVICE, _band("low")),
    Column("noise_band_high", "x", DEVICE, _band("high")),
    Column("init_ms", "ms", MEASURED, _stored("init_ms"), header="init ms", terminal="init\nms", show=_number(".1f")),
    Column("rss_peak_mib", "MiB", MEASURED, lambda p: _kb(p.result["rss_peak_kib"]),
           header="RSS MiB", terminal="RSS\nMiB", show=_number(".0f"),
           legend="RSS = peak resident memory of the agent"),
    Column("throttled", when=MEASURED, read=_flag("throttled"), header="throttled", terminal="thrott-\nled",
           show=lambda v, row, view: "" if v is None or v != v else ("yes" if v else "no")),
    Column("invokes", when=MEASURED, read=_stored("runs")),
    Column("device_verdict", when=DEVICE, dtype="object", read=lambda d: d.verdict),
    # a matrix bench (issue 13): the cell's configuration, and the one to ship per device x variant (frame sets it)
    Column("config", dtype="object"),
    Column("ship", dtype="object"),
)

NAMES: Tuple[str, ...] = tuple(column.name for column in COLUMNS)
#: Under every table: what the derived figures mean.
LEGEND = "; ".join(column.legend for column in COLUMNS if column.legend) + "."


def shown(view: View) -> List[Column]:
    """The columns people see in this view, in order."""
    return [c for c in COLUMNS if c.header and (not view.terminal or c.terminal != "")]
