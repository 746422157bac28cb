"""The device lab: several kinds of real SSH devices on this machine, and the fleet file that lists them.

Kinds (see docs/lab.md):

- ``loopback``: an sshd on 127.0.0.1 whose Python is the host's venv (x86-64, ai-edge-litert).
- ``pi39``: an sshd on 127.0.0.1 whose Python is the Pi-like Python 3.9 venv (tflite-runtime 2.14, numpy<2).
- ``arm64``: an emulated Raspberry Pi: an sshd on 127.0.0.1 whose ``python`` is a wrapper that runs Debian
  bookworm's aarch64 ``python3`` (3.11) under ``qemu-aarch64-static``, with tflite-runtime 2.14 + numpy<2 aarch64
  wheels. Built once into ``.cache/pi-arm64`` (:func:`build_pi_arm64`).
- ``netns``: an sshd inside its own network namespace, reached over a veth pair at 10.200.N.2 (host side
  10.200.N.1), optionally over a degraded link (:class:`LinkSpec`: tc tbf rate, nftables random loss, and a
  user-space delay proxy since this kernel has no netem).

``with lab(["loopback", "arm64", "netns"], tmp) as running:`` starts them, trusts their host keys, writes
``running.fleet_path``, and on exit (also on error) stops sshd, the proxies, and deletes the namespaces.
Traffic only goes to 127.0.0.1 and to the 10.200.N.0/30 links this module creates. Needs root for ``netns``.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_envs import pi_like_python  # noqa: E402
from sshlab import SSHD, ClientKeys, SshdDevice, _comm, _toml_string, require_sshd, write_fleet  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
PI_ARM64_DIR = REPO_ROOT / ".cache" / "pi-arm64"
KINDS = ("loopback", "pi39", "arm64", "netns")

SUITE = "bookworm"
QEMU = "/usr/bin/qemu-aarch64-static"
ARM64_REQUIREMENTS = ["tflite-runtime==2.14.0", "numpy<2"]
#: Both are needed: tflite-runtime 2.14's aarch64 wheel is manylinux_2_34, numpy 1.26's is manylinux2014.
ARM64_PLATFORMS = ["manylinux_2_34_aarch64", "manylinux2014_aarch64"]
DEFAULT_MIRROR = "http://deb.debian.org/debian"

#: Network namespaces are named ``eplab-<index>-<owner pid>``, veths ``eplab<index>h`` (host) / ``eplab<index>d``.
NETNS_PREFIX = "eplab"
NETNS_RE = re.compile(r"^eplab-(\d+)-(\d+)$")
VETH_RE = re.compile(r"^eplab(\d+)[hd]$")
ALLOC_LOCK = Path("/tmp/edgeprune-lab.lock")
FALLBACK_METRIC = "4242"

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: Sequence[str], timeout: float = 900, check: bool = True, env: Optional[Dict[str, str]] = None,
         input: Optional[str] = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env, input=input)
    if check and proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n"
                           f"{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    return proc


def _need(program: str, package: str) -> str:
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin:/usr/bin")
    if not found:
        raise RuntimeError(f"{program} is missing: run scripts/test.sh, which installs {package}")
    return found


# ---------------------------------------------------------------------------------------------------------------
# The emulated Raspberry Pi (aarch64 Debian root + qemu-user)


def debian_mirror() -> str:
    """The Debian mirror apt already uses here (``$EDGEPRUNE_DEBIAN_MIRROR`` wins), else deb.debian.org."""
    if os.environ.get("EDGEPRUNE_DEBIAN_MIRROR"):
        return os.environ["EDGEPRUNE_DEBIAN_MIRROR"]
    candidates: List[str] = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text(errors="replace").split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines() if ":" in line and line[:1] not in "# ")
            fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
            suites = fields.get("suites", "").split()
            if "deb" in fields.get("types", "").split() and any(s in (SUITE, "stable") for s in suites):
                candidates += fields.get("uris", "").split()
    listing = Path("/etc/apt/sources.list")
    if listing.is_file():
        for line in listing.read_text(errors="replace").splitlines():
            parts = [p for p in line.split() if not p.startswith("[")]
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] in (SUITE, "stable"):
                candidates.append(parts[1])
    for uri in candidates:
        if uri.startswith(("http://", "https://")) and "security" not in uri:
            return uri
    return DEFAULT_MIRROR


@dataclass
class PiArm64:
    """A built emulated Pi: ``python`` is the wrapper a device profile names."""

    home: Path
    build: Dict[str, object]

    @property
    def root(self) -> Path:
        return self.home / "root"

    @property
    def python(self) -> Path:
        return self.home / "python"


def _wanted(home: Path) -> Dict[str, object]:
    return {"format": 1, "suite": SUITE, "requirements": ARM64_REQUIREMENTS, "platforms": ARM64_PLATFORMS,
            "qemu": QEMU, "home": str(home)}


def build_pi_arm64(home: Path = PI_ARM64_DIR, log: Log = _quiet) -> PiArm64:
    """Build (or reuse) the emulated Pi under ``home``; a file lock serialises parallel builders.

    Three cached layers: ``debs/`` (the arm64 .debs of a minbase bookworm with python3, fetched with
    ``debootstrap --download-only``), ``wheels/`` (tflite-runtime + numpy aarch64 wheels) and ``root/`` (every
    .deb unpacked with ``dpkg-deb -x``, no second stage, wheels installed into /usr/local/lib/python3.X/
    dist-packages as ``pip install`` on a Pi would). ``stamp.json`` marks a finished build and records how long
    it took and which layers were downloaded.
    """
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home.parent / (home.name + ".lock")):
        stamp = home / "stamp.json"
        wanted = _wanted(home)
        if stamp.is_file():
            done = json.loads(stamp.read_text())
            if {k: done.get(k) for k in wanted} == wanted and (home / "python").is_file():
                return PiArm64(home, dict(done["build"], cached=True))
            stamp.unlink()
        started = time.monotonic()
        _need(QEMU, "qemu-user-static")
        debs_fetched = _fetch_debs(home / "debs", log)
        root, staging = home / "root", home / "root.tmp"
        for stale in (root, staging):
            if stale.exists():
                shutil.rmtree(stale)
        log(f"unpacking {len(list((home / 'debs').glob('*.deb')))} .debs")
        for deb in sorted((home / "debs").glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(staging)])
        version = _python_version(staging)
        site = staging / "usr" / "local" / "lib" / f"python{version}" / "dist-packages"
        wheels_fetched = _install_wheels(home / "wheels", site, version, log)
        staging.rename(root)
        _write_wrapper(home / "python", root)
        facts = _check_python(home / "python")
        build = {"seconds": round(time.monotonic() - started, 1), "debs_downloaded": debs_fetched,
                 "wheels_downloaded": wheels_fetched, "python": facts, "mirror": debian_mirror()}
        stamp.write_text(json.dumps({**wanted, "build": build}, indent=2))
        log(f"emulated Pi built in {build['seconds']} s")
        return PiArm64(home, dict(build, cached=False))


def _fetch_debs(debs: Path, log: Log) -> bool:
    marker = debs / ".complete"
    if marker.is_file() and marker.read_text() == SUITE:
        return False
    debootstrap = _need("debootstrap", "debootstrap")
    for stale in (debs, debs.parent / "debootstrap.tmp"):
        if stale.exists():
            shutil.rmtree(stale)
    target = debs.parent / "debootstrap.tmp"
    mirror = debian_mirror()
    log(f"downloading arm64 {SUITE} .debs from {mirror}")
    _run([debootstrap, "--arch=arm64", "--download-only", "--variant=minbase", "--include=python3", SUITE,
          str(target), mirror], timeout=1800)
    debs.mkdir(parents=True)
    for deb in (target / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.rename(debs / deb.name)
    shutil.rmtree(target)
    marker.write_text(SUITE)
    return True


def _python_version(root: Path) -> str:
    found = sorted(p.name[len("python"):] for p in (root / "usr" / "lib").glob("python3.*") if p.is_dir())
    if not found:
        raise RuntimeError(f"no python3.X under {root}/usr/lib after unpacking the .debs")
    return found[-1]


def _pip_platform_args(version: str) -> List[str]:
    args = ["--only-binary=:all:", "--python-version", version, "--implementation", "cp"]
    for platform in ARM64_PLATFORMS:
        args += ["--platform", platform]
    return args


def _install_wheels(wheels: Path, site: Path, version: str, log: Log) -> bool:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    marker = wheels / ".complete"
    wanted = json.dumps([version, ARM64_REQUIREMENTS])
    fetched = False
    if not (marker.is_file() and marker.read_text() == wanted):
        if wheels.exists():
            shutil.rmtree(wheels)
        log("downloading aarch64 wheels: " + " ".join(ARM64_REQUIREMENTS))
        _run([*pip, "download", "-q", "-d", str(wheels), *_pip_platform_args(version), *ARM64_REQUIREMENTS])
        marker.write_text(wanted)
        fetched = True
    _run([*pip, "install", "-q", "--no-warn-conflicts", "--no-index", "--find-links", str(wheels),
          "--target", str(site), *_pip_platform_args(version), *ARM64_REQUIREMENTS])
    return fetched


def _write_wrapper(path: Path, root: Path) -> None:
    path.write_text(
        "#!/bin/sh\n"
        "# edgeprune test lab: an emulated Raspberry Pi (Debian bookworm aarch64 python3 under qemu-user).\n"
        "unset PYTHONHOME PYTHONPATH\n"
        f"exec {shlex.quote(QEMU)} -L {shlex.quote(str(root))} {shlex.quote(str(root / 'usr/bin/python3'))} \"$@\"\n"
    )
    path.chmod(0o755)


def _check_python(python: Path) -> Dict[str, str]:
    code = ("import json, platform, sys, numpy, tflite_runtime; print(json.dumps({'machine': platform.machine(), "
            "'python': platform.python_version(), 'numpy': numpy.__version__, "
            "'tflite_runtime': tflite_runtime.__version__}))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    facts = json.loads(_run([str(python), "-c", code], timeout=300, env=env).stdout)
    if facts["machine"] != "aarch64":
        raise RuntimeError(f"the emulated Pi reports machine {facts['machine']!r}, not aarch64")
    return facts


# ---------------------------------------------------------------------------------------------------------------
# Devices


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
class LabDevice(SshdDevice):
    """An SshdDevice with a lab kind, profile fields for the fleet file and tags."""

    kind: str = "loopback"
    profile: Dict[str, object] = field(default_factory=dict)

    @property
    def fleet_address(self) -> Tuple[str, int]:
        return "127.0.0.1", self.port

    def known_hosts_line(self) -> str:
        host, port = self.fleet_address
        kind, b64 = self.host_public_key
        return f"{host if port == 22 else f'[{host}]:{port}'} {kind} {b64}\n"

    def profile_toml(self, **overrides: object) -> str:
        host, port = self.fleet_address
        values = {"host": host, "port": port, **self.profile, **overrides}
        tags = values.pop("tags", [self.kind])
        return (super().profile_toml(**values)
                + "tags = [" + ", ".join(_toml_string(str(t)) for t in tags) + "]\n")  # type: ignore[union-attr]

    def teardown(self) -> None:
        self.stop()


def wait_for_ssh(host: str, port: int, process: subprocess.Popen, log: Path, name: str,
                 timeout: float = 10) -> None:
    """Until ``host:port`` sends an SSH banner; raises if sshd exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd for {name} exited: {log.read_text()[-500:]}")
        try:
            with socket.create_connection((host, port), timeout=0.5) as sock:
                sock.settimeout(2)
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd for {name} did not answer on {host}:{port}")


@dataclass
class NetnsDevice(LabDevice):
    """sshd inside network namespace ``eplab-N-<pid>``, on 10.200.N.2:22 behind a veth pair."""

    index: int = 0
    link: LinkSpec = field(default_factory=LinkSpec)
    proxy: Optional["DelayProxy"] = None

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
        ip, ns = _need("ip", "iproute2"), self.netns
        _run([ip, "netns", "add", ns])
        _run([ip, "link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_device, "netns", ns])
        _run([ip, "addr", "add", f"{self.host_ip}/30", "dev", self.veth_host])
        _run([ip, "link", "set", self.veth_host, "up"])
        _run([ip, "-n", ns, "addr", "add", f"{self.device_ip}/30", "dev", self.veth_device])
        _run([ip, "-n", ns, "link", "set", self.veth_device, "up"])
        _run([ip, "-n", ns, "link", "set", "lo", "up"])
        # A fallback for when the link is down: without it, packets to 10.200.N.2 would follow the default route
        # off this machine. The connected /30 route (metric 0) wins while the link is up.
        _run([ip, "route", "add", "unreachable", self.subnet, "metric", FALLBACK_METRIC])
        if self.link.rate:
            tc = _need("tc", "iproute2")
            tbf = ["root", "tbf", "rate", self.link.rate, "burst", "32kbit", "latency", "400ms"]
            _run([tc, "qdisc", "add", "dev", self.veth_host, *tbf])
            _run([tc, "-n", ns, "qdisc", "add", "dev", self.veth_device, *tbf])
        if self.link.loss_percent:
            nft = _need("nft", "nftables")
            basis = int(round(self.link.loss_percent * 100))  # in 1/10000
            rules = (f"table inet {NETNS_PREFIX}_loss {{\n"
                     f"  chain input {{ type filter hook input priority 0; policy accept;\n"
                     f"    iifname \"{self.veth_device}\" numgen random mod 10000 < {basis} counter drop\n  }}\n"
                     f"  chain output {{ type filter hook output priority 0; policy accept;\n"
                     f"    oifname \"{self.veth_device}\" numgen random mod 10000 < {basis} counter drop\n  }}\n"
                     f"}}\n")
            _run([ip, "netns", "exec", ns, nft, "-f", "-"], input=rules)
        self.extra_config = f"ListenAddress {self.device_ip}\n"
        self.port = 22

    def dropped_packets(self) -> int:
        """Packets the loss rule has dropped so far (both directions)."""
        if not self.link.loss_percent:
            return 0
        out = _run(["ip", "netns", "exec", self.netns, _need("nft", "nftables"), "list", "table", "inet",
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
        _run(["ip", "-n", self.netns, "link", "set", self.veth_device, "down"])

    def link_up(self) -> None:
        _run(["ip", "-n", self.netns, "link", "set", self.veth_device, "up"])

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


def _taken_indexes() -> set:
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


# ---------------------------------------------------------------------------------------------------------------
# The delay proxy (this kernel has no netem)


class DelayProxy:
    """TCP proxy on 127.0.0.1 that forwards to ``target``, holding every chunk ``delay`` seconds in each
    direction (order kept, bandwidth not limited): a constant added latency, RTT + 2 x delay."""

    def __init__(self, target: Tuple[str, int], delay: float) -> None:
        self.target, self.delay = target, delay
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.sockets: List[socket.socket] = []
        self.closed = threading.Event()

    def start(self) -> "DelayProxy":
        threading.Thread(target=self._accept, name=f"delay-proxy-{self.port}", daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                chunks: "queue.Queue[Tuple[float, Optional[bytes]]]" = queue.Queue()
                threading.Thread(target=self._read, args=(src, chunks), daemon=True).start()
                threading.Thread(target=self._write, args=(dst, chunks), daemon=True).start()

    def _read(self, src: socket.socket, chunks: "queue.Queue") -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            chunks.put((time.monotonic() + self.delay, data or None))
            if not data:
                return

    def _write(self, dst: socket.socket, chunks: "queue.Queue") -> None:
        while True:
            due, data = chunks.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if data is None:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return

    def stop(self) -> None:
        self.closed.set()
        for sock in [self.listener, *self.sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


# ---------------------------------------------------------------------------------------------------------------
# The lab


#: Profile fields per kind. The emulated Pi is ~100x slower than native: a small timing workload (the accuracy
#: pass still covers the whole eval set).
KIND_PROFILE: Dict[str, Dict[str, object]] = {
    "loopback": {"description": "lab: loopback sshd, host venv python (x86-64)"},
    "pi39": {"description": "lab: loopback sshd, Pi-like Python 3.9 venv (tflite-runtime 2.14, numpy<2)"},
    "arm64": {"description": "lab: emulated Raspberry Pi (qemu-aarch64, Debian bookworm python3.11, "
                             "tflite-runtime 2.14)", "runs": 3, "warmup": 1, "command_timeout": 900},
    "netns": {"description": "lab: sshd in its own network namespace behind a veth pair"},
}


@dataclass
class Lab:
    root: Path
    client: ClientKeys
    devices: List[LabDevice] = field(default_factory=list)
    fleet_path: Optional[Path] = None
    pi_arm64: Optional[PiArm64] = None

    def device(self, name: str) -> LabDevice:
        return next(d for d in self.devices if d.name == name)

    def of_kind(self, kind: str) -> List[LabDevice]:
        return [d for d in self.devices if d.kind == kind]

    def write_fleet(self, **overrides: object) -> Path:
        self.fleet_path = write_fleet(self.root / "fleet.toml", list(self.devices), **overrides)
        return self.fleet_path

    def stop(self) -> None:
        """Stop every device and remove its network; safe to call twice, never raises for one device."""
        errors = []
        for device in reversed(self.devices):
            try:
                device.teardown()
            except Exception as exc:  # keep cleaning up the others
                errors.append(f"{device.name}: {exc}")
        if errors:
            raise RuntimeError("lab cleanup: " + "; ".join(errors))


def parse_kinds(kinds: Union[str, Sequence[str]]) -> List[str]:
    names = [k.strip() for k in (kinds.split(",") if isinstance(kinds, str) else kinds) if k.strip()]
    unknown = sorted(set(names) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown lab kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    return names


def start_lab(kinds: Union[str, Sequence[str]], tmp: Path, link: Optional[LinkSpec] = None,
              log: Log = _quiet) -> Lab:
    """Start one device per entry of ``kinds`` (repeat a kind for more), trust them, write the fleet file."""
    names = parse_kinds(kinds)
    tmp = Path(tmp)
    running = Lab(tmp, ClientKeys(tmp / "client"))
    counts: Dict[str, int] = {}
    try:
        if "netns" in names:
            cleanup_leftovers()
        if "arm64" in names:
            running.pi_arm64 = build_pi_arm64(log=log)
        for kind in names:
            counts[kind] = counts.get(kind, -1) + 1
            name = f"{kind}-{counts[kind]}"
            device = _make_device(kind, name, running, link or LinkSpec())
            running.devices.append(device)
            if isinstance(device, NetnsDevice):
                with _locked(ALLOC_LOCK):
                    taken = _taken_indexes()
                    device.index = next(i for i in range(1, 255) if i not in taken)
                    device.setup_network()
            device.start()
            device.trust()
            log(f"started {name} ({kind}) at {':'.join(map(str, device.fleet_address))}")
        running.write_fleet()
    except BaseException:
        with contextlib.suppress(Exception):
            running.stop()
        raise
    return running


def _make_device(kind: str, name: str, running: Lab, link: LinkSpec) -> LabDevice:
    root = running.root / "devices" / name
    profile = dict(KIND_PROFILE[kind])
    if kind == "pi39":
        python = str(pi_like_python())
    elif kind == "arm64":
        assert running.pi_arm64 is not None
        python = str(running.pi_arm64.python)
    else:
        python = sys.executable
    if kind == "netns":
        if link.degraded:
            profile.update(connect_timeout=30, transfer_timeout=300, command_timeout=600,
                           description=f"{profile['description']} (degraded: rate={link.rate}, "
                                       f"loss={link.loss_percent}%, delay={link.delay_ms} ms)")
        return NetnsDevice(name, root, running.client, python=python, port=22, kind=kind, profile=profile,
                           link=link)
    return LabDevice(name, root, running.client, python=python, kind=kind, profile=profile)


@contextlib.contextmanager
def lab(kinds: Union[str, Sequence[str]], tmp: Path, link: Optional[LinkSpec] = None,
        log: Log = _quiet) -> Iterator[Lab]:
    """``with lab(["loopback", "arm64"], tmp) as running: ... running.fleet_path``; everything is stopped and
    removed on exit, also when the body raises."""
    running = start_lab(kinds, tmp, link, log)
    try:
        yield running
    finally:
        running.stop()
