"""The comparison table: one row per device x variant, built from the store alone.

``compare(db, run_id)`` returns it as a pandas DataFrame with the columns of ``columns.COLUMNS`` (machine units:
bytes as KB, latency in µs, accuracy as a fraction). Nothing here measures anything: every figure is read from
the store, and the ratios are computed from the stored sizes and latencies. No presentation either: the views
(terminal, Markdown, HTML, CSV, plots) take this table as it is.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import stats
from .columns import ANSWERED, COLUMNS, HOST, MEASURED, NAMES, VS_BASELINE, Pair, Relative
from ..results.agent_result import stored_samples
from ..results.store import Store

BASELINE = "baseline-float32"
_READ_WHEN = {"not-built": (HOST,), "not-measured": (HOST,), "answered": (HOST, ANSWERED),
              "ok": (HOST, ANSWERED, MEASURED)}


@dataclass
class RunReport:
    """A run's metadata and its comparison table."""

    run: Dict[str, Any]
    frame: Any  # pandas.DataFrame
    medians: Dict[Tuple[str, str], Optional[np.ndarray]] = field(default_factory=dict, repr=False)


def _error(row: Any) -> Optional[str]:
    if row["status"] == "ok":
        return None
    return ": ".join(str(part) for part in (row["error_kind"], row["error_message"]) if part) or row["status"]


def _status(run_id: int, variant: Dict[str, Any], result: Optional[Dict[str, Any]]) -> Tuple[str, Optional[str]]:
    """The pair's status and why it has no figures: not built, never measured, or what its result says."""
    if variant["status"] != "ok":
        return "not-built", json.loads(variant["manifest_json"]).get("error") or "conversion failed"
    if result is None:
        return "not-measured", f"no result stored (finish with `edgeprune bench --resume {run_id}`)"
    return result["status"], _error(result)


def _pair_row(run_id: int, device: str, variant: Dict[str, Any], base: Optional[Dict[str, Any]],
              result: Optional[Dict[str, Any]]) -> Tuple[Dict[str, Any], Optional[np.ndarray]]:
    """One device x variant row (the host's figures from the variant, the device's from its stored result), and
    the bootstrap medians of its p50."""
    status, error = _status(run_id, variant, result)
    row: Dict[str, Any] = {"run_id": run_id, "device": device, "variant": variant["name"], "status": status,
                           "error": error}
    stage = status if status in _READ_WHEN else "answered"
    samples = stored_samples(result["agent_json"]) if stage == "ok" else None  # type: ignore[index]
    medians = stats.bootstrap_medians(samples)
    pair = Pair(variant, base, result, samples, stats.interval(medians))
    row.update({c.name: c.read(pair) for c in COLUMNS if c.when in _READ_WHEN[stage] and c.read})
    return row, medians


def load(db: "str | Path", run_id: Optional[int] = None) -> RunReport:
    """Read one run (default: the latest) from the store and build its comparison table."""
    import pandas as pd

    with Store.open(db, create=False) as store:
        run = dict(store.run(run_id))
        run_id = int(run["id"])
        variants = [dict(v) for v in store.variants(run_id)]
        results = {(r["device"], r["variant"]): dict(r) for r in store.results(run_id)}
        devices = [d["name"] for d in store.devices(run_id)]
    devices += sorted({device for device, _ in results} - set(devices))
    base = next((v for v in variants if v["name"] == BASELINE and v["status"] == "ok"), None)
    rows: List[Dict[str, Any]] = []
    medians: Dict[Tuple[str, str], Optional[np.ndarray]] = {}
    for device in devices:
        for variant in variants:
            row, medians[(device, variant["name"])] = _pair_row(run_id, device, variant, base,
                                                                results.get((device, variant["name"])))
            rows.append(row)
    frame = pd.DataFrame(rows, columns=list(NAMES))
    for column in COLUMNS:
        if column.dtype:
            frame[column.name] = frame[column.name].astype(column.dtype)
    _relative_to_baseline(frame, medians)
    run_info = {key: run[key] for key in ("id", "created", "run_folder", "model_source", "dataset")}
    run_info["db"] = str(db)
    return RunReport(run_info, frame, medians)


def _relative_to_baseline(frame: Any, medians: Dict[Tuple[str, str], Optional[np.ndarray]]) -> None:
    """The VS_BASELINE columns (speed-up, accuracy delta...) against the baseline measured on the same device."""
    relative = [c for c in COLUMNS if c.when == VS_BASELINE and c.read]
    for index, row in frame.iterrows():
        base = frame[(frame["device"] == row["device"]) & (frame["variant"] == BASELINE)]
        if base.empty or row["status"] != "ok" or base.iloc[0]["status"] != "ok":
            continue
        is_baseline = row["variant"] == BASELINE
        ratio = None if is_baseline else stats.ratio_interval(medians.get((row["device"], BASELINE)),
                                                              medians.get((row["device"], row["variant"])))
        context = Relative(row, base.iloc[0], is_baseline, ratio)
        for column in relative:
            frame.at[index, column.name] = column.read(context)


def compare(db: "str | Path", run_id: Optional[int] = None) -> Any:
    """The comparison table of a run (default: the latest) as a pandas DataFrame, one row per device x variant."""
    return load(db, run_id).frame


def list_runs(db: "str | Path") -> Any:
    """One row per stored run: id, date, model, devices, variants and result status counts."""
    import pandas as pd

    rows = []
    with Store.open(db, create=False) as store:
        for run in store.runs():
            results = store.results(run["id"])
            variants = store.variants(run["id"])
            counts = {status: sum(r["status"] == status for r in results) for status in ("ok", "error", "failed", "invalid")}
            rows.append({
                "id": run["id"], "created": str(run["created"])[:16].replace("T", " "), "model": run["model_source"], "dataset": run["dataset"],
                "devices": ", ".join(d["name"] for d in store.devices(run["id"])),
                "variants": sum(v["status"] == "ok" for v in variants), **counts,
            })
    return pd.DataFrame(rows, columns=["id", "created", "model", "dataset", "devices", "variants", "ok", "error",
                                       "failed", "invalid"])
