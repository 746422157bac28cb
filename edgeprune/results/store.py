"""The SQLite store: runs, devices, variants and results, written as results arrive.

Each result is its own transaction, so a crash, a Ctrl-C or a SIGKILL loses nothing already measured. WAL mode
lets a report read while a bench writes, and two benches share one file (writers wait on ``busy_timeout``).
Results are upserted on (run, device, variant): a resumed run replaces a failure and never duplicates a pair.
The schema version is SQLite's ``user_version``; migrations are forward-only and applied in order.

Every SQLite failure leaves this module as one ``StoreError`` line naming the file and saying what it is: a lock
held by another process, a damaged file, or a file that belongs to something else (which is never modified).
"""
from __future__ import annotations

import datetime as _dt
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar

from ..errors import StoreError

from .schema import (MIGRATIONS, NUMBER_COLUMNS, PLAN_COLUMNS, RESULT_COLUMNS, RETRYABLE, SCHEMA_VERSION, TABLES,
                     TEXT_CAPS, cap, storable, storable_plan)

#: The schema's names, re-exported: callers of the store need not know where the schema lives.
__all__ = ["NUMBER_COLUMNS", "RESULT_COLUMNS", "RETRYABLE", "SCHEMA_VERSION", "TABLES", "TEXT_CAPS", "Store"]

_T = TypeVar("_T")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds a lock; waiting may help."""
    name = getattr(exc, "sqlite_errorname", "")  # Python 3.11+; before that, SQLite's message tells
    if name:
        return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    text = str(exc).lower()
    return "database is locked" in text or "table is locked" in text or "database is busy" in text


#: SQLite result codes that blame the file system or the machine, not the file's contents.
_ENVIRONMENT_ERRORS = ("SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN", "SQLITE_PERM",
                       "SQLITE_NOMEM", "SQLITE_NOLFS", "SQLITE_AUTH")


def _is_not_sqlite(exc: sqlite3.Error) -> bool:
    """SQLITE_NOTADB: the file is not SQLite at all (or its header page is gone)."""
    name = getattr(exc, "sqlite_errorname", "")
    return name == "SQLITE_NOTADB" if name else "file is not a database" in str(exc)


@dataclass
class Store:
    """One connection per thread: sqlite3 connections must not be shared across threads.

    ``busy_timeout`` is how long one statement waits for another process's lock; ``write_patience`` is how long
    ``record()`` keeps retrying (each attempt waiting ``busy_timeout``) before it gives up on a lock.
    """

    path: Path
    conn: sqlite3.Connection
    busy_timeout: float = 30.0
    write_patience: float = 3600.0

    @classmethod
    def open(cls, path: "str | Path", create: bool = True, busy_timeout: float = 30.0,
             write_patience: float = 3600.0) -> "Store":
        """Open (and with ``create`` make) the store; a file that is not an edgeprune database is refused
        before anything is written to it, so pointing ``--db`` at the wrong file cannot change that file."""
        db = Path(path)
        if not create and not db.exists():
            raise StoreError(f"no database at {db}: run `edgeprune bench` first")
        if not (busy_timeout >= 0 and write_patience >= 0):
            raise ValueError("busy_timeout and write_patience must be >= 0")
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(db), timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open database {db}: {exc}") from exc
        store = cls(db, conn, busy_timeout, write_patience)
        try:
            store._prepare()
            store.migrate()
        except BaseException:
            conn.close()
            raise
        return store

    def _prepare(self) -> None:
        started = time.monotonic()
        try:
            self.conn.row_factory = sqlite3.Row
            self.conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._check_schema(*self._inspect())  # before the first write: WAL mode alone changes the file
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise self._failure(exc, time.monotonic() - started, "opening") from exc

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- errors -----------------------------------------------------------------------------------------------
    def _locked(self, waited: float, consequence: str = "") -> StoreError:
        return StoreError(f"database {self.path} is locked by another process (waited {round(waited, 1):g} s)"
                          f"{consequence}")

    def _failure(self, exc: sqlite3.DatabaseError, waited: float, doing: str) -> StoreError:
        """One line for what SQLite said: a lock, a file that is not SQLite, a refused write, a file system that
        refuses (read-only, full, I/O error), or else damage (corrupted pages, a table gone)."""
        if _is_busy(exc):
            return self._locked(waited)
        if _is_not_sqlite(exc):
            return StoreError(f"cannot open database {self.path}: {exc}")
        if isinstance(exc, sqlite3.IntegrityError):
            return StoreError(f"database {self.path} refused {doing}: {exc}")
        if getattr(exc, "sqlite_errorname", "").startswith(_ENVIRONMENT_ERRORS):
            return StoreError(f"database {self.path}: {doing} failed: {exc}")
        return StoreError(f"database {self.path} is damaged: {exc}; restore a copy, or salvage what is left with "
                          f"`sqlite3 {self.path} .recover`")

    # -- schema -----------------------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    def _inspect(self) -> Tuple[int, List[str]]:
        """user_version and the table names, read in one transaction (reads only): read apart, another process's
        migration committing in between looks like tables without a version, i.e. a foreign file."""
        own = not self.conn.in_transaction
        if own:
            self.conn.execute("BEGIN")
        try:
            version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
            tables = sorted(row[0] for row in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"))
        finally:
            if own:
                self.conn.execute("COMMIT")
        return version, tables

    def _check_schema(self, version: int, tables: List[str]) -> None:
        """Refuse a file from a newer edgeprune, or one that holds someone else's tables."""
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema {version}, newer than this edgeprune knows ({SCHEMA_VERSION})"
            )
        shown = ", ".join(tables[:10]) + (f" and {len(tables) - 10} more" if len(tables) > 10 else "")
        if version == 0 and tables:
            raise StoreError(f"{self.path}: not an edgeprune database (it has tables: {shown})")
        missing = [table for table in TABLES if table not in tables]
        if version > 0 and missing:
            raise StoreError(f"{self.path}: not an edgeprune database (user_version {version} but no table "
                             f"{', '.join(missing)}; it has tables: {shown or 'none'})")

    def migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION. An up-to-date file is only read, so a report can open it while
        another process holds the write lock; a migration waits ``busy_timeout`` for that lock, once."""
        started = time.monotonic()
        try:
            current = self._inspect()
        except sqlite3.DatabaseError as exc:
            raise self._failure(exc, time.monotonic() - started, "opening") from exc
        self._check_schema(*current)
        if current[0] == SCHEMA_VERSION:
            return

        def upgrade() -> None:
            version, tables = self._inspect()  # another process may have migrated while this one waited
            self._check_schema(version, tables)
            for index in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[index].split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {index + 1}")

        self._write(upgrade, patience=0.0, doing="migrating")

    # -- writes -----------------------------------------------------------------------------------------------
    def _write(self, work: Callable[[], _T], patience: float, doing: str, consequence: str = "") -> _T:
        """Run ``work`` in one IMMEDIATE transaction. On a lock, try again with a growing pause until
        ``patience`` seconds have passed (each attempt itself waits ``busy_timeout``); then one StoreError."""
        started = time.monotonic()
        pause = 0.1
        while True:
            try:
                with self.conn:
                    self.conn.execute("BEGIN IMMEDIATE")
                    return work()
            except sqlite3.DatabaseError as exc:
                if self.conn.in_transaction:  # a failed COMMIT leaves it open; the next BEGIN would fail
                    self.conn.rollback()
                waited = time.monotonic() - started
                if not _is_busy(exc):
                    raise self._failure(exc, waited, doing) from exc
                if waited >= patience:
                    raise self._locked(waited, consequence) from exc
            time.sleep(min(pause, max(0.0, patience - waited)))
            pause = min(pause * 2, 5.0)

    def create_run(self, run_folder: str, manifest: Dict[str, Any], options: Dict[str, Any]) -> int:
        def insert() -> int:
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

        return self._write(insert, patience=0.0, doing="storing the run")

    def add_device(self, run_id: int, name: str, kind: str, address: str, tags: Iterable[str],
                   profile: Dict[str, Any]) -> None:
        self._write(lambda: self.conn.execute(
            "INSERT INTO devices (run_id, name, kind, address, tags, profile_json) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (run_id, name) DO UPDATE SET kind = excluded.kind, address = excluded.address, "
            "tags = excluded.tags, profile_json = excluded.profile_json",
            (run_id, name, kind, address, ",".join(tags), json.dumps(profile)),
        ), patience=0.0, doing="storing a device")

    def record(self, run_id: int, device: str, variant: str, values: Dict[str, Any]) -> None:
        """Upsert one device x variant result and commit it at once.

        A measurement may have taken minutes, so a lock held by another process (a long report query, an
        ``sqlite3`` shell) is waited out for up to ``write_patience`` before StoreError; the caller still has the
        values then. Values are made storable first: text is capped (TEXT_CAPS) and numbers SQLite cannot hold
        become NULL (NUMBER_COLUMNS), so nothing a device reports can make this raise.
        """
        row = storable(values)
        columns = ", ".join(RESULT_COLUMNS)
        placeholders = ", ".join("?" for _ in RESULT_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in RESULT_COLUMNS)
        self._write(lambda: self.conn.execute(
            f"INSERT INTO results (run_id, device, variant, {columns}, created) "
            f"VALUES (?, ?, ?, {placeholders}, ?) "
            f"ON CONFLICT (run_id, device, variant) DO UPDATE SET {updates}, "
            f"attempts = results.attempts + 1, created = excluded.created",
            (run_id, device, variant, *[row[c] for c in RESULT_COLUMNS], _now()),
        ), patience=self.write_patience, doing="storing a result",
            consequence=f"; the result of {device} x {variant} is not stored")

    def record_plan(self, run_id: int, device: str, values: Dict[str, Any]) -> int:
        """Store one measurement plan's own facts (status, stopping, rounds, visit order); its id goes into each
        of its cells' results (``plan_id``), so only cells of one plan are ever paired round by round."""
        row = storable_plan(values)
        columns = ", ".join(PLAN_COLUMNS)
        placeholders = ", ".join("?" for _ in PLAN_COLUMNS)
        return self._write(lambda: int(self.conn.execute(
            f"INSERT INTO plans (run_id, device, {columns}, created) VALUES (?, ?, {placeholders}, ?)",
            (run_id, device, *[row[c] for c in PLAN_COLUMNS], _now())).lastrowid),
            patience=self.write_patience, doing="storing a plan",
            consequence=f"; the plan of {device} is not stored")

    # -- sweeps (schema 4) --------------------------------------------------------------------------------------
    def open_sweep(self, folder: str, grid: Dict[str, Any], options: Dict[str, Any]) -> int:
        """The sweep of ``folder`` (an absolute path: one sweep per folder), created on first use; its grid and
        options are updated to the latest invocation's."""
        def upsert() -> int:
            self.conn.execute(
                "INSERT INTO sweeps (folder, created, grid_json, options_json) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (folder) DO UPDATE SET grid_json = excluded.grid_json, "
                "options_json = excluded.options_json", (folder, _now(), json.dumps(grid), json.dumps(options)))
            return int(self.conn.execute("SELECT id FROM sweeps WHERE folder = ?", (folder,)).fetchone()[0])

        return self._write(upsert, patience=self.write_patience, doing="storing the sweep")

    def record_point(self, sweep_id: int, key: str, run_key: str, status: str, run_folder: Optional[str],
                     variant: Optional[str], reason: Optional[str]) -> None:
        """A point's optimize outcome ('optimized' or 'failed' with its one-line reason), stored as it finishes."""
        self._write(lambda: self.conn.execute(
            "INSERT INTO sweep_points (sweep_id, key, run_key, status, run_folder, variant, reason, optimized) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sweep_id, key) DO UPDATE SET run_key = excluded.run_key, "
            "status = excluded.status, run_folder = excluded.run_folder, variant = excluded.variant, "
            "reason = excluded.reason, optimized = excluded.optimized",
            (sweep_id, key, run_key, status, run_folder, variant, reason and cap(reason, 4000), _now())),
            patience=self.write_patience, doing="storing a sweep point")

    def record_point_bench(self, sweep_id: int, key: str, device: str, run_id: int) -> None:
        """The bench run that measured a point on a device (the latest one wins)."""
        self._write(lambda: self.conn.execute(
            "INSERT INTO sweep_benches (sweep_id, key, device, run_id, created) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (sweep_id, key, device) DO UPDATE SET run_id = excluded.run_id, created = excluded.created",
            (sweep_id, key, device, run_id, _now())), patience=self.write_patience, doing="storing a sweep bench")

    def sweep_points(self, sweep_id: int) -> List[sqlite3.Row]:
        return self._read("SELECT * FROM sweep_points WHERE sweep_id = ? ORDER BY id", (sweep_id,))

    def sweep_benches(self, sweep_id: int) -> List[sqlite3.Row]:
        """Each point's bench per device, with whether that pair needs no new attempt (``done``: measured, or a
        final error the agent reported, see ``done_pairs``; by a bench of the point as last optimized, not of an
        earlier attempt's files)."""
        return self._read(
            f"SELECT b.*, b.created >= p.optimized AND EXISTS (SELECT 1 FROM results r WHERE r.run_id = b.run_id "
            f"AND r.device = b.device AND r.variant = p.variant "
            f"AND r.status NOT IN ({','.join('?' * len(RETRYABLE))})) AS done "
            f"FROM sweep_benches b JOIN sweep_points p ON p.sweep_id = b.sweep_id AND p.key = b.key "
            f"WHERE b.sweep_id = ? ORDER BY b.id", (*RETRYABLE, sweep_id))

    # -- reads ------------------------------------------------------------------------------------------------
    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> List[sqlite3.Row]:
        """All rows of one query; any SQLite failure becomes one StoreError line naming the file."""
        started = time.monotonic()
        try:
            return self.conn.execute(sql, tuple(parameters)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._failure(exc, time.monotonic() - started, "reading") from exc

    def run(self, run_id: Optional[int] = None) -> sqlite3.Row:
        if run_id is None:
            rows = self._read("SELECT * FROM runs ORDER BY id DESC LIMIT 1")
            if not rows:
                raise StoreError(f"{self.path} holds no runs yet")
            return rows[0]
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise StoreError(f"no run {run_id} in {self.path}")
        return rows[0]

    def runs(self) -> List[sqlite3.Row]:
        return self._read("SELECT * FROM runs ORDER BY id")

    def devices(self, run_id: int) -> List[sqlite3.Row]:
        return self._read("SELECT * FROM devices WHERE run_id = ? ORDER BY name", (run_id,))

    def variants(self, run_id: int) -> List[sqlite3.Row]:
        return self._read("SELECT * FROM variants WHERE run_id = ? ORDER BY id", (run_id,))

    def results(self, run_id: int) -> List[sqlite3.Row]:
        return self._read("SELECT * FROM results WHERE run_id = ? ORDER BY device, id", (run_id,))

    def plans(self, run_id: int) -> List[sqlite3.Row]:
        return self._read("SELECT * FROM plans WHERE run_id = ? ORDER BY device, id", (run_id,))

    def done_pairs(self, run_id: int) -> List[Tuple[str, str]]:
        """Pairs that need no new attempt: measured, or a final error the agent reported."""
        rows = self._read(
            f"SELECT device, variant FROM results WHERE run_id = ? "
            f"AND status NOT IN ({','.join('?' * len(RETRYABLE))})", (run_id, *RETRYABLE),
        )
        return [(r["device"], r["variant"]) for r in rows]
