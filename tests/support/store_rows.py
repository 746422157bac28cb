"""What a bench stored, read back from the SQLite file with plain sqlite3 (not through edgeprune's store), and the
run folders the fleet tests bench."""
from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import pytest


def rows(db: Path, run_id: Optional[int] = None) -> List[sqlite3.Row]:
    """The ``results`` rows (of ``run_id``, else of every run), ordered by device and variant."""
    conn = sqlite3.connect(str(db))
    conn.row_factory = sqlite3.Row
    query = "SELECT * FROM results" + (" WHERE run_id = ?" if run_id else "") + " ORDER BY device, variant"
    result = list(conn.execute(query, (run_id,) if run_id else ()))
    conn.close()
    return result


def by_pair(result_rows: List[sqlite3.Row]) -> Dict[Tuple[str, str], sqlite3.Row]:
    return {(r["device"], r["variant"]): r for r in result_rows}


def outcome(row: sqlite3.Row) -> str:
    """``status / error_kind: error_message``: one pair's outcome, also a readable assertion message."""
    return f"{row['status']} / {row['error_kind']}: {row['error_message']}"


def latest_run_id(db: Path) -> int:
    conn = sqlite3.connect(str(db))
    try:
        return int(conn.execute("SELECT max(id) FROM runs").fetchone()[0])
    finally:
        conn.close()


def wait_for_rows(db: Path, proc: subprocess.Popen, condition: Callable[[List[sqlite3.Row]], bool],
                  timeout: float = 300) -> None:
    """Poll the store until ``condition(rows)`` holds; kill the bench and fail if it never does. The bench creates
    the file before its tables (and holds write locks now and then): until they are there, there are no rows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            current = rows(db) if db.exists() else []
        except sqlite3.OperationalError:  # no such table yet, or locked for a moment
            current = []
        if current and condition(current):
            return
        time.sleep(0.1)
    proc.kill()
    pytest.fail("the store never reached the expected state")


def variant_names(manifest: Dict) -> List[str]:
    """The manifest's variants that converted (status ok), in manifest order."""
    return [v["name"] for v in manifest["variants"] if v["status"] == "ok"]


def copy_run(folder: Path, dest: Path) -> Path:
    """A copy of a run folder's files (a test may damage or move the copy, never the session's run)."""
    dest.mkdir()
    for item in folder.iterdir():
        if item.is_file():
            (dest / item.name).write_bytes(item.read_bytes())
    return dest
