"""A real 4-point sweep on digits, optimized here (two runs at once) and benched on ``local``: its Pareto table,
files and plot agree with the store, the front is the non-dominated set, one point is recommended."""
from __future__ import annotations

import csv
import json
import math

import pytest

from sweep_support import POINTS, RUNS, rows, run_sweep

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _csv(folder):
    with open(folder / "pareto.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_sweep_finishes_with_every_point_stored_and_benched(local_sweep):
    folder, db, proc = local_sweep
    assert "optimizing 2 of 2 runs on this machine" in proc.stderr
    assert "preparing the baseline once" in proc.stderr
    assert "benching on local now (not during training" in proc.stderr
    assert "sweep: 4 of 4 points done" in proc.stderr
    (sweep,) = rows(db, "SELECT * FROM sweeps")
    assert sweep["folder"] == str(folder.resolve())
    points = rows(db, "SELECT * FROM sweep_points ORDER BY key")
    assert [p["key"] for p in points] == sorted(POINTS)
    assert {p["status"] for p in points} == {"optimized"}
    assert {p["variant"] for p in points} == {"pruned-float32", "pruned-int8"}
    benches = rows(db, "SELECT * FROM sweep_benches")
    assert sorted(b["key"] for b in benches) == sorted(POINTS) and {b["device"] for b in benches} == {"local"}
    # one bench run per optimize run: a run's quantized points share its plan (and its A/A band)
    assert len({b["run_id"] for b in benches}) == len(RUNS) == len(rows(db, "SELECT id FROM runs"))
    state = json.loads((folder / "sweep.json").read_text())
    assert state["sweep_version"] == 1 and [p["key"] for p in state["points"]] == POINTS
    assert {p["run_folder"] for p in state["points"]} == {f"points/{run}" for run in RUNS}
    for run in RUNS:  # each run pruned the one baseline the sweep trained
        manifest = json.loads((folder / "points" / run / "manifest.json").read_text())
        assert manifest["config"]["model"] == str(folder / "baseline" / "baseline.keras")
        assert manifest["config"]["out"] == str(folder / "points" / run)
    assert not list((folder / "points").glob("*.attempt-*"))


def test_the_pareto_table_matches_the_store(local_sweep):
    folder, db, proc = local_sweep
    table = _csv(folder)
    assert [r["point"] for r in table] == POINTS + ["baseline"]
    for row in table:
        if row["point"] == "baseline":
            variant = "baseline-float32"
        else:
            (point,) = rows(db, "SELECT * FROM sweep_points WHERE key = ?", row["point"])
            variant = point["variant"]
            (bench,) = rows(db, "SELECT * FROM sweep_benches WHERE key = ?", row["point"])
            assert int(row["run_id"]) == bench["run_id"]
        assert row["variant"] == variant and row["status"] == "ok"
        (result,) = rows(db, "SELECT * FROM results WHERE run_id = ? AND device = 'local' AND variant = ?",
                         int(row["run_id"]), variant)
        (stored,) = rows(db, "SELECT * FROM variants WHERE run_id = ? AND name = ?", int(row["run_id"]), variant)
        assert math.isclose(float(row["p50_us"]), result["p50_us"])
        assert math.isclose(float(row["accuracy"]), stored["accuracy"])
        assert int(row["gzip_bytes"]) == stored["gzip_bytes"]
    # the terminal shows the same table: every point, its variant, and the recommendation
    for key in POINTS:
        assert key in proc.stdout
    assert "Recommended (budget 5 accuracy points): local: " in proc.stdout
    assert (folder / "pareto.md").read_text().count("| s0.") == 4


def test_the_front_is_the_non_dominated_set_and_one_point_is_recommended(local_sweep):
    table = [r for r in _csv(local_sweep.folder) if r["status"] == "ok"]
    figures = [(float(r["accuracy"]), -float(r["gzip_bytes"]), float(r["speedup"])) for r in table]

    def dominated(i):
        return any(all(o >= m for o, m in zip(other, figures[i])) and other != figures[i] for other in figures)

    for i, row in enumerate(table):
        assert (row["pareto"] == "True") == (not dominated(i)), row["point"]
    recommended = [r for r in table if r["recommended"] == "True"]
    assert len(recommended) == 1 and recommended[0]["point"] in POINTS
    best = recommended[0]
    assert best["within_budget"] == "True" and float(best["accuracy_drop"]) <= 5
    # nothing within the budget is faster beyond the noise (the recommendation's own tie rule)
    noise = max(float(best["noise"] or 0), 0.02)
    for row in table:
        if row["point"] != "baseline" and row["within_budget"] == "True":
            assert float(row["speedup"]) < float(best["speedup"]) * (1 + noise) + 1e-9


def test_the_plot_is_a_real_png(local_sweep):
    from matplotlib.image import imread

    path = local_sweep.folder / "pareto.png"
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = imread(path)
    assert image.shape[0] >= 300 and image.shape[1] >= 400
    assert image[..., :3].std() > 0.05  # something is drawn, not a blank canvas


def test_running_the_finished_sweep_again_only_reports(local_sweep, tmp_path):


    folder, db, _ = local_sweep
    before = rows(db, "SELECT key, optimized FROM sweep_points ORDER BY key")
    runs = len(rows(db, "SELECT id FROM runs"))
    proc = run_sweep(tmp_path, folder, db, "--device", "local")
    assert proc.returncode == 0, proc.stderr
    assert f"4 of 4 points already done, skipped: {', '.join(POINTS)}" in proc.stderr
    assert "optimizing" not in proc.stderr and "benching" not in proc.stderr
    assert rows(db, "SELECT key, optimized FROM sweep_points ORDER BY key") == before
    assert len(rows(db, "SELECT id FROM runs")) == runs
