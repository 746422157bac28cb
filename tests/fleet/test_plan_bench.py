"""`bench` measures each device with one plan in interleaved rounds, the baseline's A/A twin included (issue 12).

These run the CLI (or, where a test must swap the agent, the fleet in-process) on the `local` device and on the
Pi-like Python 3.9 venv, and read what the store holds: one plans row per device, one result per cell pointing at
it, the per-round p50s that the report's intervals come from, and how the stopping rule ended the rounds.
"""
from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import tarfile
from pathlib import Path
from typing import Any, Dict, List

import pytest
from click.testing import CliRunner

from support.cli import bench, edgeprune
from support.paths import REPO_ROOT
from support.store_rows import by_pair, outcome, rows

pytestmark = pytest.mark.slow
TWIN = "baseline-float32@aa"
#: The last commit whose agent has no `plan` command: what an old agent on a device answers.
OLD_AGENT_COMMIT = "c9a191ad9bbe79b93c6805a0eda87dc3f83f7da5"


def plans(db: Path) -> List[sqlite3.Row]:
    conn = sqlite3.connect(str(db))
    conn.row_factory = sqlite3.Row
    found = list(conn.execute("SELECT * FROM plans ORDER BY id"))
    conn.close()
    return found


def local_profile(path: Path, **fields: Any) -> Path:
    """A `local` profile file: the shipped one's settings, with ``fields`` changed."""
    values: Dict[str, Any] = {"name": "local", "kind": "local", "python": "", "threads": 1, "warmup": 20,
                              "runs": 100}
    values.update(fields)
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return path


def test_one_plan_visits_every_cell_once_per_round_in_fresh_orders(digits_run, tmp_path):
    """The shipped `local` profile, as `edgeprune run` uses it: the baseline and its twin are measured beside the
    asked-for variant, in rounds, and every stored figure can be traced to the plan's recorded visits."""
    folder, manifest = digits_run
    db = tmp_path / "s.db"
    proc = bench(str(folder), "--device", "local", "--db", str(db), "--variants", "pruned-int8")
    assert proc.returncode == 0, proc.stderr
    assert "3 ok, 0 error, 0 failed" in proc.stdout and "A/A twin" in proc.stdout, proc.stdout
    [plan] = plans(db)
    assert plan["status"] == "ok" and plan["device"] == "local"
    assert plan["budget_s"] == 120 and plan["target_ci"] == 0.02  # the shipped profile's rule
    assert plan["stopped_by"] in ("target", "budget", "max_rounds") and plan["rounds_done"] >= 5
    visits = json.loads(plan["visits_json"])
    cells = {"baseline-float32", TWIN, "pruned-int8"}
    orders = []
    for index in range(plan["rounds_done"]):
        order = [cell for r, cell in visits if r == index]
        assert sorted(order) == sorted(cells), (index, order)  # each cell once per round
        orders.append(tuple(order))
    assert len(set(orders)) > 1, f"every round had the same order: {orders[0]}"  # a fresh order per round
    stored = by_pair(rows(db))
    assert set(stored) == {("local", cell) for cell in cells}
    sha = {v["name"]: v["sha256"] for v in manifest["variants"]}
    for cell in cells:
        row = stored[("local", cell)]
        assert row["status"] == "ok" and row["plan_id"] == plan["id"], outcome(row)
        per_round = json.loads(row["round_p50s_json"])
        assert len(per_round) == plan["rounds_total"]
        visited = [r for r, c in visits if c == cell]
        assert [i for i, v in enumerate(per_round) if v is not None] == visited
        doc = json.loads(row["agent_json"])
        assert [(e["round"], e["p50_us"]) for e in doc["rounds"]] == [(r, per_round[r]) for r in visited]
        assert row["rounds"] == len(visited) and row["p50_low_us"] <= row["p50_us"] <= row["p50_high_us"]
        assert doc["model"]["sha256"] == sha[cell.split("@")[0]]
    # the twin is the baseline's own file, and the noise floor the report prints comes from the pair
    report = edgeprune("report", "--db", str(db), "--out", str(tmp_path / "report"), "--format", "csv")
    assert report.returncode == 0, report.stderr
    assert "A/A" in report.stdout and "Noise floor" in report.stdout, report.stdout


@pytest.mark.parametrize("rule, fields, expected", [
    ("target", {"target_ci": 0.5, "min_rounds": 3, "max_rounds": 40}, "target"),
    ("budget", {"target_ci": 1e-9, "budget_s": 2.0, "min_seconds": 0.1, "max_rounds": 100000}, "budget"),
])
def test_the_stopping_rule_ends_on_the_target_or_on_the_budget(digits_run, tmp_path, rule, fields, expected):
    folder, _ = digits_run
    db = tmp_path / "s.db"
    profile = local_profile(tmp_path / f"{rule}.toml", **fields)
    proc = bench(str(folder), "--device", str(profile), "--db", str(db), "--variants", "pruned-int8")
    assert proc.returncode == 0, proc.stderr
    [plan] = plans(db)
    assert plan["stopped_by"] == expected, dict(plan)
    if rule == "target":  # a loose target is met as soon as the minimum rounds are done
        assert plan["rounds_done"] == 3
        assert all(r["settled"] == 1 for r in rows(db))
    else:  # an unreachable target: the budget ends it, and the report lists the cells that did not settle
        assert 1 <= plan["rounds_done"] < 100000 and plan["rounds_s"] < 2.0 + 3 * 0.5
        assert all(r["settled"] == 0 for r in rows(db))
        report = edgeprune("report", "--db", str(db), "--out", str(tmp_path / "report"), "--format", "csv")
        assert "Did not settle" in report.stdout and "budget_s" in report.stdout, report.stdout


def test_pi_like_venv_runs_the_plan_and_a_cell_that_cannot_load_costs_only_itself(digits_run, pi_python, tmp_path):
    """Python 3.9, tflite-runtime 2.14, numpy<2: the dynamic-range variant cannot load (FULLY_CONNECTED v12); it is
    that cell's error, never visited, and every other cell is measured in the same rounds."""
    folder, _ = digits_run
    db = tmp_path / "s.db"
    profile = local_profile(tmp_path / "pi39.toml", name="pi39", python=str(pi_python), target_ci=0.1)
    proc = bench(str(folder), "--device", str(profile), "--db", str(db), "--variants", "pruned-dynamic,pruned-int8")
    assert proc.returncode == 1, proc.stderr  # one cell is an error
    assert "3 ok, 1 error, 0 failed" in proc.stdout, proc.stdout
    stored = by_pair(rows(db))
    dynamic = stored[("pi39", "pruned-dynamic")]
    assert dynamic["status"] == "error" and dynamic["error_kind"] == "model-load", outcome(dynamic)
    assert "FULLY_CONNECTED" in dynamic["error_message"] and dynamic["round_p50s_json"] is None
    [plan] = plans(db)
    assert "pruned-dynamic" not in {cell for _, cell in json.loads(plan["visits_json"])}
    for cell in ("baseline-float32", TWIN, "pruned-int8"):
        row = stored[("pi39", cell)]
        assert row["status"] == "ok" and row["rounds"] >= 5, outcome(row)
        assert row["runtime"] == "tflite_runtime" and row["runtime_version"] == "2.14.0"
        assert row["python_version"].startswith("3.9.")


def _old_agent(into: Path) -> Path:
    """The agent as it was before `plan` existed (from this repository's history)."""
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", OLD_AGENT_COMMIT, "device_agent"],
                             capture_output=True, timeout=60)
    assert archive.returncode == 0, f"cannot read the old agent from git: {archive.stderr.decode()[-500:]}"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into)
    assert not (into / "device_agent" / "plan.py").exists()
    return into / "device_agent"


def test_an_old_agent_is_refused_with_one_clear_line(digits_run, tmp_path, monkeypatch):
    """A device whose agent predates plans answers `plan` with argparse's refusal: every cell is `failed` /
    `old-agent` (retried by --resume once the agent is current), the CLI says so in one line, no traceback."""
    from edgeprune.cli.commands import main
    from edgeprune.devices import local

    folder, _ = digits_run
    monkeypatch.setattr(local, "AGENT_DIR", _old_agent(tmp_path / "old"))
    db = tmp_path / "s.db"
    result = CliRunner().invoke(main, ["bench", str(folder), "--device", "local", "--db", str(db), "-q",
                                       "--variants", "pruned-int8"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    said = " ".join(result.output.split())  # rich wraps the device's line at the runner's 80 columns
    assert said.count("too old for measurement plans") == 1, result.output
    assert "local: old-agent: the agent on the device is too old" in said
    assert "invalid choice: 'plan'" in said and "deploy the current device_agent" in said
    stored = rows(db)
    assert {r["variant"] for r in stored} == {"baseline-float32", TWIN, "pruned-int8"}
    for row in stored:
        assert row["status"] == "failed" and row["error_kind"] == "old-agent", outcome(row)
    [plan] = plans(db)
    assert plan["status"] == "failed" and plan["rounds_done"] is None


def test_resume_measures_the_device_again_as_one_plan_and_a_failed_plan_keeps_what_was_measured(
        digits_run, tmp_path, monkeypatch):
    """Ratios pair only cells of one plan, so a device with a missing cell is measured again as a whole; when that
    new plan fails, the cells measured before keep their results and only the missing one is recorded failed."""
    from edgeprune.devices import fleet, local
    from edgeprune.devices.profiles import load_profile

    folder, _ = digits_run
    db = tmp_path / "s.db"
    profile = load_profile(str(local_profile(tmp_path / "fast.toml", target_ci=0.5, min_rounds=3)))
    first = fleet.bench(folder, [profile], db, variants=["pruned-int8"])
    assert first.all_ok, first.counts
    conn = sqlite3.connect(str(db))
    with conn:
        conn.execute("UPDATE results SET status = 'failed', error_kind = 'timeout' WHERE variant = 'pruned-int8'")
    conn.close()
    again = fleet.bench(None, [profile], db, resume=first.run_id)
    assert again.all_ok, again.counts
    first_plan, second_plan = plans(db)
    assert {r["plan_id"] for r in rows(db)} == {second_plan["id"]}  # every cell from the new plan
    # the same again with an agent that cannot run plans: the measured cells stay as the second plan left them
    with sqlite3.connect(str(db)) as conn:
        conn.execute("UPDATE results SET status = 'failed', error_kind = 'timeout' WHERE variant = 'pruned-int8'")
    monkeypatch.setattr(local, "AGENT_DIR", _old_agent(tmp_path / "old"))
    third = fleet.bench(None, [profile], db, resume=first.run_id)
    assert not third.all_ok
    stored = by_pair(rows(db))
    assert stored[("local", "pruned-int8")]["error_kind"] == "old-agent"
    for cell in ("baseline-float32", TWIN):
        assert stored[("local", cell)]["status"] == "ok" and stored[("local", cell)]["plan_id"] == second_plan["id"]
    assert [p["status"] for p in plans(db)] == ["ok", "ok", "failed"]
