"""The SQLite store: runs, devices, variants and results, written as results arrive.

Each result is its own transaction, so a crash, a Ctrl-C or a SIGKILL loses nothing already measured. WAL mode
lets a report read while a bench writes, and two benches share one file (writers wait on ``busy_timeout``).
Results are upserted on (run, device, variant): a resumed run replaces a failure and never duplicates a pair.
The schema version is SQLite's ``user_version``; migrations are forward-only and applied in order.
"""
from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import StoreError

#: Forward-only migrations; index i upgrades user_version i to i + 1.
MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        created TEXT NOT NULL,
        run_folder TEXT NOT NULL,
        model_source TEXT,
        dataset TEXT,
        manifest_json TEXT NOT NULL,
        options_json TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        address TEXT,
        tags TEXT NOT NULL DEFAULT '',
        profile_json TEXT NOT NULL,
        UNIQUE (run_id, name)
    );
    CREATE TABLE variants (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        file TEXT,
        sha256 TEXT,
        size_bytes INTEGER,
        gzip_bytes INTEGER,
        sparsity REAL,
        accuracy REAL,
        predictions_digest TEXT,
        manifest_json TEXT NOT NULL,
        UNIQUE (run_id, name)
    );
    CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        device TEXT NOT NULL,
        variant TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('ok', 'error', 'failed', 'invalid')),
        error_kind TEXT,
        error_message TEXT,
        runtime TEXT,
        runtime_version TEXT,
        threads INTEGER,
        python_version TEXT,
        machine TEXT,
        init_ms REAL,
        p50_us REAL,
        p90_us REAL,
        p99_us REAL,
        mean_us REAL,
        runs INTEGER,
        accuracy REAL,
        predictions_digest TEXT,
        agreement REAL,
        rss_peak_kib INTEGER,
        throttled INTEGER,
        agent_json TEXT,
        attempts INTEGER NOT NULL DEFAULT 1,
        created TEXT NOT NULL,
        UNIQUE (run_id, device, variant)
    );
    CREATE INDEX results_run ON results (run_id, device);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

#: Result statuses: ok (measured), error (the agent measured and reported an error, e.g. an op the runtime
#: lacks: final), failed (the device or transport failed: --resume retries it), invalid (the agent's document
#: could not be trusted: --resume retries it).
RETRYABLE = ("failed", "invalid")

RESULT_COLUMNS = (
    "status", "error_kind", "error_message", "runtime", "runtime_version", "threads", "python_version", "machine",
    "init_ms", "p50_us", "p90_us", "p99_us", "mean_us", "runs", "accuracy", "predictions_digest", "agreement",
    "rss_peak_kib", "throttled", "agent_json",
)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Store:
    """One connection per thread: sqlite3 connections must not be shared across threads."""

    path: Path
    conn: sqlite3.Connection

    @classmethod
    def open(cls, path: "str | Path", create: bool = True) -> "Store":
        db = Path(path)
        if not create and not db.exists():
            raise StoreError(f"no database at {db}: run `edgeprune bench` first")
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(db), timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open database {db}: {exc}") from exc
        store = cls(db, conn)
        store.migrate()
        return store

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- schema -----------------------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            current = self.version
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has store schema {current}, newer than this edgeprune knows ({SCHEMA_VERSION})"
                )
            for index in range(current, SCHEMA_VERSION):
                for statement in MIGRATIONS[index].split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {index + 1}")
            self.conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self.conn.execute("ROLLBACK") if self.conn.in_transaction else None
            raise StoreError(f"{self.path}: not an edgeprune database ({exc})") from exc
        except StoreError:
            self.conn.execute("ROLLBACK")
            raise

    # -- writes -----------------------------------------------------------------------------------------------
    def create_run(self, run_folder: str, manifest: Dict[str, Any], options: Dict[str, Any]) -> int:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            cursor = self.conn.execute(
                "INSERT INTO runs (created, run_folder, model_source, dataset, manifest_json, options_json) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (_now(), run_folder, manifest["baseline"]["source"], manifest["dataset"]["name"],
                 json.dumps(manifest), json.dumps(options)),
            )
            run_id = int(cursor.lastrowid)
            for v in manifest["variants"]:
                self.conn.execute(
                    "INSERT INTO variants (run_id, name, status, file, sha256, size_bytes, gzip_bytes, sparsity, "
                    "accuracy, predictions_digest, manifest_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, v["name"], v["status"], v.get("file"), v.get("sha256"), v.get("size_bytes"),
                     v.get("gzip_bytes"), v.get("sparsity"), v.get("accuracy"), v.get("predictions_digest"),
                     json.dumps(v)),
                )
        return run_id

    def add_device(self, run_id: int, name: str, kind: str, address: str, tags: Iterable[str],
                   profile: Dict[str, Any]) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "INSERT INTO devices (run_id, name, kind, address, tags, profile_json) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, name) DO UPDATE SET kind = excluded.kind, address = excluded.address, "
                "tags = excluded.tags, profile_json = excluded.profile_json",
                (run_id, name, kind, address, ",".join(tags), json.dumps(profile)),
            )

    def record(self, run_id: int, device: str, variant: str, values: Dict[str, Any]) -> None:
        """Upsert one device x variant result and commit it at once."""
        row = {column: values.get(column) for column in RESULT_COLUMNS}
        columns = ", ".join(RESULT_COLUMNS)
        placeholders = ", ".join("?" for _ in RESULT_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in RESULT_COLUMNS)
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                f"INSERT INTO results (run_id, device, variant, {columns}, created) "
                f"VALUES (?, ?, ?, {placeholders}, ?) "
                f"ON CONFLICT (run_id, device, variant) DO UPDATE SET {updates}, "
                f"attempts = results.attempts + 1, created = excluded.created",
                (run_id, device, variant, *[row[c] for c in RESULT_COLUMNS], _now()),
            )

    # -- reads ------------------------------------------------------------------------------------------------
    def run(self, run_id: Optional[int] = None) -> sqlite3.Row:
        if run_id is None:
            row = self.conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
            if row is None:
                raise StoreError(f"{self.path} holds no runs yet")
            return row
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id} in {self.path}")
        return row

    def runs(self) -> List[sqlite3.Row]:
        return list(self.conn.execute("SELECT * FROM runs ORDER BY id"))

    def devices(self, run_id: int) -> List[sqlite3.Row]:
        return list(self.conn.execute("SELECT * FROM devices WHERE run_id = ? ORDER BY name", (run_id,)))

    def variants(self, run_id: int) -> List[sqlite3.Row]:
        return list(self.conn.execute("SELECT * FROM variants WHERE run_id = ? ORDER BY id", (run_id,)))

    def results(self, run_id: int) -> List[sqlite3.Row]:
        return list(self.conn.execute("SELECT * FROM results WHERE run_id = ? ORDER BY device, id", (run_id,)))

    def done_pairs(self, run_id: int) -> List[Tuple[str, str]]:
        """Pairs that need no new attempt: measured, or a final error the agent reported."""
        rows = self.conn.execute(
            f"SELECT device, variant FROM results WHERE run_id = ? AND status NOT IN ({','.join('?' * len(RETRYABLE))})",
            (run_id, *RETRYABLE),
        )
        return [(r["device"], r["variant"]) for r in rows]
