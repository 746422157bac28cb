"""Getting an SSH session to a device along its route (issue 14): directly, through jump hosts (ProxyJump: nested
``direct-tcpip`` channels), or through a ProxyCommand's stdin/stdout.

Every hop is checked like the device: its host key against the same known_hosts files under the name OpenSSH
uses (its HostKeyAlias, else ``host`` or ``[host]:port``), with the same policy; a failure names the hop
("cannot reach pi-1 through bastion (10.0.0.1:22): bastion refused the key"). Jump hosts are shared: the devices
of a fleet behind one bastion use one login to it (one ``SSHClient``, many channels), opened by the first device
that needs it while the others wait for that login rather than opening their own; it is closed when the last of
them is done. ``ServerAliveInterval``/``CountMax`` are kept by a small watcher per login: a link that stops
answering is closed, so a long benchmark over flaky Wi-Fi fails with a reason instead of hanging.
"""
from __future__ import annotations

import base64
import enum
import hashlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from ..errors import DeviceError, HostKeyError
from .sshconfig import SSHTarget


class HostKeyPolicy(enum.Enum):
    """What to do with a host key that is not in known_hosts (a changed key is refused under every policy).

    One value chosen once, by the CLI's ``--accept-new-host-keys``, and handed down to the connection.
    """

    REJECT = "reject"
    ACCEPT_NEW = "accept-new"  # OpenSSH's StrictHostKeyChecking=accept-new

    @classmethod
    def from_flag(cls, accept_new: bool) -> "HostKeyPolicy":
        return cls.ACCEPT_NEW if accept_new else cls.REJECT


def fingerprint(key: Any) -> str:
    """OpenSSH's SHA256 fingerprint, whole (43 base64 characters)."""
    return base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


class _AcceptNewPolicy:
    """accept-new: trust a host seen for the first time and remember it; never a changed key."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with open(self.known_hosts, "a") as handle:
            handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class _RejectPolicy:
    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        raise HostKeyError(
            f"host key for {hostname} is not in known_hosts ({key.get_name()} SHA256:{fingerprint(key)}); check it "
            f"and rerun with --accept-new-host-keys to trust it")


class HopError(DeviceError):
    """A hop of the route failed; ``reason`` is said from the hop's point of view."""

    def __init__(self, hop: SSHTarget, reason: str, host_key: bool = False) -> None:
        super().__init__(reason)
        self.hop, self.reason, self.host_key = hop, reason, host_key


def _socket(t: SSHTarget) -> Any:
    try:
        return socket.create_connection((t.host, t.port), timeout=t.connect_timeout)
    except (socket.timeout, TimeoutError) as exc:
        raise HopError(t, f"connection to {t.host}:{t.port} timed out after {t.connect_timeout:g} s") from exc
    except OSError as exc:
        raise HopError(t, f"cannot connect to {t.host}:{t.port}: {exc.strerror or exc}") from exc


def handshake(t: SSHTarget, sock: Any, policy: HostKeyPolicy) -> Any:
    """An authenticated ``SSHClient`` for ``t`` over ``sock`` (a socket, a channel or a ProxyCommand)."""
    import paramiko

    client = paramiko.SSHClient()
    files = [Path(os.path.expanduser(f)) for f in t.known_hosts]
    for path in files:
        if path.is_file():
            try:
                client.get_host_keys().load(str(path))
            except (OSError, paramiko.SSHException) as exc:
                raise HopError(t, f"cannot read known_hosts {path}: {exc}") from exc
    accept = policy is HostKeyPolicy.ACCEPT_NEW
    client.set_missing_host_key_policy(_AcceptNewPolicy(files[0]) if accept else _RejectPolicy())  # type: ignore
    # paramiko takes a certificate as ``<key>-cert.pub`` beside its key (and finds one there by itself)
    certified = [c for c in map(os.path.expanduser, t.certificate_files)
                 if c.endswith("-cert.pub") and os.path.isfile(c) and os.path.isfile(c[: -len("-cert.pub")])]
    keys = certified + [k for k in map(os.path.expanduser, t.identity_files) if os.path.isfile(k)]
    lookup, lookup_port = (t.host_key_alias, 22) if t.host_key_alias else (t.host, t.port)
    started = time.monotonic()
    try:
        client.connect(lookup, port=lookup_port, username=t.user, key_filename=keys or None,
                       allow_agent=t.use_agent and not t.identities_only, look_for_keys=False, sock=sock,
                       timeout=t.connect_timeout, banner_timeout=t.connect_timeout,
                       auth_timeout=t.connect_timeout, channel_timeout=t.connect_timeout)
    except HostKeyError as exc:
        client.close()
        raise HopError(t, str(exc), host_key=True) from exc
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HopError(t, f"HOST KEY CHANGED for {t.known_hosts_name}: known_hosts has SHA256:"
                          f"{fingerprint(exc.expected_key)}, the host offered SHA256:{fingerprint(exc.key)}; refusing "
                          f"to connect (if it was reinstalled, remove its line from {files[0]})",
                       host_key=True) from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        raise HopError(t, f"{t.name} refused the key (authentication to {t.user}@{t.host}:{t.port} failed: "
                          f"{exc})") from exc
    except (socket.timeout, TimeoutError) as exc:
        client.close()
        raise HopError(t, f"connection to {t.host}:{t.port} timed out after {t.connect_timeout:g} s") from exc
    except (paramiko.SSHException, OSError, EOFError) as exc:
        client.close()
        if time.monotonic() - started >= 0.95 * t.connect_timeout:
            # paramiko words a stalled handshake variously ("No existing session", "Error reading SSH protocol
            # banner"); what the user needs to know is that the host did not answer in time.
            raise HopError(t, f"connection to {t.host}:{t.port} timed out after {t.connect_timeout:g} s (no SSH "
                              f"handshake)") from exc
        raise HopError(t, f"cannot connect to {t.host}:{t.port}: {exc or type(exc).__name__}") from exc
    _keep_alive(client, t)
    return client


def _keep_alive(client: Any, t: SSHTarget) -> None:
    """ServerAliveInterval/CountMax: ask the server every interval; after CountMax unanswered asks, close."""
    transport = client.get_transport()
    if transport is None:
        return
    if t.server_alive_interval <= 0:
        transport.set_keepalive(15)
        return
    interval, most = t.server_alive_interval, max(1, t.server_alive_count_max)

    def watch() -> None:
        missed = 0
        while transport.is_active():
            time.sleep(interval)
            probe = threading.Thread(target=transport.global_request, args=("keepalive@openssh.com",),
                                     kwargs={"wait": True}, daemon=True)
            probe.start()
            probe.join(interval)
            missed = missed + 1 if probe.is_alive() else 0
            if missed >= most:
                transport.close()  # every waiting read on this link now fails: the caller says "connection lost"
                return

    threading.Thread(target=watch, name=f"edgeprune-alive-{t.name}", daemon=True).start()


# -- the shared logins to jump hosts ---------------------------------------------------------------------------

class _Login:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.client: Any = None
        self.users = 0


_POOL: Dict[Tuple[Any, ...], _Login] = {}
_POOL_LOCK = threading.Lock()


def _key(hops: Tuple[SSHTarget, ...], policy: HostKeyPolicy) -> Tuple[Any, ...]:
    return (policy,) + tuple((h.host, h.port, h.user, h.known_hosts_name, h.identity_files, h.known_hosts)
                             for h in hops)


def _channel(via: Any, hop: SSHTarget, t: SSHTarget) -> Any:
    import paramiko

    try:
        return via.get_transport().open_channel("direct-tcpip", (t.host, t.port), ("127.0.0.1", 0),
                                                timeout=t.connect_timeout)
    except (paramiko.SSHException, OSError, EOFError, AttributeError) as exc:
        raise HopError(hop, f"{hop.name} could not open a connection to {t.host}:{t.port} "
                            f"({exc or type(exc).__name__})") from exc


def _login(hops: Tuple[SSHTarget, ...], policy: HostKeyPolicy) -> Tuple[Any, Callable[[], None]]:
    """A shared client for the last of ``hops`` (reached through the ones before) and its release."""
    key = _key(hops, policy)
    with _POOL_LOCK:
        login = _POOL.setdefault(key, _Login())
        login.users += 1
    release_outer: Optional[Callable[[], None]] = None

    def release() -> None:
        with _POOL_LOCK:
            login.users -= 1
            last = login.users == 0
            if last and _POOL.get(key) is login:
                del _POOL[key]
        if last:
            if login.client is not None:
                login.client.close()
            if release_outer is not None:
                release_outer()

    try:
        with login.lock:  # the first device logs in; the others wait for that login
            transport = login.client.get_transport() if login.client is not None else None
            if transport is None or not transport.is_active():
                hop = hops[-1]
                if len(hops) > 1:
                    via, release_outer = _login(hops[:-1], policy)
                    sock = _channel(via, hops[-2], hop)
                else:
                    sock = _socket(hop)
                login.client = handshake(hop, sock, policy)
    except BaseException:
        release()
        raise
    return login.client, release


def open_client(t: SSHTarget, policy: HostKeyPolicy) -> Tuple[Any, Callable[[], None]]:
    """An authenticated client for the device ``t`` along its route, and what to call once it is closed."""
    import paramiko

    release: Callable[[], None] = lambda: None  # noqa: E731
    try:
        if t.jumps:
            via, release = _login(t.jumps, policy)
            sock = _channel(via, t.jumps[-1], t)
        elif t.proxy_command:
            try:
                sock = paramiko.ProxyCommand(t.proxy_command)
            except (paramiko.SSHException, OSError) as exc:
                raise HopError(t, f"ProxyCommand {t.proxy_command!r} failed to start: {exc}") from exc
        else:
            sock = _socket(t)
        return handshake(t, sock, policy), release
    except HopError as exc:
        release()
        raise _said(t, exc) from exc
    except BaseException:
        release()
        raise


def _said(t: SSHTarget, exc: HopError) -> DeviceError:
    """The error as the user reads it: about the device itself, or naming the hop it could not get past."""
    kind = HostKeyError if exc.host_key else DeviceError
    if exc.hop is t:
        return kind(exc.reason)
    reason = exc.reason
    if exc.host_key and reason.startswith("host key for"):
        reason = f"{exc.hop.name}'s host key " + reason[len("host key for ") + len(exc.hop.known_hosts_name) + 1:]
    return kind(f"cannot reach {t.name} through {exc.hop.name} ({exc.hop.host}:{exc.hop.port}): {reason}")
