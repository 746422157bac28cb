"""The same sweep on a local Ray instance (started by the test, loopback only) gives the same points.

Equal, not close: both sweeps train with the same seed and one TensorFlow thread (sweep_support.THREADS; the Ray
workers get it through the sweep's runtime_env), so the baseline and every pruned model are computed in the same
order and come out bit for bit the same; the .tflite files' sha256 prove it. (With other thread counts the
accuracies differ by a few of the 450 test samples, which is why the threads are pinned rather than a tolerance
allowed.) Latency is measured afresh on ``local`` by each sweep, so it is only checked to be there.
"""
from __future__ import annotations

import csv
import json

import pytest

from sweep_support import POINTS, RUNS, rows, run_sweep

pytestmark = pytest.mark.slow


def _table(folder):
    with open(folder / "pareto.csv", newline="") as handle:
        return {r["point"]: r for r in csv.DictReader(handle)}


def test_a_ray_sweep_gives_the_same_points(local_sweep, ray_head, tmp_path):
    folder, db = tmp_path / "s-ray", tmp_path / "edgeprune.db"
    proc = run_sweep(tmp_path, folder, db, "--device", "local", "--ray", ray_head.address, prefix=ray_head.prefix)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"optimizing 2 of 2 runs on the Ray cluster at {ray_head.address}" in proc.stderr
    assert f"preparing the baseline once on the Ray cluster at {ray_head.address}" in proc.stderr
    ray_rows, local_rows = _table(folder), _table(local_sweep.folder)
    assert list(ray_rows) == list(local_rows) == POINTS + ["baseline"]
    for key in POINTS + ["baseline"]:
        mine, theirs = ray_rows[key], local_rows[key]
        assert (mine["variant"], mine["status"]) == (theirs["variant"], "ok")
        assert mine["sparsity"] == theirs["sparsity"] and mine["accuracy"] == theirs["accuracy"], key
        assert mine["gzip_bytes"] == theirs["gzip_bytes"] and float(mine["p50_us"]) > 0
    for run in RUNS:  # the files came back from the workers as bytes, written here under this machine's paths
        manifest = json.loads((folder / "points" / run / "manifest.json").read_text())
        local = json.loads((local_sweep.folder / "points" / run / "manifest.json").read_text())
        assert manifest["config"]["out"] == str(folder / "points" / run)
        assert manifest["baseline"]["source"] == str(folder / "baseline" / "baseline.keras")
        assert {v["name"]: v["sha256"] for v in manifest["variants"]} == \
            {v["name"]: v["sha256"] for v in local["variants"]}
    assert [p["key"] for p in rows(db, "SELECT key FROM sweep_points WHERE status = 'optimized' ORDER BY key")] \
        == sorted(POINTS)
