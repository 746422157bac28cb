#!/usr/bin/env python
"""Does edgeprune call noise an effect? 20 benches of one run folder on `local`, judged as the report judges them.

Run with the host venv:  .venv/bin/python benchmarks/noise_floor.py [RUN_FOLDER] [--benches 20]

Each bench is `edgeprune bench --device local` as shipped (one plan: every variant plus the baseline's A/A twin,
interleaved rounds, the shipped stopping rule), read back with the report's own code (report.frame.load). Printed:

- per bench: the A/A ratio and its interval, the noise floor the report used, and the calls on pruned-float32 and
  pruned-int8;
- the share of benches in which an identical-graph pair is called a speed-up: the A/A pair (judged against the
  plan's precision target alone, since its own band cannot judge it) and baseline-float32 vs pruned-float32 (same op
  list, checked here; only weight values differ) (goal: at most 1 in 20);
- the share in which pruned-int8's speed-up is detected (goal: 20 in 20);
- the share of `report --compare` changes called real between two benches of the same files (consecutive benches
  paired: 1-2, 3-4, ...; goal: at most 5%).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, List

import _runfolder  # noqa: F401  (tests/ on sys.path; run folders)

from edgeprune.devices.fleet import bench
from edgeprune.devices.profiles import load_profile
from edgeprune.report import stats
from edgeprune.report.diff import compare_runs
from edgeprune.report.frame import load
from edgeprune.report.noise import TWIN
from edgeprune.results.plan_columns import stored_round_p50s
from edgeprune.results.store import Store

BASELINE, SAME_GRAPH, QUANTIZED = "baseline-float32", "pruned-float32", "pruned-int8"


def op_list(path: Path) -> List[str]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    return [op["op_name"] for op in interpreter._get_ops_details()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_folder", nargs="?", help="an `edgeprune optimize` output (default: a fresh one)")
    parser.add_argument("--benches", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeprune-noise-"))
    folder = _runfolder.run_folder(args.run_folder, work)
    same_ops = op_list(folder / f"{BASELINE}.tflite") == op_list(folder / f"{SAME_GRAPH}.tflite")
    print(f"run folder {folder}; {BASELINE} and {SAME_GRAPH} have "
          f"{'the same op list' if same_ops else 'DIFFERENT op lists'}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    profile = load_profile("local")
    db = work / "noise.db"
    runs: List[int] = []
    aa_called = same_called = int8_found = 0
    widths: List[float] = []
    print(f"\n{'bench':>5} {'rounds':>6} {'stop':>7} {'A/A ratio (95%)':>24} {'floor':>6} "
          f"{'pruned-float32':>30} {'pruned-int8':>30} {'s':>5}")
    for index in range(1, args.benches + 1):
        started = time.monotonic()
        result = bench(folder, [profile], db, stop=threading.Event())
        if not result.all_ok:
            print(f"bench {index}: not every cell measured ({result.counts}); stopping", file=sys.stderr)
            return 1
        runs.append(result.run_id)
        report = load(db, result.run_id)
        facts = report.devices["local"]
        with Store.open(db) as store:
            stored = {r["variant"]: r for r in store.results(result.run_id)}
        aa = stats.noise_band(*(stored_round_p50s(stored[v]["round_p50s_json"]) for v in (BASELINE, TWIN)))
        rows = {r["variant"]: r for _, r in report.frame.iterrows()}
        target = profile.target_ci
        aa_verdict = stats.call_speedup(aa, stats.Interval(1 - target, 1 + target, 1.0))
        aa_called += aa_verdict.real
        same, int8 = rows[SAME_GRAPH], rows[QUANTIZED]
        same_called += same["verdict"] in (stats.FASTER, stats.SLOWER)  # either way, an effect that is not there
        int8_found += int8["verdict"] == stats.FASTER
        widths.append(stats.noise_fraction(aa) or float("nan"))
        rounds, _, how = facts.stopped.partition(", stopped ")
        stop = "target" if "settled" in how else "budget" if "budget" in how else "max"
        print(f"{index:>5} {rounds.split()[0]:>6} {stop:>7} "
              f"{aa.mid:>8.3f} ({aa.low:.3f}-{aa.high:.3f}) {stats.percent(facts.noise or 0):>6} "
              f"{_call(same):>30} {_call(int8):>30} {time.monotonic() - started:>5.1f}")
    n = len(runs)
    changes = real = 0
    for a, b in zip(runs[0::2], runs[1::2]):
        frame = compare_runs(db, a, b)
        judged = frame[frame["p50_change_significant"].notna()]
        changes += len(judged)
        real += int(judged["p50_change_significant"].astype(bool).sum())
    print(f"\nA/A pair called a speed-up (against ±{target:.0%}, the plan's precision target): {aa_called}/{n}"
          f"  (goal: at most 1 in 20) {'met' if aa_called * 20 <= n else 'NOT met'}")
    print(f"{BASELINE} vs {SAME_GRAPH} (same op list: {same_ops}) called faster or slower: {same_called}/{n}"
          f"  (goal: at most 1 in 20) {'met' if same_called * 20 <= n else 'NOT met'}")
    print(f"{QUANTIZED} speed-up detected: {int8_found}/{n}  (goal: {n} in {n}) "
          f"{'met' if int8_found == n else 'NOT met'}")
    share = real / changes if changes else float("nan")
    print(f"report --compare between benches of the same files: {real} of {changes} changes called real "
          f"({share:.1%}; goal: at most 5%) {'met' if share <= 0.05 else 'NOT met'}")
    print(f"A/A noise (wider side of its 95% interval): median ±{sorted(widths)[len(widths) // 2]:.1%}, "
          f"widest ±{max(widths):.1%}  (goal: within ±3% on an idle 2-core machine)")
    return 0


def _call(row: Any) -> str:
    if row["status"] != "ok":
        return f"{row['status']}"
    return f"{row['speedup']:.3f}x ({row['speedup_ci_low']:.3f}-{row['speedup_ci_high']:.3f}) {row['verdict'][:6]}"


if __name__ == "__main__":
    sys.exit(main())
