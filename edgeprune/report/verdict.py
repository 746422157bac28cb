"""Verdicts: is one variant's speed-up real on a device, and per device, what pruning and quantization bought.

A speed-up is the baseline's p50 over the variant's, paired by round within one plan (``stats.paired_ratio_interval``),
and it is called faster or slower only when its interval excludes 1 and lies beyond the device's A/A band
(``stats.call_speedup``). The device verdict puts three questions side by side, each against ``baseline-float32``
on the same device: what pruning bought (``pruned-float32``: gzip size, latency, accuracy), what quantization
bought (``baseline-int8``, else ``baseline-dynamic``) and what both together bought (``pruned-int8``); with the
opt-in ``finetuned-float32``, also what fine-tuning alone did to accuracy, so pruning's own cost shows.
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Tuple

from . import stats
from .noise import BASELINE, NO_ROUNDS, NO_ROUNDS_TEXT, NOT_PAIRED, NOT_PAIRED_TEXT, rounds_of

FINETUNED = "finetuned-float32"
PRUNED = "pruned-float32"
#: (what bought it, the variants that show it, first present one used): each against the baseline.
PARTS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("pruning", (PRUNED,)),
    ("quantization", ("baseline-int8", "baseline-dynamic")),
    ("both", ("pruned-int8",)),
)


def speedup_verdict(base: Mapping[str, Any], result: Mapping[str, Any], band: Optional[stats.Interval],
                    no_floor: str = "") -> stats.Verdict:
    """The baseline / variant speed-up of two measured rows of one device, judged against its A/A ``band``
    (``no_floor`` says why there is none, when there is none).

    Only rows of the same plan are paired round by round (round 7 of two plans has nothing in common); rows
    without rounds get a verdict of kind NO_ROUNDS, which is never real.
    """
    base_rounds, rounds = rounds_of(base), rounds_of(result)
    if base_rounds is None or rounds is None:
        return stats.Verdict(NO_ROUNDS, NO_ROUNDS_TEXT)
    if base.get("plan_id") is None or base.get("plan_id") != result.get("plan_id"):
        return stats.Verdict(NOT_PAIRED, NOT_PAIRED_TEXT)
    try:
        ratio = stats.paired_ratio_interval(base_rounds, rounds)
    except ValueError:  # one plan's cells always have as many rounds; a damaged store may not
        ratio = None
    verdict = stats.call_speedup(ratio, band)
    if verdict.kind == stats.NO_FLOOR and ratio is not None and no_floor:
        mid = ratio.mid if ratio.mid is not None else (ratio.low + ratio.high) / 2
        return stats.Verdict(stats.NO_FLOOR, f"{stats.ratio_text(mid, ratio.low, ratio.high)}, no noise floor "
                                             f"({no_floor})", ratio, band)
    return verdict



def _gzip(row: Mapping[str, Any]) -> str:
    ratio = stats.finite(row.get("gzip_ratio"))
    if ratio is None:
        return "gzip size unknown"
    if ratio >= 1.005:
        return f"gzip {ratio:.2f}x smaller"
    if ratio <= 0.995:
        return f"gzip {1 / ratio:.2f}x larger"
    return "gzip size unchanged"


def _latency(row: Mapping[str, Any]) -> str:
    if row["status"] != "ok":
        return f"latency not measured ({row['status']})"
    kind, phrase = row.get("verdict"), row.get("verdict_text")
    speedup = stats.finite(row.get("speedup"))
    shown = f"{speedup:.2f}x" if speedup is not None else "unknown"
    if not isinstance(kind, str) or not isinstance(phrase, str):
        return f"latency {shown} (not judged)"
    if kind in (NO_ROUNDS, NOT_PAIRED):
        return f"latency {shown} ({kind}, not judged)"
    if kind == stats.NO_CHANGE:
        return phrase.replace(stats.NO_CHANGE, f"{stats.NO_CHANGE} in latency", 1)
    low, high = stats.finite(row.get("speedup_ci_low")), stats.finite(row.get("speedup_ci_high"))
    if kind == stats.NO_FLOOR and speedup is not None and low is not None and high is not None:
        return f"latency {stats.ratio_text(speedup, low, high)}, not judged (no noise floor)"
    return f"latency{':' if kind == stats.NOT_ENOUGH else ''} {phrase}"


def _points(delta: Optional[float]) -> str:
    return f"{delta * 100:+.2f} pts"


def _accuracy(row: Mapping[str, Any], base: Mapping[str, Any], what: str = "accuracy") -> str:
    """The device's accuracy delta, else the host's (a pair that failed on the device still has it)."""
    device = stats.finite(row.get("device_accuracy"))
    base_device = stats.finite(base.get("device_accuracy"))
    if device is not None and base_device is not None:
        return f"{what} {_points(device - base_device)}"
    host, base_host = stats.finite(row.get("host_accuracy")), stats.finite(base.get("host_accuracy"))
    if host is not None and base_host is not None:
        return f"{what} {_points(host - base_host)} (on the host)"
    return f"{what} unknown"


def _pick(by: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> Optional[str]:
    """The first of ``names`` measured ok on the device, else the first present at all (to say why it is not)."""
    present = [name for name in names if name in by]
    ok = [name for name in present if by[name]["status"] == "ok"]
    return (ok or present or [None])[0]


def device_verdict(rows: Sequence[Mapping[str, Any]]) -> List[str]:
    """What pruning, quantization and both bought on one device (its frame rows), one line each; [] when the
    run has no baseline."""
    by = {row["variant"]: row for row in rows}
    base = by.get(BASELINE)
    if base is None:
        return []
    if base["status"] != "ok":
        return [f"No verdict: the baseline ({BASELINE}) was not measured on this device ({base['status']})."]
    lines = []
    for label, names in PARTS:
        name = _pick(by, names)
        if name is None:
            continue
        row = by[name]
        lines.append(f"{label.capitalize()} bought ({name} vs {BASELINE}): {_gzip(row)}; {_latency(row)}; "
                     f"{_accuracy(row, base)}.")
    if FINETUNED in by:
        finetuned = by[FINETUNED]
        line = (f"Fine-tuning alone ({FINETUNED} vs {BASELINE}): {_accuracy(finetuned, base)}; "
                f"{_latency(finetuned)}")
        if PRUNED in by:
            line += f"; pruning's own cost ({PRUNED} vs {FINETUNED}): " + _accuracy(by[PRUNED], finetuned)
        lines.append(line + ".")
    return lines
