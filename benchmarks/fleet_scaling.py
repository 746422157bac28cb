"""Fleet bench wall time for N = 1, 8 and 32 loopback sshd devices, and the gain from cached files.

Every device is a real OpenSSH server on 127.0.0.1 (tests/support/sshlab.py), its remote Python this venv's. Each
device measures one small variant with few invokes, so the figure is mostly edgeprune's own orchestration (SSH
handshakes, hashing, SFTP, one agent start per device for its plan: the variant, the baseline and its A/A twin, in
rounds). The "transfer" columns are the phase after the SSH handshake: the hash check of what is already there,
uploads and their verification; a re-run sends only its new plan file (about 1 KB) per device. On loopback every
device's sshd, login shell and agent run on this machine's cores too, which a real fleet spreads over its own CPUs: the
script prints edgeprune's own CPU time per device beside the wall times. Prints wall time per N, the 32/1 ratio (goal <= 1.5),
and the transfer-phase speed-up of a re-run where every file is already on the devices (goal >= 5x).

    .venv/bin/python benchmarks/fleet_scaling.py RUN_FOLDER [--sizes 1,8,32] [--variants pruned-int8]

RUN_FOLDER is an `edgeprune optimize` output; without one, a default optimize runs first. Traffic: loopback only.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import edgeprune  # noqa: F401
from _runfolder import run_folder  # also puts tests/ on sys.path, for support
from edgeprune.devices.fleet import bench
from edgeprune.devices.profiles import load_profile
from support.sshlab import ClientKeys, SshdDevice, stop_all
from support.store_rows import plan_cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_folder", nargs="?")
    parser.add_argument("--sizes", default="1,8,32")
    parser.add_argument("--variants", default="pruned-int8")
    parser.add_argument("--jobs", type=int, default=32)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeprune-fleet-"))
    folder = run_folder(args.run_folder, work)
    sizes = [int(s) for s in args.sizes.split(",")]
    variants = args.variants.split(",")
    client = ClientKeys(work / "client")
    cells = len(plan_cells(variants))
    print(f"cores: {os.cpu_count()}, variants per device: {len(variants)} ({cells} cells with the baseline and its "
          f"A/A twin), jobs: {args.jobs}")
    print(f"{'N':>4} {'first run s':>12} {'re-run s':>9} {'transfer first s':>17} {'transfer cached s':>18} "
          f"{'files sent':>11} {'ok/expected':>12}")
    walls = {}
    transfers = {}
    host_cpu = {}
    for n in sizes:
        devices = [SshdDevice(f"dev{n}-{i}", work / f"n{n}" / f"d{i}", client, python=sys.executable).start()
                   for i in range(n)]
        try:
            for device in devices:
                device.trust()
            profiles = []
            for device in devices:
                path = device.root / "profile.toml"
                path.write_text(device.profile_toml(runs=5, warmup=1))
                profiles.append(load_profile(str(path)))
            db = work / f"n{n}.db"
            timings = []
            for _ in range(2):
                started = time.perf_counter()
                cpu = time.process_time()
                result = bench(folder, profiles, db, jobs=args.jobs, variants=variants)
                wall = time.perf_counter() - started
                host_cpu[n] = time.process_time() - cpu
                transfer = max(s.transfer.seconds for s in result.devices)
                sent = sum(s.transfer.sent for s in result.devices)
                timings.append((wall, transfer, sent, result.counts["ok"]))
            (w1, t1, s1, ok1), (w2, t2, s2, ok2) = timings
            walls[n] = w1
            transfers[n] = (t1, t2)
            print(f"{n:>4} {w1:>12.2f} {w2:>9.2f} {t1:>17.2f} {t2:>18.2f} {s1:>5}/{s2:<5} "
                  f"{ok1 + ok2:>5}/{2 * n * cells:<6}")
        finally:
            stop_all(devices)
    if 1 in walls and max(walls) != 1:
        big = max(walls)
        print(f"wall time ratio {big}/1: {walls[big] / walls[1]:.2f} (goal <= 1.5)")
    for n, (first, cached) in transfers.items():
        print(f"N={n}: transfer phase first {first:.2f} s, cached {cached:.2f} s, speed-up {first / cached:.1f}x "
              f"(goal >= 5x)")
    for n, seconds in host_cpu.items():
        print(f"N={n}: edgeprune's own CPU time (re-run) {seconds:.2f} s, {seconds / n * 1000:.0f} ms per device; "
              f"the rest of the wall time is the devices' sshd, shell and agent, sharing this machine's cores")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"host peak RSS: {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
