"""Where to connect for a profile: the profile's fields plus what the OpenSSH client config says about its host.

The OpenSSH resolution rules live here, and only here: the SSH layer receives a resolved :class:`SSHTarget`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional

from ..errors import DeviceError

if TYPE_CHECKING:  # annotations only: profiles imports the kinds registry
    from .profiles import DeviceProfile


@dataclass
class SSHTarget:
    """Where and how to connect; resolved from a profile (and ~/.ssh/config) before any network I/O."""

    host: str
    port: int = 22
    user: Optional[str] = None
    key_file: Optional[str] = None
    use_agent: bool = True
    known_hosts: str = "~/.ssh/known_hosts"
    connect_timeout: float = 10.0
    command_timeout: float = 600.0
    transfer_timeout: float = 300.0

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH names this host in known_hosts."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def resolve_alias(host: str, ssh_config: Optional[str]) -> Dict[str, Any]:
    """What ``~/.ssh/config`` says about ``host`` (HostName, Port, User, IdentityFile), via paramiko."""
    import paramiko

    path = Path(os.path.expanduser(ssh_config or "~/.ssh/config"))
    if not path.is_file():
        return {}
    try:
        return dict(paramiko.SSHConfig.from_path(str(path)).lookup(host))
    except (OSError, ValueError) as exc:
        raise DeviceError(f"cannot read ssh config {path}: {exc}") from exc


def ssh_target(profile: DeviceProfile) -> SSHTarget:
    """Profile + ~/.ssh/config -> where to connect. The profile's own fields win over the config's."""
    config = resolve_alias(profile.host, profile.ssh_config)
    identity = config.get("identityfile")
    key_file = profile.key_file or (identity[0] if isinstance(identity, list) and identity else None)
    if key_file and not Path(os.path.expanduser(key_file)).is_file():
        key_file = None if not profile.key_file else key_file
    return SSHTarget(
        host=config.get("hostname", profile.host),
        port=int(config.get("port", profile.port)) if profile.port == 22 else profile.port,
        user=profile.user or config.get("user"),
        key_file=key_file,
        use_agent=profile.use_agent,
        known_hosts=profile.known_hosts,
        connect_timeout=profile.connect_timeout,
        command_timeout=profile.command_timeout,
        transfer_timeout=profile.transfer_timeout,
    )
