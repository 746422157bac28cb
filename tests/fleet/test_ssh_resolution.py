"""How a profile and its ssh_config become a target (issue 14): OpenSSH resolves (`ssh -G`), the profile's own
choices win, a shipped profile's values only fill gaps, and ProxyJump becomes a route of hops. Nothing here
connects anywhere."""
from __future__ import annotations

import getpass
import os
from pathlib import Path

import pytest

from edgeprune.devices.profiles import load_fleet, load_profile
from edgeprune.devices.sshconfig import split_jump, ssh_target
from edgeprune.errors import DeviceError

CONFIG = """\
Include {tmp}/included.conf

Host bastion
    HostName 203.0.113.5
    Port 2201
    User ops
    IdentityFile {tmp}/ops_%r_%h

Host inner
    HostName 10.9.0.2
    ProxyJump bastion

Host pi-*
    User piuser
    ProxyJump bastion
    HostKeyAlias kitchen-key
    UserKnownHostsFile {tmp}/kh_one {tmp}/kh_two
    IdentityFile {tmp}/pi_%n

Host pi-kitchen
    HostName 10.0.0.11

Host deep
    HostName 10.0.0.12
    ProxyJump bastion,inner

Host viacmd
    HostName 10.0.0.13
    ProxyCommand ssh -W %h:%p -p %p bastion

Host loop-a
    ProxyJump loop-b
Host loop-b
    ProxyJump loop-a
"""


@pytest.fixture(autouse=True, params=["ssh", "python"])
def resolver(request, monkeypatch):
    """Every test twice: resolved by OpenSSH (`ssh -G`) and by edgeprune's own parser (no ssh installed)."""
    monkeypatch.setenv("EDGEPRUNE_SSH_RESOLVER", request.param)
    return request.param


@pytest.fixture()
def config(tmp_path):
    (tmp_path / "included.conf").write_text("Host from-include\n    HostName 10.0.0.99\n    Port 2299\n"
                                            "    User incl\n")
    path = tmp_path / "ssh_config"
    path.write_text(CONFIG.format(tmp=tmp_path))
    return path


def shipped(config: Path, **fields):
    """The shipped Raspberry Pi 4 profile, pointed at ``config`` (``fields`` are the user's own choices)."""
    name = fields.get("host", "device").replace(".", "-")
    return load_profile("raspberry-pi-4", {"ssh_config": str(config), "name": name, **fields})


def test_a_shipped_profiles_user_does_not_clobber_ssh_configs_user(config):
    target = ssh_target(shipped(config, host="pi-kitchen"))
    assert (target.host, target.user) == ("10.0.0.11", "piuser")
    assert ssh_target(shipped(config, host="pi-kitchen", user="me")).user == "me"  # the user's own choice wins
    assert ssh_target(shipped(config, host="unknown-host")).user == "pi"  # the config says nothing: the profile


def test_a_fleets_user_is_the_users_choice_and_wins(config, tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(f'[defaults]\nprofile = "raspberry-pi-4"\nssh_config = "{config}"\n\n'
                     '[[device]]\nname = "a"\nhost = "pi-kitchen"\n\n'
                     '[[device]]\nname = "b"\nhost = "pi-kitchen"\nuser = "override"\n')
    a, b = load_fleet(str(fleet)).devices
    assert ssh_target(a).user == "piuser" and ssh_target(b).user == "override"


def test_proxyjump_becomes_a_route_of_resolved_hops(config, tmp_path):
    target = ssh_target(shipped(config, host="pi-kitchen"))
    assert target.route == ["bastion", "pi-kitchen"] and target.route_text == "bastion -> pi-kitchen"
    (hop,) = target.jumps
    assert (hop.host, hop.port, hop.user) == ("203.0.113.5", 2201, "ops")
    assert hop.identity_files[0] == f"{tmp_path}/ops_ops_203.0.113.5"  # %r and %h of the hop itself
    assert hop.jumps == ()
    # the host key is looked up under the alias, in every UserKnownHostsFile
    assert target.known_hosts_name == "kitchen-key"
    assert target.known_hosts == (f"{tmp_path}/kh_one", f"{tmp_path}/kh_two")
    assert target.identity_files[0] == f"{tmp_path}/pi_pi-kitchen"


def test_two_hops_and_a_first_hop_with_its_own_jump(config):
    deep = ssh_target(shipped(config, host="deep"))
    assert deep.route == ["bastion", "inner", "deep"]
    assert [h.host for h in deep.jumps] == ["203.0.113.5", "10.9.0.2"]
    assert all(h.jumps == () for h in deep.jumps)
    inner_first = ssh_target(shipped(config, host="10.0.0.50", proxy_jump="inner"))
    assert inner_first.route == ["bastion", "inner", "10-0-0-50"]  # inner's own ProxyJump, as ssh -W would
    assert ssh_target(shipped(config, host="pi-kitchen", proxy_jump="none")).jumps == ()


def test_the_profiles_proxy_jump_without_any_ssh_config(tmp_path):
    profile = load_profile("raspberry-pi-4", {"ssh_config": str(tmp_path / "none"), "host": "10.1.1.1",
                                              "proxy_jump": "admin@198.51.100.7:2222,second"})
    target = ssh_target(profile)
    first, second = target.jumps
    assert (first.user, first.host, first.port) == ("admin", "198.51.100.7", 2222)
    assert (second.user, second.host, second.port) == (getpass.getuser(), "second", 22)
    assert (target.host, target.user) == ("10.1.1.1", "pi")


def test_proxycommand_tokens_are_expanded(config):
    target = ssh_target(shipped(config, host="viacmd"))
    assert target.proxy_command == "ssh -W 10.0.0.13:22 -p 22 bastion" and target.jumps == ()


def test_include_is_followed(config):
    target = ssh_target(shipped(config, host="from-include"))
    assert (target.host, target.port, target.user) == ("10.0.0.99", 2299, "incl")


def test_a_jump_loop_is_one_line(config):
    with pytest.raises(DeviceError, match="a route of more than 8 hops"):
        ssh_target(shipped(config, host="loop-a"))


@pytest.mark.parametrize("spec, parsed", [
    ("host", (None, "host", None)), ("u@h:2222", ("u", "h", 2222)), ("ssh://u@h:22", ("u", "h", 22)),
    ("u@[2001:db8::1]:2200", ("u", "2001:db8::1", 2200)),
])
def test_jump_specs(spec, parsed):
    assert split_jump(spec) == parsed


def test_a_broken_config_is_one_line(tmp_path, resolver):
    bad = tmp_path / "bad"
    bad.write_text("Host x\n    NoSuchOption yes\n")
    with pytest.raises(DeviceError, match="OpenSSH cannot resolve" if resolver == "ssh" else "bad line 2: bad configuration option"):
        ssh_target(load_profile("raspberry-pi-4", {"ssh_config": str(bad), "host": "x"}))
    assert os.path.exists(bad)
