"""Bad sweep inputs: one ``Error:`` line, exit 2, before anything is trained (no sweep folder, no store, no
TensorFlow: each answer comes in well under the time TensorFlow alone takes to import)."""
from __future__ import annotations

import time

import pytest

from sweep_support import SWEEP, cli


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


CLOSED_PORT = _closed_port()


@pytest.mark.parametrize("args, said", [
    (["--final-sparsity", "1.5"], "--final-sparsity values must be in (0, 1), got 1.5"),
    (["--final-sparsity", "0.5,x"], "--final-sparsity takes numbers such as 0.5,0.8, got 'x'"),
    (["--structure", "block,diagonal"], "unknown pruning structure 'diagonal'"),
    (["--quant", "int4"], "unknown --quant 'int4'; choose from float32, "),
    (["--block-size", "4"], "block size must look like 4x1, got '4'"),
    (["--final-sparsity", "0.3", "--initial-sparsity", "0.5"], "initial sparsity 0.5 is above final sparsity 0.3"),
    (["--max-accuracy-drop", "-1"], "--max-accuracy-drop is in accuracy points, 0 to 100, got -1.0"),
    (["--device", "no-such-device"], "no-such-device"),
    (["--device", "local", "--fleet", "f.toml"], "give --device or --fleet, not both"),
    (["--ray", f"127.0.0.1:{CLOSED_PORT}"], f"cannot connect to the Ray cluster at 127.0.0.1:{CLOSED_PORT}: "),
])
def test_a_bad_value_is_one_line_and_nothing_is_trained(tmp_path, args, said):
    started = time.monotonic()
    proc = cli(tmp_path, "sweep", *SWEEP, *args, "--out", str(tmp_path / "s"), "--db", str(tmp_path / "e.db"))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: ") and said in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "s").exists() and not (tmp_path / "e.db").exists()
    assert time.monotonic() - started < 20


def test_resume_needs_a_sweep_and_takes_its_settings_from_it(tmp_path):
    proc = cli(tmp_path, "sweep", "--resume", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and proc.stderr.startswith("Error: no sweep in ")
    assert len(proc.stderr.strip().splitlines()) == 1
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "sweep.json").write_text('{"sweep_version": 99}')
    proc = cli(tmp_path, "sweep", "--resume", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and "sweep_version 99 is not one this edgeprune reads (1)" in proc.stderr


@pytest.mark.slow
def test_another_grid_in_a_sweep_folder_is_refused(local_sweep, tmp_path):
    folder, db, _ = local_sweep
    proc = cli(tmp_path, "sweep", *SWEEP[:1], "0.6", *SWEEP[2:], "--out", str(folder), "--db", str(db))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f"Error: {folder} holds another sweep: its grid is final_sparsity 0.5,0.8; structure block; block_size "
        f"4x1; quant float32,int8, not final_sparsity 0.6; structure block; block_size 4x1; quant float32,int8; "
        f"choose another --out, or finish that one with `edgeprune sweep --resume {folder}`")
    proc = cli(tmp_path, "sweep", "--resume", str(folder), "--train-epochs", "5")
    assert proc.returncode == 2 and "leave out --train-epochs" in proc.stderr
