"""The main job as the README gives it: ``edgeprune run`` with no arguments, in a fresh folder."""
from __future__ import annotations

import sqlite3

import pytest

from edgeprune.report import plots
from support.cli import edgeprune

pytestmark = pytest.mark.slow


def test_run_with_no_arguments_optimizes_benches_and_reports(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "100"}
    proc = edgeprune("run", "-q", cwd=str(tmp_path), env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "local: ai_edge_litert" in proc.stdout and "pruned-int8" in proc.stdout
    assert "edgeprune run: done in" in proc.stderr
    [folder] = (tmp_path / "runs").glob("optimize-*")
    report = folder / "report"
    for name in ("report.csv", "report.md", "report.html", *plots.FILES.values()):
        assert (report / name).stat().st_size > 0, name
    conn = sqlite3.connect(str(tmp_path / "runs" / "edgeprune.db"))
    statuses = dict(conn.execute("SELECT variant, status FROM results").fetchall())
    built = [row[0] for row in conn.execute("SELECT name FROM variants WHERE status = 'ok'")]
    conn.close()
    assert statuses == dict.fromkeys([*built, "baseline-float32@aa"], "ok")  # every variant and the A/A twin
    assert "Noise floor (A/A: the baseline measured twice)" in proc.stdout and "Pruning bought" in proc.stdout


def test_run_refuses_a_bad_device_before_training(tmp_path):
    proc = edgeprune("run", "--device", "no-such-device", cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: unknown device profile 'no-such-device'")
    assert not (tmp_path / "runs").exists()
