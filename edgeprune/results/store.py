"""The store: runs, devices, variants and results, written as results arrive, in SQLite or PostgreSQL.

``Store.open(db)`` takes a path or a URL (``sqlite:///abs/path``, ``postgresql://user@host[:port]/dbname``) and
is one code path for both: the SQL is written once, and a backend (``BACKENDS``: ``store_sqlite``, ``store_pg``)
owns what differs (connecting, placeholders, the schema version, DDL types, inserted ids, what an error means).

Each result is its own transaction, so a crash, a Ctrl-C or a SIGKILL loses nothing already measured. Results are
upserted on (run, device, variant): a resumed run replaces a failure and never duplicates a pair, whichever
controller stores it. Migrations are forward-only and applied in order; a database from a newer edgeprune, or
one holding someone else's tables, is refused before anything is written to it.

Every database failure leaves this module as one ``StoreError`` line naming the database (a URL never with a
password) and saying what it is: a lock held by another writer, a server that cannot be reached, a refused
login, damage, or a database that belongs to something else (which is never modified).
"""
from __future__ import annotations

import datetime as _dt
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Type, TypeVar

from ..errors import StoreError

from .schema import (MIGRATIONS, NUMBER_COLUMNS, PLAN_COLUMNS, RESULT_COLUMNS, RETRYABLE, SCHEMA_VERSION, TABLES,
                     TEXT_CAPS, cap, storable, storable_plan)
from .store_backend import Backend, Row, locked
from .store_pg import SCHEMES as PG_SCHEMES, PostgresBackend
from .store_sqlite import SQLiteBackend

#: The schema's names, re-exported: callers of the store need not know where the schema lives.
__all__ = ["BACKENDS", "NUMBER_COLUMNS", "RESULT_COLUMNS", "RETRYABLE", "Row", "SCHEMA_VERSION", "TABLES",
           "TEXT_CAPS", "Store", "backend_for", "local_folder"]

#: URL scheme -> backend. A plain path (no ``scheme:``) is SQLite, as ``--db`` always was.
BACKENDS: Dict[str, Type[Backend]] = {"sqlite": SQLiteBackend, **{s: PostgresBackend for s in PG_SCHEMES}}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")

_T = TypeVar("_T")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _scheme(db: "str | Path") -> Optional[str]:
    """The URL scheme of ``db``, or None for a plain path. An unknown scheme followed by ``//`` is refused (a
    typo, or a database edgeprune cannot use) rather than made a file of that name."""
    text = str(db)
    match = _SCHEME.match(text)
    if not match:
        return None
    scheme = match[1].lower()
    if scheme in BACKENDS:
        return scheme
    if text[match.end():].startswith("//"):
        raise StoreError(f"{scheme}://...: not a store edgeprune knows; --db takes a path, sqlite:///path or "
                         f"postgresql://user@host/dbname")
    return None


def backend_for(db: "str | Path") -> Backend:
    """The (unconnected) backend for a path or URL; a malformed URL, or one with a password, is refused here."""
    scheme = _scheme(db)
    if not scheme:
        return SQLiteBackend(Path(db))
    return BACKENDS[scheme].parse(scheme + str(db)[len(scheme):])  # schemes are case-insensitive


def local_folder(db: "str | Path") -> Path:
    """Where files that go with a store are kept on this machine (a report's default folder, results the store
    refused): the SQLite file's folder, or ``runs`` for a database on a server."""
    backend = backend_for(db)
    return backend.path.parent if isinstance(backend, SQLiteBackend) else Path("runs")


@dataclass
class Store:
    """One connection, used by one thread at a time (each bench worker opens its own).

    ``busy_timeout`` is how long one statement waits for another writer's lock; ``write_patience`` is how long
    ``record()`` keeps retrying (each attempt waiting ``busy_timeout``) before it gives up on a lock.
    """

    backend: Backend
    busy_timeout: float = 30.0
    write_patience: float = 3600.0

    @classmethod
    def open(cls, db: "str | Path", create: bool = True, busy_timeout: float = 30.0,
             write_patience: float = 3600.0) -> "Store":
        """Open (and with ``create`` make) the store at a path or URL; a database that is not edgeprune's is
        refused before anything is written to it, so pointing ``--db`` at the wrong one cannot change it."""
        if not (busy_timeout >= 0 and write_patience >= 0):
            raise ValueError("busy_timeout and write_patience must be >= 0")
        backend = backend_for(db)
        if not create and backend.missing():
            raise StoreError(f"no database at {backend.where}: run `edgeprune bench` first")
        backend.connect(busy_timeout)
        store = cls(backend, busy_timeout, write_patience)
        try:
            store._prepare(create)
            store.migrate()
        except BaseException:
            backend.close()
            raise
        return store

    @property
    def conn(self) -> Any:
        """The driver's connection (sqlite3 or psycopg), for tests and debugging; the store's SQL goes through
        the backend."""
        return self.backend.conn

    @property
    def where(self) -> object:
        """What messages name: the file, or the URL without secrets."""
        return self.backend.where

    def _prepare(self, create: bool) -> None:
        started = time.monotonic()
        try:
            version, tables = self.backend.inspect()
            self._check_schema(version, tables)  # before the first write: WAL mode alone changes a SQLite file
            if not create and self.backend.empty_is_missing and version == 0 and not tables:
                raise StoreError(f"no edgeprune tables in {self.where} yet: run `edgeprune bench` first")
            self.backend.after_check()
        except self.backend.errors as exc:
            raise self.backend.failure(exc, time.monotonic() - started, "opening") from exc

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- schema -----------------------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        started = time.monotonic()
        try:
            return self.backend.inspect()[0]
        except self.backend.errors as exc:
            raise self.backend.failure(exc, time.monotonic() - started, "reading") from exc

    def _check_schema(self, version: int, tables: List[str]) -> None:
        """Refuse a database from a newer edgeprune, or one that holds someone else's tables."""
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.where} has store schema {version}, newer than this edgeprune knows ({SCHEMA_VERSION})"
            )
        shown = ", ".join(tables[:10]) + (f" and {len(tables) - 10} more" if len(tables) > 10 else "")
        if version == 0 and tables:
            raise StoreError(f"{self.where}: not an edgeprune database (it has tables: {shown})")
        missing = [table for table in TABLES if table not in tables]
        if version > 0 and missing:
            raise StoreError(f"{self.where}: not an edgeprune database ({self.backend.version_name} {version} but "
                             f"no table {', '.join(missing)}; it has tables: {shown or 'none'})")

    def migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION. An up-to-date database is only read, so a report can open it while
        another process holds the write lock; a migration waits ``busy_timeout`` for that lock, once. Concurrent
        migrations of one database wait for each other (the backend's migration lock) and the later one finds
        nothing left to do."""
        started = time.monotonic()
        try:
            current = self.backend.inspect()
        except self.backend.errors as exc:
            raise self.backend.failure(exc, time.monotonic() - started, "opening") from exc
        self._check_schema(*current)
        if current[0] == SCHEMA_VERSION:
            return

        def upgrade() -> None:
            self.backend.migration_lock()
            version, tables = self.backend.inspect()  # another process may have migrated while this one waited
            self._check_schema(version, tables)
            for index in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[index].split(";"):
                    if statement.strip():
                        self.backend.execute(self.backend.ddl(statement))
                self.backend.set_version(index + 1)

        self._write(upgrade, patience=0.0, doing="migrating")

    # -- writes -----------------------------------------------------------------------------------------------
    def _write(self, work: Callable[[], _T], patience: float, doing: str, consequence: str = "") -> _T:
        """Run ``work`` in one write transaction. On a lock, try again with a growing pause until
        ``patience`` seconds have passed (each attempt itself waits ``busy_timeout``); then one StoreError.
        A connection the server dropped (a restart, a failover) is opened again and the write tried once more:
        its transaction was rolled back with the connection."""
        started = time.monotonic()
        pause = 0.1
        reconnected = False
        while True:
            try:
                with self.backend.transaction():
                    return work()
            except self.backend.errors as exc:
                waited = time.monotonic() - started
                if self.backend.is_gone(exc) and not reconnected:
                    reconnected = True
                    continue
                if not self.backend.is_busy(exc):
                    raise self.backend.failure(exc, waited, doing) from exc
                if waited >= patience:
                    raise locked(self.where, waited, consequence) from exc
            time.sleep(min(pause, max(0.0, patience - waited)))
            pause = min(pause * 2, 5.0)

    def create_run(self, run_folder: str, manifest: Dict[str, Any], options: Dict[str, Any]) -> int:
        def insert() -> int:
            run_id = self.backend.insert(
                "INSERT INTO runs (created, run_folder, model_source, dataset, manifest_json, options_json) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (_now(), run_folder, manifest["baseline"]["source"], manifest["dataset"]["name"],
                 json.dumps(manifest), json.dumps(options)),
            )
            for v in manifest["variants"]:
                self.backend.execute(
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
        self._write(lambda: self.backend.execute(
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
        self._write(lambda: self.backend.execute(
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
        return self._write(lambda: self.backend.insert(
            f"INSERT INTO plans (run_id, device, {columns}, created) VALUES (?, ?, {placeholders}, ?)",
            (run_id, device, *[row[c] for c in PLAN_COLUMNS], _now())),
            patience=self.write_patience, doing="storing a plan",
            consequence=f"; the plan of {device} is not stored")

    # -- sweeps (schema 4) --------------------------------------------------------------------------------------
    def open_sweep(self, folder: str, grid: Dict[str, Any], options: Dict[str, Any]) -> int:
        """The sweep of ``folder`` (an absolute path: one sweep per folder), created on first use; its grid and
        options are updated to the latest invocation's."""
        def upsert() -> int:
            self.backend.execute(
                "INSERT INTO sweeps (folder, created, grid_json, options_json) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (folder) DO UPDATE SET grid_json = excluded.grid_json, "
                "options_json = excluded.options_json", (folder, _now(), json.dumps(grid), json.dumps(options)))
            return int(self.backend.query("SELECT id FROM sweeps WHERE folder = ?", (folder,))[0]["id"])

        return self._write(upsert, patience=self.write_patience, doing="storing the sweep")

    def record_point(self, sweep_id: int, key: str, run_key: str, status: str, run_folder: Optional[str],
                     variant: Optional[str], reason: Optional[str]) -> None:
        """A point's optimize outcome ('optimized' or 'failed' with its one-line reason), stored as it finishes."""
        self._write(lambda: self.backend.execute(
            "INSERT INTO sweep_points (sweep_id, key, run_key, status, run_folder, variant, reason, optimized) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sweep_id, key) DO UPDATE SET run_key = excluded.run_key, "
            "status = excluded.status, run_folder = excluded.run_folder, variant = excluded.variant, "
            "reason = excluded.reason, optimized = excluded.optimized",
            (sweep_id, key, run_key, status, run_folder, variant, reason and cap(reason, 4000), _now())),
            patience=self.write_patience, doing="storing a sweep point")

    def record_point_bench(self, sweep_id: int, key: str, device: str, run_id: int) -> None:
        """The bench run that measured a point on a device (the latest one wins)."""
        self._write(lambda: self.backend.execute(
            "INSERT INTO sweep_benches (sweep_id, key, device, run_id, created) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (sweep_id, key, device) DO UPDATE SET run_id = excluded.run_id, created = excluded.created",
            (sweep_id, key, device, run_id, _now())), patience=self.write_patience, doing="storing a sweep bench")

    def sweep_points(self, sweep_id: int) -> List[Row]:
        return self._read("SELECT * FROM sweep_points WHERE sweep_id = ? ORDER BY id", (sweep_id,))

    def sweep_benches(self, sweep_id: int) -> List[Row]:
        """Each point's bench per device, with whether that pair needs no new attempt (``done``: measured, or a
        final error the agent reported, see ``done_pairs``; by a bench of the point as last optimized, not of an
        earlier attempt's files)."""
        return self._read(
            f"SELECT b.*, CASE WHEN b.created >= p.optimized AND EXISTS (SELECT 1 FROM results r "
            f"WHERE r.run_id = b.run_id AND r.device = b.device AND r.variant = p.variant "
            f"AND r.status NOT IN ({','.join('?' * len(RETRYABLE))})) THEN 1 ELSE 0 END AS done "
            f"FROM sweep_benches b JOIN sweep_points p ON p.sweep_id = b.sweep_id AND p.key = b.key "
            f"WHERE b.sweep_id = ? ORDER BY b.id", (*RETRYABLE, sweep_id))

    # -- reads ------------------------------------------------------------------------------------------------
    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> List[Row]:
        """All rows of one query (asked once more on a new connection when the server dropped the old one); any
        database failure becomes one StoreError line naming the database."""
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                return self.backend.query(sql, parameters)
            except self.backend.errors as exc:
                if attempt == 1 and self.backend.is_gone(exc):
                    continue
                raise self.backend.failure(exc, time.monotonic() - started, "reading") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def run(self, run_id: Optional[int] = None) -> Row:
        if run_id is None:
            rows = self._read("SELECT * FROM runs ORDER BY id DESC LIMIT 1")
            if not rows:
                raise StoreError(f"{self.where} holds no runs yet")
            return rows[0]
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise StoreError(f"no run {run_id} in {self.where}")
        return rows[0]

    def runs(self) -> List[Row]:
        return self._read("SELECT * FROM runs ORDER BY id")

    def devices(self, run_id: int) -> List[Row]:
        return self._read("SELECT * FROM devices WHERE run_id = ? ORDER BY name", (run_id,))

    def variants(self, run_id: int) -> List[Row]:
        return self._read("SELECT * FROM variants WHERE run_id = ? ORDER BY id", (run_id,))

    def results(self, run_id: int) -> List[Row]:
        return self._read("SELECT * FROM results WHERE run_id = ? ORDER BY device, id", (run_id,))

    def plans(self, run_id: int) -> List[Row]:
        return self._read("SELECT * FROM plans WHERE run_id = ? ORDER BY device, id", (run_id,))

    def done_pairs(self, run_id: int) -> List[Tuple[str, str]]:
        """Pairs that need no new attempt: measured, or a final error the agent reported."""
        rows = self._read(
            f"SELECT device, variant FROM results WHERE run_id = ? "
            f"AND status NOT IN ({','.join('?' * len(RETRYABLE))})", (run_id, *RETRYABLE),
        )
        return [(r["device"], r["variant"]) for r in rows]
