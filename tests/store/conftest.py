"""The store's own fixtures: one real PostgreSQL server for the session (support.postgres), a fresh database per
test, and ``db`` parametrized over both backends, so each semantic test runs on SQLite and on PostgreSQL alike."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from support.postgres import PostgresServer, start_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A server on 127.0.0.1 with a temporary data folder, stopped (``-m immediate``) at the end, pass or fail."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A new empty database of that server, owned by the trusted role ``edgeprune``."""
    return postgres.url(postgres.create_database())


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a new store goes: a SQLite file (as a ``sqlite:///`` URL) or an empty PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 's.db'}"
    return request.getfixturevalue("pg_url")
