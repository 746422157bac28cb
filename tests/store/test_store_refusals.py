"""Migrations and refusals on both backends: a database from an older edgeprune is migrated with its rows kept, one
from a newer edgeprune or holding someone else's tables is refused with one line and left as it was, and several
processes opening one empty database at once migrate it once."""
from __future__ import annotations

import multiprocessing
from typing import List

import pytest

from edgeprune.errors import StoreError
from edgeprune.results.schema import MIGRATIONS
from edgeprune.results.store import SCHEMA_VERSION, Store, backend_for
from support.manifests import MANIFEST


def _build(db: str, statements: List[str], version: int) -> None:
    """Write a database by hand through the backend (its DDL translation): what an older edgeprune, or another
    tool, left behind."""
    backend = backend_for(db)
    backend.connect(5.0)
    try:
        with backend.transaction():
            for statement in statements:
                backend.execute(backend.ddl(statement))
            if version:
                backend.set_version(version)
    finally:
        backend.close()


def _tables(db: str) -> tuple:
    backend = backend_for(db)
    backend.connect(5.0)
    try:
        return backend.inspect()
    finally:
        backend.close()


@pytest.mark.parametrize("old", [1, 2, 3])
def test_an_older_schema_is_migrated_and_keeps_its_rows(db, old):
    statements = [s for migration in MIGRATIONS[:old] for s in migration.split(";") if s.strip()]
    _build(db, statements + ["INSERT INTO runs (created, run_folder, manifest_json) VALUES ('then', '/old', '{}')",
                             "INSERT INTO results (run_id, device, variant, status, created) "
                             "VALUES (1, 'pi', 'baseline-float32', 'ok', 'then')"], old)
    with Store.open(db) as store:
        assert store.version == SCHEMA_VERSION
        assert store.run(1)["run_folder"] == "/old"
        assert store.done_pairs(1) == [("pi", "baseline-float32")]
        store.record(1, "pi", "baseline-float32", {"status": "ok", "op_profile_json": "{}", "rounds": 3})
        row = store.results(1)[0]
        assert (row["attempts"], row["rounds"], row["op_profile_json"]) == (2, 3, "{}")
        assert store.open_sweep("/s", {}, {}) >= 1  # schema 4's tables exist
        assert store.create_run("/new", MANIFEST, {}) == 2


def test_a_newer_schema_is_refused(db):
    Store.open(db).close()
    backend = backend_for(db)
    backend.connect(5.0)
    with backend.transaction():
        backend.set_version(SCHEMA_VERSION + 1)
    backend.close()
    with pytest.raises(StoreError, match=rf"has store schema {SCHEMA_VERSION + 1}, newer than this edgeprune knows"):
        Store.open(db)


@pytest.mark.parametrize("create", [True, False])
def test_someone_elses_database_is_refused_and_left_as_it_was(db, create):
    _build(db, ["CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)",
                "INSERT INTO notes (text) VALUES ('keep me')"], 0)
    with pytest.raises(StoreError, match=r"not an edgeprune database \(it has tables: notes\)") as caught:
        Store.open(db, create=create)
    assert "\n" not in str(caught.value)
    assert _tables(db) == (0, ["notes"])  # no version, no edgeprune table written


def test_a_version_without_the_edgeprune_tables_is_refused(db):
    _build(db, ["CREATE TABLE runs (id INTEGER PRIMARY KEY)"], SCHEMA_VERSION)
    with pytest.raises(StoreError, match=r"not an edgeprune database \((user_version|edgeprune_schema version) "
                                         r"\d+ but no table devices, variants, results; it has tables: runs\)"):
        Store.open(db, create=False)


def _open_and_write(db: str, worker: int) -> int:
    with Store.open(db) as store:
        run_id = store.create_run(f"/runs/{worker}", MANIFEST, {})
        store.record(run_id, "pi", "baseline-float32", {"status": "ok"})
        return store.version


def test_processes_opening_one_empty_database_at_once_migrate_it_once(db):
    """Every opener migrates concurrently (PostgreSQL: the advisory lock; SQLite: BEGIN IMMEDIATE); none fails
    on a table another has just created, and the version is recorded once."""
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        versions = pool.starmap(_open_and_write, [(db, worker) for worker in range(6)])
    assert versions == [SCHEMA_VERSION] * 6
    with Store.open(db) as store:
        assert sorted(r["run_folder"] for r in store.runs()) == [f"/runs/{w}" for w in range(6)]
