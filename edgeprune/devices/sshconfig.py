"""Where and how to connect for a profile, resolved the way OpenSSH resolves it (issue 14).

One design: **OpenSSH resolves, edgeprune reads the result.** ``ssh -G`` prints every option as ssh would use it
for a host (Include, Host and Match blocks, tokens, first-value-wins, several IdentityFiles all applied by the
same code that applies them to the user's own ``ssh pi``). It never connects. Where no ``ssh`` client is
installed, :mod:`sshparse` produces the same dump in Python (``Match exec`` refused there rather than run).

The profile enters at two levels, as OpenSSH's own layers would:

- a field the user set for this device (``DeviceProfile.explicit``: their profile file, a fleet's ``[defaults]``
  or device entry) is a command-line ``-o`` option: it wins over the config, as ``ssh -o User=x`` does;
- a field that only comes from a shipped profile or the built-in defaults is a last ``Host *`` block after the
  config: it applies where the config says nothing (a shipped ``user = "pi"`` never clobbers ssh_config's User).

Jump hosts (``ProxyJump``, the profile's ``proxy_jump``) become a route: each hop resolved with the same config
(and its own ProxyJump, as ``ssh -W`` through it would), its host key checked with the same policy. The SSH layer
(:mod:`ssh`) receives a finished :class:`SSHTarget` and never reads a config.
"""
from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from ..errors import ConfigError, DeviceError

if TYPE_CHECKING:  # annotations only: profiles imports the kinds registry
    from .profiles import DeviceProfile

#: A route longer than this is a loop in the config (a ProxyJump that reaches itself).
MAX_HOPS = 8
#: Seconds ``ssh -G`` may take (it reads files; a ``Match exec`` in the user's config runs a command).
RESOLVE_TIMEOUT = 15.0
SYSTEM_CONFIG = "/etc/ssh/ssh_config"
#: ``python`` forces edgeprune's own parser (sshparse), ``ssh`` requires OpenSSH's; unset: ssh when installed.
RESOLVER_ENV = "EDGEPRUNE_SSH_RESOLVER"
Dump = Dict[str, List[str]]


@dataclass
class SSHTarget:
    """Where and how to connect; resolved from a profile (and its ssh_config) before any network I/O."""

    host: str
    port: int = 22
    user: Optional[str] = None
    identity_files: Tuple[str, ...] = ()
    identities_only: bool = False
    certificate_files: Tuple[str, ...] = ()
    use_agent: bool = True
    known_hosts: Tuple[str, ...] = ("~/.ssh/known_hosts",)
    host_key_alias: Optional[str] = None
    connect_timeout: float = 10.0
    command_timeout: float = 600.0
    transfer_timeout: float = 300.0
    server_alive_interval: float = 0.0
    server_alive_count_max: int = 3
    #: The name the user knows this host by (the alias, or the hop as written in ProxyJump).
    name: str = ""
    #: Jump hosts, first hop first, each with its own settings; empty: a direct connection (or proxy_command).
    jumps: Tuple["SSHTarget", ...] = ()
    #: OpenSSH's ProxyCommand, tokens expanded; the connection is its stdin/stdout.
    proxy_command: Optional[str] = None

    def __post_init__(self) -> None:
        self.name = self.name or self.host

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH names this host in known_hosts: the HostKeyAlias when there is one, else host[:port]."""
        if self.host_key_alias:
            return self.host_key_alias
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def route(self) -> List[str]:
        """The hops' names then this host's: ``["bastion", "pi-1"]``."""
        return [hop.name for hop in self.jumps] + [self.name]

    @property
    def route_text(self) -> str:
        return " -> ".join(self.route) if self.jumps or self.proxy_command is None else f"{self.name} (ProxyCommand)"


# -- the dump: ssh -G, or sshparse where there is no ssh ------------------------------------------------------

def parse_dump(text: str) -> Dump:
    """``ssh -G``'s output as {keyword: [values in order]} (a keyword repeated, like identityfile, keeps all)."""
    out: Dump = {}
    for line in text.split("\n"):  # only newlines: a value may hold a carriage return
        key, _, value = line.strip().partition(" ")
        if key:
            out.setdefault(key.lower(), []).append(value.strip())
    return out


def _config_file(ssh_config: Optional[str]) -> Optional[str]:
    if not ssh_config:
        return None
    path = Path(os.path.expanduser(ssh_config))
    if path.exists() and not path.is_file():
        raise ConfigError(f"ssh_config {ssh_config}: not a file")
    return str(path) if path.is_file() else None


def _wrapper(config: Optional[str], system: bool, defaults: Sequence[Tuple[str, str]], folder: str) -> str:
    """A config that reads the user's, then the system's (as ssh without -F does), then the profile's defaults
    in a last ``Host *`` block: first value wins, so they fill only what the configs leave unset."""
    lines = [f'Include "{config}"'] if config else []
    if system and os.path.isfile(SYSTEM_CONFIG):
        lines.append(f'Include "{SYSTEM_CONFIG}"')
    if defaults:
        lines += ["Host *"] + [f'  {key} "{value}"' for key, value in defaults]
    path = os.path.join(folder, "edgeprune_ssh_config")
    Path(path).write_text("\n".join(lines) + "\n")
    return path


def dump(host: str, ssh_config: Optional[str], options: Sequence[Tuple[str, str]] = (),
         defaults: Sequence[Tuple[str, str]] = (), use_ssh: Optional[bool] = None) -> Dump:
    """What OpenSSH would use for ``host``: ``options`` as ``-o`` (they win), the user's config (and, for the
    default ``~/.ssh/config``, the system's), then ``defaults``. ``use_ssh`` None: ``ssh -G`` when installed, unless
    ``EDGEPRUNE_SSH_RESOLVER`` says ``python`` (edgeprune's own parser) or ``ssh``."""
    if use_ssh is None and os.environ.get(RESOLVER_ENV) in ("python", "ssh"):
        use_ssh = os.environ[RESOLVER_ENV] == "ssh"
    config = _config_file(ssh_config)
    system = ssh_config is None or os.path.expanduser(ssh_config) == os.path.expanduser("~/.ssh/config")
    ssh = shutil.which("ssh") if use_ssh is not False else None
    with tempfile.TemporaryDirectory(prefix="edgeprune-ssh-") as folder:
        wrapper = _wrapper(config, system, defaults, folder)
        if ssh is None:
            if use_ssh:
                raise ConfigError("resolving ssh_config needs OpenSSH's client (ssh): it is not installed")
            from . import sshparse

            return sshparse.dump(host, wrapper, options=[(k, v) for k, v in options])
        argv = [ssh, "-G", "-F", wrapper] + [f"-o{key}={value}" for key, value in options] + ["--", host]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=RESOLVE_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise ConfigError(f"ssh -G {host} did not finish in {RESOLVE_TIMEOUT:g} s (a Match exec in "
                              f"{ssh_config}?)") from exc
        except OSError as exc:
            raise ConfigError(f"cannot run {ssh} -G: {exc}") from exc
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        said = " ".join(line for line in stderr.splitlines() if "Pseudo-terminal" not in line)
        raise ConfigError(f"ssh_config {ssh_config or '(none)'}: OpenSSH cannot resolve {host!r}: "
                          f"{said.strip()[:300] or f'ssh -G exited with {proc.returncode}'}")
    return parse_dump(proc.stdout.decode("utf-8", "surrogateescape"))


# -- from the dump to a target ----------------------------------------------------------------------------------

def expand_tokens(text: str, host: str, port: int, user: str, original: str) -> str:
    """OpenSSH's tokens in IdentityFile, CertificateFile and ProxyCommand: %h %p %r %u %n %d %%, and ~."""
    values = {"h": host, "p": str(port), "r": user, "u": getpass.getuser(), "n": original,
              "d": os.path.expanduser("~"), "%": "%"}
    out, i = [], 0
    while i < len(text):
        if text[i] == "%" and i + 1 < len(text) and text[i + 1] in values:
            out.append(values[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    expanded = "".join(out)
    return os.path.expanduser(expanded) if expanded.startswith("~") else expanded


def _one(d: Dump, key: str, default: Optional[str] = None) -> Optional[str]:
    values = d.get(key)
    return values[0] if values else default


def _seconds(value: Optional[str], default: float) -> float:
    try:
        return float(value) if value not in (None, "none") else default
    except ValueError:
        return default


def split_jump(spec: str) -> Tuple[Optional[str], str, Optional[int]]:
    """``[user@]host[:port]`` (or ``ssh://[user@]host[:port]``) -> (user, host, port)."""
    hop = spec.strip()
    hop = hop[len("ssh://"):] if hop.startswith("ssh://") else hop
    user, _, rest = hop.rpartition("@")
    port = None
    if rest.startswith("["):  # [v6 address]:port
        host, _, tail = rest[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = rest.partition(":")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"ProxyJump {spec!r}: bad port {port_text!r}")
        port = int(port_text)
    if not host:
        raise ConfigError(f"ProxyJump {spec!r}: no host")
    return user or None, host, port


def target_from_dump(name: str, d: Dump, ssh_config: Optional[str], timeouts: Tuple[float, float, float],
                     use_agent: bool = True, depth: int = 0,
                     hop_defaults: Sequence[Tuple[str, str]] = ()) -> SSHTarget:
    """The target ``d`` describes, its ProxyJump resolved into hops (each with the same config, and
    ``hop_defaults`` where the config says nothing about a hop)."""
    host = _one(d, "hostname", name) or name
    port = int(_one(d, "port", "22") or 22)
    user = _one(d, "user") or getpass.getuser()
    expand = lambda text: expand_tokens(text, host, port, user, name)  # noqa: E731
    identity = tuple(dict.fromkeys(expand(v) for v in d.get("identityfile", [])))
    certificates = tuple(dict.fromkeys(expand(v) for v in d.get("certificatefile", [])))
    known = tuple(os.path.expanduser(p) for v in d.get("userknownhostsfile", []) for p in v.split())
    connect, command, transfer = timeouts
    target = SSHTarget(
        host=host, port=port, user=user, identity_files=identity,
        identities_only=_one(d, "identitiesonly", "no") == "yes", certificate_files=certificates,
        use_agent=use_agent and _one(d, "identityagent", "") != "none",
        known_hosts=known or (os.path.expanduser("~/.ssh/known_hosts"),),
        host_key_alias=_one(d, "hostkeyalias"),
        connect_timeout=_seconds(_one(d, "connecttimeout"), connect), command_timeout=command,
        transfer_timeout=transfer, server_alive_interval=_seconds(_one(d, "serveraliveinterval"), 0.0),
        server_alive_count_max=int(_seconds(_one(d, "serveralivecountmax"), 3)), name=name)
    jump = _one(d, "proxyjump")
    command_line = _one(d, "proxycommand")
    if jump and jump != "none":
        return replace(target, jumps=_route(jump, ssh_config, timeouts, use_agent, depth, hop_defaults))
    if command_line and command_line != "none":
        return replace(target, proxy_command=expand(command_line))
    return target


def _route(spec: str, ssh_config: Optional[str], timeouts: Tuple[float, float, float], use_agent: bool,
           depth: int, hop_defaults: Sequence[Tuple[str, str]] = ()) -> Tuple[SSHTarget, ...]:
    """The hops of a ProxyJump list: the first reached by its own route (its own ProxyJump, as ``ssh -W`` through
    it would be), each later one through the one before (OpenSSH's ``-J A,B``)."""
    hops: List[SSHTarget] = []
    for index, part in enumerate(spec.split(",")):
        user, host, port = split_jump(part)
        if depth + len(hops) + 1 > MAX_HOPS:
            raise ConfigError(f"ProxyJump {spec!r}: a route of more than {MAX_HOPS} hops (a loop in the config?)")
        options = [(k, v) for k, v in (("User", user), ("Port", str(port) if port else None)) if v]
        if index > 0:
            options.append(("ProxyJump", "none"))
        hop = target_from_dump(host, dump(host, ssh_config, options, hop_defaults), ssh_config, timeouts,
                               use_agent, depth + len(hops) + 1, hop_defaults)
        hops.extend(hop.jumps)
        hops.append(replace(hop, jumps=()))
    return tuple(hops)


#: Profile fields that are ssh_config options (profile field -> OpenSSH keyword).
PROFILE_OPTIONS = (("user", "User"), ("port", "Port"), ("key_file", "IdentityFile"),
                   ("known_hosts", "UserKnownHostsFile"), ("proxy_jump", "ProxyJump"))


def ssh_target(profile: "DeviceProfile") -> SSHTarget:
    """Profile + its ssh_config -> where to connect (see the module docstring for who wins)."""
    options, defaults = [], []
    for field_name, keyword in PROFILE_OPTIONS:
        value = getattr(profile, field_name)
        if value in (None, ""):
            continue
        text = str(value)
        if field_name in ("key_file", "known_hosts"):  # ~ as this process sees it ($HOME), as before
            text = os.path.expanduser(text)
        if any(c in text for c in '"\n\r') or not text.isprintable():
            raise ConfigError(f"device {profile.name}: {field_name} {text!r} cannot be given to OpenSSH")
        (options if field_name in profile.explicit else defaults).append((keyword, text))
    timeouts = (float(profile.connect_timeout), float(profile.command_timeout), float(profile.transfer_timeout))
    # A hop takes the profile's key and known_hosts where the config says nothing about it: without an
    # ssh_config, ``proxy_jump`` alone must reach the bastion with the files the user named for the device.
    # (``ssh -J`` would not pass them on; a user of proxy_jump has nowhere else to name them.)
    hop_defaults = [(k, v) for k, v in options + defaults if k in ("IdentityFile", "UserKnownHostsFile")]
    try:
        d = dump(profile.host, profile.ssh_config, options, defaults)
        target = target_from_dump(profile.host, d, profile.ssh_config, timeouts, profile.use_agent,
                                  hop_defaults=hop_defaults)
    except ConfigError as exc:
        raise DeviceError(f"device {profile.name}: {exc}") from exc
    target = replace(target, name=profile.name)  # errors and routes name the device as the user does
    if "connect_timeout" in profile.explicit:
        target = replace(target, connect_timeout=float(profile.connect_timeout))
    return target

