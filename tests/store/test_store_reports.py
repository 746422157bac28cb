"""The report and the run list read either backend unchanged: the same runs written to a SQLite file and to a
PostgreSQL database give the same comparison table, and the CLI's ``runs`` and ``report`` take the URL."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from edgeprune.report.frame import list_runs, load
from edgeprune.results.store import Store
from support.store_rows import manifest_for, round_cell, store_plan

VARIANTS = {"baseline-float32": (500, 0.99), "baseline-int8": (150, 0.985), "pruned-int8": (60, 0.98)}
P50S = {"baseline-float32": 4000.0, "baseline-float32@aa": 4000.0, "baseline-int8": 2500.0, "pruned-int8": 1500.0}


def _fill(db: str) -> None:
    """Two runs of two devices, with rounds, written through the Store API as a bench stores them."""
    rng = np.random.default_rng(17)
    with Store.open(db) as store:
        for _ in range(2):
            run = store.create_run("/nonexistent/run", manifest_for(VARIANTS), {})
            for device, scale in (("pi", 1.0), ("Laptop", 0.1)):
                store.add_device(run, device, "ssh", f"{device}:22", [], {"name": device})
                store_plan(store, run, device, {cell: round_cell(list(p50 * scale * (1 + rng.normal(0, 0.004, 12))))
                                                for cell, p50 in P50S.items()})
            store.record(run, "pi", "pruned-float32", {"status": "failed", "error_message": "gone"})


def _edgeprune(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeprune", *args], capture_output=True, text=True,
                          cwd=str(cwd), env=dict(os.environ), timeout=300)


def test_the_report_is_the_same_from_sqlite_and_from_postgresql(tmp_path, pg_url):
    sqlite = str(tmp_path / "same.db")
    _fill(sqlite)
    _fill(pg_url)
    for run_id in (1, 2):
        a, b = load(sqlite, run_id), load(pg_url, run_id)
        pd.testing.assert_frame_equal(a.frame, b.frame)
        assert a.devices == b.devices and a.rounds == b.rounds
        assert {k: v for k, v in a.run.items() if k not in ("created", "db")} == \
            {k: v for k, v in b.run.items() if k not in ("created", "db")}
    runs_a, runs_b = list_runs(sqlite), list_runs(pg_url)
    pd.testing.assert_frame_equal(runs_a.drop(columns=["created"]), runs_b.drop(columns=["created"]))


def test_the_cli_lists_and_reports_runs_from_postgresql(tmp_path, pg_url):
    sqlite = str(tmp_path / "same.db")
    _fill(sqlite)
    _fill(pg_url)
    listed = _edgeprune(tmp_path, "runs", "--db", pg_url)
    assert listed.returncode == 0, listed.stderr
    assert f"edgeprune runs ({pg_url})" in listed.stdout and "Laptop, pi" in listed.stdout
    files = {}
    for name, db in (("sqlite", sqlite), ("postgresql", pg_url)):
        out = tmp_path / name / "report"
        proc = _edgeprune(tmp_path, "report", "2", "--db", db, "--format", "csv,md", "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        shown = _undated(proc.stdout.replace(str(out), "OUT"))
        files[name] = shown, {p.name: _undated(p.read_text()) for p in sorted(out.iterdir())}
    assert files["postgresql"] == files["sqlite"]


def _undated(text: str) -> str:
    """The two stores' runs were created a moment apart (maybe in different seconds): their dates aside, the
    reports must be the same."""
    import re

    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?\+00:00", "CREATED", text)


def test_the_cli_on_an_unreachable_server_is_one_line_in_seconds(tmp_path):
    from support.postgres import free_port

    url = f"postgresql://edgeprune@127.0.0.1:{free_port()}/edge"
    proc = _edgeprune(tmp_path, "runs", "--db", url)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"Error: cannot reach the PostgreSQL server of {url}: ")
