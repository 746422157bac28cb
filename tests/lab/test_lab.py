"""The device lab: an emulated aarch64 Raspberry Pi, network-namespaced devices and degraded links, measured with
``edgeprune bench`` run as a subprocess against real sshd, as a user would."""
from __future__ import annotations

import hashlib
import json
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

from support.cli import EDGEPRUNE
from support.lab import LinkSpec, NetnsDevice, build_pi_arm64, lab, wait_for_ssh
from support.paths import RAW_OUTPUTS, REPO_ROOT, support_env
from support.store_rows import plan_cells

pytestmark = pytest.mark.slow


def edgeprune(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGEPRUNE, *args], capture_output=True, text=True, timeout=timeout)


def stored(db: Path) -> Dict[Tuple[str, str], sqlite3.Row]:
    conn = sqlite3.connect(str(db))
    conn.row_factory = sqlite3.Row
    result = {(r["device"], r["variant"]): r for r in conn.execute("SELECT * FROM results")}
    conn.close()
    return result


def ok_variants(manifest: Dict) -> List[str]:
    return [v["name"] for v in manifest["variants"] if v["status"] == "ok"]


def test_emulated_pi_probe_over_ssh_reports_aarch64(pi_arm64, make_lab):
    running = make_lab(["arm64"])
    proc = edgeprune("devices", "check", "--fleet", str(running.fleet_path), "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    [report] = json.loads(proc.stdout)
    probe = report["probe"]
    assert probe["device"]["machine"] == "aarch64"
    assert probe["device"]["python"]["version"].startswith("3.11.")
    assert probe["device"]["numpy"].startswith("1.")
    assert {r["module"]: r["version"] for r in probe["runtimes"] if r["available"]} == {"tflite_runtime": "2.14.0"}
    print(f"emulated Pi build: {pi_arm64.build}")


def test_rebuild_from_cached_debs_is_well_under_a_minute(pi_arm64, tmp_path):
    """A fresh root from the cached .debs and wheels (what a new checkout or a changed stamp costs)."""
    home = tmp_path / "pi-arm64"
    home.mkdir()
    for layer in ("debs", "wheels"):
        shutil.copytree(pi_arm64.home / layer, home / layer, copy_function=shutil.copy)
    pi = build_pi_arm64(home)
    assert not pi.build["cached"] and not pi.build["debs_downloaded"] and not pi.build["wheels_downloaded"]
    assert pi.build["python"]["machine"] == "aarch64" and pi.build["python"]["tflite_runtime"] == "2.14.0"
    assert pi.build["seconds"] < 45, pi.build
    print(f"rebuild from cached .debs: {pi.build['seconds']} s")
    assert build_pi_arm64(home).build["cached"]  # and now it is only a stamp check


def test_mixed_fleet_stores_right_facts_for_every_pair(pi_arm64, make_lab, tmp_path):
    """The main job, `edgeprune run` (optimize, bench, report), against a fleet of the four lab kinds."""
    running = make_lab(["loopback", "pi39", "arm64", "netns"])
    db = tmp_path / "store.db"
    folder = tmp_path / "run"
    started = time.monotonic()
    proc = edgeprune("run", "--out", str(folder), "--fleet", str(running.fleet_path), "--db", str(db), "--quiet")
    print(f"mixed lab run (optimize + bench + report): {time.monotonic() - started:.1f} s")
    # exit 1: the two tflite-runtime 2.14 devices cannot load the two dynamic-range variants (asserted below);
    # every other pair is ok
    assert proc.returncode == 1, proc.stderr
    assert "ok, 4 error, 0 failed" in proc.stdout, proc.stdout
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (folder / "report" / "report.html").is_file()
    rows = stored(db)
    names = ok_variants(manifest)
    assert len(rows) == 4 * (len(names) + 1)  # + the baseline's A/A twin on every device
    host = {v["name"]: v for v in manifest["variants"]}
    expected = {  # device: (runtime, version, python prefix, machine)
        "loopback-0": ("ai_edge_litert", None, platform.python_version(), platform.machine()),
        "netns-0": ("ai_edge_litert", None, platform.python_version(), platform.machine()),
        "pi39-0": ("tflite_runtime", "2.14.0", "3.9.", "x86_64"),
        "arm64-0": ("tflite_runtime", "2.14.0", "3.11.", "aarch64"),
    }
    for device, (runtime, version, python, machine) in expected.items():
        for name in names:
            row = rows[(device, name)]
            assert row["runtime"] == runtime and row["machine"] == machine, (device, name)
            assert row["python_version"].startswith(python), (device, name, row["python_version"])
            if version:
                assert row["runtime_version"] == version
            if runtime == "tflite_runtime" and name in ("pruned-dynamic", "baseline-dynamic"):
                # TF 2.21 writes FULLY_CONNECTED v12, which tflite-runtime 2.14 cannot load: on x86 and on arm
                assert row["status"] == "error" and row["error_kind"] == "model-load", (device, dict(row))
                assert "FULLY_CONNECTED" in row["error_message"]
                continue
            assert row["status"] == "ok", (device, name, row["error_message"])
            doc = json.loads(row["agent_json"])
            assert doc["model"]["sha256"] == host[name]["sha256"]
            assert abs(row["accuracy"] - host[name]["accuracy"]) <= 0.001
            assert row["agreement"] >= 0.99
            assert 0 < row["p50_us"] <= row["p90_us"] <= row["p99_us"]
    # the same runtime on two architectures: the same predicted label for every eval sample
    for name in names:
        arm, x86 = rows[("arm64-0", name)], rows[("pi39-0", name)]
        if arm["status"] != "ok":
            continue
        assert arm["predictions_digest"] == x86["predictions_digest"], name
        arm_doc, x86_doc = json.loads(arm["agent_json"]), json.loads(x86["agent_json"])
        assert arm_doc["accuracy"]["predictions"] == x86_doc["accuracy"]["predictions"], name
        print(f"emulated Pi {name}: {arm['rounds']} rounds, init {arm_doc['init_ms']:.0f} ms, p50 {arm['p50_us']:.0f} us "
              f"(x86 tflite-runtime {x86['p50_us']:.0f} us)")


def test_emulated_pi_outputs_match_x86(digits_run, pi_arm64, tmp_path):
    """Beyond labels: the raw outputs of tflite-runtime 2.14 on aarch64 (emulated) and on x86. int8 is integer
    arithmetic and must be bit-identical; float kernels differ (NEON vs AVX, XNNPACK) only in rounding."""
    folder, manifest = digits_run
    from support.agent_envs import pi_like_python

    models = [f"{v['name']}={folder / v['file']}" for v in manifest["variants"] if v["status"] == "ok"]
    outputs = {}
    for label, python in (("arm64", pi_arm64.python), ("x86", pi_like_python())):
        out = tmp_path / f"{label}.npz"
        started = time.monotonic()
        subprocess.run([str(python), "-m", RAW_OUTPUTS, str(out), str(folder / "eval.npz"), *models], check=True,
                       capture_output=True, timeout=1200, cwd=str(REPO_ROOT))
        print(f"raw outputs on {label}: {time.monotonic() - started:.1f} s")
        outputs[label] = dict(np.load(out))
    arm, x86 = outputs["arm64"], outputs["x86"]
    assert sorted(arm) == sorted(x86)
    for dynamic in ("pruned-dynamic", "baseline-dynamic"):
        assert "FULLY_CONNECTED" in str(arm[f"{dynamic}.error"])  # not loadable on either
    for v in manifest["variants"]:
        name = v["name"]
        if v["status"] != "ok" or name in ("pruned-dynamic", "baseline-dynamic"):
            continue
        a, b = arm[name], x86[name]
        assert a.dtype == b.dtype and a.shape == b.shape == (len(np.load(folder / "eval.npz")["y"]), 10)
        if np.issubdtype(a.dtype, np.integer):
            assert np.array_equal(a, b), name
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)  # "within 1e-5"
            print(f"{name}: max |arm - x86| = {np.max(np.abs(a - b)):.2e}")
        assert np.array_equal(a.argmax(axis=1), b.argmax(axis=1)), name


def test_degraded_link_completes_with_verified_uploads(digits_run, make_lab, tmp_path):
    """1 Mbit/s each way with 2% random loss each way: slow, but every file arrives sha256-verified."""
    folder, manifest = digits_run
    running = make_lab(["netns"], link=LinkSpec(rate="1mbit", loss_percent=2))
    [device] = running.devices
    assert isinstance(device, NetnsDevice)
    db = tmp_path / "store.db"
    started = time.monotonic()
    proc = edgeprune("bench", str(folder), "--fleet", str(running.fleet_path), "--db", str(db), "-q")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    rows = stored(db)
    names = ok_variants(manifest)
    assert sorted(v for _, v in rows) == sorted(plan_cells(names))  # every variant, and the baseline's A/A twin
    assert all(r["status"] == "ok" for r in rows.values()), [dict(r) for r in rows.values()]
    blobs = device.workdir / "blobs"
    on_device = {p.name.split(".")[0]: p for p in blobs.iterdir()}
    assert not [p for p in blobs.iterdir() if ".part-" in p.name]
    wanted = {v["sha256"] for v in manifest["variants"] if v["status"] == "ok"}
    wanted.add(hashlib.sha256((folder / "eval.npz").read_bytes()).hexdigest())
    assert wanted <= set(on_device)
    for digest, path in on_device.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    # the link really was degraded: the payload alone needs its size / rate, and the loss rule dropped packets
    payload = sum((folder / v["file"]).stat().st_size for v in manifest["variants"] if v["status"] == "ok")
    payload += (folder / "eval.npz").stat().st_size
    assert elapsed >= 0.9 * payload * 8 / 1e6, (elapsed, payload)
    dropped = device.dropped_packets()
    assert dropped > 0
    print(f"degraded link: {payload / 1e6:.2f} MB in {elapsed:.1f} s, {dropped} packets dropped")


def banner_seconds(host: str, port: int) -> float:
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.settimeout(5)
        assert sock.recv(4).startswith(b"SSH-")
    return time.monotonic() - started


def test_netns_device_delay_link_down_up_and_sshd_restart(make_lab):
    running = make_lab(["netns"], link=LinkSpec(delay_ms=150))
    [device] = running.devices
    assert isinstance(device, NetnsDevice) and device.proxy is not None
    assert running.fleet_path.read_text().count(f"port = {device.proxy.port}") == 1
    assert banner_seconds(*device.fleet_address) >= 0.15  # the banner comes back through the proxy's delay
    assert banner_seconds(device.device_ip, 22) < 0.15

    device.link_down()
    with pytest.raises(OSError):
        socket.create_connection((device.device_ip, 22), timeout=1).close()
    # nothing for 10.200.N.0/30 ever takes the default route off this machine, link down or not
    for address in (device.device_ip, device.host_ip.rsplit(".", 1)[0] + ".3"):
        route = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True)
        assert " via " not in route.stdout, route.stdout
    subprocess.run(["ip", "link", "set", device.veth_host, "down"], check=True)
    route = subprocess.run(["ip", "route", "get", device.device_ip], capture_output=True, text=True)
    assert route.returncode != 0 and "No route to host" in route.stderr, route  # the fallback route
    subprocess.run(["ip", "link", "set", device.veth_host, "up"], check=True)
    device.link_up()
    wait_for_ssh(device.device_ip, 22, device.process, device.root / "sshd.log", device.name)

    device.stop()
    with pytest.raises(OSError):
        socket.create_connection((device.device_ip, 22), timeout=1).close()
    device.start()
    proc = edgeprune("devices", "check", "--fleet", str(running.fleet_path), "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["probe"]["device"]["machine"] == platform.machine()


def test_lab_removes_everything_even_when_the_body_fails(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with lab(["netns", "loopback"], tmp_path, link=LinkSpec(rate="10mbit", loss_percent=1, delay_ms=5)) as running:
            netns_device, loopback = running.devices
            names = (netns_device.netns, netns_device.veth_host)
            pids = [netns_device.process.pid, loopback.process.pid]
            proxy_port = netns_device.proxy.port
            1 / 0
    assert names[0] not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert names[1] not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy_port), timeout=1).close()


def test_leftovers_of_a_killed_run_are_removed(tmp_path):
    """A lab whose process was SIGKILLed leaves its namespace, veth, fallback route and an orphaned sshd behind;
    the next session's cleanup (by name prefix, owner pid gone) removes them all."""
    script = ("from support.lab import LinkSpec, start_lab\n"
              f"running = start_lab(['netns'], {str(tmp_path)!r}, LinkSpec(loss_percent=1))\n"
              "d = running.devices[0]\n"
              "print(d.netns, d.veth_host, d.subnet, d.process.pid, flush=True)\n"
              "import time; time.sleep(600)\n")
    crashed = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=support_env())
    try:
        netns, veth, subnet, sshd_pid = crashed.stdout.readline().split()
    finally:
        crashed.kill()
        crashed.wait()
    assert netns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert Path(f"/proc/{sshd_pid}").exists()  # orphaned, still serving

    from support.lab import cleanup_leftovers

    removed = cleanup_leftovers()
    assert netns in removed
    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert veth not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert subnet not in subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True,
                                        text=True).stdout
    deadline = time.monotonic() + 10
    while Path(f"/proc/{sshd_pid}").exists() and "zombie" not in Path(f"/proc/{sshd_pid}/status").read_text():
        assert time.monotonic() < deadline, "the orphaned sshd survived the cleanup"
        time.sleep(0.1)


def test_two_labs_in_one_process_keep_each_other(make_lab):
    """A second lab (its start sweeps leftovers) must not take the first one's namespace or subnet."""
    first = make_lab(["netns"]).devices[0]
    second = make_lab(["netns"]).devices[0]
    assert isinstance(first, NetnsDevice) and isinstance(second, NetnsDevice)
    assert first.subnet != second.subnet and first.netns != second.netns
    for device in (first, second):
        assert banner_seconds(device.device_ip, 22) < 5
