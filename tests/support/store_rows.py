"""What a bench stored, read back from the SQLite file with plain sqlite3 (not through edgeprune's store), the
run folders the fleet tests bench, and (for the report's tests) runs with rounds written through the Store API:
``manifest_for``, ``round_cell``, ``store_plan``."""
from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import pytest


#: The cells every bench measures on every device besides the variants asked for (issue 12): the baseline, asked
#: for or not (every ratio needs it), and its A/A twin (the same file measured as a second cell: the noise floor).
BASELINE, TWIN = "baseline-float32", "baseline-float32@aa"


def plan_cells(names: Sequence[str]) -> List[str]:
    """The cells (``results.variant``) a bench of the variants ``names`` stores per device: the baseline and its
    A/A twin, then the others, in that order."""
    return [BASELINE, TWIN] + [n for n in names if n not in (BASELINE, TWIN)]


def rows(db: Path, run_id: Optional[int] = None) -> List[sqlite3.Row]:
    """The ``results`` rows (of ``run_id``, else of every run), ordered by device and variant."""
    conn = sqlite3.connect(str(db))
    conn.row_factory = sqlite3.Row
    query = "SELECT * FROM results" + (" WHERE run_id = ?" if run_id else "") + " ORDER BY device, variant"
    result = list(conn.execute(query, (run_id,) if run_id else ()))
    conn.close()
    return result


def by_pair(result_rows: List[sqlite3.Row]) -> Dict[Tuple[str, str], sqlite3.Row]:
    return {(r["device"], r["variant"]): r for r in result_rows}


def outcome(row: sqlite3.Row) -> str:
    """``status / error_kind: error_message``: one pair's outcome, also a readable assertion message."""
    return f"{row['status']} / {row['error_kind']}: {row['error_message']}"


def latest_run_id(db: Path) -> int:
    conn = sqlite3.connect(str(db))
    try:
        return int(conn.execute("SELECT max(id) FROM runs").fetchone()[0])
    finally:
        conn.close()


def wait_for_rows(db: Path, proc: subprocess.Popen, condition: Callable[[List[sqlite3.Row]], bool],
                  timeout: float = 300) -> None:
    """Poll the store until ``condition(rows)`` holds; kill the bench and fail if it never does. The bench creates
    the file before its tables (and holds write locks now and then): until they are there, there are no rows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            current = rows(db) if db.exists() else []
        except sqlite3.OperationalError:  # no such table yet, or locked for a moment
            current = []
        if current and condition(current):
            return
        time.sleep(0.1)
    proc.kill()
    pytest.fail("the store never reached the expected state")


def variant_names(manifest: Dict) -> List[str]:
    """The manifest's variants that converted (status ok), in manifest order."""
    return [v["name"] for v in manifest["variants"] if v["status"] == "ok"]


def copy_run(folder: Path, dest: Path) -> Path:
    """A copy of a run folder's files (a test may damage or move the copy, never the session's run)."""
    dest.mkdir()
    for item in folder.iterdir():
        if item.is_file():
            (dest / item.name).write_bytes(item.read_bytes())
    return dest


# -- stores built through the Store API, with rounds (issue 12): for the report's tests ---------------------------

def manifest_for(variants: Dict[str, Tuple[int, float]], source: str = "a model", dataset: str = "digits") -> Dict:
    """A run's manifest for ``Store.create_run``: ``variants`` maps a name to (gzip bytes, host accuracy); the raw
    size is twice the gzip size, the pruned ones are 80% sparse."""
    return {
        "baseline": {"source": source}, "dataset": {"name": dataset},
        "variants": [{"name": name, "status": "ok", "file": f"{name}.tflite", "sha256": "0" * 64,
                      "size_bytes": 2 * gzip, "gzip_bytes": gzip, "sparsity": 0.8 if "pruned" in name else 0.0,
                      "accuracy": accuracy, "predictions_digest": "0" * 16}
                     for name, (gzip, accuracy) in variants.items()],
    }


def round_cell(rounds: "List[float]", accuracy: float = 0.98, settled: Optional[bool] = None,
               half_width: Optional[float] = None, **extra: object) -> Dict[str, object]:
    """A measured cell as the host stores one from a plan: its per-round p50s (µs, NaN for a missed round), their
    median as ``p50_us``, the p50 interval between rounds (``report.stats.round_p50_interval``) and, unless given,
    ``settled`` and the half-width as ``report.stats.settled`` says."""
    import json
    import math

    import numpy as np

    from edgeprune.report import stats

    done = [v for v in rounds if not math.isnan(v)]
    ci = stats.round_p50_interval(rounds)
    check = stats.settled(rounds)
    p50 = float(np.median(done))
    values: Dict[str, object] = {
        "status": "ok", "runtime": "ai_edge_litert", "runtime_version": "2.3.0", "threads": 1,
        "python_version": "3.11", "machine": "x86_64", "init_ms": 2.0, "p50_us": p50, "p90_us": p50 * 1.05,
        "p99_us": p50 * 1.2, "mean_us": p50 * 1.01, "runs": 100 * len(done), "accuracy": accuracy,
        "agreement": 1.0, "rss_peak_kib": 30_000, "agent_json": "{}",
        "p50_low_us": ci.low if ci else None, "p50_high_us": ci.high if ci else None, "rounds": len(done),
        "settled": int(check.ok if settled is None else settled),
        "ci_half_width": check.half_width if half_width is None else half_width,
        "round_p50s_json": json.dumps([None if math.isnan(v) else v for v in rounds]),
    }
    values.update(extra)
    return values


def store_plan(store, run_id: int, device: str, cells: Dict[str, Dict[str, object]], stopped_by: str = "target",
               target_ci: float = 0.02, budget_s: float = 300.0) -> int:
    """One device's plan and its cells (cell id -> the values ``round_cell`` makes, or a failure's), as the
    bench stores them; returns the plan's id."""
    rounds = max((int(c.get("rounds") or 0) for c in cells.values()), default=0)
    plan_id = store.record_plan(run_id, device, {
        "status": "ok", "stopped_by": stopped_by, "rounds_done": rounds, "rounds_total": rounds,
        "rounds_s": 0.5, "target_ci": target_ci, "budget_s": budget_s, "seed": 1, "visits_json": "[]"})
    for cell, values in cells.items():
        store.record(run_id, device, cell, dict(values, plan_id=plan_id))
    return plan_id
