"""The store's schema (forward-only migrations, in order) and the values a result row may hold.

One place for the tables and columns, written in SQLite's words; each store backend translates the DDL to its own
(``store_pg``). Values from a device are made safe to bind here, the same for every backend: text capped and
without NUL or unpaired surrogates (PostgreSQL's text holds neither; SQLite's driver cannot encode the latter), and
numbers a column cannot hold as they are (outside 64 bits, not finite, a fraction in an INTEGER column) stored as
NULL.
"""
from __future__ import annotations

import math
import numbers
import re
from typing import Any, Dict, Sequence

#: Forward-only migrations; index i upgrades user_version i to i + 1.
MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        created TEXT NOT NULL,
        run_folder TEXT NOT NULL,
        model_source TEXT,
        dataset TEXT,
        manifest_json TEXT NOT NULL,
        options_json TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        address TEXT,
        tags TEXT NOT NULL DEFAULT '',
        profile_json TEXT NOT NULL,
        UNIQUE (run_id, name)
    );
    CREATE TABLE variants (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        file TEXT,
        sha256 TEXT,
        size_bytes INTEGER,
        gzip_bytes INTEGER,
        sparsity REAL,
        accuracy REAL,
        predictions_digest TEXT,
        manifest_json TEXT NOT NULL,
        UNIQUE (run_id, name)
    );
    CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        device TEXT NOT NULL,
        variant TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('ok', 'error', 'failed', 'invalid')),
        error_kind TEXT,
        error_message TEXT,
        runtime TEXT,
        runtime_version TEXT,
        threads INTEGER,
        python_version TEXT,
        machine TEXT,
        init_ms REAL,
        p50_us REAL,
        p90_us REAL,
        p99_us REAL,
        mean_us REAL,
        runs INTEGER,
        accuracy REAL,
        predictions_digest TEXT,
        agreement REAL,
        rss_peak_kib INTEGER,
        throttled INTEGER,
        agent_json TEXT,
        attempts INTEGER NOT NULL DEFAULT 1,
        created TEXT NOT NULL,
        UNIQUE (run_id, device, variant)
    );
    CREATE INDEX results_run ON results (run_id, device);
    """,
    # 2 (issue 12): one measurement plan per device per bench, its rounds, and each cell's between-round figures.
    """
    CREATE TABLE plans (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        device TEXT NOT NULL,
        status TEXT NOT NULL,
        stopped_by TEXT,
        rounds_done INTEGER,
        rounds_total INTEGER,
        rounds_s REAL,
        target_ci REAL,
        budget_s REAL,
        seed INTEGER,
        visits_json TEXT,
        created TEXT NOT NULL
    );
    CREATE INDEX plans_run ON plans (run_id, device);
    ALTER TABLE results ADD COLUMN plan_id INTEGER REFERENCES plans(id);
    ALTER TABLE results ADD COLUMN p50_low_us REAL;
    ALTER TABLE results ADD COLUMN p50_high_us REAL;
    ALTER TABLE results ADD COLUMN rounds INTEGER;
    ALTER TABLE results ADD COLUMN settled INTEGER;
    ALTER TABLE results ADD COLUMN ci_half_width REAL;
    ALTER TABLE results ADD COLUMN round_p50s_json TEXT
    """,
    # 3 (issue 13): a cell's op profile (--op-profile) and a plan's sustained run (--sustained), as the agent
    # sent them after the host's reader checked them (results/plan_result.py).
    """
    ALTER TABLE results ADD COLUMN op_profile_json TEXT;
    ALTER TABLE plans ADD COLUMN sustained_json TEXT
    """,
    # 4 (issue 16): sweeps (one per sweep folder), each grid point's optimize outcome as it finishes, and which
    # bench run measured it on which device (a point is done when every chosen device has measured it).
    """
    CREATE TABLE sweeps (
        id INTEGER PRIMARY KEY,
        folder TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL,
        grid_json TEXT NOT NULL,
        options_json TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE sweep_points (
        id INTEGER PRIMARY KEY,
        sweep_id INTEGER NOT NULL REFERENCES sweeps(id),
        key TEXT NOT NULL,
        run_key TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('optimized', 'failed')),
        run_folder TEXT,
        variant TEXT,
        reason TEXT,
        optimized TEXT NOT NULL,
        UNIQUE (sweep_id, key)
    );
    CREATE TABLE sweep_benches (
        id INTEGER PRIMARY KEY,
        sweep_id INTEGER NOT NULL REFERENCES sweeps(id),
        key TEXT NOT NULL,
        device TEXT NOT NULL,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        created TEXT NOT NULL,
        UNIQUE (sweep_id, key, device)
    )
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

#: Result statuses: ok (measured), error (the agent measured and reported an error, e.g. an op the runtime
#: lacks: final), failed (the device or transport failed: --resume retries it), invalid (the agent's document
#: could not be trusted: --resume retries it).
RETRYABLE = ("failed", "invalid")

RESULT_COLUMNS = (
    "status", "error_kind", "error_message", "runtime", "runtime_version", "threads", "python_version", "machine",
    "init_ms", "p50_us", "p90_us", "p99_us", "mean_us", "runs", "accuracy", "predictions_digest", "agreement",
    "rss_peak_kib", "throttled", "agent_json",
    # schema 2: the plan that measured the pair, and its figures over rounds (see report.stats)
    "plan_id", "p50_low_us", "p50_high_us", "rounds", "settled", "ci_half_width", "round_p50s_json",
    # schema 3: the cell's op profile
    "op_profile_json",
)

#: Longest text kept per result column, in characters. Most of these strings come from the device: capping them
#: keeps a broken or hostile agent from filling the disk and the reports. The agent JSON (ASCII, so characters
#: are bytes) is kept for debugging up to 2 MB; a capped one is no longer valid JSON, and the report then simply
#: has no per-sample figures for that pair. ``status`` is the host's own word and is checked by the schema.
TEXT_CAPS: Dict[str, int] = {
    "error_kind": 200, "error_message": 4000, "runtime": 200, "runtime_version": 200, "python_version": 200,
    "machine": 200, "predictions_digest": 200, "agent_json": 2 * 1024 * 1024, "round_p50s_json": 256 * 1024,
    "op_profile_json": 64 * 1024,
}
#: Numeric result columns. A value SQLite cannot hold as it is (an integer outside signed 64 bits, NaN or an
#: infinity, or something that is not a number at all) is stored as NULL, "unknown": clamping a latency or a
#: count would store a figure nobody measured.
NUMBER_COLUMNS = ("threads", "init_ms", "p50_us", "p90_us", "p99_us", "mean_us", "runs", "accuracy", "agreement",
                  "rss_peak_kib", "throttled", "plan_id", "p50_low_us", "p50_high_us", "rounds", "settled",
                  "ci_half_width")
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
#: The tables an edgeprune database has from schema 1 on (``plans`` from schema 2: a migration adds it).
TABLES = ("runs", "devices", "variants", "results")
#: A plan row's columns (besides id, run_id, device, created).
PLAN_COLUMNS = ("status", "stopped_by", "rounds_done", "rounds_total", "rounds_s", "target_ci", "budget_s", "seed",
                "visits_json", "sustained_json")


def cap(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying so at the end, so a reader knows it is not the whole."""
    if len(text) <= limit:
        return text
    suffix = f" [... cut from {len(text)} characters]"
    return text[: limit - len(suffix)] + suffix


def column_types(table: str) -> Dict[str, str]:
    """Each column of ``table`` and its declared type, as the migrations leave it (CREATE, then ADD COLUMN)."""
    types: Dict[str, str] = {}
    for migration in MIGRATIONS:
        for statement in migration.split(";"):
            created = re.match(rf"\s*CREATE TABLE {table} \((.*)\)\s*$", statement, re.S)
            for line in created[1].splitlines() if created else ():
                column = re.match(r"\s*([a-z_0-9]+) (INTEGER|REAL|TEXT)\b", line)
                if column:
                    types[column[1]] = column[2]
            added = re.match(rf"\s*ALTER TABLE {table} ADD COLUMN ([a-z_0-9]+) (\w+)", statement)
            if added:
                types[added[1]] = added[2]
    return types


def number(value: Any, integer: bool = False) -> "int | float | None":
    """``value`` as every backend can store it, or None when it cannot (see NUMBER_COLUMNS). For an ``integer``
    column a whole float becomes an int and a fraction None: SQLite would keep 2.5 in an INTEGER column, a
    PostgreSQL BIGINT would round it, and neither is what the device said."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Integral):
        whole = int(value)
        return whole if INT64_MIN <= whole <= INT64_MAX else None
    if isinstance(value, numbers.Real):
        real = float(value)
        if not math.isfinite(real):
            return None
        if integer:
            return number(int(real)) if real.is_integer() else None
        return real
    return None


#: NUL and surrogate code points (a str may hold them, UTF-8 may not).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def safe_text(text: str) -> str:
    """``text`` without NUL and unpaired surrogates (each becomes U+FFFD): storable by every backend."""
    return _UNSTORABLE.sub("\ufffd", text)


def _storable(values: Dict[str, Any], columns: Sequence[str], numbers: Sequence[str],
              caps: Dict[str, int], integers: Sequence[str]) -> Dict[str, Any]:
    row: Dict[str, Any] = {}
    for column in columns:
        value = values.get(column)
        if value is None or column == "status" and column not in caps:
            row[column] = value
        elif column in numbers:
            row[column] = number(value, column in integers)
        else:
            row[column] = cap(safe_text(value if isinstance(value, str) else str(value)), caps[column])
    return row


def storable(values: Dict[str, Any]) -> Dict[str, Any]:
    """One result's columns, made safe to bind: capped text, numbers SQLite can hold (see the caps above)."""
    return _storable(values, RESULT_COLUMNS, NUMBER_COLUMNS, TEXT_CAPS, RESULT_INTEGERS)


#: The plans table's caps and numbers, as for results.
PLAN_TEXT_CAPS: Dict[str, int] = {"status": 40, "stopped_by": 40, "visits_json": 512 * 1024,
                                  "sustained_json": 16 * 1024 * 1024}
PLAN_NUMBER_COLUMNS = ("rounds_done", "rounds_total", "rounds_s", "target_ci", "budget_s", "seed")


def storable_plan(values: Dict[str, Any]) -> Dict[str, Any]:
    """One plan's columns, made safe to bind like a result's."""
    return _storable(values, PLAN_COLUMNS, PLAN_NUMBER_COLUMNS, PLAN_TEXT_CAPS, PLAN_INTEGERS)


#: The number columns declared INTEGER (a fraction there is NULL, see ``number``), read from the migrations.
RESULT_INTEGERS = tuple(c for c, t in column_types("results").items() if t == "INTEGER" and c in NUMBER_COLUMNS)
PLAN_INTEGERS = tuple(c for c, t in column_types("plans").items() if t == "INTEGER" and c in PLAN_NUMBER_COLUMNS)
