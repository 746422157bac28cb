"""Profiles and fleet files: the shipped ones load, overrides apply, hostile values are refused."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune.devices.profiles import PROFILES_DIR, load_fleet, load_profile
from edgeprune.errors import ConfigError
from edgeprune.devices.ssh import quote_command


@pytest.mark.parametrize("name", ["local", "raspberry-pi-4", "raspberry-pi-5", "coral-dev-board"])
def test_shipped_profiles_load(name):
    profile = load_profile(name)
    assert profile.name == name
    assert (profile.kind == "local") == (name == "local")


def test_coral_profile_names_the_edgetpu_delegate():
    assert load_profile("coral-dev-board").delegate == "libedgetpu.so.1"


def test_example_fleet_applies_defaults_profiles_and_overrides():
    fleet = load_fleet(str(PROFILES_DIR / "fleet.example.toml"))
    devices = {d.name: d for d in fleet.devices}
    assert set(devices) == {"pi4-kitchen", "pi4-garage", "pi5-desk", "coral-1"}
    assert devices["pi4-kitchen"].key_file == "~/.ssh/edgeprune_ed25519"  # from [defaults]
    assert devices["pi4-garage"].python.endswith("venv/bin/python")  # per-device override
    assert devices["pi5-desk"].runs == load_profile("raspberry-pi-5").runs  # its own base profile
    assert devices["coral-1"].user == "mendel"
    assert [d.name for d in fleet.select(["pi5"]).devices] == ["pi5-desk"]


@pytest.mark.parametrize("bad_name", ["../etc", "a/b", "x;rm -rf", "$(id)", "", "q'uote", ".hidden", "a..b"])
def test_hostile_device_names_are_refused(tmp_path, bad_name):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[[device]]\nname = """' + bad_name + '"""\nhost = "h"\n')
    with pytest.raises(ConfigError):
        load_fleet(str(fleet))


@pytest.mark.parametrize("content, message", [
    ('[[device]]\nname = "a"\nhost = "h"\nprot = 22\n', "unknown field"),
    ('[[device]]\nname = "a"\n', "needs a host"),
    ('[[device]]\nname = "a"\nhost = "h"\nport = "22"\n', "port"),
    ('[[device]]\nname = "a"\nhost = "h"\nworkdir = "../../etc"\n', "'..'"),
    ('[[device]]\nname = "a"\nhost = "h"\n[[device]]\nname = "a"\nhost = "h"\n', "twice"),
    ('[[device]]\nname = "a"\nhost = "h"\nruntime = "onnx"\n', "runtime"),
    ('[devices]\nx = 1\n', "unknown section"),
    ('this is = = not toml', "not valid TOML"),
])
def test_bad_fleet_files_give_one_clear_error(tmp_path, content, message):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_fleet(str(fleet))


def test_cli_turns_a_bad_fleet_into_one_line(tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[[device]]\nname = "../x"\nhost = "h"\n')
    proc = subprocess.run([sys.executable, "-m", "edgeprune", "bench", str(tmp_path), "--fleet", str(fleet)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in proc.stderr


def test_remote_commands_quote_every_argument():
    hostile = ["python3", "-m", "device_agent", "run", "a b; rm -rf ~", "$(touch x)", "`id`", "it's \"q\""]
    command = quote_command(hostile)
    # sh parses the quoted line back into exactly the same arguments
    parsed = subprocess.run(["sh", "-c", f'printf "%s\\0" {command}'], capture_output=True, check=True).stdout
    assert parsed.split(b"\0")[:-1] == [arg.encode() for arg in hostile]


def test_repo_has_no_autoadd_policy_shell_true_or_password():
    root = Path(__file__).resolve().parents[2]
    files = subprocess.run(["git", "ls-files", "*.py", "*.toml", "*.sh"], cwd=root, capture_output=True, text=True,
                           check=True).stdout.split()
    offenders = []
    for name in files:
        text = (root / name).read_text(errors="replace")
        # the needles are built so that this file does not contain them either
        for needle in ("AutoAdd" + "Policy", "shell" + "=True", "pass" + "word=", "Warning" + "Policy()"):
            if needle in text:
                offenders.append(f"{name}: {needle}")
    assert offenders == []
