"""The shipped profiles over SSH, used the way the docs tell a user to use them (issue 10).

Every other SSH test logs in as root with an absolute workdir; a user copies profiles/raspberry-pi-4.toml, changes
host, port, user, key and known_hosts, and keeps ``workdir = ".edgeprune"`` (relative to the login's home) and
``python = "python3"`` (found on the login shell's PATH). With those, every pair once ended as ``model file not found``
while ``bench`` exited 0 and ``devices check`` said ok. These tests run the shipped files on login devices
(tests/support/login_device.py: a per-device user with its own home and ``.bashrc``), and the fleet example as
shipped with only its addresses changed, from a client home holding the key, known_hosts and ssh config the files
name.
All traffic stays on 127.0.0.1.

Since issue 12 a bench measures each device's cells (the variants asked for, the baseline and its A/A twin) in rounds
until every p50 settles or the profile's ``budget_s`` is spent. On this loaded 2-core machine the cells rarely settle,
so the shipped 300 s budget would be each bench's length: the bench tests shorten the rounds (``SHORT``, the one
change besides a user's, see sshlab.LENGTH_CHANGES); how long a bench measures is tested in tests/agent. Every other
line (threads, runs, min_seconds, workdir, python, timeouts) stays as shipped.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from support.cli import EDGEPRUNE
from support.login_device import ClientHome, LoginDevice
from support.sshlab import copy_fleet_example, copy_profile, tomllib
from support.store_rows import by_pair, outcome, plan_cells, rows, variant_names

pytestmark = pytest.mark.slow
HOST_PYTHON = sys.executable
#: A float and an int8 variant, where the point of a test is the way to the device rather than the variant list.
TWO_VARIANTS = "pruned-float32,pruned-int8"
#: The profile's own name: a copied file keeps its ``name`` line, so the store knows the device by it.
PI4 = "raspberry-pi-4"
#: The rounds' budget of a bench test (the shipped profiles: 300-600 s): with the Pi 4's visits of at least 2 s
#: (min_seconds), one round of every cell and part of a second.
SHORT = {"budget_s": 20}
#: One round of every cell (the budget is checked before each visit after the first round).
ONE_ROUND = {"budget_s": 1}


def edgeprune(client_home: ClientHome, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """The CLI as a user on the client runs it: their HOME (``~/.ssh/...``), no ssh-agent."""
    return subprocess.run([*EDGEPRUNE, *args], capture_output=True, text=True, timeout=timeout,
                          env=client_home.env())


def stored_pairs(db: Path, proc: subprocess.CompletedProcess) -> Dict:
    assert db.exists(), f"bench stored nothing (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return by_pair(rows(db))


def shipped_copy(device: LoginDevice, tmp_path: Path, name: str = PI4, length: Optional[Dict] = None) -> Path:
    """A copy of ``profiles/<name>.toml`` with only what docs/devices.md tells a user to change (and the rounds
    shortened to ``length``, e.g. ``SHORT``)."""
    return copy_profile(name, tmp_path / f"my-{device.name}.toml", length=length, **device.profile_changes())


def assert_blobs_in_home(device: LoginDevice, manifest: Dict, names: List[str]) -> None:
    """The relative workdir landed in the login's home (``~/.edgeprune/blobs``), and no folder named ``~``."""
    blobs = device.home / ".edgeprune" / "blobs"
    by_name = {v["name"]: v for v in manifest["variants"]}
    for name in names:
        assert (blobs / f"{by_name[name]['sha256']}.tflite").is_file(), (name, sorted(device.home.rglob("*")))
    assert (blobs / f"{manifest['dataset']['eval_sha256']}.npz").is_file()
    assert not list(device.home.rglob("~")), "a folder named '~' was created on the device"


def assert_nothing_left_running(*devices: LoginDevice) -> None:
    for device in devices:
        assert device.wait_for_no_processes() == [], f"processes left on {device.name}"


def test_copied_pi4_profile_benches_every_variant(digits_run, make_login_device, client_home, tmp_path):
    folder, manifest = digits_run
    device = make_login_device("pi4-copy")
    profile = shipped_copy(device, tmp_path, length=SHORT)
    db = tmp_path / "store.db"
    proc = edgeprune(client_home, "bench", str(folder), "--device", str(profile), "--db", str(db), "-q")
    stored = stored_pairs(db, proc)
    names = variant_names(manifest)
    cells = plan_cells(names)
    assert {cell: outcome(stored[(PI4, cell)]) for cell in cells} == {cell: "ok / None: None" for cell in cells}
    assert len(stored) == len(cells)
    assert proc.returncode == 0, proc.stderr
    host = {v["name"]: v for v in manifest["variants"]}
    for cell in cells:
        row = stored[(PI4, cell)]
        assert row["runtime"] == "ai_edge_litert" and row["threads"] == 4  # the shipped profile's threads
        assert abs(row["accuracy"] - host[cell.split("@")[0]]["accuracy"]) <= 0.001
        assert row["rounds"] >= 1 and row["runs"] >= 200 * row["rounds"]  # the shipped runs, each visit
    assert_blobs_in_home(device, manifest, names)
    assert not (client_home.root / ".edgeprune").exists(), "the workdir was made on the client, not the device"
    assert_nothing_left_running(device)


def test_copied_pi4_profile_on_python39_tflite_runtime(digits_run, make_login_device, client_home, pi_python,
                                                       tmp_path):
    """Bullseye-like: python3 is 3.9 with tflite-runtime 2.14, which cannot load FULLY_CONNECTED v12.

    Two variants asked for, no float one: with the profile's ``threads = 4``, tflite-runtime 2.14's float kernels
    take ~32 ms an invoke on a loaded 2-core machine (0.2 ms with one thread): ~7 s a visit and ~15 s for the
    accuracy pass over the eval set. The plan adds the float baseline and its A/A twin all the same (every ratio
    needs them), so this bench measures one round only (``ONE_ROUND``): about 45 s.
    Every variant on this runtime is covered with ``threads = 1`` by test_fleet.py's mixed fleet; the point here is
    the shipped profile's way there.
    """
    folder, manifest = digits_run
    device = make_login_device("pi39-copy", python=str(pi_python))
    profile = shipped_copy(device, tmp_path, length=ONE_ROUND)
    db = tmp_path / "store.db"
    proc = edgeprune(client_home, "bench", str(folder), "--device", str(profile), "--db", str(db), "-q",
                     "--variants", "pruned-dynamic,pruned-int8")
    stored = stored_pairs(db, proc)
    dynamic = stored[(PI4, "pruned-dynamic")]
    assert (dynamic["status"], dynamic["error_kind"]) == ("error", "model-load"), outcome(dynamic)
    assert "FULLY_CONNECTED" in dynamic["error_message"]
    measured = plan_cells(["pruned-int8"])
    assert sorted(c for _, c in stored) == sorted(measured + ["pruned-dynamic"])
    for name in measured:
        row = stored[(PI4, name)]
        assert row["status"] == "ok", outcome(row)
        assert (row["runtime"], row["runtime_version"]) == ("tflite_runtime", "2.14.0")
        assert row["python_version"].startswith("3.9.")
        assert row["rounds"] == 1
    assert proc.returncode == 1, f"a pair that is not ok must make bench exit 1: {proc.stderr}"
    assert_blobs_in_home(device, manifest, ["baseline-float32", "pruned-int8"])
    assert_nothing_left_running(device)


def test_devices_check_runs_a_real_model(make_login_device, client_home, tmp_path):
    device = make_login_device("check-copy")
    profile = shipped_copy(device, tmp_path)
    proc = edgeprune(client_home, "devices", "check", str(profile), "--json", timeout=300)
    [report] = json.loads(proc.stdout)
    assert report["status"] == "ok", report
    check = report.get("check")
    assert check is not None, "devices check ran only the probe: no 'check' document of a tiny model run"
    assert check["status"] == "ok", check.get("error")  # the one cell of the check's plan, as a bench's cells
    assert check["timing"]["pooled"]["p50_us"] > 0 and check["p50_interval"]["p50_us"] > 0
    assert check["timing"]["visits"] == 1 and check["accuracy"]["num_samples"] > 0
    assert len(check["model"]["sha256"]) == 64
    assert proc.returncode == 0, proc.stderr
    assert not list(device.home.rglob("~"))
    assert_nothing_left_running(device)


def broken_runtime_python(folder: Path) -> Path:
    """The host's Python with numpy, whose TFLite runtimes all fail to import (a broken wheel on a Pi)."""
    shadow = folder / "shadow"
    for module in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
        (shadow / module).mkdir(parents=True)
        (shadow / module / "__init__.py").write_text(
            f"raise ImportError('lib{module}.so: cannot open shared object file (a broken wheel)')\n")
    script = folder / "python"
    script.write_text(f'#!/bin/sh\nPYTHONPATH={shadow} exec {HOST_PYTHON} "$@"\n')
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("kind, needle", [("no-numpy", "numpy"), ("broken-runtime", "runtime")])
def test_devices_check_fails_without_a_runtime(kind, needle, make_login_device, client_home, tmp_path):
    """A device whose python3 cannot run a model is not ok, whatever its probe says."""
    python = "/usr/bin/python3" if kind == "no-numpy" else str(broken_runtime_python(tmp_path))
    device = make_login_device(kind, python=python)
    profile = shipped_copy(device, tmp_path)
    proc = edgeprune(client_home, "devices", "check", str(profile), "--json", timeout=300)
    [report] = json.loads(proc.stdout)
    assert report["status"] != "ok", report
    assert needle in (report.get("reason") or "").lower(), report
    assert proc.returncode == 1, proc.stderr


def test_fleet_example_as_shipped(digits_run, make_login_device, client_home, pi_python, tmp_path):
    """profiles/fleet.example.toml with only its addresses changed: its defaults' key, ~/.ssh/config alias,
    ``~/`` python (a venv made by ``devices setup``) and a Coral without its Edge TPU."""
    folder, manifest = digits_run
    kitchen = make_login_device("pi4-kitchen")
    garage = make_login_device("pi4-garage")
    desk = make_login_device("pi5-desk")
    coral = make_login_device("coral-1", python=str(pi_python))  # Mendel's Python 3.9 + tflite-runtime, no TPU
    venv_python = garage.home / ".edgeprune" / "venv" / "bin" / "python"  # what `devices setup` leaves
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(f'#!/bin/sh\nexec {HOST_PYTHON} "$@"\n')
    venv_python.chmod(0o755)
    client_home.add_alias("pi5-desk", desk)
    fleet = copy_fleet_example(tmp_path / "fleet.toml", {
        "pi4-kitchen": ("127.0.0.1", kitchen.port, kitchen.user),
        "pi4-garage": ("127.0.0.1", garage.port, garage.user),
        "pi5-desk": ("pi5-desk", None, desk.user),  # HostName and Port come from ~/.ssh/config
        "coral-1": ("127.0.0.1", coral.port, coral.user),
    }, length=SHORT)
    # nothing may leave 127.0.0.1: no example address survives, and the alias points at loopback
    text = fleet.read_text()
    assert "192.0.2." not in text
    parsed = tomllib.loads(text)
    assert "host" not in parsed["defaults"] and parsed["defaults"]["budget_s"] == SHORT["budget_s"]
    assert {d["name"]: d["host"] for d in parsed["device"]} == {
        "pi4-kitchen": "127.0.0.1", "pi4-garage": "127.0.0.1", "pi5-desk": "pi5-desk", "coral-1": "127.0.0.1"}
    import paramiko

    assert paramiko.SSHConfig.from_path(str(client_home.ssh_config)).lookup("pi5-desk")["hostname"] == "127.0.0.1"

    db = tmp_path / "store.db"
    proc = edgeprune(client_home, "bench", str(folder), "--fleet", str(fleet), "--db", str(db), "--jobs", "4",
                     "--variants", TWO_VARIANTS, "-q")
    stored = stored_pairs(db, proc)
    names = TWO_VARIANTS.split(",")
    cells = plan_cells(names)
    pis = ("pi4-kitchen", "pi4-garage", "pi5-desk")
    assert {(d, c): outcome(stored[(d, c)]) for d in pis for c in cells} == {
        (d, c): "ok / None: None" for d in pis for c in cells}
    for name in cells:
        row = stored[("coral-1", name)]
        assert (row["status"], row["error_kind"]) == ("error", "delegate"), outcome(row)
        assert "libedgetpu" in row["error_message"]
    assert proc.returncode == 1, f"coral-1's pairs are errors: bench must exit 1: {proc.stderr}"
    for device in (kitchen, garage, desk):
        assert_blobs_in_home(device, manifest, names)
    assert_nothing_left_running(kitchen, garage, desk, coral)


def test_login_banner_does_not_break_the_agent(digits_run, make_login_device, client_home, tmp_path):
    """A .bashrc that prints (conda, pyenv, MOTD-like scripts) must not corrupt what the agent sends back."""
    folder, manifest = digits_run
    device = make_login_device("banner", banner="Welcome to Raspberry Pi OS! (base) conda environment activated")
    profile = shipped_copy(device, tmp_path, length=SHORT)
    db = tmp_path / "store.db"
    proc = edgeprune(client_home, "bench", str(folder), "--device", str(profile), "--db", str(db), "-q",
                     "--variants", TWO_VARIANTS)
    stored = stored_pairs(db, proc)
    names = TWO_VARIANTS.split(",")
    cells = plan_cells(names)
    assert {cell: outcome(stored[(PI4, cell)]) for cell in cells} == {cell: "ok / None: None" for cell in cells}
    assert proc.returncode == 0, proc.stderr
    check = edgeprune(client_home, "devices", "check", str(profile), "--json", timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    assert_blobs_in_home(device, manifest, names)
    assert_nothing_left_running(device)


def test_banner_that_breaks_sftp_is_named(digits_run, make_login_device, client_home, tmp_path):
    """With OpenSSH's external sftp-server (Raspberry Pi OS's default), the login shell starts the SFTP server too,
    so a .bashrc that prints corrupts the SFTP protocol itself: edgeprune cannot fix that, but must say so."""
    folder, _ = digits_run
    device = make_login_device("banner-sftp", banner="Welcome to Raspberry Pi OS!", start=False)
    device.sftp_subsystem = "/usr/lib/openssh/sftp-server"
    device.start()
    profile = shipped_copy(device, tmp_path)
    db = tmp_path / "store.db"
    proc = edgeprune(client_home, "bench", str(folder), "--device", str(profile), "--db", str(db), "-q",
                     "--variants", "pruned-int8")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    stored = stored_pairs(db, proc)
    assert sorted(c for _, c in stored) == sorted(plan_cells(["pruned-int8"]))
    for row in stored.values():  # nothing could be uploaded: every cell of the plan
        assert row["status"] == "failed" and row["error_kind"] == "deploy", outcome(row)
        assert "banner" in row["error_message"] and "~/.bashrc" in row["error_message"]
