"""The store under faults a user meets: another process holding the lock, a damaged file, someone else's SQLite
file given as ``--db``, and hostile values from a device. Each is one ``StoreError`` line, never a traceback,
and a measured result is never dropped because of a lock.

Locks are held by a real second process (``BEGIN EXCLUSIVE``), as an ``sqlite3`` shell or another tool would.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

import pytest

from edgeprune.errors import StoreError
from edgeprune.results.store import Store
from support.manifests import MANIFEST

#: Holds an exclusive lock on argv[1] for argv[3] seconds, then commits; "wal" first switches the file to WAL.
LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "wal":
    conn.execute("PRAGMA journal_mode = WAL")
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[3]))
conn.execute("COMMIT")
"""


@contextmanager
def lock_held(path: Path, seconds: float, mode: str = "keep") -> Iterator[subprocess.Popen]:
    """Another process holds the database's write lock for ``seconds`` (killed on exit if still holding it)."""
    proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(path), mode, str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def edgeprune(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (cwd outside the checkout, so PYTHONPATH decides which package runs)."""
    return subprocess.run([sys.executable, "-m", "edgeprune", *args], capture_output=True, text=True,
                          cwd=str(cwd), env=dict(os.environ), timeout=300)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def a_store_with_rows(path: Path, runs: int = 3) -> None:
    with Store.open(path) as store:
        for _ in range(runs):
            run_id = store.create_run("/runs/x", MANIFEST, {})
            for device in range(4):
                store.record(run_id, f"dev{device}", "baseline-float32",
                             {"status": "ok", "p50_us": 10.0, "error_message": "e" * 300, "agent_json": "{}"})


def schema_of(path: Path) -> List[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()


# --- locks --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["keep", "wal"])
def test_a_lock_at_open_is_reported_as_a_lock(tmp_path, mode):
    """A fresh file (rollback journal or WAL) another process holds: one line that says 'locked'."""
    path = tmp_path / "s.db"
    with lock_held(path, 30, mode):
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            Store.open(path, busy_timeout=0.5)
        assert time.monotonic() - started < 10
    message = str(caught.value)
    assert f"database {path} is locked by another process (waited" in message
    assert "not an edgeprune database" not in message


def test_writing_a_new_run_under_a_lock_is_one_store_error(tmp_path):
    path = tmp_path / "s.db"
    a_store_with_rows(path, runs=1)
    with Store.open(path, busy_timeout=0.3) as store, lock_held(path, 30):
        with pytest.raises(StoreError, match="is locked by another process"):
            store.create_run("/runs/y", MANIFEST, {})
        with pytest.raises(StoreError, match="is locked by another process"):
            store.add_device(1, "pi", "ssh", "pi:22", [], {})


def test_a_report_reads_while_another_process_holds_the_write_lock(tmp_path):
    """WAL lets readers in while a writer holds the lock: `edgeprune runs` must not wait for it or fail."""
    path = tmp_path / "s.db"
    a_store_with_rows(path, runs=2)
    with lock_held(path, 120):
        proc = edgeprune(tmp_path, "runs", "--db", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "4 ok" in proc.stdout


def test_record_waits_out_a_lock_longer_than_one_busy_timeout(tmp_path):
    path = tmp_path / "s.db"
    a_store_with_rows(path, runs=1)
    with Store.open(path, busy_timeout=0.5, write_patience=60) as store:
        with lock_held(path, 2.5):
            started = time.monotonic()
            store.record(1, "pi", "pruned-int8", {"status": "ok", "p50_us": 5.0})
            waited = time.monotonic() - started
        rows = [r for r in store.results(1) if r["device"] == "pi"]
    assert waited >= 1.5, "the lock was not held while record() ran"
    assert len(rows) == 1 and rows[0]["p50_us"] == 5.0 and rows[0]["attempts"] == 1


def test_record_gives_up_after_its_patience_with_one_line(tmp_path):
    path = tmp_path / "s.db"
    a_store_with_rows(path, runs=1)
    with Store.open(path, busy_timeout=0.2, write_patience=1.0) as store, lock_held(path, 60):
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            store.record(1, "pi", "pruned-int8", {"status": "ok"})
        assert 1.0 <= time.monotonic() - started < 10
    message = str(caught.value)
    assert "is locked by another process" in message and "pi x pruned-int8 is not stored" in message


# --- damaged and foreign files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["report", "runs"])
def test_a_damaged_database_is_one_error_line(tmp_path, command):
    """A real store whose results table's pages were overwritten: no traceback, one line naming the file."""
    path = tmp_path / "s.db"
    a_store_with_rows(path, runs=20)
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'results'").fetchone()[0]
    conn.close()
    assert 1 < root < os.path.getsize(path) // page_size  # neither the header page nor the last one
    with open(path, "r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(b"\xa5" * page_size)
    line = one_error_line(edgeprune(tmp_path, command, "--db", str(path)))
    assert f"database {path} is damaged" in line and "malformed" in line


@pytest.fixture
def foreign_db(tmp_path) -> Path:
    """Somebody's notes: an SQLite file with user_version 0 and a table of its own."""
    path = tmp_path / "notes.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    conn.execute("INSERT INTO notes (text) VALUES ('keep me')")
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("command", ["report", "runs", "bench"])
def test_a_foreign_sqlite_file_is_refused_and_left_as_it_was(tmp_path, foreign_db, command):
    before_schema, before_bytes = schema_of(foreign_db), hashlib.sha256(foreign_db.read_bytes()).hexdigest()
    extra = ["--device", "local", "--quiet", str(tmp_path / "run-folder")] if command == "bench" else []
    line = one_error_line(edgeprune(tmp_path, command, "--db", str(foreign_db), *extra))
    assert "not an edgeprune database (it has tables: notes)" in line
    assert schema_of(foreign_db) == before_schema
    assert hashlib.sha256(foreign_db.read_bytes()).hexdigest() == before_bytes
    assert not Path(f"{foreign_db}-wal").exists()


def test_a_foreign_file_is_refused_by_the_api_but_an_empty_file_is_made_a_store(tmp_path, foreign_db):
    with pytest.raises(StoreError, match=r"not an edgeprune database \(it has tables: notes\)"):
        Store.open(foreign_db)
    conn = sqlite3.connect(foreign_db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL either
    conn.close()
    empty = tmp_path / "empty.db"
    empty.touch()
    with Store.open(empty) as store:
        assert store.runs() == []


# --- hostile values ---------------------------------------------------------------------------------------------

def test_numbers_sqlite_cannot_hold_are_stored_as_null(tmp_path):
    with Store.open(tmp_path / "s.db") as store:
        run_id = store.create_run("/r", MANIFEST, {})
        store.record(run_id, "pi", "baseline-float32", {
            "status": "invalid", "threads": 2 ** 70, "runs": -(2 ** 70), "rss_peak_kib": 2 ** 63,
            "p50_us": float("inf"), "p90_us": float("-inf"), "p99_us": float("nan"), "mean_us": 2 ** 70,
            "init_ms": 1.5, "accuracy": "0.9",
        })
        # the edges of SQLite's integers are kept as they are
        store.record(run_id, "pi", "pruned-int8", {"status": "ok", "threads": 2 ** 63 - 1, "runs": -(2 ** 63),
                                                    "throttled": True})
        hostile, edges = store.results(run_id)
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for column in ("threads", "runs", "rss_peak_kib", "p50_us", "p90_us", "p99_us", "mean_us", "accuracy"):
        assert hostile[column] is None, column
    assert hostile["init_ms"] == 1.5 and hostile["status"] == "invalid"
    assert (edges["threads"], edges["runs"], edges["throttled"]) == (2 ** 63 - 1, -(2 ** 63), 1)


def test_long_text_from_a_device_is_capped(tmp_path):
    huge = "x" * (6 * 1024 * 1024)
    with Store.open(tmp_path / "s.db") as store:
        run_id = store.create_run("/r", MANIFEST, {})
        store.record(run_id, "pi", "baseline-float32", {
            "status": "error", "error_kind": "k" * 300, "error_message": huge, "agent_json": huge,
            "machine": "m" * 10_000, "runtime": ["not", "a", "string"], "predictions_digest": "d" * 201,
        })
        store.record(run_id, "pi", "pruned-int8", {"status": "error", "error_message": "e" * 4000})
        capped, whole = store.results(run_id)
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert capped["error_message"].startswith("xxx") and len(capped["error_message"]) == 4000
    assert capped["error_message"].endswith("[... cut from 6291456 characters]")
    assert 0 < len(capped["agent_json"]) <= 2 * 1024 * 1024
    for column in ("error_kind", "machine", "predictions_digest"):
        assert len(capped[column]) == 200, column
    assert capped["runtime"] == "['not', 'a', 'string']"
    assert whole["error_message"] == "e" * 4000  # at the cap: kept whole
