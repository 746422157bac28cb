"""Fast checks: the bootstrap statistics, one ``Error:`` line for every database a report cannot use, and a CLI
that stays light to import."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from edgeprune.report import stats
from edgeprune.results.store import Store
from support.cli import edgeprune


def test_bootstrap_interval_holds_the_median_and_narrows_with_more_samples():
    rng = np.random.default_rng(1)
    widths = []
    for n in (100, 5000):
        samples = 100 + rng.gamma(2.0, 5.0, size=n)
        ci = stats.interval(stats.bootstrap_medians(samples))
        assert ci.contains(float(np.median(samples)))
        widths.append(ci.high - ci.low)
    assert widths[1] < widths[0] / 3


def test_speedup_is_outside_the_noise_only_when_the_medians_really_differ():
    rng = np.random.default_rng(2)
    base = 100 + rng.gamma(2.0, 5.0, size=1000)
    same = 100 + rng.gamma(2.0, 5.0, size=1000)
    faster = 80 + rng.gamma(2.0, 5.0, size=1000)
    medians = {name: stats.bootstrap_medians(x) for name, x in (("base", base), ("same", same), ("faster", faster))}
    assert stats.outside_noise(stats.ratio_interval(medians["base"], medians["same"])) is False
    ratio = stats.ratio_interval(medians["base"], medians["faster"])
    assert stats.outside_noise(ratio) is True and ratio.low > 1.1


def test_too_few_or_no_samples_give_no_interval():
    assert stats.bootstrap_medians(None) is None
    assert stats.bootstrap_medians([1.0, 2.0, 3.0]) is None
    assert stats.outside_noise(stats.ratio_interval(None, stats.bootstrap_medians(np.arange(50.0)))) is None


def test_bootstrap_is_reproducible():
    samples = np.random.default_rng(3).normal(50, 5, size=777)
    assert np.array_equal(stats.bootstrap_medians(samples), stats.bootstrap_medians(samples))


@pytest.fixture
def bad_dbs(tmp_path):
    empty = tmp_path / "empty.db"
    Store.open(empty).close()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not sqlite at all\n" * 100)
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(str(newer))
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    return {"missing": tmp_path / "missing.db", "empty": empty, "garbage": garbage, "newer": newer}


@pytest.mark.parametrize("case, args, message", [
    ("missing", ["report"], "no database at"),
    ("missing", ["runs"], "no database at"),
    ("empty", ["report"], "holds no runs yet"),
    ("empty", ["report", "7"], "no run 7 in"),
    ("garbage", ["report"], "cannot open database"),
    ("newer", ["report"], "newer than this edgeprune knows"),
    ("empty", ["report", "--compare", "1", "2"], "no run 1 in"),
    ("empty", ["report", "--format", "pdf"], "unknown report format 'pdf'"),
])
def test_unusable_database_is_one_error_line(bad_dbs, case, args, message):
    proc = edgeprune(*args, "--db", str(bad_dbs[case]), timeout=120)
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: ") and message in proc.stderr, proc.stderr


def test_runs_on_an_empty_database_says_so(bad_dbs):
    proc = edgeprune("runs", "--db", str(bad_dbs["empty"]), timeout=120)
    assert proc.returncode == 0
    assert proc.stdout.startswith("no runs stored in")


def test_cli_module_imports_neither_pandas_nor_matplotlib():
    code = "import edgeprune.cli.commands, sys; print(*(m in sys.modules for m in ('pandas', 'matplotlib', 'tensorflow')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False", "False"]
