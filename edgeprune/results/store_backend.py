"""What a store backend provides, so that ``results.store.Store`` is one code path for every database.

The store writes its SQL once, in SQLite's dialect with ``?`` placeholders; a backend owns everything that differs
between databases: connecting (with its deadlines), placeholders, where the schema version lives, which tables
exist, translating the migrations' DDL, the id of an inserted row, transactions, and what a database error means
(another writer's lock, which is worth waiting for, or something a user must fix). A new backend is one module
with a subclass of ``Backend`` and one row in ``store.BACKENDS``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, List, Sequence, Tuple, Type

from ..errors import StoreError


class Row(dict):
    """One row on every backend: ``row["column"]``, ``dict(row)`` and ``row.keys()`` as with ``sqlite3.Row``, and
    ``row[0]`` by position, so callers never learn which database answered."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int):
            return list(self.values())[key]
        return super().__getitem__(key)


def locked(where: object, waited: float, consequence: str = "") -> StoreError:
    """The one line for "another writer holds the lock": callers (the fleet's recorder) look for "locked"."""
    return StoreError(f"database {where} is locked by another process (waited {round(waited, 1):g} s){consequence}")


def one_line(text: object, limit: int = 300) -> str:
    """A driver's message (libpq's are several lines, with tabs) as one short line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class Backend:
    """One open connection to one database, and its dialect. Subclasses set the class attributes and implement
    the methods below; ``Store`` calls nothing else.

    ``where`` is what every message names: the file's path, or the URL with nothing secret in it.
    """

    #: The exceptions of this driver that ``failure``/``is_busy`` understand (everything else is a bug).
    errors: Tuple[Type[BaseException], ...] = ()
    #: A database that exists but holds no tables counts as missing when the store is opened only to read
    #: (a server's database is made by its administrator; an empty SQLite file is simply made a store).
    empty_is_missing = False
    #: Where the schema version is kept, as messages name it.
    version_name = "schema version"
    where: object = ""
    conn: Any = None

    @classmethod
    def parse(cls, target: str) -> "Backend":
        """A backend for ``target`` (its own URL forms), not yet connected; refuses a malformed URL."""
        raise NotImplementedError

    def missing(self) -> bool:
        """True when there is nothing to open (before connecting); only meaningful for files."""
        return False

    def connect(self, busy_timeout: float) -> None:
        """Open ``conn``; ``busy_timeout`` is how long one statement waits for another writer's lock."""
        raise NotImplementedError

    def after_check(self) -> None:
        """Settings that may change the database, made once it is known to be edgeprune's (SQLite's WAL)."""

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    # -- the dialect --------------------------------------------------------------------------------------------
    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        """Run one statement written with ``?`` placeholders; returns the driver's cursor."""
        raise NotImplementedError

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> List[Row]:
        """All rows of one statement, as ``Row``s (each backend's row factory makes them)."""
        return list(self.execute(sql, parameters).fetchall())

    def insert(self, sql: str, parameters: Sequence[Any]) -> int:
        """Run one INSERT into a table with an ``id`` column and return the new row's id."""
        raise NotImplementedError

    def ddl(self, statement: str) -> str:
        """One migration statement (SQLite's types) in this database's dialect."""
        return statement

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction: committed when the block ends, rolled back when it raises."""
        raise NotImplementedError
        yield  # pragma: no cover

    def inspect(self) -> Tuple[int, List[str]]:
        """The schema version and the names of the tables (other than the backend's own bookkeeping), read so
        that another process's migration is seen either wholly or not at all."""
        raise NotImplementedError

    def migration_lock(self) -> None:
        """Inside the migration's transaction: make concurrent migrations of this database wait for each other."""

    def set_version(self, version: int) -> None:
        """Inside the migration's transaction: record the schema version."""
        raise NotImplementedError

    # -- errors -------------------------------------------------------------------------------------------------
    def is_busy(self, exc: BaseException) -> bool:
        """Another connection holds a lock (or won a race): trying again later may succeed."""
        raise NotImplementedError

    def is_gone(self, exc: BaseException) -> bool:
        """The connection itself is lost (a server's restart): the next use opens a new one."""
        return False

    def failure(self, exc: BaseException, waited: float, doing: str) -> StoreError:
        """One line for what the database said while ``doing``; a lock is ``locked(...)``."""
        raise NotImplementedError
