"""The comparison table and the report files, built from a real store filled by a real bench (``bench_db``):
``local``, a loopback sshd device, and a device that is down. Every figure is checked against the store itself."""
from __future__ import annotations

import json
import math
import os
import sqlite3
import struct
import subprocess
from pathlib import Path
from typing import Dict, Tuple

import pandas as pd
import pytest

import edgeprune as edgeprune_api
from edgeprune.report import plots
from edgeprune.report.diff import compare_runs
from support.cli import edgeprune
from support.store_rows import latest_run_id

pytestmark = pytest.mark.slow
DEVICES = {"local", "ssh-up", "ssh-down"}


def stored(db: Path, table: str, run_id: int) -> Dict[Tuple[str, ...], sqlite3.Row]:
    conn = sqlite3.connect(str(db))
    conn.row_factory = sqlite3.Row
    rows = list(conn.execute(f"SELECT * FROM {table} WHERE run_id = ?", (run_id,)))
    conn.close()
    if table == "variants":
        return {(r["name"],): r for r in rows}
    return {(r["device"], r["variant"]): r for r in rows}


def png_size(path: Path) -> Tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_table_rows_and_ratios_come_from_the_store(bench_db):
    frame = edgeprune_api.compare(bench_db.db, bench_db.run_id)
    variants = stored(bench_db.db, "variants", bench_db.run_id)
    results = stored(bench_db.db, "results", bench_db.run_id)
    names = [v["name"] for v in bench_db.manifest["variants"]]
    assert len(frame) == len(DEVICES) * len(names)
    assert set(frame["device"]) == DEVICES
    assert list(frame[frame["device"] == "local"]["variant"]) == names
    base = variants[("baseline-float32",)]
    for _, row in frame.iterrows():
        variant = variants[(row["variant"],)]
        assert row["size_kb"] == pytest.approx(variant["size_bytes"] / 1024)
        assert row["gzip_kb"] == pytest.approx(variant["gzip_bytes"] / 1024)
        assert row["gzip_ratio"] == pytest.approx(base["gzip_bytes"] / variant["gzip_bytes"])
        assert row["host_accuracy"] == pytest.approx(variant["accuracy"])
        result = results[(row["device"], row["variant"])]
        assert row["status"] == result["status"]
        if row["device"] == "ssh-down":
            assert row["status"] == "failed"
            assert result["error_kind"] in row["error"] and result["error_message"] in row["error"]
            assert "cannot connect" in row["error"]
            assert all(math.isnan(row[c]) for c in ("p50_us", "p99_us", "device_accuracy", "speedup", "init_ms"))
            continue
        device_base = results[(row["device"], "baseline-float32")]
        assert row["status"] == "ok", row["error"]
        assert row["runtime"] == "ai_edge_litert" and row["runtime_version"] and row["threads"] == 1
        assert row["p50_us"] == result["p50_us"] and row["p99_us"] == result["p99_us"]
        assert row["p50_us"] <= row["p90_us"] <= row["p99_us"]
        assert row["p50_ci_low_us"] <= row["p50_us"] <= row["p50_ci_high_us"]
        # the speed-up is the median of the per-round ratios (paired by round), close to the ratio of the p50s (not
        # equal: when rounds drift, the median of the ratios follows the pairs, not the two medians)
        assert row["speedup"] == pytest.approx(device_base["p50_us"] / result["p50_us"], rel=0.15)
        assert row["speedup_ci_low"] <= row["speedup"] <= row["speedup_ci_high"] or row["variant"] == "baseline-float32"
        assert row["plan_id"] == result["plan_id"] == device_base["plan_id"] is not None
        assert row["p50_ci_low_us"] == result["p50_low_us"] and row["p50_ci_high_us"] == result["p50_high_us"]
        assert row["accuracy_delta"] == pytest.approx(result["accuracy"] - device_base["accuracy"])
        assert row["device_accuracy"] == pytest.approx(row["host_accuracy"], abs=0.002)
        assert row["agreement"] >= 0.99
        assert row["rss_peak_mib"] == pytest.approx(result["rss_peak_kib"] / 1024)
        assert row["rounds"] == result["rounds"] >= 3 and row["invokes"] == result["runs"] > 0
        assert row["settled"] is bool(result["settled"])
        twin = results[(row["device"], "baseline-float32@aa")]  # the A/A twin: stored, not a row of the table
        assert twin["status"] == "ok" and 0 < row["noise"] < 0.5
        assert row["noise_band_low"] <= 1 + row["noise"] and "Pruning bought" in row["device_verdict"]
        if row["variant"] != "baseline-float32":
            assert row["verdict"] in ("faster", "slower", "no measurable change")
    baseline_rows = frame[(frame["variant"] == "baseline-float32") & (frame["status"] == "ok")]
    assert (baseline_rows["speedup"] == 1).all()


def test_report_command_prints_by_device_and_writes_every_file(bench_db, tmp_path):
    out = tmp_path / "report"
    proc = edgeprune("report", str(bench_db.run_id), "--db", str(bench_db.db), "--out", str(out),
                     env={**os.environ, "COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith("Report files in")  # a path: it may be longer than the terminal
    assert max(len(line.rstrip()) for line in lines[:-1]) <= 100
    for device in DEVICES:
        assert any(line.startswith(f"{device}") for line in lines), device
    assert "every variant (failed): deploy: cannot connect" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert proc.stdout.count("Noise floor (A/A: the baseline measured twice)") == 2  # local and ssh-up
    assert "No noise floor: the baseline was not measured on this device" in proc.stdout  # ssh-down
    assert proc.stdout.count("Quantization bought (baseline-int8 vs baseline-float32)") == 2

    csv = pd.read_csv(out / "report.csv")
    frame = edgeprune_api.compare(bench_db.db, bench_db.run_id)
    assert list(csv.columns) == list(frame.columns) and len(csv) == len(frame)
    assert csv["p50_us"].equals(frame["p50_us"].astype(float))

    markdown = (out / "report.md").read_text()
    assert markdown.count("\n## ") == len(DEVICES)
    assert "| variant |" in markdown and "**baseline-float32** (failed)" in markdown

    html = (out / "report.html").read_text()
    assert html.count("<table>") == len(DEVICES) and html.count("data:image/png;base64,") == 2
    assert 'class="reason"' in html
    assert "<script" not in html and "href=" not in html and 'src="http' not in html  # self-contained
    for name in plots.FILES.values():
        assert png_size(out / name) == plots.PIXELS
        assert (out / name).stat().st_size > 10_000


def test_runs_lists_the_run_with_its_counts(bench_db):
    proc = edgeprune("runs", "--db", str(bench_db.db), env={**os.environ, "COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr
    [line] = [line for line in proc.stdout.splitlines() if line.split()[:1] == [str(bench_db.run_id)]]
    n = len([v for v in bench_db.manifest["variants"] if v["status"] == "ok"])
    assert line.rstrip().endswith(f"{2 * n} ok, {n} failed") and "built-in CNN" in line


def test_compare_two_runs(bench_db, tmp_path):
    proc = edgeprune("bench", str(bench_db.folder), "--device", "local", "--db", str(bench_db.db), "-q")
    assert proc.returncode == 0, proc.stderr
    second = latest_run_id(bench_db.db)
    frame = compare_runs(bench_db.db, bench_db.run_id, second)
    local = frame[frame["device"] == "local"]
    assert len(local) == len(bench_db.manifest["variants"])
    first_results = stored(bench_db.db, "results", bench_db.run_id)
    second_results = stored(bench_db.db, "results", second)
    for _, row in local.iterrows():
        a, b = first_results[("local", row["variant"])], second_results[("local", row["variant"])]
        assert row["p50_change"] == pytest.approx(b["p50_us"] / a["p50_us"] - 1)
        assert row["p50_change_significant"] in (True, False)  # both runs have rounds and an A/A band
        assert row["p50_change_low"] <= row["p50_change"] <= row["p50_change_high"]
    only_a = frame[frame["device"] == "ssh-up"]
    assert only_a["p50_us_b"].isna().all() and only_a["status_b"].isna().all()

    proc = edgeprune("report", "--db", str(bench_db.db), "--compare", str(bench_db.run_id), str(second))
    assert proc.returncode == 0, proc.stderr
    assert "p50 change" in proc.stdout and "ssh-up" in proc.stdout


def test_a_run_with_only_failures_shows_a_table_of_failures(digits_run, make_device, tmp_path):
    from support.sshlab import write_fleet

    dead = make_device("dead", start=False)
    fleet = write_fleet(tmp_path / "fleet.toml", [dead])
    db = tmp_path / "store.db"
    proc = edgeprune("bench", str(digits_run.folder), "--fleet", str(fleet), "--db", str(db), "-q")
    assert proc.returncode == 1
    out = tmp_path / "report"
    proc = edgeprune("report", "--db", str(db), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "every variant (failed): deploy: cannot connect" in proc.stdout
    assert "nothing to plot" in (out / "report.html").read_text()
    assert not list(out.glob("*.png"))


def test_html_report_in_headless_chromium(bench_db, tmp_path):
    """The HTML opens in a real browser: a screenshot shows the tables and both plots."""
    from matplotlib.image import imread

    out = tmp_path / "report"
    proc = edgeprune("report", str(bench_db.run_id), "--db", str(bench_db.db), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    shot = tmp_path / "screenshot.png"
    script = Path(__file__).resolve().parents[2] / "scripts" / "screenshot.sh"
    proc = subprocess.run(["bash", str(script), str(out / "report.html"), str(shot), "1400,2400"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert png_size(shot) == (1400, 2400)
    pixels = imread(str(shot))[:, :, :3]
    inked = (pixels.min(axis=2) < 0.9).any(axis=1)  # rows of the page with something drawn on them
    # the three device tables are at the top, the two 500 px plots below them: ink all the way down
    assert inked[:300].any() and inked[1000:1400].any() and inked[1500:2000].any()
    colored = (pixels.max(axis=2) - pixels.min(axis=2)) > 0.3  # the plots' bars and points are in colour
    assert colored[800:].sum() > 5000


def test_every_kind_of_missing_figure_shows_its_reason(bench_db, tmp_path):
    """A variant that did not convert, an error the agent reported, a pair never measured: each row says why."""
    from edgeprune.results.store import Store

    manifest = json.loads(json.dumps(bench_db.manifest))
    broken = next(v for v in manifest["variants"] if v["name"] == "pruned-float16")
    broken.clear()
    broken.update({"name": "pruned-float16", "status": "error", "description": "float16",
                   "error": "pruned-float16: converter said no"})
    db = tmp_path / "store.db"
    with Store.open(db) as store:
        run_id = store.create_run(str(bench_db.folder), manifest, {})
        store.add_device(run_id, "pi", "ssh", "192.0.2.1", [], {})
        store.record(run_id, "pi", "pruned-int8", {"status": "error", "error_kind": "model-load",
                                                   "error_message": "Didn't find op for builtin opcode",
                                                   "runtime": "tflite_runtime", "runtime_version": "2.14.0"})
    frame = edgeprune_api.compare(db).set_index("variant")
    assert frame.loc["pruned-float16", "status"] == "not-built"
    assert frame.loc["pruned-float16", "error"] == "pruned-float16: converter said no"
    assert frame.loc["pruned-int8", "status"] == "error"
    assert frame.loc["pruned-int8", "error"] == "model-load: Didn't find op for builtin opcode"
    assert frame.loc["pruned-int8", "runtime_version"] == "2.14.0"
    assert frame.loc["baseline-float32", "status"] == "not-measured"
    assert f"--resume {run_id}" in frame.loc["baseline-float32", "error"]
    proc = edgeprune("report", "--db", str(db), "--format", "md", "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert "pruned-int8 (error): model-load: Didn't find op" in proc.stdout
    assert "pruned-float16 (not-built): pruned-float16: converter said no" in proc.stdout
    assert "**pruned-int8** (error): model-load" in (tmp_path / "r" / "report.md").read_text()
