"""``edgeprune bench`` over real OpenSSH: a mixed fleet, and each fault the issue names, with the store checked
after every fault. Runs the CLI as a subprocess, as a user would.

Since issue 12 a bench sends one measurement plan per device: every variant asked for, plus the baseline and its A/A
twin (``store_rows.plan_cells``), each stored as a row of its own; a fault that costs the plan costs every cell."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict

import pytest

from support.cli import EDGEPRUNE, bench, start_bench
from support.hostile import agent_pids, wait_until, write_mixed_fleet
from support.sshlab import write_fleet
from support.store_rows import TWIN, by_pair, copy_run, plan_cells, rows, variant_names, wait_for_rows

pytestmark = pytest.mark.slow


def test_mixed_fleet_stores_every_pair(digits_run, make_device, pi_python, tmp_path):
    folder, manifest = digits_run
    devices = [make_device(f"x86-{i}") for i in range(3)] + [make_device("pi39", python=str(pi_python))]
    fleet = write_fleet(tmp_path / "fleet.toml", devices)
    db = tmp_path / "store.db"
    proc = bench(str(folder), "--fleet", str(fleet), "--db", str(db), "--jobs", "4")
    # exit 1: two pairs errored (pi39 x the two dynamic-range variants, asserted below); bench exits non-zero
    # unless all are ok
    assert proc.returncode == 1, proc.stderr
    assert "ok, 2 error, 0 failed" in proc.stdout
    stored = by_pair(rows(db))
    names = variant_names(manifest)
    assert len(stored) == len(devices) * (len(names) + 1)  # + the baseline's A/A twin per device
    for device in devices:  # one plan per device; every cell of it points at that plan
        twin = stored[(device.name, TWIN)]
        assert twin["status"] == "ok" and twin["rounds"] >= 5 and twin["plan_id"] is not None
        assert {stored[(device.name, n)]["plan_id"] for n in names} == {twin["plan_id"]}
    host = {v["name"]: v for v in manifest["variants"]}
    for device in devices:
        for name in names:
            row = stored[(device.name, name)]
            doc = json.loads(row["agent_json"])
            if device.name == "pi39":
                assert row["runtime"] == "tflite_runtime" and row["runtime_version"] == "2.14.0"
                assert row["python_version"].startswith("3.9.")
                if name in ("pruned-dynamic", "baseline-dynamic"):
                    # TF 2.21 writes FULLY_CONNECTED v12, which tflite-runtime 2.14 cannot load
                    assert row["status"] == "error" and row["error_kind"] == "model-load"
                    assert "FULLY_CONNECTED" in row["error_message"]
                    continue
            else:
                assert row["runtime"] == "ai_edge_litert"
            assert row["status"] == "ok", (device.name, name, row["error_message"])
            assert doc["model"]["sha256"] == host[name]["sha256"]
            assert abs(row["accuracy"] - host[name]["accuracy"]) <= 0.001
            assert row["agreement"] >= 0.99
            assert 0 < row["p50_us"] <= row["p90_us"] <= row["p99_us"]


def test_unknown_host_key_rejected_then_accepted_with_opt_in(digits_run, make_device, client_keys, tmp_path):
    folder, manifest = digits_run
    device = make_device("newhost", trust=False)
    fleet = write_fleet(tmp_path / "fleet.toml", [device])
    db = tmp_path / "store.db"
    proc = bench(str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", "pruned-int8")
    assert proc.returncode == 1
    assert "not in known_hosts" in proc.stderr
    stored = rows(db)
    assert [r["variant"] for r in stored] == sorted(plan_cells(["pruned-int8"]))  # every cell of the plan
    assert all(r["status"] == "failed" and r["error_kind"] == "host-key" for r in stored)
    assert client_keys.known_hosts.read_text() == ""

    proc = bench(str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", "pruned-int8",
                 "--accept-new-host-keys")
    assert proc.returncode == 0, proc.stderr
    assert device.known_hosts_line() in client_keys.known_hosts.read_text()
    # and now it is known: no opt-in needed
    proc = bench(str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", "pruned-int8")
    assert proc.returncode == 0, proc.stderr


def test_changed_host_key_is_always_refused(digits_run, make_device, tmp_path):
    folder, _ = digits_run
    device = make_device("rekeyed")
    device.stop()
    for suffix in ("", ".pub"):
        Path(str(device.host_key) + suffix).unlink()
    from support.sshlab import keygen

    keygen(device.host_key)
    device.start()
    fleet = write_fleet(tmp_path / "fleet.toml", [device])
    db = tmp_path / "store.db"
    proc = bench(str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", "pruned-int8",
                 "--accept-new-host-keys")
    assert proc.returncode == 1
    assert "HOST KEY CHANGED" in proc.stderr
    stored = rows(db)
    assert [r["variant"] for r in stored] == sorted(plan_cells(["pruned-int8"]))
    assert all(r["status"] == "failed" and r["error_kind"] == "host-key" for r in stored)
    assert not device.workdir.exists()  # nothing was uploaded


def test_sshd_killed_mid_run_then_resume_completes(digits_run, make_device, tmp_path):
    """sshd killed while the victim's plan is measured: every cell of that plan is ``failed`` with the one reason
    (the plan fails as a whole), the other devices' plans are stored ok; ``--resume`` measures the victim again as a
    whole and leaves the others' results alone."""
    folder, manifest = digits_run
    cells = plan_cells(variant_names(manifest))
    steady = [make_device(f"steady-{i}") for i in range(2)]
    victim = make_device("victim")
    # each visit lasts >= 0.2 s and the rounds 5 s (budget_s): the victim's plan is still measuring when it is struck
    fleet = write_fleet(tmp_path / "fleet.toml", steady + [victim], min_seconds=0.2, budget_s=5)
    db = tmp_path / "store.db"
    proc = start_bench(folder, fleet, db)
    wait_until(lambda: bool(agent_pids(victim.workdir)), 120, "the victim's agent to measure", proc)
    time.sleep(1.0)
    victim.stop()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err
    stored = rows(db)
    run_id = stored[0]["run_id"]
    others = [r for r in stored if r["device"] != "victim"]
    assert sorted((r["device"], r["variant"]) for r in others) == sorted(
        (d.name, c) for d in steady for c in cells)
    assert all(r["status"] == "ok" for r in others), [(r["device"], r["variant"], r["error_message"]) for r in others]
    victim_rows = [r for r in stored if r["device"] == "victim"]
    assert sorted(r["variant"] for r in victim_rows) == sorted(cells)
    assert all(r["status"] == "failed" for r in victim_rows), [r["error_message"] for r in victim_rows]
    assert len({(r["error_kind"], r["error_message"]) for r in victim_rows}) == 1  # one plan, one reason

    victim.start()
    proc = bench("--resume", str(run_id), "--fleet", str(fleet), "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    final = by_pair(rows(db, run_id))
    assert sorted(final) == sorted((d.name, c) for d in steady + [victim] for c in cells)  # every pair exactly once
    assert all(r["status"] == "ok" for r in final.values())
    for before in others:  # the steady devices were not measured again
        after = final[(before["device"], before["variant"])]
        assert (after["p50_us"], after["plan_id"], after["attempts"]) == (before["p50_us"], before["plan_id"], 1)
    [plan_id] = {final[("victim", c)]["plan_id"] for c in cells}  # the victim's cells: one new plan
    assert plan_id is not None and plan_id not in {r["plan_id"] for r in others}


def test_corrupted_upload_is_detected(digits_run, make_device, tmp_path):
    folder, manifest = digits_run
    corrupt = copy_run(folder, tmp_path / "corrupt-run")
    target = corrupt / "pruned-int8.tflite"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the bytes on the way no longer match the manifest's sha256
    target.write_bytes(bytes(data))
    device = make_device("receiver")
    fleet = write_fleet(tmp_path / "fleet.toml", [device])
    db = tmp_path / "store.db"
    proc = bench(str(corrupt), "--fleet", str(fleet), "--db", str(db))
    assert proc.returncode == 1
    stored = {r["variant"]: r for r in rows(db)}
    assert sorted(stored) == sorted(plan_cells(variant_names(manifest)))
    # the local file is checked once, before any upload: that variant fails with the real reason, the rest run
    bad = stored["pruned-int8"]
    assert bad["status"] == "failed" and bad["error_kind"] == "local-file"
    assert "no longer matches the manifest" in bad["error_message"]
    assert "re-run `edgeprune optimize`" in bad["error_message"]
    assert all(r["status"] == "ok" for name, r in stored.items() if name != "pruned-int8")
    blobs = device.workdir / "blobs"
    sha = next(v["sha256"] for v in manifest["variants"] if v["name"] == "pruned-int8")
    assert not any(p.name.startswith(sha) for p in blobs.iterdir())


def test_agent_printing_garbage_is_recorded_invalid(digits_run, make_device, tmp_path):
    folder, _ = digits_run
    fake = tmp_path / "fake-python"
    fake.write_text(f"#!/bin/sh\nif [ \"$1\" = \"-m\" ]; then echo 'Segmentation fault (core dumped) {{'; exit 139; fi\n"
                    f"exec {sys.executable} \"$@\"\n")
    fake.chmod(0o755)
    device = make_device("garbage", python=str(fake))
    fleet = write_fleet(tmp_path / "fleet.toml", [device])
    db = tmp_path / "store.db"
    proc = bench(str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", "pruned-int8,pruned-float32")
    assert proc.returncode == 1
    stored = rows(db)
    assert [r["variant"] for r in stored] == sorted(plan_cells(["pruned-float32", "pruned-int8"]))
    for row in stored:
        assert row["status"] == "invalid" and row["error_kind"] == "invalid-output"
        assert "not JSON" in row["error_message"]
        assert row["p50_us"] is None


def test_device_without_runtime_is_a_recorded_error(digits_run, make_device, tmp_path):
    folder, _ = digits_run
    bare = Path("/root/.pyenv/versions/3.9.18/bin/python")
    if not bare.exists():
        pytest.fail("Python 3.9 is expected on these machines")
    device = make_device("bare", python=str(bare))
    fleet = write_fleet(tmp_path / "fleet.toml", [device])
    db = tmp_path / "store.db"
    proc = bench(str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", "pruned-int8")
    assert proc.returncode == 1  # recorded as a result with its reason; bench exits 1 unless every pair is ok
    stored = rows(db)
    assert [r["variant"] for r in stored] == sorted(plan_cells(["pruned-int8"]))
    for row in stored:  # no cell could be loaded: the plan failed, each cell says why
        assert row["status"] == "error"
        assert row["error_kind"] in ("runtime-missing",)
        assert json.loads(row["agent_json"])["status"] == "error"


def test_connection_timeout_is_recorded(digits_run, make_device, tmp_path):
    folder, _ = digits_run
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts TCP (backlog) but never speaks SSH
    try:
        device = make_device("silent", start=False, trust=False)
        device.port = silent.getsockname()[1]
        fleet = write_fleet(tmp_path / "fleet.toml", [device], connect_timeout=2)
        db = tmp_path / "store.db"
        started = time.monotonic()
        proc = bench(str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", "pruned-int8")
        assert time.monotonic() - started < 60
    finally:
        silent.close()
    assert proc.returncode == 1
    stored = rows(db)
    assert [r["variant"] for r in stored] == sorted(plan_cells(["pruned-int8"]))
    for row in stored:
        assert row["status"] == "failed"
        assert "timed out" in row["error_message"] or "banner" in row["error_message"].lower()


def test_cached_files_are_not_sent_again(digits_run, make_device, tmp_path):
    """The run's files are sent once; each bench sends only its own small plan (a new seed each time), and removes
    it once measured."""
    folder, _ = digits_run
    device = make_device("cache")
    fleet = write_fleet(tmp_path / "fleet.toml", [device])
    db = tmp_path / "store.db"

    def blobs(plans: bool) -> Dict[str, int]:
        return {p.name: p.stat().st_mtime_ns for p in (device.workdir / "blobs").iterdir()
                if p.name.endswith(".plan.json") == plans}

    assert bench(str(folder), "--fleet", str(fleet), "--db", str(db)).returncode == 0
    stamps = blobs(False)
    assert blobs(True) == {}  # the plan was sent, used once and removed
    time.sleep(0.05)
    assert bench(str(folder), "--fleet", str(fleet), "--db", str(db)).returncode == 0
    assert blobs(False) == stamps
    assert blobs(True) == {}


def test_hostile_names_are_quoted(digits_run, make_device, tmp_path):
    """A work dir full of shell metacharacters reaches the device as one argument, never as shell code."""
    folder, _ = digits_run
    device = make_device("quoting")
    canary = tmp_path / "PWNED"
    hostile = tmp_path / f"work dir; touch {canary} $(touch {canary}) `touch {canary}` 'q\" & x"
    fleet = write_fleet(tmp_path / "fleet.toml", [device], workdir=str(hostile))
    hostile_run = copy_run(folder, tmp_path / "run folder; $(touch PWNED) 'x\"")
    db = tmp_path / "store.db"
    proc = bench(str(hostile_run), "--fleet", str(fleet), "--db", str(db), "--variants", "pruned-int8")
    assert proc.returncode == 0, proc.stderr
    assert not canary.exists()
    assert not (Path.home() / "PWNED").exists()
    assert (hostile / "blobs").is_dir()
    stored = rows(db)
    assert [r["variant"] for r in stored] == sorted(plan_cells(["pruned-int8"]))
    assert all(r["status"] == "ok" for r in stored)


def test_ssh_config_alias_is_resolved(digits_run, make_device, client_keys, tmp_path):
    folder, _ = digits_run
    device = make_device("aliased")
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host my-pi\n  HostName 127.0.0.1\n  Port {device.port}\n  User root\n"
                          f"  IdentityFile {client_keys.key}\n")
    profile = tmp_path / "my-pi.toml"
    profile.write_text(
        f'name = "my-pi"\nhost = "my-pi"\nssh_config = "{ssh_config}"\nknown_hosts = "{client_keys.known_hosts}"\n'
        f'use_agent = false\nworkdir = "{device.workdir}"\npython = "{sys.executable}"\nruns = 5\nwarmup = 1\n'
    )
    db = tmp_path / "store.db"
    proc = bench(str(folder), "--device", str(profile), "--db", str(db), "--variants", "pruned-int8")
    assert proc.returncode == 0, proc.stderr
    stored = rows(db)
    assert [r["variant"] for r in stored] == sorted(plan_cells(["pruned-int8"]))
    assert all(r["device"] == "my-pi" and r["status"] == "ok" for r in stored)


def test_devices_check_reports_runtimes(make_device, pi_python, tmp_path):
    devices = [make_device("host-py"), make_device("pi-py", python=str(pi_python))]
    fleet = write_fleet(tmp_path / "fleet.toml", devices)
    proc = subprocess.run([*EDGEPRUNE, "devices", "check", "--fleet", str(fleet), "--json"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    reports = {r["device"]: r for r in json.loads(proc.stdout)}
    def available(name: str) -> Dict[str, str]:
        return {r["module"]: r["version"] for r in reports[name]["probe"]["runtimes"] if r["available"]}
    assert available("pi-py") == {"tflite_runtime": "2.14.0"}
    assert available("host-py")["ai_edge_litert"] == "2.3.0"
    assert reports["pi-py"]["probe"]["device"]["python"]["version"].startswith("3.9.")


def test_devices_setup_installs_a_runtime_that_fits(make_device, tmp_path):
    """A bare Python 3.9 device gets a venv with tflite-runtime 2.14 (ai-edge-litert has no 3.9 wheels)."""
    bare = "/root/.pyenv/versions/3.9.18/bin/python"
    device = make_device("bare39", python=bare)
    profile = tmp_path / "bare39.toml"
    profile.write_text(device.profile_toml(command_timeout=900))
    proc = subprocess.run([*EDGEPRUNE, "devices", "setup", str(profile)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "tflite-runtime==2.14.0" in proc.stdout
    venv_python = device.workdir / "venv" / "bin" / "python"
    assert venv_python.exists()
    profile.write_text(device.profile_toml(python=str(venv_python)))
    proc = subprocess.run([*EDGEPRUNE, "devices", "check", str(profile), "--json"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    [report] = json.loads(proc.stdout)
    assert {r["module"] for r in report["probe"]["runtimes"] if r["available"]} == {"tflite_runtime"}


def test_ctrl_c_keeps_measured_results_and_resume_finishes(digits_run, make_device, tmp_path):
    """Ctrl-C once one device's plan is stored and the other's is still measuring: exit 130, the finished plan's
    cells kept, the interrupted one's ``failed / interrupted``; ``--resume`` measures only the interrupted device."""
    import signal

    folder, manifest = digits_run
    cells = plan_cells(variant_names(manifest))
    quick, slow = make_device("quick"), make_device("slow")
    # slow: visits of >= 0.3 s for 10 s of rounds, so it is measuring when quick's plan is stored
    fleet = write_mixed_fleet(tmp_path / "fleet.toml", [(quick, {}), (slow, {"min_seconds": 0.3, "budget_s": 10})])
    db = tmp_path / "store.db"
    proc = start_bench(folder, fleet, db)
    wait_for_rows(db, proc, lambda stored: sum(r["device"] == "quick" for r in stored) == len(cells))
    assert agent_pids(slow.workdir), "slow's plan ended before quick's was stored"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    stored = rows(db)
    kept = [r for r in stored if r["device"] == "quick"]
    assert all(r["status"] == "ok" for r in kept), [r["error_message"] for r in kept]
    stopped = [r for r in stored if r["device"] == "slow"]
    assert sorted(r["variant"] for r in stopped) == sorted(cells)
    assert all((r["status"], r["error_kind"]) == ("failed", "interrupted") for r in stopped)
    run_id = stored[0]["run_id"]
    proc = bench("--resume", str(run_id), "--fleet", str(fleet), "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    final = by_pair(rows(db, run_id))
    assert sorted(final) == sorted((d, c) for d in ("quick", "slow") for c in cells)
    assert all(r["status"] == "ok" for r in final.values())
    for before in kept:  # the finished plan was not measured again
        after = final[(before["device"], before["variant"])]
        assert (after["p50_us"], after["plan_id"], after["attempts"]) == (before["p50_us"], before["plan_id"], 1)


def test_copy_damaged_on_the_device_is_caught(digits_run, make_device, tmp_path):
    """The cache check is a stat; a blob damaged later on the device's disk is caught by the sha256 the agent
    reports for the model it measured."""
    folder, manifest = digits_run
    device = make_device("bitrot")
    fleet = write_fleet(tmp_path / "fleet.toml", [device])
    db = tmp_path / "store.db"
    assert bench(str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", "pruned-float32").returncode == 0
    sha = next(v["sha256"] for v in manifest["variants"] if v["name"] == "pruned-float32")
    blob = device.workdir / "blobs" / f"{sha}.tflite"
    data = bytearray(blob.read_bytes())
    data[-100] ^= 0x01  # same size, different content
    blob.write_bytes(bytes(data))
    proc = bench(str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", "pruned-float32")
    assert proc.returncode == 1
    latest = max(r["run_id"] for r in rows(db))
    stored = by_pair(rows(db, latest))
    row = stored[("bitrot", "pruned-float32")]
    assert row["status"] == "invalid" and row["error_kind"] == "sha256-mismatch"
    # the damage costs that cell only: the plan's other cells were measured
    assert sorted(stored) == sorted(("bitrot", c) for c in plan_cells(["pruned-float32"]))
    assert all(r["status"] == "ok" for (_, c), r in stored.items() if c != "pruned-float32")
