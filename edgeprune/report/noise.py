"""A device's noise floor in one bench, how its plan stopped, and the cells that did not settle.

Every bench measures the baseline twice on each device, as itself and as its A/A twin (``baseline-float32@aa``, a
results row whose variant is not in the variants table). Both run the same file, so their ratio, paired by round,
is what this device produces by chance in this bench: its **A/A band** (``stats.noise_band``). A speed-up is called
real only beyond it (``stats.call_speedup``; docs/statistics.md). Rows measured before rounds (store schema 1)
have no per-round figures: they get no band and no verdict, and the report says so.

Everything here is plain text built from the store; device text in it (an error message) is escaped by each view.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import stats
from ..devices.cells import aa_cell, is_aa
from ..results.plan_columns import stored_round_p50s

BASELINE = "baseline-float32"
#: The A/A twin's results row (edgeprune.devices.cells): not a variant, never a row of the table.
TWIN = aa_cell(BASELINE)
#: A row without rounds (measured before the agent measured in rounds): shown, never judged.
NO_ROUNDS = "no rounds"
NO_ROUNDS_TEXT = ("no rounds: measured before edgeprune measured in rounds (store schema 1); bench again for "
                  "intervals and a verdict")
#: A row measured by another plan than its baseline (a resumed bench): its rounds cannot be paired.
NOT_PAIRED = "not paired"
NOT_PAIRED_TEXT = ("not paired: measured in another plan than the baseline (a resumed bench); bench the device "
                   "again to compare them")
#: What to do about cells that did not settle (docs/statistics.md, "When cells do not settle").
ADVICE = ("To settle them: give the device a longer budget_s (more rounds), measure fewer cells (fewer variants or "
          "thread counts), raise min_seconds (longer visits), quiet the machine (no background work, a cooled Pi, "
          "the performance governor), or accept a wider target_ci. See docs/statistics.md.")


@dataclass
class DeviceFacts:
    """One device in one run: its A/A band (None: no noise floor), the line that says it (or why there is none),
    the cells that did not settle, and (set by ``verdict``) what pruning and quantization bought."""

    device: str
    band: Optional[stats.Interval]
    floor: str
    why: str = ""  # why there is no band ("" when there is one)
    stopped: str = ""  # how the plan ended, e.g. "12 rounds, stopped when every cell settled within ±2%"
    unsettled: List[str] = field(default_factory=list)  # "pruned-int8: ±4.7% after 9 rounds"
    verdicts: List[str] = field(default_factory=list)

    @property
    def noise(self) -> Optional[float]:
        return stats.noise_fraction(self.band)

    @property
    def unsettled_heading(self) -> str:
        return f"Did not settle ({self.stopped}):" if self.stopped else "Did not settle:"


def rounds_of(result: Optional[Mapping[str, Any]]) -> Optional[List[float]]:
    """A measured row's per-round p50s (NaN where not visited), or None (not ok, or measured without rounds)."""
    if result is None or result["status"] != "ok":
        return None
    return stored_round_p50s(result.get("round_p50s_json"))


def _reason(row: Mapping[str, Any], limit: int = 200) -> str:
    """Why a row failed, cut to ``limit`` characters: it is quoted in a sentence (the views escape it)."""
    parts = [str(part) for part in (row.get("error_kind"), row.get("error_message")) if part]
    text = ": ".join(parts) or str(row["status"])
    return text if len(text) <= limit else text[:limit] + "…"


def _band(base: Optional[Mapping[str, Any]], twin: Optional[Mapping[str, Any]]
          ) -> Tuple[Optional[stats.Interval], str]:
    """The A/A band of the baseline and its twin, or None and why there is none."""
    if base is None or base["status"] != "ok":
        return None, "the baseline was not measured on this device"
    if rounds_of(base) is None:
        return None, NO_ROUNDS_TEXT
    if twin is None:
        return None, "its A/A twin was not measured"
    if twin["status"] != "ok":
        return None, f"its A/A twin ({twin['variant']}) {twin['status']}: {_reason(twin)}"
    if twin.get("plan_id") != base.get("plan_id"):
        return None, "the baseline and its A/A twin were measured in different plans"
    band = stats.noise_band(rounds_of(base), rounds_of(twin))
    if band is None:
        return None, f"the A/A pair has fewer than {stats.MIN_ROUNDS} rounds with both measured"
    return band, ""


def _target(target: Optional[float]) -> str:
    return f", target {stats.percent(target)}" if target is not None else ""


def _stopped(plan: Optional[Mapping[str, Any]]) -> str:
    """How the plan ended, in words: its rounds and what stopped it."""
    if not plan:
        return ""
    rounds = plan.get("rounds_done")
    text = f"{rounds} round{'s' if rounds != 1 else ''}" if rounds is not None else "rounds unknown"
    target, budget, stopped_by = plan.get("target_ci"), plan.get("budget_s"), plan.get("stopped_by")
    if stopped_by == "target" and target is not None:
        return f"{text}, stopped when every cell settled within {stats.percent(target)}"
    if stopped_by == "budget" and budget is not None:
        return f"{text}, stopped when the {budget:g} s budget ran out" + _target(target)
    if stopped_by == "max_rounds":
        return f"{text}, stopped at max_rounds" + _target(target)
    return f"{text}, stopped by {stopped_by}" if stopped_by else text


def _unsettled(device: str, results: Mapping[Tuple[str, str], Mapping[str, Any]]) -> List[str]:
    """``variant: ±4.7% after 9 rounds`` for each measured cell of ``device`` that did not settle (the A/A twin
    included: an unsettled twin makes a wide band)."""
    lines = []
    for (name, variant), row in results.items():
        if name != device or row["status"] != "ok" or row.get("settled") is None or row["settled"]:
            continue
        width = row.get("ci_half_width")
        rounds = row.get("rounds")
        text = f"{variant}{' (the A/A twin)' if is_aa(variant) else ''}: "
        text += stats.percent(width) if width is not None else "no interval"
        lines.append(text + (f" after {rounds} round{'s' if rounds != 1 else ''}" if rounds is not None else ""))
    return lines


def device_facts(device: str, results: Mapping[Tuple[str, str], Mapping[str, Any]],
                 plans: Mapping[int, Mapping[str, Any]], reference: str = BASELINE) -> DeviceFacts:
    """The noise floor of ``device`` (results keyed by (device, variant), plans by id) and its unsettled cells."""
    base, twin = results.get((device, reference)), results.get((device, aa_cell(reference)))
    band, why = _band(base, twin)
    plan = plans.get(base["plan_id"]) if base is not None and base.get("plan_id") is not None else None
    stopped = _stopped(plan)
    if band is not None:
        target = (plan or {}).get("target_ci")
        measured = stats.noise_fraction(band) or 0.0
        floor = f"Noise floor (A/A: the baseline measured twice): {band.mid:.3f}x ({band.low:.3f}-{band.high:.3f}), "
        band = stats.floored_band(band, target)
        if target is not None and target > measured:
            floor += f"{stats.percent(measured)}, so noise {stats.percent(target)}, the plan's precision target"
        else:
            floor += f"noise {stats.percent(measured)}"
    else:
        floor = f"No noise floor: {why}"
    if stopped:
        floor += f"; {stopped}"
    return DeviceFacts(device, band, floor + ".", why, stopped, _unsettled(device, results))


def all_facts(devices: List[str], results: Mapping[Tuple[str, str], Mapping[str, Any]],
              plans: Mapping[int, Mapping[str, Any]], reference: str = BASELINE) -> Dict[str, DeviceFacts]:
    return {device: device_facts(device, results, plans, reference) for device in devices}
