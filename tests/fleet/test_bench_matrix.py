"""A matrix bench (issue 13): `--runtimes` x `--threads` (x `--xnnpack`) multiply the cells of each device's plan.

Two devices: `local` (ai-edge-litert, no tflite-runtime) and the Pi-like Python 3.9 venv (tflite-runtime 2.14, no
ai-edge-litert), so each lacks one of the two runtimes asked for: those cells are recorded with their reason, the
others measured in the same interleaved rounds, and the report marks per device and variant what to ship.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from support.cli import bench, edgeprune
from support.store_rows import by_pair, outcome, rows

pytestmark = pytest.mark.slow
RUNTIMES = ("ai_edge_litert", "tflite_runtime")
THREADS = (1, 2)


def fleet(tmp_path: Path, pi_python: Path) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(
        "[defaults]\nkind = \"local\"\ntarget_ci = 0.2\nmin_rounds = 3\n\n"
        "[[device]]\nname = \"local\"\npython = \"\"\n\n"
        f"[[device]]\nname = \"pi39\"\npython = \"{pi_python}\"\n")
    return path


def test_a_matrix_stores_every_cell_and_a_missing_runtime_is_a_recorded_result(digits_run, pi_python, tmp_path):
    folder, _ = digits_run
    db = tmp_path / "s.db"
    proc = bench(str(folder), "--fleet", str(fleet(tmp_path, pi_python)), "--db", str(db), "--variants",
                 "pruned-int8", "--runtimes", ",".join(RUNTIMES), "--threads", ",".join(map(str, THREADS)))
    assert proc.returncode == 1, proc.stderr  # the missing runtimes are errors; no device failed
    assert "0 failed" in proc.stdout, proc.stdout
    stored = by_pair(rows(db))
    missing = {"local": "tflite_runtime", "pi39": "ai_edge_litert"}
    for device, absent in missing.items():
        for variant in ("baseline-float32", "pruned-int8"):
            for runtime in RUNTIMES:
                for threads in THREADS:
                    row = stored[(device, f"{variant}#{runtime}/{threads}t")]
                    if runtime == absent:
                        assert row["status"] == "error" and row["error_kind"] == "runtime-missing", outcome(row)
                        assert absent in row["error_message"]
                    else:
                        assert row["status"] == "ok" and row["rounds"] >= 3, outcome(row)
                        assert row["runtime"] == runtime and row["threads"] == threads
    # one A/A twin per device: the reference variant in the first configuration (ai_edge_litert, 1 thread)
    assert stored[("local", "baseline-float32#ai_edge_litert/1t@aa")]["status"] == "ok"
    assert stored[("pi39", "baseline-float32#ai_edge_litert/1t@aa")]["error_kind"] == "runtime-missing"
    assert len(stored) == 2 * (2 * len(RUNTIMES) * len(THREADS) + 1)
    out = tmp_path / "report"
    report = edgeprune("report", "--db", str(db), "--out", str(out), "--format", "csv")
    assert report.returncode == 0, report.stderr
    said = " ".join(report.stdout.split())
    assert "Ship this: pruned-int8 on ai_edge_litert/" in said and "Ship this: pruned-int8 on tflite_runtime/" in said
    csv = pd.read_csv(out / "report.csv")
    shipped = csv[csv["ship"] == True]  # noqa: E712 - the column holds True/False/empty
    for device, absent in missing.items():
        chosen = shipped[(shipped["device"] == device) & shipped["variant"].str.startswith("pruned-int8#")]
        assert len(chosen) == 1, chosen
        row = chosen.iloc[0]
        assert absent not in row["config"]
        measured = csv[(csv["device"] == device) & csv["variant"].str.startswith("pruned-int8#")
                       & (csv["status"] == "ok")]
        assert row["p50_us"] == measured["p50_us"].min()  # accuracy is equal across configurations here


@pytest.mark.parametrize("args, words", [
    (["--runtimes", "onnx"], "--runtimes 'onnx': one of"),
    (["--threads", "0,2"], "--threads '0,2'"),
    (["--xnnpack", "maybe"], "--xnnpack 'maybe'"),
])
def test_a_bad_matrix_is_one_line(tmp_path, args, words):
    proc = bench(str(tmp_path), "--device", "local", "--db", str(tmp_path / "s.db"), *args)
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
