"""`edgeprune bench FILE.tflite ...`: files you already have, measured as they are (issue 13).

The files are tests/support/tflite_zoo.py's, built by the tests themselves: a multi-input/multi-output model, an
int8-input model, a model with dynamic dimensions, and a model with a MediaPipe custom op. Each bench runs the
CLI as a user would, on `local` and on a real sshd device, and reads back what the store holds.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Dict

import pytest

from support import tflite_zoo
from support.cli import bench, edgeprune
from support.sshlab import write_fleet
from support.store_rows import by_pair, outcome, rows

pytestmark = pytest.mark.slow
FAST = {"target_ci": 0.2, "min_rounds": 3}


@pytest.fixture(scope="module")
def zoo() -> Path:
    return tflite_zoo.zoo_dir()


def variants(db: Path) -> Dict[str, sqlite3.Row]:
    conn = sqlite3.connect(str(db))
    conn.row_factory = sqlite3.Row
    found = {r["name"]: r for r in conn.execute("SELECT * FROM variants")}
    conn.close()
    return found


def local_fast(tmp_path: Path) -> Path:
    path = tmp_path / "local.toml"
    path.write_text('name = "local"\nkind = "local"\npython = ""\n' +
                    "".join(f"{k} = {v}\n" for k, v in FAST.items()))
    return path


@pytest.mark.parametrize("where", ["local", "ssh"])
def test_files_are_benched_latency_only_and_a_custom_op_is_named(zoo, tmp_path, make_device, where):
    db = tmp_path / "s.db"
    if where == "local":
        target = ["--device", str(local_fast(tmp_path))]
        device = "local"
    else:
        sshd = make_device("files-0")
        target = ["--fleet", str(write_fleet(tmp_path / "fleet.toml", [sshd], **FAST))]
        device = sshd.name
    files = [zoo / "multi_io.tflite", zoo / "int8_input.tflite", zoo / "dynamic.tflite", zoo / "mediapipe_op.tflite"]
    proc = bench(*map(str, files), *target, "--db", str(db), "--input-shape", "frames=1,4,8,3")
    assert proc.returncode == 1, proc.stderr  # the custom op is an error
    assert "4 ok, 1 error, 0 failed" in proc.stdout, proc.stdout + proc.stderr
    stored = by_pair(rows(db))
    assert set(stored) == {(device, n) for n in ("multi_io", "multi_io@aa", "int8_input", "dynamic",
                                                  "mediapipe_op")}
    for name in ("multi_io", "multi_io@aa", "int8_input", "dynamic"):
        row = stored[(device, name)]
        assert row["status"] == "ok" and row["rounds"] >= 3, outcome(row)
        assert row["accuracy"] is None and 0 < row["p50_us"] <= row["p99_us"]
        doc = json.loads(row["agent_json"])
        assert doc["accuracy"] is None and doc["inputs"]["source"] == "generated", doc.get("inputs")
    twins = [json.loads(stored[(device, n)]["agent_json"])["inputs"] for n in ("multi_io", "multi_io@aa")]
    assert twins[0]["seed"] == twins[1]["seed"]  # the A/A pair times the same file on the same inputs
    dynamic = json.loads(stored[(device, "dynamic")]["agent_json"])
    assert [t["shape"] for t in dynamic["model"]["inputs"]] == [[1, 4, 8, 3]]  # the shape given
    custom = stored[(device, "mediapipe_op")]
    assert custom["status"] == "error" and custom["error_kind"] == "unsupported-op", outcome(custom)
    assert "Convolution2DTransposeBias" in custom["error_message"] and "MediaPipe" in custom["error_message"]
    assert "newer runtime" not in custom["error_message"]
    # the import is recorded: sha256, sizes, ops (custom ones flagged) and the signature, from the flatbuffer
    recorded = variants(db)
    assert list(recorded) == ["multi_io", "int8_input", "dynamic", "mediapipe_op"]
    entry = json.loads(recorded["mediapipe_op"]["manifest_json"])
    assert [(op["name"], op["custom"]) for op in entry["ops"] if op["custom"]] == [("Convolution2DTransposeBias", True)]
    assert [t["name"] for t in json.loads(recorded["multi_io"]["manifest_json"])["inputs"]] == \
        ["serving_default_features:0", "serving_default_image:0"]
    assert recorded["int8_input"]["gzip_bytes"] > 0 and len(recorded["int8_input"]["sha256"]) == 64
    report = edgeprune("report", "--db", str(db), "--out", str(tmp_path / "r"), "--format", "csv")
    assert report.returncode == 0, report.stderr
    assert "latency only" in report.stdout and "Noise floor" in report.stdout, report.stdout
    assert "Pruning bought" not in report.stdout  # no pruning verdict for files that are not our variants


def test_the_same_file_twice_and_clashing_names(zoo, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shutil.copy(zoo / "int8_input.tflite", a / "model.tflite")
    shutil.copy(zoo / "uint8_input.tflite", b / "model.tflite")
    db = tmp_path / "s.db"
    proc = bench(str(a / "model.tflite"), str(b / "model.tflite"), str(zoo / "int8_input.tflite"),
                 "--device", str(local_fast(tmp_path)), "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    assert "is the same file as" in proc.stderr and "measured as model-2" in proc.stderr, proc.stderr
    assert list(variants(db)) == ["model", "model-2"]  # int8_input.tflite is a's model.tflite: measured once
    assert {r["variant"] for r in rows(db)} == {"model", "model@aa", "model-2"}


@pytest.mark.parametrize("args, words", [
    (["string_input.tflite"], "is a string tensor"),
    (["no-such.tflite"], "no such file or folder"),
    (["multi_io.tflite", "--input-shape", "nope=1,2"], "no file has an input of that name"),
    (["multi_io.tflite", "--input-shape", "x=1,0"], "expected NAME=D1,D2"),
])
def test_bad_files_and_options_are_one_line(zoo, tmp_path, args, words):
    args = [str(zoo / a) if a.endswith(".tflite") else a for a in args]
    proc = bench(*args, "--device", "local", "--db", str(tmp_path / "s.db"))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_truncated_file_is_refused_before_any_interpreter(zoo, tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes((zoo / "multi_io.tflite").read_bytes()[:300])
    proc = bench(str(broken), "--device", "local", "--db", str(tmp_path / "s.db"))
    assert proc.returncode == 2 and "not a valid .tflite file" in proc.stderr, proc.stderr
