"""What a bench does besides its rounds (issue 13): `--delegate` as a matrix dimension, `--sustained SECONDS`
(one cell kept running, sampled every second) and `--op-profile`, on `local` and the Pi-like Python 3.9 device,
from the command line as a user runs it, read back from the store.
"""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from support.cli import bench, edgeprune
from support.store_rows import by_pair, outcome, rows
from support.tflite_zoo import zoo_dir

pytestmark = pytest.mark.slow


def quick_fleet(tmp_path: Path, pi_python: "Path | None" = None) -> Path:
    """`local` (and the Pi-like device) with a short stopping rule: these tests are about what is stored."""
    path = tmp_path / "fleet.toml"
    text = ("[defaults]\nkind = \"local\"\nmin_rounds = 3\nmax_rounds = 4\nbudget_s = 20\nwarmup = 2\nruns = 20\n\n"
            "[[device]]\nname = \"local\"\npython = \"\"\n")
    if pi_python is not None:
        text += f"\n[[device]]\nname = \"pi39\"\npython = \"{pi_python}\"\n"
    path.write_text(text)
    return path


def sustained_rows(db: Path):
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return {r["device"]: json.loads(r["sustained_json"]) for r in conn.execute(
            "SELECT device, sustained_json FROM plans WHERE sustained_json IS NOT NULL")}


def test_delegate_is_a_matrix_dimension_and_a_missing_delegate_is_that_cells_error(tmp_path):
    model = zoo_dir() / "multi_io.tflite"
    db = tmp_path / "s.db"
    proc = bench(str(model), "--fleet", str(quick_fleet(tmp_path)), "--db", str(db),
                 "--delegate", "none,libedgetpu.so.1")
    assert proc.returncode == 1, proc.stderr  # the Edge TPU cells are errors, the device did not fail
    stored = by_pair(rows(db))
    cpu, tpu = stored[("local", "multi_io#cpu")], stored[("local", "multi_io#edgetpu")]
    assert cpu["status"] == "ok" and cpu["rounds"] >= 3, outcome(cpu)
    assert tpu["status"] == "error" and tpu["error_kind"] == "delegate", outcome(tpu)
    assert "libedgetpu" in tpu["error_message"]
    assert stored[("local", "multi_io#cpu@aa")]["status"] == "ok"  # the reference is the first configuration
    report = edgeprune("report", "--db", str(db), "--out", str(tmp_path / "r"), "--format", "csv")
    said = " ".join(report.stdout.split())
    assert report.returncode == 0 and "Ship this: multi_io on cpu" in said, report.stdout + report.stderr


def test_sustained_run_is_stored_with_a_sample_every_second_on_both_devices(tmp_path, pi_python):
    models = [zoo_dir() / "multi_io.tflite", zoo_dir() / "int8_input.tflite"]
    db = tmp_path / "s.db"
    proc = bench(*map(str, models), "--fleet", str(quick_fleet(tmp_path, pi_python)), "--db", str(db),
                 "--sustained", "3", "--sustained-variant", "int8_input")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = sustained_rows(db)
    assert set(runs) == {"local", "pi39"}
    for device, run in runs.items():
        assert run["cell"] == "int8_input" and run["stopped_by"] == "seconds", (device, run)
        times = [s["t_s"] for s in run["samples"]]
        assert 2 <= len(times) <= 4 and times == sorted(times) and times[-1] <= 3.5, (device, times)
        assert all(s["runs"] > 0 and s["p50_us"] > 0 for s in run["samples"])
        for key, source in run["sources"].items():  # a sensor the device lacks is null in every sample
            field = {"temp": "temp_c", "freq": "freq_mhz", "throttle": "throttled"}[key]
            assert (source is None) == all(s[field] is None for s in run["samples"]), (device, key)
    report = edgeprune("report", "--db", str(db), "--out", str(tmp_path / "r"), "--format", "html")
    said = " ".join(report.stdout.split())
    assert report.returncode == 0 and "Sustained runs" in said, report.stderr
    for device in ("local", "pi39"):  # neither device has vcgencmd: the report says so rather than "not throttled"
        assert f"{device}: throttle bits unavailable (no vcgencmd)" in said, said
    assert (tmp_path / "r" / "report.html").read_text().count("data:image/png") == 4  # 2 plots + 2 sustained


def fake_vcgencmd(folder: Path, after_calls: int) -> Path:
    """A stand-in for the Pi firmware's `vcgencmd get_throttled` (this x86 host has none): not throttled for the
    first calls, then 0x50005 (under-voltage now, throttled now, and both since boot), as a Pi answers."""
    folder.mkdir()
    script = folder / "vcgencmd"
    count = folder / "count"
    script.write_text(f"""#!/bin/sh
[ "$1" = get_throttled ] || exit 1
n=$(cat {count} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {count}
if [ $n -gt {after_calls} ]; then echo throttled=0x50005; else echo throttled=0x0; fi
""")
    script.chmod(0o755)
    return folder


def test_throttle_bits_are_sampled_every_second(tmp_path):
    model = zoo_dir() / "int8_input.tflite"
    db = tmp_path / "s.db"
    tools = fake_vcgencmd(tmp_path / "bin", after_calls=4)  # the probe, the sensors check, then 2 samples
    env = dict(os.environ, PATH=f"{tools}{os.pathsep}{os.environ['PATH']}")
    proc = edgeprune("bench", str(model), "--fleet", str(quick_fleet(tmp_path)), "--db", str(db), "--sustained", "5",
                     "-q", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = sustained_rows(db)["local"]
    assert run["sources"]["throttle"] == "vcgencmd"
    bits = [s["throttled"] for s in run["samples"]]
    assert 0 in bits and 0x50005 in bits and bits == sorted(bits), bits
    first = next(s["t_s"] for s in run["samples"] if s["throttled"])
    out = tmp_path / "report"
    report = edgeprune("report", "--db", str(db), "--out", str(out), "--format", "md,png")
    said = " ".join(report.stdout.split())
    assert report.returncode == 0, report.stderr
    assert f"local: under-voltage at {first:.0f} s; throttled after {first:.0f} s" in said, said
    assert "throttled after" in (out / "report.md").read_text()
    assert (out / "sustained-local.png").stat().st_size > 10_000


@pytest.mark.parametrize("args, words", [
    (["--sustained", "0"], "--sustained 0: seconds from 1 to 86400"),
    (["--sustained", "nan"], "--sustained nan"),
    (["--sustained-variant", "x"], "--sustained-variant needs --sustained"),
    (["--delegate", "libedgetpu.so.1,/opt/libedgetpu.so.1"], "both be labelled 'edgetpu'"),
])
def test_bad_extras_are_one_line(tmp_path, args, words):
    proc = bench(str(tmp_path), "--device", "local", "--db", str(tmp_path / "s.db"), *args)
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_an_unknown_sustained_variant_is_refused_before_anything_is_stored(tmp_path):
    db = tmp_path / "s.db"
    proc = bench(str(zoo_dir() / "multi_io.tflite"), "--device", "local", "--db", str(db), "--sustained", "2",
                 "--sustained-variant", "nope")
    assert proc.returncode == 2 and "--sustained-variant 'nope' is not a variant" in proc.stderr, proc.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_two_matrix_runs_compare_cell_by_cell(tmp_path):
    models = [str(zoo_dir() / "multi_io.tflite"), str(zoo_dir() / "int8_input.tflite")]
    db = tmp_path / "s.db"
    for _ in range(2):
        proc = bench(*models, "--fleet", str(quick_fleet(tmp_path)), "--db", str(db), "--threads", "1,2")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    compared = edgeprune("report", "--db", str(db), "--compare", "1", "2", "--out", str(tmp_path / "c"))
    assert compared.returncode == 0, compared.stderr
    lines = compared.stdout.splitlines()
    for cell in ("multi_io#1t", "multi_io#2t", "int8_input#1t", "int8_input#2t"):
        row = next((line for line in lines if line.split()[:1] == [cell]), None)
        assert row is not None, compared.stdout
        assert any(word in row for word in ("no change", "faster", "slower")), row  # judged, against the A/A noise
    assert "@aa" not in compared.stdout  # the twin is the noise floor, not a row


def test_op_profile_names_the_ops_that_fell_back_from_xnnpack_on_both_devices(tmp_path, pi_python):
    model = zoo_dir() / "cumsum_fallback.tflite"  # CONV_2D, MEAN, CUMSUM (XNNPACK has no CUMSUM), FULLY_CONNECTED
    db = tmp_path / "s.db"
    proc = bench(str(model), "--fleet", str(quick_fleet(tmp_path, pi_python)), "--db", str(db), "--op-profile")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with sqlite3.connect(db) as conn:
        stored = dict(conn.execute("SELECT device || ' ' || variant, op_profile_json FROM results").fetchall())
    assert stored["local cumsum_fallback@aa"] is None and stored["pi39 cumsum_fallback@aa"] is None  # the twin
    for device in ("local", "pi39"):
        profile = json.loads(stored[f"{device} cumsum_fallback"])
        assert profile["delegation"]["applied"] and profile["delegation"]["fallback"] == {"CUMSUM": 1}, profile
        assert profile["tool"] is None and "no per-op profiler on this device" in profile["note"]
    report = edgeprune("report", "--db", str(db), "--out", str(tmp_path / "r"), "--format", "md")
    said = " ".join(report.stdout.split())
    assert report.returncode == 0 and said.count("fell back from the delegate: CUMSUM x1") == 2, said
    assert "litert-benchmark has no op profiling" in said
    assert "CUMSUM x1" in (tmp_path / "r" / "report.md").read_text()
