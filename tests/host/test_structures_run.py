"""Issue 16, end to end: `edgeprune optimize --builtin mobilenet --structure xnnpack-sparse` with the dense-stored
control and the prune-preserving QAT int8 variant, as a user runs it.

What the files hold is read back from the .tflite files themselves (the agent's flatbuffer reader for the ops,
the interpreter for the int8 weights), not from what the manifest says about them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from device_agent.flatbuffer import read_model

pytestmark = pytest.mark.slow

VARIANTS = "pruned-float32,pruned-dense-float32,pruned-int8,pruned-pqat-int8"
TARGET = 0.8


@pytest.fixture(scope="module")
def mobilenet_run(tmp_path_factory):
    """One optimize run, as the README's user types it (tiny epochs: the files' structure is what is tested)."""
    out = tmp_path_factory.mktemp("mobilenet") / "run"
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    proc = subprocess.run(
        [sys.executable, "-m", "edgeprune", "optimize", "--builtin", "mobilenet", "--structure", "xnnpack-sparse",
         "--final-sparsity", str(TARGET), "--train-epochs", "2", "--prune-epochs", "2", "--max-accuracy-drop", "100",
         "--variants", VARIANTS, "--out", str(out)],
        capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    return out, {entry["name"]: entry for entry in manifest["variants"]}, manifest, proc


def test_names_carry_the_structure(mobilenet_run):
    out, entries, manifest, proc = mobilenet_run
    assert list(entries) == ["baseline-float32", "pruned-xnnpack-sparse-float32",
                             "pruned-xnnpack-sparse-dense-float32", "pruned-xnnpack-sparse-int8",
                             "pruned-xnnpack-sparse-pqat-int8"]
    assert all(entry["status"] == "ok" for entry in entries.values()), entries
    for name, entry in entries.items():
        assert (out / entry["file"]).name == f"{name}.tflite" and (out / entry["file"]).is_file()
        assert entry.get("structure") == (None if name.startswith("baseline") else "xnnpack-sparse")
    assert manifest["pruning"]["structure"] == "xnnpack-sparse"
    assert manifest["dataset"]["name"] == "digits-rgb64" and manifest["dataset"]["input_shape"] == [64, 64, 3]
    assert "built-in mobilenet" in manifest["baseline"]["source"]
    assert "XNNPACK's sparse path runs float models only" in proc.stdout + proc.stderr


def test_sparse_storage_only_where_the_structure_says(mobilenet_run):
    out, entries, _, _ = mobilenet_run
    assert "DENSIFY" in _ops(out / "pruned-xnnpack-sparse-float32.tflite")
    for plain in ("baseline-float32", "pruned-xnnpack-sparse-dense-float32", "pruned-xnnpack-sparse-int8",
                  "pruned-xnnpack-sparse-pqat-int8"):
        assert "DENSIFY" not in _ops(out / f"{plain}.tflite"), plain
    sparse, dense = entries["pruned-xnnpack-sparse-float32"], entries["pruned-xnnpack-sparse-dense-float32"]
    assert sparse["size_bytes"] < 0.6 * dense["size_bytes"]  # the zeros are not stored
    # the same zeros either way: sparsity is counted against the dense shape of a sparse-stored tensor
    assert sparse["sparsity"] == pytest.approx(dense["sparsity"], abs=0.005)
    assert sparse["predictions_digest"] == dense["predictions_digest"]


def test_pqat_int8_keeps_the_zeros(mobilenet_run):
    out, entries, _, _ = mobilenet_run
    ptq = _pointwise_int8_zeros(out / "pruned-xnnpack-sparse-int8.tflite")
    pqat = _pointwise_int8_zeros(out / "pruned-xnnpack-sparse-pqat-int8.tflite")
    assert ptq == pytest.approx(TARGET, abs=0.03)
    assert pqat == pytest.approx(TARGET, abs=0.03), "the QAT fine-tune refilled the pruned weights"
    assert entries["pruned-xnnpack-sparse-pqat-int8"]["input"]["dtype"] == "int8"
    assert entries["pruned-xnnpack-sparse-pqat-int8"]["accuracy"] is not None


def _ops(path) -> set:
    return {code.name for code in read_model(str(path)).ops}


def _pointwise_int8_zeros(path) -> float:
    """Zeros over the int8 1x1 convolution filters ([out, 1, 1, in]) as the interpreter loads them."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    zeros = total = 0
    for detail in interpreter.get_tensor_details():
        shape = list(detail["shape"])
        if detail["dtype"] == np.int8 and len(shape) == 4 and shape[1:3] == [1, 1] and shape[3] > 3:
            try:
                values = interpreter.get_tensor(detail["index"])
            except ValueError:  # not a constant
                continue
            zeros += int(np.count_nonzero(values == 0))
            total += values.size
    assert total > 0, "no int8 1x1 filters found"
    return zeros / total


def test_the_check_and_the_control_are_in_the_manifest(mobilenet_run):
    _, entries, _, _ = mobilenet_run
    sparse = entries["pruned-xnnpack-sparse-float32"]
    assert sparse["explain"]["check_version"] == 1
    assert sparse["explain"]["stored_sparse"] is True and sparse["explain"]["one_by_one_zero_fraction"] > 0.75
    assert sparse["explain"]["sparse_eligible"] is True, sparse["explain"]["sparse_reason"]
    dense = entries["pruned-xnnpack-sparse-dense-float32"]["explain"]
    assert dense["sparse_reason"] == "weights stored dense: convert with EXPERIMENTAL_SPARSITY"
    assert "float-only" in entries["pruned-xnnpack-sparse-int8"]["explain"]["sparse_reason"]
    assert sparse["sparsity_control"] == "pruned-xnnpack-sparse-dense-float32"
    assert entries["pruned-xnnpack-sparse-int8"].get("sparsity_control") is None  # baseline-int8 was not built
    assert "sparsity_control" not in entries["baseline-float32"]


def test_bench_on_this_host_says_what_sparsity_bought_and_why(mobilenet_run, tmp_path):
    """The shipped `local` profile, as a user benches: on this x86-64 host the sparse-stored file gains nothing
    over the same zeros stored dense, and the report says why (AVX CPUs never take XNNPACK's sparse path)."""
    out = mobilenet_run[0]
    db = tmp_path / "results.db"
    bench = subprocess.run([sys.executable, "-m", "edgeprune", "bench", str(out), "--device", "local", "--db", str(db)],
                           capture_output=True, text=True, timeout=600)
    assert bench.returncode == 0, bench.stderr[-2000:]
    report = subprocess.run([sys.executable, "-m", "edgeprune", "report", "--db", str(db)], capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, COLUMNS="400"))
    assert report.returncode == 0, report.stderr[-2000:]
    text = " ".join(report.stdout.split())
    line = text[text.index("Sparsity (pruned-xnnpack-sparse-float32 vs pruned-xnnpack-sparse-dense-float32)"):][:400]
    if " avx" in open("/proc/cpuinfo").read():
        assert "no measurable gain (noise ±" in line and "XNNPACK never takes it on CPUs with AVX" in line, line
    assert "Sparsity (pruned-xnnpack-sparse-dense-float32 vs baseline-float32)" in text


def test_imported_files_are_checked_and_judged_against_the_reference(mobilenet_run, tmp_path):
    """`bench FILE.tflite ...`: the check runs on each imported file and is stored with the run; a file with zeros
    is judged against the reference (the first file)."""
    import sqlite3

    out = mobilenet_run[0]
    db = tmp_path / "files.db"
    files = [str(out / "pruned-xnnpack-sparse-dense-float32.tflite"), str(out / "pruned-xnnpack-sparse-float32.tflite")]
    bench = subprocess.run([sys.executable, "-m", "edgeprune", "bench", *files, "--device", "local", "--db", str(db)],
                           capture_output=True, text=True, timeout=600)
    assert bench.returncode == 0, bench.stderr[-2000:]
    with sqlite3.connect(str(db)) as conn:
        manifest = json.loads(conn.execute("SELECT manifest_json FROM runs").fetchone()[0])
    checks = {v["name"]: v["explain"] for v in manifest["variants"]}
    assert checks["pruned-xnnpack-sparse-float32"]["sparse_eligible"] is True
    assert checks["pruned-xnnpack-sparse-dense-float32"]["stored_sparse"] is False
    report = subprocess.run([sys.executable, "-m", "edgeprune", "report", "--db", str(db)], capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, COLUMNS="400"))
    text = " ".join(report.stdout.split())
    assert "Sparsity (pruned-xnnpack-sparse-float32 vs pruned-xnnpack-sparse-dense-float32)" in text, text[-1500:]
