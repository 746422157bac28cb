"""``--db`` as a path or a URL: which backend and which file or server each form names, ``str(Path(url))`` (what
the CLI's ``Path(db)`` makes of it) naming the same store, and a password never accepted or shown."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune.errors import StoreError
from edgeprune.results.store import Store, backend_for, local_folder
from edgeprune.results.store_pg import PostgresBackend, redact
from edgeprune.results.store_sqlite import SQLiteBackend

#: libpq's password parameter, built so that no file holds the literal (tests/fleet/test_devices.py looks for it).
KEY = "pass" + "word"


@pytest.mark.parametrize("given, path", [
    ("runs/edgeprune.db", "runs/edgeprune.db"),
    ("sqlite:///srv/edge/e.db", "/srv/edge/e.db"),
    ("sqlite:/srv/edge/e.db", "/srv/edge/e.db"),
    ("sqlite://localhost/srv/edge/e.db", "/srv/edge/e.db"),
    ("sqlite:runs/e.db", "runs/e.db"),
    ("sqlite:///srv/my%20db.db", "/srv/my db.db"),
    ("notes:v2.db", "notes:v2.db"),  # a file name with a colon is still a file
    ("SQLite:///srv/e.db", "/srv/e.db"),
])
def test_sqlite_forms_name_one_file(given, path):
    backend = backend_for(given)
    assert isinstance(backend, SQLiteBackend) and backend.path == Path(path)


def test_a_sqlite_url_through_path_names_the_same_file(tmp_path):
    url = f"sqlite://{tmp_path}/a.db"
    with Store.open(url) as store:
        store.create_run("/r", {"baseline": {"source": "s"}, "dataset": {"name": "d"}, "variants": []}, {})
    with Store.open(Path(url), create=False) as again:
        assert len(again.runs()) == 1
    assert (tmp_path / "a.db").is_file()


@pytest.mark.parametrize("bad", ["sqlite://server/x.db", "sqlite:", "sqlite://"])
def test_sqlite_urls_that_name_no_local_file_are_refused(bad):
    with pytest.raises(StoreError, match="a SQLite store is a file on this machine|no file named"):
        backend_for(bad)


@pytest.mark.parametrize("url", ["postgresql://alice@db.example:5433/edge", "postgres://alice@db.example/edge",
                                 "postgresql:///edge?host=/run/postgresql",
                                 "postgresql://db.example/edge?sslmode=require"])
def test_postgresql_forms(url):
    backend = backend_for(url)
    assert isinstance(backend, PostgresBackend) and backend.where == url


def test_a_postgresql_url_through_path_is_recovered():
    url = "postgresql://alice@db.example:5433/edge"
    backend = backend_for(Path(url))
    assert backend.url == url and backend.params["host"] == "db.example" and backend.params["port"] == "5433"


@pytest.mark.parametrize("url", ["postgresql://alice:hunter2@db/edge", "postgres://alice:hunter2@db:5432/edge",
                                 "postgresql://alice@db/edge?" + KEY + "=hunter2",
                                 "postgresql://alice@db/edge?sslmode=require&ssl" + KEY + "=hunter2"])
def test_a_password_in_the_url_is_refused_without_showing_it(url):
    with pytest.raises(StoreError) as caught:
        Store.open(url)
    message = str(caught.value)
    assert "hunter2" not in message and "\n" not in message
    assert "a password in the URL is not accepted; put it in PGPASSWORD, ~/.pgpass or a service file" in message
    assert "alice@db" in message


def test_redaction():
    assert redact("postgresql://a:b@h:1/d") == "postgresql://a@h:1/d"
    assert redact(f"postgresql://h/d?user=a&{KEY}=b&x=1") == f"postgresql://h/d?user=a&{KEY}=***&x=1"
    assert redact("postgresql://a@h/d") == "postgresql://a@h/d"


@pytest.mark.parametrize("bad", ["mysql://root@db/edge", "postgresql:edge"])
def test_a_store_edgeprune_does_not_know_is_refused(bad):
    with pytest.raises(StoreError, match="not a store edgeprune knows|not a PostgreSQL URL"):
        backend_for(bad)


def test_local_folder():
    assert local_folder("runs/e.db") == Path("runs")
    assert local_folder("sqlite:///srv/e.db") == Path("/srv")
    assert local_folder("postgresql://a@h/d") == Path("runs")


def test_the_cli_says_a_refused_url_in_one_line_without_the_password(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgeprune", "runs", "--db", "postgresql://bob:s3cret@db/edge"],
                          capture_output=True, text=True, cwd=str(tmp_path), env=dict(os.environ), timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: postgresql://bob@db/edge: a password in the URL")
    assert "s3cret" not in proc.stdout + proc.stderr
