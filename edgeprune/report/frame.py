"""The comparison table: one row per device x variant, built from the store alone.

``compare(db, run_id)`` returns it as a pandas DataFrame with the columns of ``columns.COLUMNS`` (machine units:
bytes as KB, latency in µs, accuracy as a fraction). Nothing here measures anything: every figure is read from
the store, and the ratios are computed from the stored sizes and per-round p50s. A p50's interval is the one the
agent computed from the variation between rounds (stored with it); a speed-up and its interval come from the
per-round ratios paired by round within the device's plan, judged against the device's A/A band (``noise``,
``verdict``, docs/statistics.md). Rows measured before rounds (store schema 1) keep their figures but get no
interval and no verdict. No presentation either: the views (terminal, Markdown, HTML, CSV, plots) take this
table as it is.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from . import stats
from .columns import ANSWERED, COLUMNS, DEVICE, HOST, MEASURED, NAMES, VS_BASELINE, Device, Pair, Relative
from . import sparsity
from .noise import BASELINE, TWIN, DeviceFacts, all_facts, rounds_of
from .verdict import device_verdict, speedup_verdict
from ..devices.cells import is_aa, split_cell
from ..results.imported import is_imported
from ..results.plan_columns import stored_json
from ..results.store import Store

_READ_WHEN = {"not-built": (HOST,), "not-measured": (HOST,), "answered": (HOST, ANSWERED),
              "ok": (HOST, ANSWERED, MEASURED)}
Key = Tuple[str, str]


@dataclass
class RunReport:
    """A run's metadata, its comparison table, each measured pair's per-round p50s (None: no rounds) and each
    device's facts (its A/A band, unsettled cells and verdict)."""

    run: Dict[str, Any]
    frame: Any  # pandas.DataFrame
    rounds: Dict[Key, Optional[List[float]]] = field(default_factory=dict, repr=False)
    devices: Dict[str, DeviceFacts] = field(default_factory=dict)
    #: ``bench --op-profile``: each measured cell's op profile, by (device, cell)
    op_profiles: Dict[Key, Dict[str, Any]] = field(default_factory=dict, repr=False)
    #: ``bench --sustained``: each device's sustained run (its latest plan's)
    sustained: Dict[str, Dict[str, Any]] = field(default_factory=dict, repr=False)


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


def _interval(result: Dict[str, Any]) -> Optional[stats.Interval]:
    """The p50's interval between rounds, as the agent computed and the store holds it (None: no rounds)."""
    low, high = result.get("p50_low_us"), result.get("p50_high_us")
    return None if low is None or high is None else stats.Interval(low, high, result.get("p50_us"))


def _pair_row(run_id: int, device: str, variant: Dict[str, Any], base: Optional[Dict[str, Any]],
              result: Optional[Dict[str, Any]]) -> Tuple[Dict[str, Any], Optional[List[float]]]:
    """One device x variant row (the host's figures from the variant, the device's from its stored result), and
    its per-round p50s."""
    status, error = _status(run_id, variant, result)
    row: Dict[str, Any] = {"run_id": run_id, "device": device, "variant": variant["name"], "status": status,
                           "error": error}
    stage = status if status in _READ_WHEN else "answered"
    rounds = rounds_of(result) if stage == "ok" else None
    pair = Pair(variant, base, result, rounds, _interval(result) if stage == "ok" else None)  # type: ignore[arg-type]
    row.update({c.name: c.read(pair) for c in COLUMNS if c.when in _READ_WHEN[stage] and c.read})
    return row, rounds


def load(db: "str | Path", run_id: Optional[int] = None) -> RunReport:
    """Read one run (default: the latest) from the store and build its comparison table."""
    import pandas as pd

    with Store.open(db, create=False) as store:
        run = dict(store.run(run_id))
        run_id = int(run["id"])
        variants = [dict(v) for v in store.variants(run_id)]
        results = {(r["device"], r["variant"]): dict(r) for r in store.results(run_id)}
        plans = {int(p["id"]): dict(p) for p in store.plans(run_id)}
        devices = [d["name"] for d in store.devices(run_id)]
    devices += sorted({device for device, _ in results} - set(devices))
    reference, imported = _reference(run)
    base = next((v for v in variants if v["name"] == split_cell(reference)[0] and v["status"] == "ok"), None)
    rows: List[Dict[str, Any]] = []
    rounds: Dict[Key, Optional[List[float]]] = {}
    for device in devices:
        for variant in variants:
            for cell in _cells(device, variant["name"], results):
                row, rounds[(device, cell)] = _pair_row(run_id, device, dict(variant, name=cell), base,
                                                        results.get((device, cell)))
                rows.append(row)
    frame = pd.DataFrame(rows, columns=list(NAMES))
    for column in COLUMNS:
        if column.dtype:
            frame[column.name] = frame[column.name].astype(column.dtype)
    facts = all_facts(devices, results, plans, reference)
    _relative_to_baseline(frame, results, facts, reference)
    stored = sparsity.entries(variants)
    _per_device(frame, facts, verdicts=not imported, extra={
        device: sparsity.device_lines(device, [c for (d, c) in results if d == device], results, facts[device].band,
                                      facts[device].why, reference, imported, stored)
        for device in facts})
    _ship(frame, facts)
    run_info = {key: run[key] for key in ("id", "created", "run_folder", "model_source", "dataset")}
    run_info["db"] = str(db)
    profiles = {key: stored_json(r.get("op_profile_json")) for key, r in results.items()
                if r["status"] == "ok" and not is_aa(key[1])}
    sustained = {p["device"]: stored_json(p.get("sustained_json")) for p in plans.values()}  # by id: the latest wins
    return RunReport(run_info, frame, rounds, facts, {k: v for k, v in profiles.items() if v is not None},
                     {d: v for d, v in sustained.items() if v is not None})


def _cells(device: str, variant: str, results: Dict[Key, Dict[str, Any]]) -> List[str]:
    """The cells of ``variant`` measured on ``device``: itself, or one per configuration of a matrix bench
    (``variant#ai_edge_litert/4t``, devices.cells), in the order they were stored; the A/A twin is no row."""
    found = [cell for (name, cell) in results if name == device and not is_aa(cell)
             and split_cell(cell)[0] == variant and cell != variant]
    return found or [variant]


def _reference(run: Dict[str, Any]) -> "tuple[str, bool]":
    """The variant the run's ratios are taken against (the baseline; for imported files, the first file) and
    whether the run is imported .tflite files (no pruning or quantization verdict: they are not our variants)."""
    try:
        options = json.loads(run.get("options_json") or "{}")
        manifest = json.loads(run.get("manifest_json") or "{}")
    except ValueError:
        options, manifest = {}, {}
    reference = options.get("reference") if isinstance(options, dict) else None
    return (reference if isinstance(reference, str) else BASELINE), is_imported(manifest)


def _relative_to_baseline(frame: Any, results: Dict[Key, Dict[str, Any]], facts: Dict[str, DeviceFacts],
                          reference: str = BASELINE) -> None:
    """The VS_BASELINE columns (speed-up, its verdict, accuracy delta...) against the reference (the baseline) on
    the same device."""
    relative = [c for c in COLUMNS if c.when == VS_BASELINE and c.read]
    for index, row in frame.iterrows():
        device = row["device"]
        base = frame[(frame["device"] == device) & (frame["variant"] == reference)]
        if base.empty or row["status"] != "ok" or base.iloc[0]["status"] != "ok":
            continue
        is_baseline = row["variant"] == reference
        verdict = None if is_baseline else speedup_verdict(results[(device, reference)],
                                                           results[(device, row["variant"])], facts[device].band,
                                                           facts[device].why)
        context = Relative(row, base.iloc[0], is_baseline, verdict)
        for column in relative:
            frame.at[index, column.name] = column.read(context)


def _per_device(frame: Any, facts: Dict[str, DeviceFacts], verdicts: bool = True,
                extra: Optional[Dict[str, List[str]]] = None) -> None:
    """Each device's verdict (from its finished rows; not for imported files) followed by its ``extra`` lines (what
    sparsity bought), and the DEVICE columns on every row of it."""
    columns = [c for c in COLUMNS if c.when == DEVICE and c.read]
    for device, rows in frame.groupby("device", sort=False):
        facts[device].verdicts = (device_verdict(rows.to_dict("records")) if verdicts else []) + \
            list((extra or {}).get(device, []))
        figures = Device(facts[device].band, " | ".join(facts[device].verdicts))
        for column in columns:
            frame.loc[rows.index, column.name] = column.read(figures)


#: "Keeps accuracy": within this many points of the variant's best configuration on that device.
SHIP_ACCURACY_POINTS = 0.5


def _ship(frame: Any, facts: Dict[str, DeviceFacts]) -> None:
    """In a matrix bench: each row's configuration, and per device x variant the fastest configuration that keeps
    accuracy (its p50 the lowest among the measured ones whose accuracy is within SHIP_ACCURACY_POINTS of the best;
    accuracy unknown, latency only: the fastest), with a line under the device's table."""
    frame["config"] = [split_cell(name)[1] or None for name in frame["variant"]]
    frame["ship"] = None
    if frame["config"].isna().all():
        return
    variants = frame["variant"].map(lambda name: split_cell(name)[0]).rename("base_variant")
    for (device, variant), rows in frame.groupby([frame["device"], variants], sort=False):
        measured = rows[(rows["status"] == "ok") & rows["p50_us"].notna()]
        if measured.empty or rows["config"].isna().all():
            continue
        accuracy = measured["device_accuracy"]
        keep = measured if accuracy.isna().all() else measured[
            accuracy >= accuracy.max() - SHIP_ACCURACY_POINTS / 100]
        best = keep["p50_us"].idxmin()
        frame.loc[rows.index, "ship"] = rows.index == best
        row = frame.loc[best]
        width = row["p50_half_width"]
        ties = _ties(keep.drop(index=best), row)
        facts[device].verdicts.append(
            f"Ship this: {variant} on {row['config']}: p50 {row['p50_us']:.4g} µs"
            + (f" ({stats.percent(width)})" if width == width and width is not None else "")
            + f", fastest of {len(measured)} measured configuration{'s' if len(measured) != 1 else ''}"
            + ("" if accuracy.isna().all() else f" within {SHIP_ACCURACY_POINTS:g} pts of its best accuracy")
            + (f"; not told apart from {', '.join(ties)} (their p50 intervals overlap)" if ties else ""))


def _ties(others: Any, best: Any) -> List[str]:
    """The configurations whose p50 interval overlaps the fastest one's: "fastest" is then not a measured fact
    about them, and the line says so. Without intervals (one round) nothing is called a tie."""
    low, high = best["p50_ci_low_us"], best["p50_ci_high_us"]
    if not (low == low and high == high):
        return []
    return [str(r["config"]) for _, r in others.iterrows()
            if r["p50_ci_low_us"] == r["p50_ci_low_us"] and r["p50_ci_low_us"] <= high and r["p50_ci_high_us"] >= low]


def compare(db: "str | Path", run_id: Optional[int] = None) -> Any:
    """The comparison table of a run (default: the latest) as a pandas DataFrame, one row per device x variant."""
    return load(db, run_id).frame


def list_runs(db: "str | Path") -> Any:
    """One row per stored run: id, date, model, devices, variants and the status counts of its device x variant
    pairs (the baseline's A/A twin is a measurement of the baseline, not a pair of its own)."""
    import pandas as pd

    rows = []
    with Store.open(db, create=False) as store:
        for run in store.runs():
            results = [r for r in store.results(run["id"]) if r["variant"] != TWIN]
            variants = store.variants(run["id"])
            counts = {status: sum(r["status"] == status for r in results) for status in ("ok", "error", "failed", "invalid")}
            rows.append({
                "id": run["id"], "created": str(run["created"])[:16].replace("T", " "), "model": run["model_source"], "dataset": run["dataset"],
                "devices": ", ".join(d["name"] for d in store.devices(run["id"])),
                "variants": sum(v["status"] == "ok" for v in variants), **counts,
            })
    return pd.DataFrame(rows, columns=["id", "created", "model", "dataset", "devices", "variants", "ok", "error",
                                       "failed", "invalid"])
