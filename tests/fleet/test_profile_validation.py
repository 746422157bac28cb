"""Profile fields are checked where they are read, through real TOML files (which allow ``nan`` and ``inf``):
a value that would make a wait endless, a step fail at once or a socket call blow up is one ``ConfigError`` line
naming the device, the field and the value, and the CLI exits 2 before it touches the network.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from edgeprune.devices.profiles import load_fleet, load_profile
from edgeprune.errors import ConfigError

#: (TOML line, what the one-line error must say). Every value here was accepted before these checks.
BAD_FIELDS = [
    ("command_timeout = nan", "command_timeout must be a finite number > 0 (at most 604800 s), got nan"),
    ("command_timeout = inf", "command_timeout must be a finite number > 0 (at most 604800 s), got inf"),
    ("command_timeout = 0", "command_timeout must be a finite number > 0 (at most 604800 s), got 0"),
    ("connect_timeout = 0.0", "connect_timeout must be a finite number > 0 (at most 604800 s), got 0.0"),
    ("transfer_timeout = 1e9", "transfer_timeout must be a finite number > 0 (at most 604800 s), got 1000000000.0"),
    ("min_seconds = nan", "min_seconds must be a finite number >= 0 (at most 86400 s), got nan"),
    ("min_seconds = 86401", "min_seconds must be a finite number >= 0 (at most 86400 s), got 86401"),
    ("device_timeout = -5", "device_timeout must be 0 (derived) or a finite number > 0 (at most 2592000 s), got -5"),
    ("device_timeout = nan", "device_timeout must be 0 (derived) or a finite number > 0 (at most 2592000 s), got nan"),
    ("port = 70000", "port must be an integer from 1 to 65535, got 70000"),
    ("threads = 2000", "threads must be an integer from 1 to 1024, got 2000"),
    ("runs = 2_000_000", "runs must be an integer from 1 to 1000000, got 2000000"),
    ("warmup = 2_000_000", "warmup must be an integer from 0 to 1000000, got 2000000"),
    ('workdir = "~pi/bench"', "workdir '~pi/bench': ~user/ is not supported; use a path relative to the login's "
                              "home or an absolute one"),
]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port nobody should connect to: a profile points at it, and the test checks it stayed untouched."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def profile_toml(tmp_path: Path, line: str, port: int = 22) -> Path:
    """A complete ssh profile named pi4 with ``line`` last (TOML lets a later key not repeat an earlier one,
    so the default port is only written when ``line`` does not set it)."""
    path = tmp_path / "pi4.toml"
    port_line = "" if line.startswith("port ") else f"port = {port}\n"
    path.write_text(f'name = "pi4"\nhost = "127.0.0.1"\n{port_line}user = "pi"\n'
                    f'known_hosts = "{tmp_path / "known_hosts"}"\n{line}\n')
    return path


@pytest.mark.parametrize("line, message", BAD_FIELDS, ids=[line for line, _ in BAD_FIELDS])
def test_a_bad_profile_field_is_one_config_error(tmp_path, line, message):
    with pytest.raises(ConfigError) as caught:
        load_profile(str(profile_toml(tmp_path, line)))
    assert str(caught.value) == f"device pi4: {message}"


@pytest.mark.parametrize("line, message", BAD_FIELDS, ids=[line for line, _ in BAD_FIELDS])
def test_a_bad_field_from_fleet_defaults_names_each_device(tmp_path, line, message):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(f'[defaults]\n{line}\nknown_hosts = "{tmp_path / "kh"}"\n\n'
                     f'[[device]]\nname = "pi-kitchen"\nhost = "192.0.2.11"\n')
    with pytest.raises(ConfigError) as caught:
        load_fleet(str(fleet))
    assert str(caught.value) == f"device pi-kitchen: {message}"


def test_booleans_are_not_numbers(tmp_path):
    with pytest.raises(ConfigError, match=r"device pi4: threads must be an integer from 1 to 1024, got True"):
        load_profile(str(profile_toml(tmp_path, "threads = true")))
    with pytest.raises(ConfigError, match=r"device pi4: command_timeout must be a finite number > 0 .* got False"):
        load_profile(str(profile_toml(tmp_path, "command_timeout = false")))


def test_a_huge_integer_is_refused_not_crashed_on(tmp_path):
    with pytest.raises(ConfigError, match=r"device pi4: command_timeout must be .* got 99999999999"):
        load_profile(str(profile_toml(tmp_path, "command_timeout = 99999999999999999999999999")))


def test_values_at_the_limits_and_the_home_forms_of_workdir_are_accepted(tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        '[defaults]\nhost = "192.0.2.1"\nport = 65535\nthreads = 1024\nruns = 1_000_000\nwarmup = 0\n'
        'min_seconds = 86400\ncommand_timeout = 604800\nconnect_timeout = 0.5\ndevice_timeout = 3600\n\n'
        '[[device]]\nname = "home"\nworkdir = "~"\n\n'
        '[[device]]\nname = "under-home"\nworkdir = "~/bench/edgeprune"\ndevice_timeout = 0\n\n'
        '[[device]]\nname = "absolute"\nworkdir = "/var/tmp/edgeprune"\n'
    )
    devices = load_fleet(str(fleet)).devices
    assert [d.workdir for d in devices] == ["~", "~/bench/edgeprune", "/var/tmp/edgeprune"]
    assert [d.device_timeout for d in devices] == [3600, 0, 3600]
    assert devices[0].port == 65535 and devices[0].command_timeout == 604800
    assert devices[0].to_dict()["device_timeout"] == 3600


@pytest.mark.parametrize("workdir", ["~pi", "~pi/bench", "~root/.edgeprune"])
def test_workdir_of_another_user_is_refused(tmp_path, workdir):
    with pytest.raises(ConfigError, match="~user/ is not supported"):
        load_profile(str(profile_toml(tmp_path, f'workdir = "{workdir}"')))


CLI_CASES = ["command_timeout = nan", "command_timeout = inf", "command_timeout = 0", "port = 70000",
             'workdir = "~pi/bench"', "device_timeout = inf"]


@pytest.mark.parametrize("line", CLI_CASES)
@pytest.mark.parametrize("as_fleet", [False, True], ids=["profile", "fleet"])
def test_devices_check_refuses_before_any_network_io(tmp_path, listener, line, as_fleet):
    port = listener.getsockname()[1]
    path = profile_toml(tmp_path, line, port)
    args = [str(path)]
    if as_fleet:
        fleet = tmp_path / "fleet.toml"
        fleet.write_text(f'[defaults]\nprofile = "{path}"\n\n[[device]]\nname = "pi4"\n')
        args = ["--fleet", str(fleet)]
    proc = subprocess.run([sys.executable, "-m", "edgeprune", "devices", "check", *args], capture_output=True,
                          text=True, cwd=str(tmp_path), env=dict(os.environ), timeout=120)
    lines = [text for text in proc.stderr.splitlines() if text.strip()]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "device pi4: " in lines[0], proc.stderr
    assert line.split(" =")[0] in lines[0]
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected
