"""The SQLite store on real SQLite files: schema version, migrations, upserts, resume bookkeeping."""
from __future__ import annotations

import sqlite3
import threading

import pytest

from edgeprune.results import store as store_module
from edgeprune.errors import StoreError
from edgeprune.results.store import SCHEMA_VERSION, Store
from support.manifests import MANIFEST


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "s.db") as s:
        yield s


def test_new_store_is_wal_and_at_current_version(store):
    assert store.version == SCHEMA_VERSION >= 1
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "devices", "variants", "results"} <= tables


def test_reopening_does_not_migrate_twice(tmp_path):
    Store.open(tmp_path / "s.db").close()
    with Store.open(tmp_path / "s.db") as again:
        assert again.version == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store.open(tmp_path / "s.db")


def test_not_a_database_is_one_clear_error(tmp_path):
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not an edgeprune database|cannot open"):
        Store.open(tmp_path / "junk.db")


def test_a_versioned_file_without_the_edgeprune_tables_is_refused(tmp_path):
    """Another tool's file that happens to set user_version: refused at open, not a traceback at the first read."""
    conn = sqlite3.connect(tmp_path / "other.db")
    conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.close()
    with pytest.raises(StoreError, match=rf"not an edgeprune database \(user_version {SCHEMA_VERSION} but no "
                                         r"table devices, variants, results; it has tables: runs\)"):
        Store.open(tmp_path / "other.db", create=False)


def test_every_result_column_has_a_storage_rule():
    """A new column must be declared a number (NULL when SQLite cannot hold it) or capped text."""
    numbers, texts = set(store_module.NUMBER_COLUMNS), set(store_module.TEXT_CAPS)
    assert set(store_module.RESULT_COLUMNS) == {"status"} | numbers | texts
    assert not numbers & texts


def test_missing_database_for_reading(tmp_path):
    with pytest.raises(StoreError, match="no database"):
        Store.open(tmp_path / "none.db", create=False)


def test_run_variants_and_upsert_without_duplicates(store):
    run_id = store.create_run("/runs/x", MANIFEST, {"jobs": 2})
    assert [v["name"] for v in store.variants(run_id)] == ["baseline-float32", "pruned-int8"]
    store.record(run_id, "pi", "baseline-float32", {"status": "failed", "error_message": "unreachable"})
    assert store.done_pairs(run_id) == []
    store.record(run_id, "pi", "baseline-float32", {"status": "ok", "p50_us": 12.5})
    rows = store.results(run_id)
    assert len(rows) == 1
    assert rows[0]["status"] == "ok" and rows[0]["p50_us"] == 12.5 and rows[0]["attempts"] == 2
    assert store.done_pairs(run_id) == [("pi", "baseline-float32")]
    store.record(run_id, "pi", "pruned-float32", {"status": "error", "error_kind": "model-load"})
    assert ("pi", "pruned-float32") in store.done_pairs(run_id)  # an agent-reported error is final


def test_latest_and_unknown_runs(store):
    with pytest.raises(StoreError, match="no runs"):
        store.run()
    first = store.create_run("/a", MANIFEST, {})
    second = store.create_run("/b", MANIFEST, {})
    assert store.run()["id"] == second
    assert store.run(first)["run_folder"] == "/a"
    with pytest.raises(StoreError, match="no run 99"):
        store.run(99)


def test_results_survive_a_crash_of_the_writer(tmp_path):
    """Each record() is committed at once: a second connection sees it without any close or commit."""
    writer = Store.open(tmp_path / "s.db")
    run_id = writer.create_run("/r", MANIFEST, {})
    writer.record(run_id, "d", "baseline-float32", {"status": "ok"})
    reader = sqlite3.connect(tmp_path / "s.db")
    assert reader.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
    reader.close()
    writer.close()


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "s.db"
    with Store.open(path) as s:
        run_id = s.create_run("/r", MANIFEST, {})

    def write(worker: int) -> None:
        with Store.open(path) as s:
            for i in range(50):
                s.record(run_id, f"dev{worker}", f"v{i}", {"status": "ok", "p50_us": float(i)})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Store.open(path) as s:
        assert len(s.results(run_id)) == 8 * 50
