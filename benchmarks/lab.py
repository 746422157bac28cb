"""Start a device lab (loopback, Pi-like 3.9, emulated aarch64 Pi, network-namespaced devices), bench a run on it.

Starts one device per kind named in --kinds (repeat a kind for more: --kinds netns,netns), writes and prints the
fleet file, runs `edgeprune bench RUN_FOLDER --fleet FLEET` against it, prints what each device stored and how
long it took, and removes everything (sshd processes, delay proxies, namespaces, veths, routes) at the end, also on
Ctrl-C. With --keep it only starts the lab, prints the fleet file and waits for Ctrl-C, so you can run edgeprune by
hand against it. See docs/lab.md.

    .venv/bin/python benchmarks/lab.py [RUN_FOLDER] [--kinds loopback,pi39,arm64,netns] [--degraded] [--keep]

RUN_FOLDER defaults to edgeprune's own default (the newest folder under runs/). --degraded gives the netns devices
a 1 Mbit/s link with 2% loss and 50 ms added delay each way (or set --rate, --loss, --delay-ms). netns needs root.
Traffic: 127.0.0.1 and the 10.200.N.0/30 links the lab creates inside this machine.
"""
from __future__ import annotations

import argparse
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]

import _runfolder  # noqa: E402,F401  (puts tests/ on sys.path, for support)
from support.lab import KINDS, Lab, LinkSpec, lab  # noqa: E402


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def summary(db: Path, run_id: Optional[int], running: Lab) -> None:
    conn = sqlite3.connect(str(db))
    conn.row_factory = sqlite3.Row
    rows = list(conn.execute("SELECT * FROM results WHERE run_id = ? ORDER BY device, variant", (run_id,)))
    conn.close()
    kinds = {d.name: d.kind for d in running.devices}
    print(f"\n{'device':<12} {'kind':<9} {'variant':<17} {'status':<18} {'runtime':<22} {'python':<7} "
          f"{'machine':<8} {'p50 us':>9} {'accuracy':>8} {'rounds':>6}")
    for r in rows:
        runtime = f"{r['runtime'] or ''} {r['runtime_version'] or ''}".strip()
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['error_kind']}"
        print(f"{r['device']:<12} {kinds.get(r['device'], ''):<9} {r['variant']:<17} {status:<18} {runtime:<22} "
              f"{r['python_version'] or '':<7} {r['machine'] or '':<8} "
              f"{r['p50_us'] if r['p50_us'] is not None else float('nan'):>9.1f} "
              f"{r['accuracy'] if r['accuracy'] is not None else float('nan'):>8.4f} "
              f"{r['rounds'] if r['rounds'] is not None else '-':>6}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_folder", nargs="?", help="an `edgeprune optimize` output (default: edgeprune's)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, from {', '.join(KINDS)}")
    parser.add_argument("--degraded", action="store_true", help="netns links: 1mbit, 2%% loss, 50 ms delay")
    parser.add_argument("--rate", help="netns links: tc tbf rate each way, e.g. 1mbit")
    parser.add_argument("--loss", type=float, default=0.0, help="netns links: percent of packets dropped each way")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="netns links: latency added each way")
    parser.add_argument("--dir", help="lab folder (keys, sshd configs, device work dirs; default: a new temp dir)")
    parser.add_argument("--db", help="store (default: DIR/lab.db)")
    parser.add_argument("--variants", help="comma-separated subset of the run's variants")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="start the lab, print the fleet, wait for Ctrl-C")
    args = parser.parse_args()

    link = LinkSpec(args.rate, args.loss, args.delay_ms)
    if args.degraded:
        link = LinkSpec(args.rate or "1mbit", args.loss or 2.0, args.delay_ms or 50.0)
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="edgeprune-lab-"))
    work.mkdir(parents=True, exist_ok=True)
    db = Path(args.db) if args.db else work / "lab.db"
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        with lab(args.kinds, work, link, log=lambda line: print(f"lab: {line}", flush=True)) as running:
            if running.pi_arm64 is not None:
                build = running.pi_arm64.build
                print(f"lab: emulated Pi {'cached' if build['cached'] else 'built'}; its build took "
                      f"{build['seconds']} s (debs downloaded: {build['debs_downloaded']})")
            print(f"lab: {len(running.devices)} devices up in {time.monotonic() - started:.1f} s; "
                  f"fleet file {running.fleet_path}\n")
            print(running.fleet_path.read_text())
            if args.keep:
                print(f"lab: running. Try: {ROOT}/.venv/bin/edgeprune devices check --fleet {running.fleet_path}\n"
                      "lab: Ctrl-C stops it and removes everything.", flush=True)
                while True:
                    time.sleep(3600)
            command = [sys.executable, "-m", "edgeprune", "bench", "--fleet", str(running.fleet_path), "--db",
                       str(db), "--jobs", str(args.jobs)]
            if args.run_folder:
                command.insert(4, args.run_folder)
            if args.variants:
                command += ["--variants", args.variants]
            print("lab: " + " ".join(command), flush=True)
            bench_started = time.monotonic()
            code = subprocess.run(command).returncode
            print(f"lab: bench exited {code} after {time.monotonic() - bench_started:.1f} s")
            if db.exists():
                conn = sqlite3.connect(str(db))
                run_id = conn.execute("SELECT MAX(run_id) FROM results").fetchone()[0]
                conn.close()
                summary(db, run_id, running)
            for device in running.of_kind("netns"):
                if link.loss_percent:
                    print(f"lab: {device.name}: {device.dropped_packets()} packets dropped by the loss rule")
            return code
    except KeyboardInterrupt:
        print("\nlab: stopped; everything removed", file=sys.stderr)
        return 130
    finally:
        print(f"lab: store {db}, lab folder {work}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
