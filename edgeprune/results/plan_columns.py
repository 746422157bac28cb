"""A plan's outcome as the store holds it: one ``plans`` row per plan, one ``results`` row per cell.

The columns are described in :mod:`edgeprune.results.schema` (schema 2); the report reads the per-round p50s
back only through :func:`stored_round_p50s`.
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, List, Optional

import numpy as np

from .plan_result import CellOutcome, PlanOutcome


def _throttled(document: Dict[str, Any]) -> Optional[int]:
    """1 when the Pi reported throttling before or after the plan, 0 when it said no, None when unknown."""
    flag = None
    for name in ("device", "device_after"):
        facts = document.get(name) if isinstance(document.get(name), dict) else {}
        state = facts.get("throttled")
        value = state.get("value") if isinstance(state, dict) else None
        if value is not None:
            flag = int(bool(value) or bool(flag))
    return flag


def _own_error(plan: PlanOutcome, cell_id: Optional[str]) -> Optional[Dict[str, Any]]:
    """A cell's own error in a plan document that failed as a whole (validated by the schema), or None."""
    for entry in (plan.document or {}).get("cells") or []:
        if isinstance(entry, dict) and entry.get("id") == cell_id and isinstance(entry.get("error"), dict):
            return entry["error"]
    return None


def cell_columns(plan: PlanOutcome, cell: Optional[CellOutcome], host_predictions: Optional[np.ndarray] = None,
                 cell_id: Optional[str] = None) -> Dict[str, Any]:
    """The store's columns for one cell of a plan (see results/schema.py): the plan's own failure when the plan
    as a whole failed, else the cell's outcome. ``p50_us`` is the median of the cell's per-round p50s (what its
    interval is about); p90/p99/mean are pooled over every timed invoke of every visit."""
    if cell is None or not plan.trusted:
        agent = json.dumps(plan.document) if plan.document is not None else plan.raw
        values = {"status": plan.status, "error_kind": plan.error_kind, "error_message": plan.message,
                  "agent_json": agent}
        own = _own_error(plan, cell_id)
        if plan.status == "error" and own is not None:  # e.g. no cell could be loaded: each says why
            values.update(error_kind=own.get("kind"), error_message=own.get("message"))
        return values
    document = plan.document or {}
    device = document.get("device") or {}
    interval = cell.document.get("p50_interval") or {} if cell.trusted else {}
    pooled, accuracy = cell.pooled, cell.accuracy
    predictions = accuracy.get("predictions")
    agreement = None
    if host_predictions is not None and isinstance(predictions, list) and len(predictions) == len(host_predictions):
        agreement = float(np.mean(np.asarray(predictions) == host_predictions))
    rounds = cell.round_p50s() if cell.trusted else []
    return {
        "status": cell.status, "error_kind": cell.error_kind, "error_message": cell.message,
        "runtime": cell.runtime.get("module"), "runtime_version": cell.runtime.get("version"),
        "threads": cell.runtime.get("threads"), "python_version": (device.get("python") or {}).get("version"),
        "machine": device.get("machine"), "init_ms": cell.init_ms,
        "p50_us": interval.get("p50_us"), "p90_us": pooled.get("p90_us"), "p99_us": pooled.get("p99_us"),
        "mean_us": pooled.get("mean_us"), "runs": cell.timing.get("invokes"),
        "accuracy": accuracy.get("accuracy"), "predictions_digest": accuracy.get("predictions_digest"),
        "agreement": agreement, "rss_peak_kib": cell.rss_peak_kib, "throttled": _throttled(document),
        "agent_json": json.dumps(cell.document),
        "p50_low_us": interval.get("low_us"), "p50_high_us": interval.get("high_us"),
        "rounds": len(cell.rounds) if cell.trusted else None,
        "settled": None if cell.settled is None else int(bool(cell.settled)),
        "ci_half_width": cell.ci_half_width,
        "round_p50s_json": json.dumps([None if math.isnan(v) else v for v in rounds]) if cell.trusted else None,
        "op_profile_json": json.dumps(cell.op_profile) if cell.op_profile is not None else None,
    }


def plan_columns(plan: PlanOutcome) -> Dict[str, Any]:
    """The store's plans row for one plan invocation (its cells' rows point at it)."""
    rounds = (plan.document or {}).get("plan", {}).get("rounds", {}) if plan.trusted else {}
    return {"status": plan.status, "stopped_by": plan.stopped_by, "rounds_done": plan.rounds_done,
            "rounds_total": plan.rounds_total if plan.trusted else None,
            "rounds_s": (plan.document or {}).get("rounds_s") if plan.trusted else None,
            "target_ci": rounds.get("target_ci"), "budget_s": rounds.get("budget_s"),
            "seed": (plan.document or {}).get("plan", {}).get("seed") if plan.trusted else None,
            "visits_json": json.dumps(plan.visits) if plan.trusted else None,
            "sustained_json": json.dumps(plan.sustained) if plan.sustained is not None else None}


def stored_json(text: Optional[str]) -> Optional[Dict[str, Any]]:
    """A stored op profile or sustained run (an object the plan reader checked), or None: unreadable text (a
    capped column) is no profile, never an error in a report."""
    try:
        value = json.loads(text or "")
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def stored_round_p50s(round_p50s_json: Optional[str]) -> Optional[List[float]]:
    """A stored cell's per-round p50s (µs; NaN where it had no visit in that round), or None: the report's one
    way to read them. Only cells judged ok are stored with them."""
    try:
        values = json.loads(round_p50s_json or "")
    except (ValueError, RecursionError):
        return None
    if not isinstance(values, list):
        return None
    out = []
    for value in values:
        if value is None:
            out.append(math.nan)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            out.append(float(value))
        else:
            return None
    return out
