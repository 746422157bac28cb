"""The sweep's result: every point on every device, its Pareto front, and the recommendation under a budget.

Built from files and the store alone (nothing is measured here). Host figures (accuracy on the test set, gzip
size, sparsity) come from each run's manifest; device figures from each point's bench run, through the report's
own table (``report.frame.load``), so a p50, a speed-up and its verdict mean here what they mean in ``report``.

**Latency is compared as speed-up against the baseline.** Every point prunes the same baseline model, and every
bench measures that baseline in the same plan as the point's variants, paired by round: the speed-up cancels the
drift between benches run minutes apart, which comparing raw p50s of different benches would not. The p50 is
shown (and coloured in the plot) as measured.

**The front**, per device: the points (and the baseline itself) that no other measured row beats on all three of
accuracy (higher), gzip size (smaller) and speed-up (higher) while being strictly better on one.

**The recommendation**, per device: among the points that lose at most ``--max-accuracy-drop`` accuracy points
against the baseline, the fastest; the points whose speed-up is within the noise of it (its device's A/A band in
that bench, never below ±2%, the plans' precision target) are ties, and the tie with the smallest gzip size wins
(then the higher accuracy). When no point is within the budget it says so, and which came closest.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..optimize.variants import BASELINE
from ..results.store import Store
from . import folders
from .state import SweepState

#: Ties are never called tighter than the plans' default precision target (docs/statistics.md).
NOISE_FLOOR = 0.02
REFERENCE = "baseline"
COLUMNS = ("device", "point", "final_sparsity", "structure", "block_size", "quant", "variant", "status", "reason",
           "run_id", "sparsity", "accuracy", "accuracy_drop", "size_bytes", "gzip_bytes", "gzip_ratio", "p50_us",
           "p50_ci_low_us", "p50_ci_high_us", "speedup", "speedup_ci_low", "speedup_ci_high", "verdict", "noise",
           "within_budget", "pareto", "recommended")


@dataclass
class Recommendation:
    device: str
    point: Optional[str]
    text: str
    ties: List[str] = field(default_factory=list)


@dataclass
class ParetoResult:
    frame: Any  # pandas.DataFrame with COLUMNS, one row per device x point, plus each device's baseline row
    recommendations: List[Recommendation]
    budget: float
    baseline_accuracy: Optional[float]


def _num(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def _finite(*values: Any) -> bool:
    return all(math.isfinite(_num(v)) for v in values)


class _Sources:
    """The manifests and bench tables a sweep's rows read, each loaded once."""

    def __init__(self, state: SweepState, db: Path) -> None:
        self.state, self.db = state, db
        self.manifests: Dict[str, Any] = {}
        self.tables: Dict[int, Any] = {}

    def manifest(self, run: str) -> Any:
        if run not in self.manifests:
            self.manifests[run] = folders.complete(self.state.run_folder(run))
        return self.manifests[run]

    def measured(self, run_id: int, device: str, variant: str) -> Optional[Dict[str, Any]]:
        from ..report.frame import load

        if run_id not in self.tables:
            self.tables[run_id] = load(self.db, run_id).frame
        table = self.tables[run_id]
        rows = table[(table["device"] == device) & (table["variant"] == variant)]
        return None if rows.empty else rows.iloc[0].to_dict()


_DEVICE_FIGURES = ("p50_us", "p50_ci_low_us", "p50_ci_high_us", "speedup", "speedup_ci_low", "speedup_ci_high",
                   "verdict", "noise")


def _host(entry: Any) -> Dict[str, Any]:
    return {"variant": entry.name, "sparsity": entry.sparsity, "accuracy": entry.accuracy,
            "size_bytes": entry.size_bytes, "gzip_bytes": entry.gzip_bytes}


def _rows(state: SweepState, db: Path, sweep_id: int, devices: List[str]) -> List[Dict[str, Any]]:
    with Store.open(db, create=False) as store:
        points = {r["key"]: dict(r) for r in store.sweep_points(sweep_id)}
        benches = {(r["key"], r["device"]): dict(r) for r in store.sweep_benches(sweep_id)}
    sources = _Sources(state, db)
    rows: List[Dict[str, Any]] = []
    for device in devices:
        reference: Optional[Dict[str, Any]] = None
        for point in state.points():
            row: Dict[str, Any] = {"device": device, "point": point.key, "final_sparsity": point.final_sparsity,
                                   "structure": point.structure, "block_size": point.block_size,
                                   "quant": point.quant, "variant": None}
            stored, bench = points.get(point.key), benches.get((point.key, device))
            document = sources.manifest(point.run) if stored and stored["status"] == "optimized" else None
            if stored is None:
                row.update(status="not optimized", reason="not optimized yet: run the sweep again to finish it")
            elif stored["status"] == "failed" or document is None:
                row.update(status="failed", reason=stored["reason"] or "the run folder is missing",
                           variant=stored["variant"])
            else:
                row.update(_host(document.variant(stored["variant"])))
                base = next((e for e in document.variants if e.name == BASELINE and e.ok), None)
                measured = sources.measured(bench["run_id"], device, stored["variant"]) if bench else None
                if measured is None:
                    row.update(status="not measured", reason=f"not benched on {device} yet")
                else:
                    row.update({k: measured.get(k) for k in _DEVICE_FIGURES}, run_id=bench["run_id"],
                               status=measured["status"], reason=measured.get("error"))
                    base_row = sources.measured(bench["run_id"], device, BASELINE)
                    if reference is None and base is not None and base_row and base_row["status"] == "ok":
                        reference = dict(_host(base), **{k: base_row.get(k) for k in _DEVICE_FIGURES})
                        reference.update(device=device, point=REFERENCE, status="ok", reason=None,
                                         run_id=bench["run_id"], speedup=1.0, verdict="reference")
                if reference is None and base is not None:
                    reference = dict(_host(base), device=device, point=REFERENCE, status="not measured",
                                     reason=None)
            rows.append(row)
        if reference is not None:
            rows.append(reference)
    return rows


def _dominated(row: Dict[str, Any], others: List[Dict[str, Any]]) -> bool:
    def at_least(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
        return a["accuracy"] >= b["accuracy"] and a["gzip_bytes"] <= b["gzip_bytes"] and a["speedup"] >= b["speedup"]

    return any(at_least(o, row) and not at_least(row, o) for o in others if o is not row)


def _mark(rows: List[Dict[str, Any]], budget: float, base_accuracy: Optional[float]) -> None:
    for row in rows:
        drop = (base_accuracy - row["accuracy"]) * 100 if _finite(base_accuracy, row.get("accuracy")) else math.nan
        row["accuracy_drop"] = drop
        row["within_budget"] = bool(drop <= budget + 1e-9) if math.isfinite(drop) else False
        base_gzip = next((r["gzip_bytes"] for r in rows if r["point"] == REFERENCE), None)
        row["gzip_ratio"] = base_gzip / row["gzip_bytes"] if _finite(base_gzip, row.get("gzip_bytes")) else math.nan
        row["pareto"] = False
        row["recommended"] = False


def _measured(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [r for r in rows if r["status"] == "ok" and _finite(r.get("speedup"), r.get("accuracy"),
                                                                 r.get("gzip_bytes"))]


def _recommend(device: str, rows: List[Dict[str, Any]], budget: float) -> Recommendation:
    points = [r for r in _measured(rows) if r["point"] != REFERENCE]
    within = [r for r in points if r["within_budget"]]
    if not within:
        closest = min(points, key=lambda r: r["accuracy_drop"], default=None)
        said = (f"; the smallest loss measured is {closest['point']}'s {closest['accuracy_drop']:.1f} points"
                if closest else "; no point was measured on it")
        return Recommendation(device, None, f"{device}: no point is within --max-accuracy-drop {budget:g} accuracy "
                                            f"points of the baseline{said}")
    best = max(within, key=lambda r: r["speedup"])
    noise = max(_num(best.get("noise")) if _finite(best.get("noise")) else 0.0, NOISE_FLOOR)
    ties = [r for r in within if r["speedup"] >= best["speedup"] / (1 + noise)]
    chosen = min(ties, key=lambda r: (r["gzip_bytes"], -r["accuracy"], r["point"]))
    chosen["recommended"] = True
    others = [r["point"] for r in ties if r is not chosen]
    interval = (f" ({chosen['speedup_ci_low']:.2f}-{chosen['speedup_ci_high']:.2f})"
                if _finite(chosen.get("speedup_ci_low"), chosen.get("speedup_ci_high")) else "")
    verdict = chosen.get("verdict")
    called = {"faster": "", "slower": ", measurably slower than the baseline"}.get(
        str(verdict), f", not measurably faster than the baseline ({verdict})" if isinstance(verdict, str) else "")
    text = (f"{device}: {chosen['point']} ({chosen['variant']}): {chosen['speedup']:.2f}x the baseline's speed"
            f"{interval}{called}, p50 {chosen['p50_us']:.4g} µs, gzip {chosen['gzip_bytes'] / 1024:.1f} KB "
            f"({chosen['gzip_ratio']:.2f}x smaller), accuracy {chosen['accuracy']:.2%} "
            f"({-chosen['accuracy_drop']:+.1f} points, budget {budget:g})")
    if others:
        text += (f"; within the noise (±{noise:.0%}) of the fastest: {', '.join(others)}; chosen for the smallest "
                 f"gzip size")
    return Recommendation(device, chosen["point"], text, others)


def build(state: SweepState, db: Path, sweep_id: int, devices: List[str], budget: float) -> ParetoResult:
    """Every point on every device (failed and unmeasured points too, with why), front and recommendation."""
    import pandas as pd

    rows = _rows(state, db, sweep_id, devices)
    base_accuracy = next((r["accuracy"] for r in rows if r["point"] == REFERENCE), None)
    recommendations = []
    for device in devices:
        mine = [r for r in rows if r["device"] == device]
        _mark(mine, budget, base_accuracy)
        measured = _measured(mine)
        for row in measured:
            row["pareto"] = not _dominated(row, measured)
        recommendations.append(_recommend(device, mine, budget))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return ParetoResult(frame, recommendations, budget, base_accuracy)
