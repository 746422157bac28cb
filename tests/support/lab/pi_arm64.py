"""The emulated Raspberry Pi of the lab (kind ``arm64``): Debian bookworm's aarch64 ``python3`` (3.11) under
``qemu-aarch64-static``, with tflite-runtime 2.14 + numpy<2 aarch64 wheels. Built once into ``.cache/pi-arm64``
(:func:`build_pi_arm64`); its ``python`` is the wrapper a device profile names.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

from support.lab.common import Log, locked, need, quiet, run
from support.paths import CACHE_DIR

PI_ARM64_DIR = CACHE_DIR / "pi-arm64"
SUITE = "bookworm"
QEMU = "/usr/bin/qemu-aarch64-static"
ARM64_REQUIREMENTS = ["tflite-runtime==2.14.0", "numpy<2"]
#: Both are needed: tflite-runtime 2.14's aarch64 wheel is manylinux_2_34, numpy 1.26's is manylinux2014.
ARM64_PLATFORMS = ["manylinux_2_34_aarch64", "manylinux2014_aarch64"]
DEFAULT_MIRROR = "http://deb.debian.org/debian"


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


def build_pi_arm64(home: Path = PI_ARM64_DIR, log: Log = quiet) -> PiArm64:
    """Build (or reuse) the emulated Pi under ``home``; a file lock serialises parallel builders.

    Three cached layers: ``debs/`` (the arm64 .debs of a minbase bookworm with python3, fetched with
    ``debootstrap --download-only``), ``wheels/`` (tflite-runtime + numpy aarch64 wheels) and ``root/`` (every
    .deb unpacked with ``dpkg-deb -x``, no second stage, wheels installed into /usr/local/lib/python3.X/
    dist-packages as ``pip install`` on a Pi would). ``stamp.json`` marks a finished build and records how long
    it took and which layers were downloaded.
    """
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    with locked(home.parent / (home.name + ".lock")):
        stamp = home / "stamp.json"
        wanted = _wanted(home)
        if stamp.is_file():
            done = json.loads(stamp.read_text())
            if {k: done.get(k) for k in wanted} == wanted and (home / "python").is_file():
                return PiArm64(home, dict(done["build"], cached=True))
            stamp.unlink()
        started = time.monotonic()
        need(QEMU, "qemu-user-static")
        debs_fetched = _fetch_debs(home / "debs", log)
        root, staging = home / "root", home / "root.tmp"
        for stale in (root, staging):
            if stale.exists():
                shutil.rmtree(stale)
        log(f"unpacking {len(list((home / 'debs').glob('*.deb')))} .debs")
        for deb in sorted((home / "debs").glob("*.deb")):
            run(["dpkg-deb", "-x", str(deb), str(staging)])
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
    debootstrap = need("debootstrap", "debootstrap")
    for stale in (debs, debs.parent / "debootstrap.tmp"):
        if stale.exists():
            shutil.rmtree(stale)
    target = debs.parent / "debootstrap.tmp"
    mirror = debian_mirror()
    log(f"downloading arm64 {SUITE} .debs from {mirror}")
    run([debootstrap, "--arch=arm64", "--download-only", "--variant=minbase", "--include=python3", SUITE,
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
        run([*pip, "download", "-q", "-d", str(wheels), *_pip_platform_args(version), *ARM64_REQUIREMENTS])
        marker.write_text(wanted)
        fetched = True
    run([*pip, "install", "-q", "--no-warn-conflicts", "--no-index", "--find-links", str(wheels),
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
    facts = json.loads(run([str(python), "-c", code], timeout=300, env=env).stdout)
    if facts["machine"] != "aarch64":
        raise RuntimeError(f"the emulated Pi reports machine {facts['machine']!r}, not aarch64")
    return facts
