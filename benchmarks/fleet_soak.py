"""Soak: 64 lab devices through 3 consecutive fleet benches; results stored / expected, wall time, peak memory.

Each device is a lab device (tests/support/lab/): by default a real OpenSSH server on 127.0.0.1 running the agent
with this venv's Python; `--kinds loopback,pi39,netns` cycles through lab kinds instead.
Every run is a new `bench` (new run id) in one SQLite file, as a nightly job would do. Prints, per run, the pairs
stored as ok against the pairs expected (goal: 100%), the wall time, and at the end the host process's peak RSS. A
pair is a device and a cell of its plan (issue 12): every variant, plus the baseline and its A/A twin.

    .venv/bin/python benchmarks/fleet_soak.py [RUN_FOLDER] [--devices 64] [--runs 3] [--kinds loopback]

Without RUN_FOLDER a default optimize runs first. Traffic: loopback and the lab's own namespaces only.
"""
from __future__ import annotations

import argparse
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import edgeprune  # noqa: F401
from _runfolder import run_folder  # also puts tests/ on sys.path, for support
from edgeprune.devices.fleet import bench
from edgeprune.devices.profiles import load_fleet
from support.lab import start_lab
from support.store_rows import plan_cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_folder", nargs="?")
    parser.add_argument("--devices", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--variants", default="")
    parser.add_argument("--kinds", default="loopback", help="lab kinds, cycled over the devices")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeprune-soak-"))
    folder = run_folder(args.run_folder, work)
    variants = [v for v in args.variants.split(",") if v] or None
    kinds = [k for k in args.kinds.split(",") if k]
    running = start_lab([kinds[i % len(kinds)] for i in range(args.devices)], work / "lab")
    try:
        profiles = load_fleet(str(running.write_fleet(runs=10, warmup=2))).devices
        db = work / "soak.db"
        print(f"{args.devices} lab devices ({args.kinds}), {args.runs} runs, jobs {args.jobs}, store {db}")
        print(f"{'run':>4} {'run id':>7} {'stored ok / expected':>22} {'failed':>7} {'wall s':>8}")
        totals = [0, 0]
        for index in range(1, args.runs + 1):
            started = time.perf_counter()
            result = bench(folder, profiles, db, jobs=args.jobs, variants=variants)
            wall = time.perf_counter() - started
            conn = sqlite3.connect(str(db))
            stored_ok = conn.execute("SELECT COUNT(*) FROM results WHERE run_id = ? AND status = 'ok'",
                                     (result.run_id,)).fetchone()[0]
            stored_all = conn.execute("SELECT COUNT(*) FROM results WHERE run_id = ?", (result.run_id,)).fetchone()[0]
            names = variants or [r[0] for r in conn.execute(
                "SELECT name FROM variants WHERE run_id = ? AND status = 'ok'", (result.run_id,))]
            conn.close()
            expected = len(plan_cells(names)) * len(profiles)
            totals[0] += stored_ok
            totals[1] += expected
            print(f"{index:>4} {result.run_id:>7} {stored_ok:>10} / {expected:<9} ({100 * stored_ok / expected:5.1f}%)"
                  f" {stored_all - stored_ok:>5} {wall:>8.1f}")
        print(f"total stored ok / expected: {totals[0]} / {totals[1]} ({100 * totals[0] / totals[1]:.1f}%, goal 100%)")
        print(f"host peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    finally:
        running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
