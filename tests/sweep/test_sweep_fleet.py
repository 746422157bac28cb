"""A sweep on a fleet of a remote device (sshd on loopback) and ``local``: the remote one is benched as each run
finishes, while the next one trains; ``local`` only once this machine's training is over (the store's timestamps
show the order)."""
from __future__ import annotations

import pytest

from support.sshlab import write_fleet
from sweep_support import cli, rows

pytestmark = pytest.mark.slow

GRID = ["--final-sparsity", "0.5,0.8", "--quant", "int8", "--train-epochs", "3", "--prune-epochs", "2"]
POINTS = ["s0.5-block-4x1-int8", "s0.8-block-4x1-int8"]


def test_remote_devices_are_benched_as_runs_finish_and_local_after_training(make_device, tmp_path):
    fleet = write_fleet(tmp_path / "fleet.toml", [make_device("remote")], budget_s=5)
    with open(fleet, "a") as handle:
        handle.write('\n[[device]]\nname = "local"\nkind = "local"\npython = ""\nbudget_s = 5\n')
    folder, db = tmp_path / "s", tmp_path / "edgeprune.db"
    proc = cli(tmp_path, "sweep", *GRID, "--out", str(folder), "--db", str(db), "--fleet", str(fleet), "--jobs", "1",
               "-q")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "benching on local now (not during training" in proc.stderr
    optimized = {r["key"]: r["optimized"] for r in rows(db, "SELECT key, optimized FROM sweep_points")}
    benches = rows(db, "SELECT key, device, created FROM sweep_benches")
    assert sorted((b["key"], b["device"]) for b in benches) == sorted(
        (key, device) for key in POINTS for device in ("local", "remote"))
    first, last = sorted(optimized.values())
    remote_first = next(b for b in benches if b["device"] == "remote" and optimized[b["key"]] == first)
    assert remote_first["created"] <= last  # measured while the second run was still training
    assert all(b["created"] >= last for b in benches if b["device"] == "local")
