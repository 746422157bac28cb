"""Lab devices in their own network namespace (kind ``netns``): sshd inside ``eplab-N-<owner pid>``, reached over a
veth pair at 10.200.N.2 (host side 10.200.N.1), optionally over a degraded link (:class:`LinkSpec`: tc tbf rate,
nftables random loss, and the user-space delay proxy). Cleanup removes what a crashed or killed run left behind.
Needs root.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

from support.lab.common import locked, need, run
from support.lab.devices import LabDevice, wait_for_ssh
from support.lab.proxy import DelayProxy
from support.sshlab import SSHD, _comm, require_sshd

#: Network namespaces are named ``eplab-<index>-<owner pid>``, veths ``eplab<index>h`` (host) / ``eplab<index>d``.
NETNS_PREFIX = "eplab"
NETNS_RE = re.compile(r"^eplab-(\d+)-(\d+)$")
VETH_RE = re.compile(r"^eplab(\d+)[hd]$")
ALLOC_LOCK = Path("/tmp/edgeprune-lab.lock")
FALLBACK_METRIC = "4242"


@dataclass
class LinkSpec:
    """A degraded link for a ``netns`` device. ``rate``: tc tbf on both veth ends (both directions), e.g.
    ``"1mbit"``; ``loss_percent``: nftables ``numgen random`` drop, in each direction; ``delay_ms``: added by a
    user-space proxy on the host side, in each direction (the fleet then points at the proxy)."""

    rate: Optional[str] = None
    loss_percent: float = 0.0
    delay_ms: float = 0.0

    @property
    def degraded(self) -> bool:
        return bool(self.rate or self.loss_percent or self.delay_ms)


@dataclass
class NetnsDevice(LabDevice):
    """sshd inside network namespace ``eplab-N-<pid>``, on 10.200.N.2:22 behind a veth pair."""

    index: int = 0
    link: LinkSpec = field(default_factory=LinkSpec)
    proxy: Optional[DelayProxy] = None

    @property
    def netns(self) -> str:
        return f"{NETNS_PREFIX}-{self.index}-{os.getpid()}"

    @property
    def veth_host(self) -> str:
        return f"{NETNS_PREFIX}{self.index}h"

    @property
    def veth_device(self) -> str:
        return f"{NETNS_PREFIX}{self.index}d"

    @property
    def host_ip(self) -> str:
        return f"10.200.{self.index}.1"

    @property
    def device_ip(self) -> str:
        return f"10.200.{self.index}.2"

    @property
    def subnet(self) -> str:
        return f"10.200.{self.index}.0/30"

    @property
    def fleet_address(self) -> Tuple[str, int]:
        if self.proxy is not None:
            return "127.0.0.1", self.proxy.port
        return self.device_ip, 22

    def setup_network(self) -> None:
        """Namespace, veth pair, addresses, and the degradations of ``self.link``."""
        ip, ns = need("ip", "iproute2"), self.netns
        run([ip, "netns", "add", ns])
        run([ip, "link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_device, "netns", ns])
        run([ip, "addr", "add", f"{self.host_ip}/30", "dev", self.veth_host])
        run([ip, "link", "set", self.veth_host, "up"])
        run([ip, "-n", ns, "addr", "add", f"{self.device_ip}/30", "dev", self.veth_device])
        run([ip, "-n", ns, "link", "set", self.veth_device, "up"])
        run([ip, "-n", ns, "link", "set", "lo", "up"])
        # A fallback for when the link is down: without it, packets to 10.200.N.2 would follow the default route
        # off this machine. The connected /30 route (metric 0) wins while the link is up.
        run([ip, "route", "add", "unreachable", self.subnet, "metric", FALLBACK_METRIC])
        if self.link.rate:
            tc = need("tc", "iproute2")
            tbf = ["root", "tbf", "rate", self.link.rate, "burst", "32kbit", "latency", "400ms"]
            run([tc, "qdisc", "add", "dev", self.veth_host, *tbf])
            run([tc, "-n", ns, "qdisc", "add", "dev", self.veth_device, *tbf])
        if self.link.loss_percent:
            nft = need("nft", "nftables")
            basis = int(round(self.link.loss_percent * 100))  # in 1/10000
            rules = (f"table inet {NETNS_PREFIX}_loss {{\n"
                     f"  chain input {{ type filter hook input priority 0; policy accept;\n"
                     f"    iifname \"{self.veth_device}\" numgen random mod 10000 < {basis} counter drop\n  }}\n"
                     f"  chain output {{ type filter hook output priority 0; policy accept;\n"
                     f"    oifname \"{self.veth_device}\" numgen random mod 10000 < {basis} counter drop\n  }}\n"
                     f"}}\n")
            run([ip, "netns", "exec", ns, nft, "-f", "-"], input=rules)
        self.extra_config = f"ListenAddress {self.device_ip}\n"
        self.port = 22

    def dropped_packets(self) -> int:
        """Packets the loss rule has dropped so far (both directions)."""
        if not self.link.loss_percent:
            return 0
        out = run(["ip", "netns", "exec", self.netns, need("nft", "nftables"), "list", "table", "inet",
                    f"{NETNS_PREFIX}_loss"]).stdout
        return sum(int(n) for n in re.findall(r"counter packets (\d+)", out))

    def start(self) -> "NetnsDevice":
        require_sshd()
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        log = open(self.root / "sshd.log", "ab")
        # `ip netns exec` execs sshd itself (no fork), so self.process is sshd and SshdDevice.stop works as is.
        self.process = subprocess.Popen(["ip", "netns", "exec", self.netns, SSHD, "-D", "-e", "-f", str(config)],
                                        stdout=log, stderr=log, start_new_session=True)
        wait_for_ssh(self.device_ip, 22, self.process, self.root / "sshd.log", self.name)
        if self.link.delay_ms and self.proxy is None:
            self.proxy = DelayProxy((self.device_ip, 22), self.link.delay_ms / 1000.0).start()
        return self

    def link_down(self) -> None:
        """Unplug the device's cable: its interface goes down, the host side keeps its address and route, so
        new connections time out and open ones stall (nothing is refused, as on a real network loss)."""
        run(["ip", "-n", self.netns, "link", "set", self.veth_device, "down"])

    def link_up(self) -> None:
        run(["ip", "-n", self.netns, "link", "set", self.veth_device, "up"])

    def teardown(self) -> None:
        try:
            self.stop()
        finally:
            if self.proxy is not None:
                self.proxy.stop()
                self.proxy = None
            remove_netns(self.netns, self.index)


def remove_netns(netns: str, index: int) -> None:
    """Kill the sshd processes left in ``netns``, delete its host veth (which takes the pair with it), the
    namespace and the fallback route. Never fails: it is cleanup. Other processes in the namespace die of the
    hang-up (see sshlab)."""
    veth_host = f"{NETNS_PREFIX}{index}h"
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
    for pid in pids:
        if _comm(int(pid)) == "sshd":
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "link", "del", veth_host], capture_output=True)
    subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    subprocess.run(["ip", "route", "del", "unreachable", f"10.200.{index}.0/30", "metric", FALLBACK_METRIC],
                   capture_output=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_leftovers(include_own: bool = False) -> List[str]:
    """Remove namespaces, veths and fallback routes of lab processes that are gone (a crashed or killed run);
    returns their names. Labs of live processes (another pytest worker) are left alone, and so are this
    process's own unless ``include_own`` (at the very end of a session)."""
    removed: List[str] = []
    if shutil.which("ip") is None:
        return removed
    live_indexes = set()
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = NETNS_RE.match(name)
        if not match:
            continue
        index, owner = int(match.group(1)), int(match.group(2))
        if _alive(owner) and not (include_own and owner == os.getpid()):
            live_indexes.add(index)
            continue
        remove_netns(name, index)
        removed.append(name)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        parts = line.split(":")
        name = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
        match = VETH_RE.match(name)
        if match and int(match.group(1)) not in live_indexes and name.endswith("h"):
            subprocess.run(["ip", "link", "del", name], capture_output=True)
            removed.append(name)
    routes = subprocess.run(["ip", "route", "show", "type", "unreachable"], capture_output=True, text=True).stdout
    for index in re.findall(rf"^unreachable 10\.200\.(\d+)\.0/30 metric {FALLBACK_METRIC}\b", routes, re.M):
        if int(index) not in live_indexes:
            remove_netns(f"{NETNS_PREFIX}-{index}-gone", int(index))
            removed.append(f"route 10.200.{index}.0/30")
    return removed


def taken_indexes() -> set:
    taken = set()
    for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines():
        match = NETNS_RE.match(line.split()[0]) if line.split() else None
        if match:
            taken.add(int(match.group(1)))
    addresses = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    taken.update(int(n) for n in re.findall(r"inet 10\.200\.(\d+)\.", addresses))
    routes = subprocess.run(["ip", "route", "show"], capture_output=True, text=True).stdout
    taken.update(int(n) for n in re.findall(r"10\.200\.(\d+)\.0/30", routes))
    return taken


def claim_network(device: NetnsDevice) -> None:
    """Give ``device`` the lowest free index and set up its network; the lock keeps parallel labs (other pytest
    processes) from taking the same one."""
    with locked(ALLOC_LOCK):
        taken = taken_indexes()
        device.index = next(i for i in range(1, 255) if i not in taken)
        device.setup_network()
