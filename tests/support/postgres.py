"""A real PostgreSQL server for the store's tests, from Debian's binaries (/usr/lib/postgresql/*/bin).

One server per test session: ``initdb`` into a temporary folder, ``postgres`` listening on 127.0.0.1 on a free
port with its unix socket in that folder, stopped with ``pg_ctl stop -m immediate`` at the end (pass or fail, and
at interpreter exit should the fixture's teardown never run). initdb refuses to run as root, so as root the
server runs as the ``postgres`` system user (which Debian's package creates) and owns its folder.

Logins, as pg_hba.conf below says: over the socket, ``postgres`` (the superuser) is trusted (the tests' own
set-up); over TCP, the roles ``edgeprune`` and ``reader`` are trusted and every other role (``secret``) needs its
password (scram-sha-256), so a test can show that edgeprune takes it from PGPASSWORD or ~/.pgpass. Each test gets
its own database (``create_database``), owned by ``edgeprune``. The test command installs the binaries when they
are missing (scripts/test.sh).
"""
from __future__ import annotations

import atexit
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

#: The password of the role ``secret`` (a test credential of a throwaway server, never a real one).
SECRET_PASSWORD = "edgeprune-test-only"
HBA = """\
local all all trust
host all edgeprune 127.0.0.1/32 trust
host all reader 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


def binaries() -> Path:
    """The newest installed PostgreSQL's bin folder (the one with initdb and pg_ctl)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL in /usr/lib/postgresql: run scripts/test.sh, which installs postgresql")
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """One running server; ``url()`` is what a test passes as ``--db``."""

    root: Path
    bin: Path
    port: int
    run_as: Optional[str]
    _names: Any = field(default_factory=lambda: itertools.count(1))
    stopped: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, db: str = "postgres", user: str = "edgeprune") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{db}"

    def _tool(self, name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [str(self.bin / name), *args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd="/")

    def admin(self, sql: str, db: str = "postgres") -> List[Any]:
        """Run ``sql`` as the superuser over the unix socket (autocommit); its rows, if any."""
        import psycopg

        with psycopg.connect(host=str(self.root), port=self.port, user="postgres", dbname=db,
                             autocommit=True, connect_timeout=10) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def create_database(self, owner: str = "edgeprune") -> str:
        """A new empty database (``t1``, ``t2``...) owned by ``owner``: one per test, never shared."""
        name = f"t{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} OWNER {owner}")
        return name

    def connections(self, db: str) -> int:
        """Client connections open to ``db`` now (a test checks that the store closes its own)."""
        rows = self.admin(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' "
                          f"AND pid <> pg_backend_pid()")
        return int(rows[0][0])

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._tool("pg_ctl", "-D", str(self.data), "stop", "-m", "immediate", "-w", "-t", "30")
        shutil.rmtree(self.root, ignore_errors=True)


def _start_once(bin_dir: Path, run_as: Optional[str]) -> PostgresServer:
    root = Path(tempfile.mkdtemp(prefix="edgeprune-pg-"))
    os.chmod(root, 0o700)
    if run_as:
        shutil.chown(root, run_as, run_as)
    server = PostgresServer(root, bin_dir, free_port(), run_as)
    init = server._tool("initdb", "-D", str(server.data), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
                        "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync")
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stderr.strip()[-2000:]}")
    (server.data / "pg_hba.conf").write_text(HBA)
    options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -c unix_socket_directories={root} "
               f"-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=60 "
               f"-c shared_buffers=16MB")
    started = server._tool("pg_ctl", "-D", str(server.data), "-l", str(server.log), "-o", options, "-w",
                           "-t", "60", "start")
    if started.returncode != 0:
        log = server.log.read_text(errors="replace")[-2000:] if server.log.exists() else ""
        server.stop()
        raise RuntimeError(f"postgres did not start: {started.stderr.strip()} {log}")
    return server


def start_postgres() -> PostgresServer:
    """A running server with the roles above (a few tries: the free port may be taken before postgres binds)."""
    bin_dir = binaries()
    run_as = "postgres" if os.geteuid() == 0 else None
    error: Optional[Exception] = None
    for _ in range(3):
        try:
            server = _start_once(bin_dir, run_as)
            break
        except RuntimeError as exc:
            error = exc
    else:
        raise RuntimeError(str(error))
    atexit.register(server.stop)
    try:
        server.admin("CREATE ROLE edgeprune LOGIN CREATEDB")
        server.admin("CREATE ROLE reader LOGIN")
        server.admin(f"CREATE ROLE secret LOGIN PASSWORD '{SECRET_PASSWORD}'")
    except Exception:
        server.stop()
        raise
    return server
