"""Devices behind SSH jump hosts (issue 14): a bastion, a second bastion and 16 devices that only the bastions can
reach, all real OpenSSH servers in a network namespace the test creates (tests/support/bastion.py).

First OpenSSH itself proves the lab: ``ssh -F CONFIG pi-1`` gets through one hop, two hops and a ProxyCommand, the
device's sshd logs the login and each bastion on the way logs one, and without a jump the device is unreachable;
each fault the edgeprune tests use makes OpenSSH fail at the bastion. Then ``edgeprune bench`` and ``edgeprune
devices check`` go the same ways, through the fleet's ``ssh_config`` (its ProxyJump, ProxyCommand, HostKeyAlias,
UserKnownHostsFile and IdentityFile) or through the profile's own ``proxy_jump``; 16 devices benched at once
share one connection to the bastion (its log counts the logins); and a bastion that does not know, refuses or
does not answer is named in one line.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from support import tflite_zoo
from support.bastion import JumpLab, jump_lab
from support.cli import edgeprune
from support.store_rows import by_pair, outcome, rows

pytestmark = pytest.mark.slow

DEVICES = 16
CELLS = ("multi_io", "multi_io@aa")  # a bench of one .tflite file: the file and its A/A twin
#: Rich wraps the bench's per-device lines at the terminal's width: a wide one keeps each on one line.
WIDE = dict(os.environ, COLUMNS="2000")
#: How a device is reached -> the hops ``devices check --json`` names before the device (None: not asserted).
ROUTES: Dict[str, Optional[List[str]]] = {"one-hop": ["bastion"], "two-hops": ["bastion", "bastion2"],
                                          "proxy-command": None}
CONNECT_TIMEOUT = 3
#: What a dead bastion may cost beyond connect_timeout: edgeprune's start (imports), the store, the summary.
FEW_SECONDS = 9
FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


@pytest.fixture(scope="module")
def running_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JumpLab]:
    """One lab for the module (its set-up is under a second): torn down at the end, pass or fail."""
    with jump_lab(tmp_path_factory.mktemp("jump-lab"), count=DEVICES) as started:
        yield started


@pytest.fixture
def lab(running_lab: JumpLab) -> Iterator[JumpLab]:
    """The module's lab, healed after each test (bastion up, its link up, the client key accepted again)."""
    yield running_lab
    running_lab.heal()


@pytest.fixture(scope="module")
def model() -> Path:
    return tflite_zoo.zoo_dir() / "multi_io.tflite"


def logins_since(lab: JumpLab, before: Dict[str, int]) -> Dict[str, int]:
    """The sshds that accepted logins since ``before``, and how many."""
    return {name: n - before[name] for name, n in lab.logins().items() if n != before[name]}


def bench(model: Path, fleet: Path, db: Path, *args: str):
    return edgeprune("bench", str(model), "--fleet", str(fleet), "--db", str(db), "-q", *args, env=WIDE,
                     timeout=600)


def check(fleet: Path, *args: str):
    return edgeprune("devices", "check", "--fleet", str(fleet), *args, env=WIDE, timeout=300)


def assert_measured(db: Path, names: List[str]) -> None:
    stored = by_pair(rows(db))
    assert set(stored) == {(name, cell) for name in names for cell in CELLS}, sorted(stored)
    assert [outcome(r) for r in stored.values() if r["status"] != "ok"] == []


# -- the lab, proved with OpenSSH (passes without edgeprune's jump-host support) ------------------------------------

def test_openssh_reaches_the_devices_only_through_the_bastions(lab: JumpLab, tmp_path: Path) -> None:
    hops = {"one-hop": {"bastion": 1}, "two-hops": {"bastion": 1, "bastion2": 1}, "proxy-command": {"bastion": 1}}
    for via, logged in hops.items():
        config = lab.write_ssh_config(tmp_path / f"{via}.config", via)
        before = lab.logins()
        proc = lab.openssh(config, "pi-1", command="echo $SSH_CONNECTION")
        assert proc.returncode == 0, (via, proc.stderr)
        # the device saw the connection arrive on the namespace's loopback, at its own port
        assert proc.stdout.split()[2:] == ["127.0.0.1", str(lab.device("pi-1").port)], (via, proc.stdout)
        assert logins_since(lab, before) == {**logged, "pi-1": 1}, via
    # without the jump, 127.0.0.1:<port> is the host's own loopback, where that port is bound and refused
    one_hop = tmp_path / "one-hop.config"
    direct = lab.openssh(one_hop, "pi-1", "-o", "ProxyJump=none")
    assert direct.returncode == 255 and "Connection refused" in direct.stderr, direct.stderr
    # the profile-field route, with no config at all: the jump by address, the devices' keys as [127.0.0.1]:port
    options = ["-i", str(lab.client.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
               "-o", f"UserKnownHostsFile={lab.known_hosts_by_address}", "-o", "GlobalKnownHostsFile=/dev/null",
               "-o", "StrictHostKeyChecking=yes"]
    jump = shlex.join(["ssh", "-F", "/dev/null", *options, "-W", "%h:%p", lab.jump.split(":")[0]])
    device = lab.device("pi-2")
    before = lab.logins()
    proc = lab.openssh(Path("/dev/null"), "root@127.0.0.1", *options, "-p", str(device.port),
                       "-o", f"ProxyCommand={jump}")
    assert proc.returncode == 0, proc.stderr
    assert logins_since(lab, before) == {"bastion": 1, "pi-2": 1}
    # the known_hosts files name each key as the docstring of support.bastion says
    aliases = lab.known_hosts.read_text().splitlines()
    assert [line.split()[0] for line in aliases] == [lab.bastion.device_ip, "bastion2",
                                                     *[f"pi-{i}" for i in range(1, DEVICES + 1)]]
    by_address = [line.split()[0] for line in lab.known_hosts_by_address.read_text().splitlines()]
    assert by_address[2:] == [f"[127.0.0.1]:{d.port}" for d in lab.devices]


#: fault -> what OpenSSH says when it meets it at the bastion
OPENSSH_SAYS = {
    "host-key-missing": "Host key verification failed",
    "key-refused": "Permission denied (publickey)",
    "bastion-stopped": "Connection refused",
    "bastion-unplugged": "timed out",
}


def break_bastion(lab: JumpLab, fault: str, tmp_path: Path) -> Optional[Path]:
    """Do ``fault`` to the bastion (the ``lab`` fixture undoes it); returns the known_hosts to use, if not the
    lab's: for "host-key-missing", one with every key but the bastion's."""
    if fault == "host-key-missing":
        return lab.write_known_hosts(tmp_path / "known_hosts", without=["bastion"])
    if fault == "key-refused":
        lab.bastion.refuse_keys()
    elif fault == "bastion-stopped":
        lab.bastion.stop()
    elif fault == "bastion-unplugged":
        lab.bastion.link_down()
    return None


@pytest.mark.parametrize("fault", OPENSSH_SAYS)
def test_openssh_fails_at_the_bastion_for_each_fault(lab: JumpLab, tmp_path: Path, fault: str) -> None:
    known = break_bastion(lab, fault, tmp_path)
    config = lab.write_ssh_config(tmp_path / "ssh_config", known_hosts=known, connect_timeout=CONNECT_TIMEOUT)
    before = lab.logins()
    proc = lab.openssh(config, "pi-1")
    assert proc.returncode == 255 and OPENSSH_SAYS[fault] in proc.stderr, proc.stderr
    assert logins_since(lab, before) == {}


# -- edgeprune through the jump (needs edgeprune's jump-host support) ---------------------------------------------

def test_sixteen_devices_behind_one_bastion_share_its_connection(lab: JumpLab, tmp_path: Path, model: Path) -> None:
    fleet = lab.write_fleet(tmp_path / "fleet.toml", lab.write_ssh_config(tmp_path / "ssh_config"), target_ci=0.2)
    before = lab.logins()
    proc = bench(model, fleet, tmp_path / "s.db", "--jobs", str(DEVICES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [d.name for d in lab.devices]
    assert_measured(tmp_path / "s.db", names)
    logged = logins_since(lab, before)
    assert 1 <= logged.get("bastion", 0) <= 2, (logged, lab.bastion.log.read_text()[-3000:])
    assert "bastion2" not in logged
    assert [name for name in names if not logged.get(name)] == []  # each device's own sshd was logged in to


@pytest.mark.parametrize("via", ROUTES)
def test_devices_check_names_the_route_and_the_host_key(lab: JumpLab, tmp_path: Path, via: str) -> None:
    config = lab.write_ssh_config(tmp_path / "ssh_config", via)
    fleet = lab.write_fleet(tmp_path / "fleet.toml", config, devices=["pi-1", "pi-2"])
    before = lab.logins()
    proc = check(fleet, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reports = {r["name"]: r for r in json.loads(proc.stdout)}
    assert sorted(reports) == ["pi-1", "pi-2"]
    for name, report in reports.items():
        assert report["ok"] is True, report
        key_type, key = report["host_key"].split()  # as OpenSSH shows it: "ssh-ed25519 SHA256:<43 characters>"
        assert key_type == "ssh-ed25519" and FINGERPRINT.fullmatch(key) and key == lab.device(name).fingerprint
        hops = ROUTES[via]
        assert report["route"][-1] == name and (hops is None or report["route"] == [*hops, name]), report["route"]
    logged = logins_since(lab, before)
    assert logged.get("pi-1") and logged.get("pi-2") and logged.get("bastion"), logged
    assert ("bastion2" in logged) == (via == "two-hops"), logged


def test_devices_check_table_through_the_bastion(lab: JumpLab, tmp_path: Path) -> None:
    fleet = lab.write_fleet(tmp_path / "fleet.toml", lab.write_ssh_config(tmp_path / "ssh_config"),
                            devices=["pi-3"])
    proc = check(fleet)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pi-3" in proc.stdout and "Traceback" not in proc.stderr


def test_profile_fields_reach_a_device_without_ssh_config(lab: JumpLab, tmp_path: Path, model: Path) -> None:
    """``host = "127.0.0.1"``, ``port``, ``proxy_jump = "root@10.200.N.2:22"``, ``known_hosts`` by address and
    ``key_file``: no ssh_config involved."""
    fleet = lab.write_field_fleet(tmp_path / "fleet.toml", devices=["pi-4"], target_ci=0.2)
    assert "proxy_jump" in fleet.read_text() and not Path(lab.root / "no-ssh-config").exists()
    before = lab.logins()
    proc = bench(model, fleet, tmp_path / "s.db")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_measured(tmp_path / "s.db", ["pi-4"])
    logged = logins_since(lab, before)
    assert logged.get("bastion") and logged.get("pi-4"), logged
    proc = check(fleet, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [report] = json.loads(proc.stdout)
    assert report["name"] == "pi-4" and report["ok"] is True, report
    assert report["host_key"].split()[-1] == lab.device("pi-4").fingerprint
    # the hop as proxy_jump names it, then the device by its name
    assert len(report["route"]) == 2 and report["route"][-1] == "pi-4", report["route"]
    assert report["route"][0] in (lab.bastion.device_ip, lab.jump), report["route"]


def fault_words(lab: JumpLab, fault: str) -> List[str]:
    """What the one line about ``fault`` must say (the hop, then the cause; the dead ones are matched below)."""
    if fault == "host-key-missing":
        return ["through bastion", "host key is not in known_hosts (", lab.bastion.fingerprint]
    if fault == "key-refused":
        return ["through bastion", "refused the key"]
    return ["through bastion"]


DEAD = {"bastion-stopped": re.compile(r"timed out|timeout|refused", re.I),
        "bastion-unplugged": re.compile(r"timed out|timeout", re.I)}


def assert_names_the_bastion(lab: JumpLab, fault: str, line: str) -> None:
    assert all(word in line for word in fault_words(lab, fault)), (fault, line)
    if fault in DEAD:
        assert DEAD[fault].search(line), (fault, line)


@pytest.mark.parametrize("fault", OPENSSH_SAYS)
def test_a_failing_bastion_is_named_in_one_line(lab: JumpLab, tmp_path: Path, model: Path, fault: str) -> None:
    known = break_bastion(lab, fault, tmp_path)
    config = lab.write_ssh_config(tmp_path / "ssh_config", known_hosts=known)
    fleet = lab.write_fleet(tmp_path / "fleet.toml", config, devices=["pi-1"], connect_timeout=CONNECT_TIMEOUT)
    before = lab.logins()
    started = time.monotonic()
    proc = bench(model, fleet, tmp_path / "s.db")
    benched = time.monotonic() - started
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    stored = rows(tmp_path / "s.db")
    assert sorted(r["variant"] for r in stored) == sorted(CELLS)
    assert all(r["status"] == "failed" for r in stored), [outcome(r) for r in stored]
    [message] = {r["error_message"] for r in stored}
    assert "\n" not in message
    assert_names_the_bastion(lab, fault, message)
    summary = [line for line in proc.stderr.splitlines() if line.strip().startswith("pi-1:")]
    assert len(summary) == 1, proc.stderr
    assert_names_the_bastion(lab, fault, summary[0])
    started = time.monotonic()
    proc = check(fleet, "--json")
    checked = time.monotonic() - started
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    [report] = json.loads(proc.stdout)
    assert report["name"] == "pi-1" and report["ok"] is False, report
    assert_names_the_bastion(lab, fault, " ".join(v for v in report.values() if isinstance(v, str)))
    if fault in DEAD:
        assert max(benched, checked) < CONNECT_TIMEOUT + FEW_SECONDS, (benched, checked)
    assert "pi-1" not in logins_since(lab, before)


def test_server_alive_notices_a_bastion_that_went_silent_mid_bench(lab: JumpLab, tmp_path: Path,
                                                                   model: Path) -> None:
    """ServerAliveInterval 1 / CountMax 2 in the ssh_config: the bastion's cable is pulled while the device
    measures; the bench ends within seconds with the device failed, instead of waiting out its command timeout
    (here 600 s per cell: without the keep-alives it would sit for minutes on a link that sends nothing)."""
    from support.cli import start_cli

    config = lab.write_ssh_config(tmp_path / "ssh_config")
    config.write_text(config.read_text() + "\nHost *\n    ServerAliveInterval 1\n    ServerAliveCountMax 2\n")
    device = lab.device("pi-16")
    fleet = lab.write_fleet(tmp_path / "fleet.toml", config, devices=["pi-16"], budget_s=20, min_rounds=1000,
                            max_rounds=1000, min_seconds=0.05, command_timeout=600)
    before = device.logins()
    proc = start_cli(None, "bench", str(model), "--fleet", str(fleet), "--db", str(tmp_path / "s.db"), "-q",
                     env=WIDE)
    try:
        deadline = time.monotonic() + 60
        while device.logins() == before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert device.logins() > before, "the bench never reached the device"
        time.sleep(4)  # uploads done, the agent measuring
        assert proc.poll() is None, proc.communicate()
        lab.bastion.link_down()
        pulled = time.monotonic()
        out, err = proc.communicate(timeout=60)
        waited = time.monotonic() - pulled
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1 and waited < 15, (waited, out, err)
    stored = by_pair(rows(tmp_path / "s.db"))
    assert stored and all(r["status"] == "failed" for r in stored.values()), [outcome(r) for r in stored.values()]
    lab.heal()
    time.sleep(21)  # the agent on the device ends at its budget: the next test finds no lock taken
