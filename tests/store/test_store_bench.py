"""A real ``edgeprune bench`` of a run folder on the ``local`` device into PostgreSQL, read back by ``report`` and
``runs`` and resumed, all with ``--db postgresql://...`` as a user types it."""
from __future__ import annotations

import csv
import re

import pytest

from edgeprune.results.store import Store
from support.cli import bench, edgeprune
from support.store_rows import TWIN, plan_cells, variant_names

pytestmark = pytest.mark.slow
#: A short stopping rule: how long a bench measures is tested elsewhere (tests/agent/test_agent_plan.py).
FAST = {"target_ci": 0.2, "min_rounds": 3}


def test_bench_into_postgresql_then_report_runs_and_resume_read_it(digits_run, pg_url, tmp_path):
    profile = tmp_path / "local.toml"
    profile.write_text('name = "local"\nkind = "local"\npython = ""\n' +
                       "".join(f"{k} = {v}\n" for k, v in FAST.items()))
    proc = bench(str(digits_run.folder), "--device", str(profile), "--db", pg_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = int(re.search(r"run (\d+):", proc.stdout)[1])
    assert f"stored in {pg_url}" in proc.stdout
    cells = plan_cells(variant_names(digits_run.manifest))
    with Store.open(pg_url, create=False) as store:
        rows = store.results(run_id)
        assert sorted((r["device"], r["variant"]) for r in rows) == sorted(("local", c) for c in cells)
        assert all(r["status"] == "ok" and r["p50_us"] > 0 and r["attempts"] == 1 for r in rows), \
            [(r["variant"], r["status"], r["error_message"]) for r in rows]
        assert len(store.plans(run_id)) == 1 and {r["plan_id"] for r in rows} == {store.plans(run_id)[0]["id"]}
        assert [d["name"] for d in store.devices(run_id)] == ["local"]

    resumed = bench("--resume", str(run_id), "--db", pg_url)  # nothing left to measure: nothing measured again
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with Store.open(pg_url, create=False) as store:
        assert {r["attempts"] for r in store.results(run_id)} == {1} and len(store.plans(run_id)) == 1

    report = edgeprune("report", "--db", pg_url, "--out", str(tmp_path / "report"), "--format", "csv,md")
    assert report.returncode == 0, report.stderr
    assert "pruned-int8" in report.stdout and "Noise floor" in report.stdout, report.stdout
    with open(tmp_path / "report" / "report.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert {r["variant"] for r in table if r["device"] == "local" and r["status"] == "ok"} >= set(cells) - {TWIN}
    listed = edgeprune("runs", "--db", pg_url)
    assert listed.returncode == 0, listed.stderr
    # the run's line; its count leaves the A/A twin out
    assert re.search(rf"\b{run_id}\b.*local", listed.stdout) and f"{len(cells) - 1} ok" in listed.stdout, listed.stdout
