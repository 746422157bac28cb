"""The SQLite backend of the store: a local file, ``--db PATH`` or ``--db sqlite:///absolute/path``.

WAL mode lets a report read while a bench writes, and two benches share one file (writers wait ``busy_timeout``,
SQLite's own lock wait). The schema version is SQLite's ``user_version``. A file that is not an edgeprune database
is refused before anything is written to it: not even WAL mode is switched on, so pointing ``--db`` at the wrong
file cannot change that file.

URL forms follow SQLite's own ``file:`` URIs rather than SQLAlchemy's: ``sqlite:///abs/path`` and
``sqlite:/abs/path`` are absolute, ``sqlite:relative/path`` is relative. That way ``str(Path(url))``, which
collapses ``///`` to ``/``, still names the same file.
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Sequence, Tuple
from urllib.parse import unquote

from ..errors import StoreError
from .store_backend import Backend, Row, locked

#: SQLite result codes that blame the file system or the machine, not the file's contents.
_ENVIRONMENT_ERRORS = ("SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN", "SQLITE_PERM",
                       "SQLITE_NOMEM", "SQLITE_NOLFS", "SQLITE_AUTH")


def _is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds a lock; waiting may help."""
    name = getattr(exc, "sqlite_errorname", "")  # Python 3.11+; before that, SQLite's message tells
    if name:
        return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    text = str(exc).lower()
    return "database is locked" in text or "table is locked" in text or "database is busy" in text


def _is_not_sqlite(exc: BaseException) -> bool:
    """SQLITE_NOTADB: the file is not SQLite at all (or its header page is gone)."""
    name = getattr(exc, "sqlite_errorname", "")
    return name == "SQLITE_NOTADB" if name else "file is not a database" in str(exc)


def _row(cursor: sqlite3.Cursor, values: Tuple[Any, ...]) -> Row:
    return Row(zip([column[0] for column in cursor.description], values))


def path_of(target: str) -> Path:
    """The file a ``sqlite:`` URL (or a plain path) names."""
    if not target.startswith("sqlite:"):
        return Path(target)
    rest = target[len("sqlite:"):]
    if rest.startswith("//"):  # an authority: empty, or localhost, as SQLite's file: URIs allow
        host, slash, path = rest[2:].partition("/")
        if host not in ("", "localhost"):
            raise StoreError(f"{target}: a SQLite store is a file on this machine; write sqlite:///absolute/path, "
                             f"sqlite:relative/path or just the path")
        rest = slash + path
    if not rest:
        raise StoreError(f"{target}: no file named; write sqlite:///absolute/path, sqlite:relative/path or the path")
    return Path(unquote(rest))


class SQLiteBackend(Backend):
    """One ``sqlite3`` connection in autocommit mode (transactions are explicit: ``BEGIN IMMEDIATE``)."""

    errors = (sqlite3.DatabaseError,)
    version_name = "user_version"

    def __init__(self, path: Path) -> None:
        self.path = self.where = path
        self.conn: Any = None

    @classmethod
    def parse(cls, target: str) -> "SQLiteBackend":
        return cls(path_of(target))

    def missing(self) -> bool:
        return not self.path.exists()

    def connect(self, busy_timeout: float) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path), timeout=busy_timeout, isolation_level=None,
                                        check_same_thread=False)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        try:
            self.conn.row_factory = _row
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise self.failure(exc, 0.0, "opening") from exc

    def after_check(self) -> None:
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA foreign_keys = ON")

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, tuple(parameters))

    def insert(self, sql: str, parameters: Sequence[Any]) -> int:
        return int(self.conn.execute(sql, tuple(parameters)).lastrowid)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with self.conn:
                self.conn.execute("BEGIN IMMEDIATE")
                yield
        except sqlite3.DatabaseError:
            if self.conn.in_transaction:  # a failed COMMIT leaves it open; the next BEGIN would fail
                self.conn.rollback()
            raise

    def inspect(self) -> Tuple[int, List[str]]:
        """user_version and the table names in one read transaction: read apart, another process's migration
        committing in between looks like tables without a version, i.e. a foreign file."""
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

    def set_version(self, version: int) -> None:
        self.conn.execute(f"PRAGMA user_version = {int(version)}")

    def is_busy(self, exc: BaseException) -> bool:
        return _is_busy(exc)

    def failure(self, exc: BaseException, waited: float, doing: str) -> StoreError:
        """A lock, a file that is not SQLite, a refused write, a file system that refuses (read-only, full, I/O
        error), or else damage (corrupted pages, a table gone)."""
        if _is_busy(exc):
            return locked(self.path, waited)
        if _is_not_sqlite(exc):
            return StoreError(f"cannot open database {self.path}: {exc}")
        if isinstance(exc, sqlite3.IntegrityError):
            return StoreError(f"database {self.path} refused {doing}: {exc}")
        if getattr(exc, "sqlite_errorname", "").startswith(_ENVIRONMENT_ERRORS):
            return StoreError(f"database {self.path}: {doing} failed: {exc}")
        return StoreError(f"database {self.path} is damaged: {exc}; restore a copy, or salvage what is left with "
                          f"`sqlite3 {self.path} .recover`")
