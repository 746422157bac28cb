"""The store's semantics on both backends, through the one ``Store`` API: every test here runs on a SQLite file
and on a real PostgreSQL database (``db``), and one test fills both the same way and compares every table."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pytest

from edgeprune.errors import StoreError
from edgeprune.results.store import SCHEMA_VERSION, Store
from support.manifests import MANIFEST

PLAN = {"status": "ok", "stopped_by": "settled", "rounds_done": 5, "rounds_total": 9, "rounds_s": 1.25,
        "target_ci": 0.02, "budget_s": 300.0, "seed": 7, "visits_json": "[]"}


def test_a_new_store_is_at_the_current_version_and_reopens_without_migrating(db):
    with Store.open(db) as store:
        assert store.version == SCHEMA_VERSION >= 4
        assert store.runs() == []
    with Store.open(db, create=False) as again:
        assert again.version == SCHEMA_VERSION


def test_record_upserts_one_row_per_pair_and_resume_sees_the_done_pairs(db):
    with Store.open(db) as store:
        run_id = store.create_run("/runs/x", MANIFEST, {"jobs": 2})
        assert [v["name"] for v in store.variants(run_id)] == ["baseline-float32", "pruned-int8"]
        store.record(run_id, "pi", "baseline-float32", {"status": "failed", "error_message": "unreachable"})
        assert store.done_pairs(run_id) == []
        store.record(run_id, "pi", "baseline-float32", {"status": "ok", "p50_us": 12.5, "threads": 4})
        rows = store.results(run_id)
        assert len(rows) == 1
        row = rows[0]
        assert (row["status"], row["p50_us"], row["threads"], row["attempts"]) == ("ok", 12.5, 4, 2)
        assert row["error_message"] is None and isinstance(row["id"], int)
        assert store.done_pairs(run_id) == [("pi", "baseline-float32")]
        store.record(run_id, "pi", "pruned-float32", {"status": "error", "error_kind": "model-load"})
        store.record(run_id, "pi", "pruned-int8", {"status": "invalid"})
        assert sorted(store.done_pairs(run_id)) == [("pi", "baseline-float32"), ("pi", "pruned-float32")]


def test_rows_behave_like_sqlite_rows_on_every_backend(db):
    with Store.open(db) as store:
        run_id = store.create_run("/runs/x", MANIFEST, {"jobs": 2})
        store.add_device(run_id, "pi", "ssh", "pi:22", ["arm", "lab"], {"name": "pi"})
        device = store.devices(run_id)[0]
    assert device["name"] == "pi" and device[0] == device["id"] and device["tags"] == "arm,lab"
    assert dict(device) == {k: device[k] for k in device.keys()}
    assert list(device.keys())[:3] == ["id", "run_id", "name"]


def test_latest_and_unknown_runs(db):
    with Store.open(db) as store:
        with pytest.raises(StoreError, match="holds no runs yet"):
            store.run()
        first = store.create_run("/a", MANIFEST, {})
        second = store.create_run("/b", MANIFEST, {})
        assert second > first
        assert store.run()["id"] == second and store.run(first)["run_folder"] == "/a"
        assert [r["id"] for r in store.runs()] == [first, second]
        with pytest.raises(StoreError, match="no run 99 in"):
            store.run(99)


def test_a_device_is_upserted_and_plans_get_their_own_ids(db):
    with Store.open(db) as store:
        run_id = store.create_run("/r", MANIFEST, {})
        store.add_device(run_id, "pi", "ssh", "old:22", [], {})
        store.add_device(run_id, "pi", "ssh", "new:22", ["t"], {"x": 1})
        assert [(d["address"], d["tags"]) for d in store.devices(run_id)] == [("new:22", "t")]
        first = store.record_plan(run_id, "pi", PLAN)
        second = store.record_plan(run_id, "pi", dict(PLAN, status="failed", seed=2 ** 70))
        store.record(run_id, "pi", "baseline-float32", {"status": "ok", "plan_id": second})
        plans = store.plans(run_id)
    assert second > first and [p["id"] for p in plans] == [first, second]
    assert plans[0]["rounds_s"] == 1.25 and plans[0]["seed"] == 7 and plans[1]["seed"] is None


def test_a_result_for_a_run_that_does_not_exist_is_refused(db):
    with Store.open(db) as store:
        with pytest.raises(StoreError, match="refused storing a result"):
            store.record(42, "pi", "baseline-float32", {"status": "ok"})


def test_sweep_tables_upsert_and_say_which_benches_are_done(db):
    with Store.open(db) as store:
        sweep = store.open_sweep("/sweeps/a", {"grid": 1}, {})
        assert store.open_sweep("/sweeps/a", {"grid": 2}, {"x": 1}) == sweep
        assert store.open_sweep("/sweeps/b", {}, {}) != sweep
        run_id = store.create_run("/r", MANIFEST, {})
        store.record_point(sweep, "p1", "r1", "failed", None, None, "x" * 9000)
        store.record_point(sweep, "p1", "r1", "optimized", "/r", "pruned-int8", None)
        store.record_point(sweep, "p2", "r1", "optimized", "/r", "baseline-float32", None)
        store.record_point_bench(sweep, "p1", "pi", run_id)
        store.record_point_bench(sweep, "p2", "pi", run_id)
        store.record(run_id, "pi", "pruned-int8", {"status": "ok"})
        store.record(run_id, "pi", "baseline-float32", {"status": "failed"})
        points = store.sweep_points(sweep)
        benches = {b["key"]: b["done"] for b in store.sweep_benches(sweep)}
        # optimized again after that bench (--retry-failed): the bench measured the earlier files
        store.conn.execute("UPDATE sweep_benches SET created = '2000-01-01T00:00:00+00:00'")
        assert {b["done"] for b in store.sweep_benches(sweep)} == {0}
    assert [(p["key"], p["status"], p["reason"]) for p in points] == [("p1", "optimized", None),
                                                                      ("p2", "optimized", None)]
    assert benches == {"p1": 1, "p2": 0}


def test_hostile_values_are_stored_the_same_way_everywhere(db):
    with Store.open(db) as store:
        run_id = store.create_run("/r", MANIFEST, {})
        store.record(run_id, "pi", "baseline-float32", {
            "status": "invalid", "threads": 2 ** 70, "runs": 2.5, "rss_peak_kib": 3.0, "p50_us": float("nan"),
            "p90_us": float("inf"), "mean_us": 1e300, "init_ms": 7, "accuracy": "0.9", "throttled": True,
            "error_message": "nul\x00 and \ud800 surrogate", "machine": "m" * 10_000, "runtime": ["a"],
        })
        store.record(run_id, "pi", "pruned-int8", {"status": "ok", "threads": 2 ** 63 - 1, "runs": -(2 ** 63)})
        hostile, edges = store.results(run_id)
    assert [hostile[c] for c in ("threads", "runs", "p50_us", "p90_us", "accuracy")] == [None] * 5
    assert (hostile["rss_peak_kib"], hostile["mean_us"], hostile["init_ms"], hostile["throttled"]) == (3, 1e300, 7, 1)
    assert hostile["error_message"] == "nul\ufffd and \ufffd surrogate"
    assert len(hostile["machine"]) == 200 and hostile["runtime"] == "['a']"
    assert (edges["threads"], edges["runs"]) == (2 ** 63 - 1, -(2 ** 63))


def test_names_sort_byte_by_byte_on_every_backend(db):
    """PostgreSQL's tables are TEXT COLLATE "C": the same order as SQLite, whatever the server's locale."""
    names = ["pi", "Pi", "_pi", "pi-2", "pi10", "pi2", "Zero", "élan"]
    with Store.open(db) as store:
        run_id = store.create_run("/r", MANIFEST, {})
        for name in names:
            store.record(run_id, name, "baseline-float32", {"status": "ok"})
        assert [r["device"] for r in store.results(run_id)] == sorted(names)


def _fill(db: str) -> Dict[str, List[Dict[str, Any]]]:
    """The same sequence of writes on any backend; every row read back, without what differs by nature: times,
    and the ids of upserted rows (PostgreSQL spends an identity value on every INSERT ... ON CONFLICT, so its ids
    have gaps; nothing refers to those ids, and their order is the same)."""
    with Store.open(db) as store:
        run_id = store.create_run("/runs/x", MANIFEST, {"jobs": 2, "matrix": {"threads": [1, 4]}})
        store.add_device(run_id, "pi", "ssh", "pi:22", ["arm"], {"name": "pi"})
        plan = store.record_plan(run_id, "pi", PLAN)
        for attempt in range(2):
            store.record(run_id, "pi", "baseline-float32", {"status": "ok", "p50_us": 10.0 + attempt,
                                                            "plan_id": plan, "round_p50s_json": "[1, 2]"})
        store.record(run_id, "pi", "pruned-int8", {"status": "error", "error_kind": "op", "settled": False})
        sweep = store.open_sweep("/s", {"g": 1}, {})
        store.record_point(sweep, "k", "r", "optimized", "/runs/x", "pruned-int8", None)
        store.record_point_bench(sweep, "k", "pi", run_id)
        tables = {"runs": store.runs(), "devices": store.devices(run_id), "variants": store.variants(run_id),
                  "results": store.results(run_id), "plans": store.plans(run_id),
                  "sweep_points": store.sweep_points(sweep), "sweep_benches": store.sweep_benches(sweep)}
    upserted = ("devices", "results", "sweep_points", "sweep_benches")
    return {name: [{k: v for k, v in dict(row).items()
                    if k not in ("created", "optimized") and not (k == "id" and name in upserted)} for row in rows]
            for name, rows in tables.items()}


def test_both_backends_hold_the_same_rows_after_the_same_writes(tmp_path: Path, pg_url: str):
    sqlite, postgres = _fill(str(tmp_path / "same.db")), _fill(pg_url)
    for table in sqlite:
        assert postgres[table] == sqlite[table], table
        for a, b in zip(sqlite[table], postgres[table]):
            assert {k: type(v) for k, v in a.items()} == {k: type(v) for k, v in b.items()}, table
