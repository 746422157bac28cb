"""Issue 10: ``bench --resume`` checks what it resumes. A run folder whose models changed since the run, or another
run's folder, is refused with one ``Error:`` line and the store untouched; ``--resume N`` alone resumes run N on its
own devices, in its own folder, with its own variant selection; a run id must be a real one.

Split from test_device_faults.py (same devices and CLI runner: real sshd on 127.0.0.1, ``edgeprune bench`` run as a
subprocess from the test's tmp folder, see support.cli.run_cli).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

from support.cli import DigitsRun, run_cli
from support.hostile import SECOND, TWO
from support.sshlab import SshdDevice
from support.store_rows import copy_run, outcome, plan_cells, rows

pytestmark = pytest.mark.slow
MakeDevice = Callable[..., SshdDevice]
#: What a bench of TWO stores per device (issue 12): the baseline and its A/A twin are in every plan.
CELLS = plan_cells(TWO.split(","))


def error_lines(stderr: str) -> List[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def result_rows(db: Path) -> List[Dict]:
    """Every stored result as a plain dict, to compare the store before and after a refused command."""
    return [dict(r) for r in rows(db)] if db.exists() else []


def run_count(db: Path) -> int:
    with sqlite3.connect(str(db)) as conn:
        return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def change_variant(folder: Path, variant: str) -> None:
    """What a re-optimize into the same folder does to one variant: new bytes, and a manifest that describes them
    (still a valid manifest, so only the check against the stored run can tell)."""
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = next(v for v in manifest["variants"] if v["name"] == variant)
    model = folder / entry["file"]
    data = bytearray(model.read_bytes())
    data[-100] ^= 0x01
    model.write_bytes(bytes(data))
    entry["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    entry["size_bytes"] = len(data)
    manifest_path.write_text(json.dumps(manifest, indent=2))


def failed_run(folder: Path, device: SshdDevice, tmp_path: Path) -> Tuple[Path, Path]:
    """Bench ``folder`` on ``device`` while it is down: run 1 with every cell ``failed``. Returns (profile, db)."""
    profile = tmp_path / f"{device.name}.toml"
    profile.write_text(device.profile_toml(runs=5, warmup=1, connect_timeout=3))
    db = tmp_path / "store.db"
    proc = run_cli(tmp_path, "bench", str(folder), "--device", str(profile), "--db", str(db), "--variants", TWO,
                   "-q")
    assert proc.returncode == 1, proc.stderr
    assert [(r["variant"], r["status"]) for r in rows(db)] == [(c, "failed") for c in sorted(CELLS)], [
        outcome(r) for r in rows(db)]
    return profile, db


def assert_refused_resume(proc: subprocess.CompletedProcess, variant: str) -> None:
    """Exit 2 and one ``Error:`` line that says run 1's models are no longer in the folder, naming the variant."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [line] = error_lines(proc.stderr)
    assert line.startswith("Error:") and "run 1" in line and "no longer" in line and variant in line, line


def test_resume_refuses_a_folder_whose_models_changed(digits_run: DigitsRun, make_device: MakeDevice,
                                                      tmp_path: Path) -> None:
    """A variant re-optimized in the run folder since run 1: resuming would mix two models in one run."""
    folder = copy_run(digits_run.folder, tmp_path / "run")
    device = make_device("down", start=False)
    profile, db = failed_run(folder, device, tmp_path)
    change_variant(folder, SECOND)
    device.start()  # a resume that went ahead would now store new results
    before = result_rows(db)
    proc = run_cli(tmp_path, "bench", "--resume", "1", "--device", str(profile), "--db", str(db), "--variants",
                   TWO, "-q")
    assert_refused_resume(proc, SECOND)
    assert result_rows(db) == before and run_count(db) == 1


def test_resume_without_devices_uses_the_runs_own(digits_run: DigitsRun, make_device: MakeDevice,
                                                  tmp_path: Path) -> None:
    """``bench --resume N`` alone resumes on the devices run N was measured on (from their stored profiles), not on
    ``local``, and in the run's own folder."""
    folder = copy_run(digits_run.folder, tmp_path / "run")
    device = make_device("came-back", start=False)
    _, db = failed_run(folder, device, tmp_path)
    device.start()
    proc = run_cli(tmp_path, "bench", "--resume", "1", "--db", str(db), "--variants", TWO, "-q")
    final = rows(db, 1)
    assert {(r["device"], r["variant"]): outcome(r) for r in final} == {
        ("came-back", cell): "ok / None: None" for cell in CELLS}
    assert proc.returncode == 0, proc.stderr
    assert run_count(db) == 1


@pytest.mark.parametrize("run_id", ["0", "-1"])
def test_resume_needs_a_real_run_id(digits_run: DigitsRun, tmp_path: Path, run_id: str) -> None:
    """``--resume 0`` is a usage error that says what --resume takes, not a misleading "no run 0"."""
    db = tmp_path / "store.db"
    proc = run_cli(tmp_path, "bench", str(digits_run.folder), "--resume", run_id, "--db", str(db), "-q")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--resume" in proc.stderr and f"no run {run_id}" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not db.exists()  # refused before anything was stored


def test_resume_uses_and_checks_the_run_folder_given(digits_run: DigitsRun, make_device: MakeDevice,
                                                     tmp_path: Path) -> None:
    """A run folder named with --resume replaces the stored one: another run's folder is refused, the same files
    at another path are used (the stored folder is gone, so nothing else could be)."""
    original = copy_run(digits_run.folder, tmp_path / "run")
    device = make_device("moved", start=False)
    _, db = failed_run(original, device, tmp_path)
    other = copy_run(original, tmp_path / "other-run")
    change_variant(other, SECOND)
    moved = copy_run(original, tmp_path / "moved-run")
    shutil.rmtree(original)
    device.start()
    before = result_rows(db)
    proc = run_cli(tmp_path, "bench", str(other), "--resume", "1", "--db", str(db), "--variants", TWO, "-q")
    assert_refused_resume(proc, SECOND)
    assert result_rows(db) == before

    proc = run_cli(tmp_path, "bench", str(moved), "--resume", "1", "--db", str(db), "--variants", TWO, "-q")
    assert [(r["variant"], outcome(r)) for r in rows(db, 1)] == [(c, "ok / None: None") for c in sorted(CELLS)]
    assert {r["device"] for r in rows(db, 1)} == {"moved"}
    assert proc.returncode == 0, proc.stderr


#: Found while writing these tests; see the test's docstring.


def test_resume_keeps_the_runs_variant_selection(digits_run: DigitsRun, tmp_path: Path) -> None:
    """A run benched with ``--variants`` and resumed the way the Ctrl-C message says (``--resume N``) finishes that
    run's pairs; it must not add the variants the user left out, nor change what the run was (its cells: the one
    variant, with the baseline and its A/A twin every plan measures)."""
    db = tmp_path / "store.db"
    first = run_cli(tmp_path, "bench", str(digits_run.folder), "--device", "local", "--db", str(db), "--variants",
                    SECOND, "-q")
    assert first.returncode == 0, first.stderr
    proc = run_cli(tmp_path, "bench", "--resume", "1", "--db", str(db), "-q")
    assert proc.returncode == 0, proc.stderr
    assert [(r["device"], r["variant"]) for r in rows(db, 1)] == [("local", c) for c in sorted(plan_cells([SECOND]))]
    assert "run 1: 3 ok, 0 error, 0 failed" in proc.stdout
