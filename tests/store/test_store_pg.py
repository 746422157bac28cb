"""What only a server can do to the store, on a real PostgreSQL: logins (the password from PGPASSWORD, ~/.pgpass or a
service file), a server that refuses or never answers, a missing database or privilege, another session's lock, a
dropped connection, and a schema of the team's choosing. Each failure is one StoreError line within seconds."""
from __future__ import annotations

import socket
import threading
import time
import psycopg
import pytest

from edgeprune.errors import StoreError
from edgeprune.results import store_pg
from edgeprune.results.store import Store
from support.manifests import MANIFEST
from support.postgres import SECRET_PASSWORD, PostgresServer, free_port


@pytest.fixture
def no_pgpass(monkeypatch, tmp_path):
    """No password from this machine's environment unless a test gives one."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.delenv("PGSERVICE", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    monkeypatch.setenv("PGSERVICEFILE", str(tmp_path / "no-service-file"))


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and SECRET_PASSWORD not in message
    return message


# --- logins -------------------------------------------------------------------------------------------------------

def test_a_login_without_its_password_is_one_line_that_says_where_passwords_come_from(postgres, no_pgpass):
    url = postgres.url(postgres.create_database("secret"), user="secret")
    with pytest.raises(StoreError) as caught:
        Store.open(url)
    message = _one_line(caught)
    assert message.startswith(f"the PostgreSQL server of {url} refused the login")
    assert "PGPASSWORD, ~/.pgpass or a service file" in message


def test_the_password_comes_from_pgpassword(postgres, no_pgpass, monkeypatch):
    url = postgres.url(postgres.create_database("secret"), user="secret")
    monkeypatch.setenv("PGPASSWORD", SECRET_PASSWORD)
    with Store.open(url) as store:
        store.create_run("/r", MANIFEST, {})
        assert len(store.runs()) == 1


def test_the_password_comes_from_a_pgpass_file(postgres, no_pgpass, monkeypatch, tmp_path):
    db = postgres.create_database("secret")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{postgres.port}:{db}:secret:{SECRET_PASSWORD}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    with Store.open(postgres.url(db, user="secret")) as store:
        assert store.runs() == []


def test_a_service_file_names_the_server(postgres, no_pgpass, monkeypatch, tmp_path):
    db = postgres.create_database("secret")
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[edge]\nhost=127.0.0.1\nport={postgres.port}\ndbname={db}\nuser=secret\n")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    monkeypatch.setenv("PGPASSWORD", SECRET_PASSWORD)
    with Store.open("postgresql:///?service=edge") as store:
        assert store.runs() == []


# --- servers that cannot be used ------------------------------------------------------------------------------------

def test_a_port_nobody_listens_on_is_one_line_at_once():
    url = f"postgresql://edgeprune@127.0.0.1:{free_port()}/edge"
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        Store.open(url)
    assert time.monotonic() - started < 5
    assert _one_line(caught).startswith(f"cannot reach the PostgreSQL server of {url}: ")


def test_a_server_that_never_answers_is_given_up_after_the_connect_timeout(monkeypatch):
    """A listening socket that accepts and says nothing (a wedged server, a black-holing proxy)."""
    monkeypatch.setattr(store_pg, "CONNECT_TIMEOUT", 2)
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"postgresql://edgeprune@127.0.0.1:{silent.getsockname()[1]}/edge"
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            Store.open(url)
        waited = time.monotonic() - started
    assert 1.5 <= waited < 10
    assert _one_line(caught).startswith(f"cannot reach the PostgreSQL server of {url}: ")


def test_a_database_that_does_not_exist_is_one_line(postgres):
    with pytest.raises(StoreError, match=r"create the database first \(edgeprune creates its tables"):
        Store.open(postgres.url("nosuchdb"))


def test_reading_an_empty_database_says_nothing_was_stored_and_writes_nothing(postgres, pg_url):
    with pytest.raises(StoreError, match="no edgeprune tables in .* yet: run `edgeprune bench` first"):
        Store.open(pg_url, create=False)
    with Store.open(pg_url) as store:
        assert store.runs() == []


def test_a_role_that_may_not_create_tables_is_told_what_it_needs(postgres):
    url = postgres.url(postgres.create_database("edgeprune"), user="reader")
    with pytest.raises(StoreError) as caught:
        Store.open(url)
    message = _one_line(caught)
    assert "migrating failed" in message and "permission denied" in message and "needs CREATE" in message


def test_a_schema_of_its_own_in_a_shared_database(postgres, pg_url):
    """A team's database with tables of its own: edgeprune's go in a schema named in the URL's options."""
    db = pg_url.rsplit("/", 1)[1]
    postgres.admin("CREATE TABLE public.notes (id int)", db=db)
    postgres.admin("CREATE SCHEMA edge AUTHORIZATION edgeprune", db=db)
    with pytest.raises(StoreError, match=r"not an edgeprune database \(it has tables: notes\)"):
        Store.open(pg_url)
    with Store.open(pg_url + "?options=-csearch_path%3Dedge") as store:
        store.create_run("/r", MANIFEST, {})
    assert postgres.admin("SELECT count(*) FROM edge.runs", db=db) == [(1,)]


# --- sessions: locks, dropped connections, closing ------------------------------------------------------------------

def _lock_results(postgres: PostgresServer, url: str) -> psycopg.Connection:
    """Another session holding the results table (as a long migration or a careless psql session would)."""
    conn = psycopg.connect(host=str(postgres.root), port=postgres.port, user="postgres", dbname=url.rsplit("/", 1)[1])
    conn.execute("LOCK TABLE results IN EXCLUSIVE MODE")
    return conn


def test_record_gives_up_on_a_lock_after_its_patience_but_reads_go_on(postgres, pg_url):
    with Store.open(pg_url, busy_timeout=0.3, write_patience=1.0) as store:
        run_id = store.create_run("/r", MANIFEST, {})
        store.record(run_id, "pi", "baseline-float32", {"status": "ok"})
        holder = _lock_results(postgres, pg_url)
        try:
            started = time.monotonic()
            with pytest.raises(StoreError) as caught:
                store.record(run_id, "pi", "pruned-int8", {"status": "ok"})
            assert 1.0 <= time.monotonic() - started < 10
            assert len(store.results(run_id)) == 1  # a report reads while the lock is held
        finally:
            holder.close()
    message = _one_line(caught)
    assert f"database {pg_url} is locked by another process" in message
    assert "the result of pi x pruned-int8 is not stored" in message


def test_record_waits_out_a_lock_shorter_than_its_patience(postgres, pg_url):
    with Store.open(pg_url, busy_timeout=0.5, write_patience=60) as store:
        run_id = store.create_run("/r", MANIFEST, {})
        holder = _lock_results(postgres, pg_url)
        release = threading.Timer(2.0, holder.close)
        release.start()
        started = time.monotonic()
        store.record(run_id, "pi", "pruned-int8", {"status": "ok", "p50_us": 5.0})
        waited = time.monotonic() - started
        release.join()
        rows = store.results(run_id)
    assert waited >= 1.5
    assert [(r["p50_us"], r["attempts"]) for r in rows] == [(5.0, 1)]


def test_a_dropped_connection_is_opened_again(postgres, pg_url):
    """The server ends the session (a restart, a failover, an administrator): the next write and read go on."""
    db = pg_url.rsplit("/", 1)[1]
    with Store.open(pg_url) as store:
        run_id = store.create_run("/r", MANIFEST, {})
        killed = postgres.admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' "
                                f"AND application_name = 'edgeprune'")
        assert killed == [(True,)]
        store.record(run_id, "pi", "baseline-float32", {"status": "ok"})
        postgres.admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' "
                       f"AND application_name = 'edgeprune'")
        assert store.done_pairs(run_id) == [("pi", "baseline-float32")]


def test_closing_the_store_closes_its_connection(postgres, pg_url):
    db = pg_url.rsplit("/", 1)[1]
    with Store.open(pg_url) as store:
        store.runs()
        assert postgres.connections(db) == 1
    deadline = time.monotonic() + 10
    while postgres.connections(db) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert postgres.connections(db) == 0


def test_text_a_server_cannot_hold_is_stored_anyway(pg_url):
    """Names and paths too (not only a device's values): NUL becomes U+FFFD instead of an error."""
    with Store.open(pg_url) as store:
        run_id = store.create_run("/runs/\x00odd", MANIFEST, {})
        store.record(run_id, "pi\x00", "baseline-float32", {"status": "ok"})
        assert store.run(run_id)["run_folder"] == "/runs/\ufffdodd"
        assert store.done_pairs(run_id) == [("pi\ufffd", "baseline-float32")]


def test_the_sessions_deadlines_are_set(pg_url):
    with Store.open(pg_url, busy_timeout=2.5) as store:
        settings = {name: store.conn.execute(f"SHOW {name}").fetchone()[0]
                    for name in ("lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout",
                                 "application_name")}
    assert settings == {"lock_timeout": "2500ms", "statement_timeout": "5min",
                        "idle_in_transaction_session_timeout": "1min", "application_name": "edgeprune"}


def test_a_role_the_server_does_not_know_is_a_refused_login(postgres, pg_url):
    url = postgres.url(pg_url.rsplit("/", 1)[1], user="ghost")
    with pytest.raises(StoreError) as caught:
        Store.open(url)
    assert _one_line(caught).startswith(f"the PostgreSQL server of {url} refused the login: ")
