"""Faults, each injected once into a real `edgeprune bench` on lab devices: how long until the pairs were recorded,
what was lost, which agents were left running on the device, and the exit code.

Faults: the device killed (its sshd and connections, mid-run), the device frozen (sshd SIGSTOPped mid-run, SIGCONT
after), the link blackholed during an upload and during a measurement (an nftables drop-everything table in the
device's namespace), the device's host key changed, the bench itself SIGKILLed mid-run (then --resume), and the store
locked by another process for 40 s mid-run. The fault controls are the lab tests' (tests/support/faults.py, used by tests/lab/test_lab_hangs.py),
the devices tests/support/lab's. Every wait is bounded: a bench still running BOUND s after its fault is counted
as hung and killed. A bench sends each device one measurement plan (issue 12): its pairs are the cells of that plan
(the variants, the baseline and its A/A twin), stored when the plan ends, and a fault during it fails all of them.

    .venv/bin/python benchmarks/faults.py [--run FOLDER] [--faults killed,frozen,...]

Without --run, `edgeprune optimize -q` makes a run folder first (~25 s on an idle machine). Needs root (namespaces).
Traffic: 127.0.0.1 and the lab's own 10.200.N.0/30 links.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import _runfolder  # noqa: E402,F401  (puts tests/ on sys.path, for support)
from support.faults import (AGENT_GRACE, EDGEPRUNE, UPLOAD_LINK, UPLOADS, agent_runs, blackholed,  # noqa: E402
                            frozen, kill_agents, partial_uploads, poll, rekey, sha_of, start_bench, stored)
from support.lab import LabDevice, LinkSpec, lab  # noqa: E402
from support.store_rows import latest_run_id, plan_cells  # noqa: E402

#: Three small variants; the plan measures them with the baseline and its A/A twin (CELLS) in rounds of 1 s visits.
VARIANTS = ("pruned-dynamic", "pruned-int8", "pruned-float16")
CELLS = plan_cells(VARIANTS)
PROFILE: Dict[str, object] = dict(connect_timeout=3, command_timeout=5, transfer_timeout=10, min_seconds=1, runs=5,
                                  warmup=1, budget_s=10)
#: The host's deadline for a plan of CELLS (cells.plan_limit: budget_s + cells x command_timeout).
PLAN_LIMIT = float(PROFILE["budget_s"]) + len(CELLS) * float(PROFILE["command_timeout"])  # type: ignore[arg-type]
#: When an agent the host could not stop ends by itself at the latest (its --deadline, from its start).
AGENT_DEADLINE = PLAN_LIMIT + AGENT_GRACE
#: Mid-run faults strike once the device's agent has been measuring its plan this long (its cells are loaded).
STRIKE_AFTER = 3.0
#: A bench still running this long after its fault is hung: killed, and reported so.
BOUND = 150.0
LOCK_SECONDS = 40.0
#: Holds an exclusive lock on the store (BEGIN EXCLUSIVE: no other writer), as a long `sqlite3` session would.
LOCKER = ("import sqlite3, sys, time\n"
          "conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)\n"
          "conn.execute('BEGIN EXCLUSIVE')\n"
          "print('locked', flush=True)\n"
          "time.sleep(float(sys.argv[2]))\n"
          "conn.execute('ROLLBACK')\n")

Pair = Tuple[int, str, str]
Rows = Dict[Pair, Dict[str, object]]


@dataclass
class Outcome:
    fault: str
    recorded: Optional[float]  # seconds from the fault until every pair had a row (None: not within BOUND)
    expected: int
    stored: int
    lost_before: int  # pairs stored ok before the fault that are missing or changed afterwards
    strays: int  # agent runs still going on the device once the bench had exited
    exit: str
    note: str = ""
    workdir: Optional[Path] = None
    ended: float = field(default_factory=time.monotonic)
    late: Optional[int] = None  # agent runs still going AGENT_DEADLINE s after the bench exited


@dataclass
class Context:
    folder: Path
    manifest: Dict[str, object]
    work: Path

    def place(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def by_pair(db: Path) -> Rows:
    return {(int(r["run_id"]), str(r["device"]), str(r["variant"])): r for r in stored(db)}  # type: ignore[arg-type]


def ok_rows(db: Path) -> Rows:
    return {pair: row for pair, row in by_pair(db).items() if row["status"] == "ok"}


def lost(before: Rows, db: Path) -> int:
    """Pairs measured ok before the fault that are no longer stored ok with the same figures."""
    after = by_pair(db)
    return sum(1 for pair, row in before.items()
               if not (pair in after and after[pair]["status"] == "ok" and after[pair]["p50_us"] == row["p50_us"]))


def bench(ctx: Context, where: Path, fleet: Path, db: Path, variants: Sequence[str], *extra: str) -> subprocess.Popen:
    return start_bench(where, "bench", *([] if "--resume" in extra else [str(ctx.folder)]), "--fleet", str(fleet),
                       "--db", str(db), "--variants", ",".join(variants), *extra, "-q")


def watch(proc: subprocess.Popen, db: Path, done: Callable[[Rows], bool], struck: float,
          sample: Optional[Callable[[], None]] = None) -> Tuple[Optional[float], str]:
    """Until the bench exits (killed past BOUND): seconds from ``struck`` until ``done(rows)`` first held, and the
    exit code. ``sample`` runs on every poll (e.g. counting agents)."""
    recorded: Optional[float] = None
    while True:
        if sample is not None:
            sample()
        finished = proc.poll() is not None
        if recorded is None and done(by_pair(db)):
            recorded = time.monotonic() - struck
        if finished:
            proc.communicate(timeout=30)
            return recorded, str(proc.returncode)
        if time.monotonic() - struck > BOUND:
            proc.kill()
            proc.communicate(timeout=30)
            return recorded, f"hung (killed after {BOUND:g} s)"
        time.sleep(0.1)


def every_pair(expected: int) -> Callable[[Rows], bool]:
    """Done when the latest run has a row for each of its ``expected`` pairs."""
    def done(rows: Rows) -> bool:
        latest = max((run for run, _, _ in rows), default=None)
        return latest is not None and sum(1 for run, _, _ in rows if run == latest) >= expected
    return done


def mid_run(db: Path, workdir: Path, proc: subprocess.Popen) -> Rows:
    """Wait until the device's agent has measured its plan for STRIKE_AFTER s; the rows stored ok by then (none of
    this bench's: a plan's cells are stored when it ends)."""
    reached = poll(lambda: proc.poll() is not None or agent_runs(workdir, min_age=STRIKE_AFTER) > 0, 120)
    if reached is None or proc.poll() is not None:
        proc.kill()
        raise RuntimeError(f"the bench never got to measure its plan (exit {proc.poll()})")
    return ok_rows(db)


def summary(db: Path) -> str:
    counts: Dict[str, int] = {}
    for row in by_pair(db).values():
        key = f"{row['status']}/{row['error_kind']}" if row["error_kind"] else str(row["status"])
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


@contextlib.contextmanager
def one_device(ctx: Context, name: str, kind: str, link: Optional[LinkSpec] = None,
               **profile: object) -> Iterator[Tuple[LabDevice, Path, Path, Path]]:
    """A lab of one device of ``kind`` with PROFILE (``profile`` overrides it): (device, fleet, store, folder)."""
    where = ctx.place(name)
    with lab([kind], where / "lab", link) as running:
        yield running.devices[0], running.write_fleet(**dict(PROFILE, **profile)), where / "store.db", where


def outcome(title: str, recorded: Optional[float], code: str, db: Path, device: LabDevice, before: Rows,
            expected: int = len(CELLS), note: str = "") -> Outcome:
    """What the store and the device show once the bench is over."""
    rows = by_pair(db)
    latest = max((run for run, _, _ in rows), default=0)
    return Outcome(title, recorded, expected, sum(1 for run, _, _ in rows if run == latest), lost(before, db),
                   agent_runs(device.workdir), code, "; ".join(filter(None, [summary(db), note])), device.workdir)


# -- the faults ---------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def killed(device: LabDevice) -> Iterator[float]:
    """sshd and every connection it serves killed (SshdDevice.stop); the agent is left to its own end."""
    device.stop()
    yield time.monotonic()


def struck_mid_run(ctx: Context, name: str, title: str, kind: str,
                   strike: Callable[[LabDevice], "contextlib.AbstractContextManager[float]"]) -> Outcome:
    """VARIANTS benched on one device; ``strike`` (a context manager yielding when it struck) is entered while the
    plan is measured and left once the bench has exited."""
    with one_device(ctx, name, kind) as (device, fleet, db, where):
        proc = bench(ctx, where, fleet, db, VARIANTS)
        before = mid_run(db, device.workdir, proc)
        with strike(device) as struck:
            recorded, code = watch(proc, db, every_pair(len(CELLS)), struck)
        return outcome(title, recorded, code, db, device, before)


def device_killed(ctx: Context) -> Outcome:
    return struck_mid_run(ctx, "killed", "device killed (sshd + connections, mid-run)", "loopback", killed)


def device_frozen(ctx: Context) -> Outcome:
    return struck_mid_run(ctx, "frozen", "device frozen (sshd SIGSTOP mid-run, SIGCONT after)", "netns", frozen)


def blackholed_run(ctx: Context) -> Outcome:
    return struck_mid_run(ctx, "run", "blackholed during a measurement", "netns", blackholed)


def blackholed_upload(ctx: Context) -> Outcome:
    with one_device(ctx, "upload", "netns", UPLOAD_LINK, transfer_timeout=5) as (device, fleet, db, where):
        proc = bench(ctx, where, fleet, db, UPLOADS)
        sha = sha_of(ctx.manifest, UPLOADS[0])
        if poll(lambda: proc.poll() is not None or bool(partial_uploads(device, sha)), 120) is None or \
                proc.poll() is not None:
            proc.kill()
            raise RuntimeError("the upload never started")
        with blackholed(device) as struck:
            recorded, code = watch(proc, db, every_pair(len(plan_cells(UPLOADS))), struck)
        return outcome("blackholed during an upload (4 Mbit/s, transfer_timeout 5)", recorded, code, db, device, {},
                       expected=len(plan_cells(UPLOADS)))


def host_key_changed(ctx: Context) -> Outcome:
    with one_device(ctx, "rekeyed", "netns") as (device, fleet, db, where):
        bench(ctx, where, fleet, db, VARIANTS[:1]).communicate(timeout=BOUND)
        before = ok_rows(db)
        rekey(device)
        struck = time.monotonic()
        recorded, code = watch(bench(ctx, where, fleet, db, VARIANTS), db, every_pair(len(CELLS)), struck)
        blobs = device.workdir / "blobs"  # the first bench sent VARIANTS[0]; the refused one must send nothing
        uploads = sum(1 for v in VARIANTS[1:] if any(blobs.glob(sha_of(ctx.manifest, v) + "*")))
        return outcome("host key changed (between two benches)", recorded, code, db, device, before,
                       note=f"the first bench's cells included; files uploaded after the change: {uploads}")


def host_killed(ctx: Context) -> Outcome:
    with one_device(ctx, "sigkill", "loopback") as (device, fleet, db, where):
        proc = bench(ctx, where, fleet, db, VARIANTS)
        before = mid_run(db, device.workdir, proc)
        proc.send_signal(signal.SIGKILL)
        struck = time.monotonic()
        proc.communicate(timeout=30)
        orphans = agent_runs(device.workdir)
        most = [0]

        def count() -> None:  # measuring agents: one that finds the device's lock taken exits within a second
            most[0] = max(most[0], agent_runs(device.workdir, min_age=2.0))

        resume = bench(ctx, where, fleet, db, VARIANTS, "--resume", str(latest_run_id(db)))
        recorded, code = watch(resume, db, lambda rows: sum(r["status"] == "ok" for r in rows.values())
                               >= len(CELLS), struck, count)
        return outcome("host SIGKILLed mid-run, then --resume", recorded, f"-9, resume {code}", db, device, before,
                       note=f"orphaned agents when the host died: {orphans}; most agent runs at once during "
                            f"--resume: {most[0]}")


@contextlib.contextmanager
def locked(db: Path) -> Iterator[float]:
    """Another process holds an exclusive lock on the store for LOCK_SECONDS (it lets go by itself)."""
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), str(LOCK_SECONDS)], stdout=subprocess.PIPE,
                              text=True)
    try:
        if locker.stdout is None or locker.stdout.readline().strip() != "locked":
            raise RuntimeError("the locker did not get its lock")
        yield time.monotonic()
    finally:
        locker.kill()
        locker.wait(timeout=30)


def store_locked(ctx: Context) -> Outcome:
    with one_device(ctx, "locked", "loopback") as (device, fleet, db, where):
        proc = bench(ctx, where, fleet, db, VARIANTS)
        before = mid_run(db, device.workdir, proc)
        with locked(db) as struck:
            recorded, code = watch(proc, db, every_pair(len(CELLS)), struck)
        unsaved = db.with_name(db.name + ".unsaved.jsonl")
        return outcome(f"store locked {LOCK_SECONDS:g} s by another process (mid-run)", recorded, code, db, device,
                       before, note=f"side file of unsaved results: {'yes' if unsaved.exists() else 'none'}")


FAULTS: Dict[str, Callable[[Context], Outcome]] = {
    "killed": device_killed, "frozen": device_frozen, "upload": blackholed_upload, "run": blackholed_run,
    "rekeyed": host_key_changed, "sigkill": host_killed, "locked": store_locked,
}


# -- the run ------------------------------------------------------------------------------------------------------

def run_folder(given: Optional[str], work: Path) -> Path:
    """``--run`` as given, else a fresh ``edgeprune optimize -q`` (from ``work``, as a user runs it)."""
    if given:
        return Path(given).resolve()
    folder = work / "optimize"
    subprocess.run([*EDGEPRUNE, "optimize", "--out", str(folder), "-q"], cwd=str(work), check=True,
                   stdout=subprocess.DEVNULL, timeout=900)
    return folder


def check_late(outcomes: List[Outcome]) -> None:
    """Agent runs left after the agent's own deadline: wait (bounded) until that long after each bench's exit."""
    wait = max((o.ended + AGENT_DEADLINE + 5 - time.monotonic() for o in outcomes if o.strays), default=0.0)
    if wait > 0:
        print(f"(waiting {wait:.0f} s: agents left at exit get until their own deadline, {AGENT_DEADLINE:g} s)",
              flush=True)
        time.sleep(wait)
    for outcome in outcomes:
        outcome.late = agent_runs(outcome.workdir) if outcome.workdir else 0


def table(outcomes: List[Outcome]) -> str:
    lines = ["| fault | recorded after (s) | pairs stored / expected | lost (no row + measured before) | "
             "stray agents at exit / after their deadline | exit code |",
             "|---|---:|---:|---:|---:|---|"]
    for o in outcomes:
        recorded = f"{o.recorded:.1f}" if o.recorded is not None else "never"
        no_row = o.expected - o.stored
        lines.append(f"| {o.fault} | {recorded} | {o.stored} / {o.expected} | {no_row + o.lost_before} "
                     f"({no_row} + {o.lost_before}) | {o.strays} / {o.late} | {o.exit} |")
    lines.append("")
    lines += [f"- {o.fault}: {o.note}" for o in outcomes]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="an `edgeprune optimize` output folder (default: make one, ~25 s)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, from {', '.join(FAULTS)}")
    args = parser.parse_args()
    chosen = [f for f in args.faults.split(",") if f]
    unknown = sorted(set(chosen) - set(FAULTS))
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(unknown)}")
    work = Path(tempfile.mkdtemp(prefix="edgeprune-faults-"))
    started = time.monotonic()
    outcomes: List[Outcome] = []
    try:
        folder = run_folder(args.run, work)
        ctx = Context(folder, json.loads((folder / "manifest.json").read_text()), work)
        print(f"{datetime.now():%Y-%m-%d %H:%M}, {platform.machine()}, {os.cpu_count()} cores, load "
              f"{os.getloadavg()[0]:.1f}; run folder {folder}; profile {PROFILE}", flush=True)
        for name in chosen:
            began = time.monotonic()
            try:
                outcome = FAULTS[name](ctx)
            except Exception as exc:  # one fault that could not be staged does not hide the others' figures
                print(f"  {name}: could not be staged: {type(exc).__name__}: {exc}", flush=True)
                continue
            outcome.ended = time.monotonic()
            outcomes.append(outcome)
            print(f"  {outcome.fault}: exit {outcome.exit} ({outcome.ended - began:.0f} s)", flush=True)
        check_late(outcomes)
        print()
        print(table(outcomes))
        print(f"\ntotal {time.monotonic() - started:.0f} s")
    finally:
        kill_agents(work)  # agents the faults left behind (their command lines name work dirs under ``work``)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
