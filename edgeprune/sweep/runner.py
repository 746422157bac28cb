"""One sweep from where it stands to its end: baseline once, every missing run optimized, every point benched.

Where a sweep stands is read, never assumed: a run is optimized when its folder is complete (``folders``), a point's
optimize outcome and the bench runs that measured it are in the store, so re-running the same command (or
``--resume``) does only what is missing and says what it skips. Each run's outcome is stored the moment it arrives.
Remote devices are benched as runs finish, in the background; the ``local`` device only after this machine's
optimize work is done, because training next to a measurement ruins it. Ctrl-C stops the children and the benches
within seconds; everything finished stays.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import EdgepruneError
from ..optimize import variants as variant_table
from ..results.store import Store
from . import folders
from .grid import Point, Run
from .state import BASELINE_DATA, BASELINE_MODEL, SweepState


@dataclass
class Standing:
    """What is done: each point's optimize outcome (status, variant, reason) and its benched devices."""

    points: Dict[str, Dict[str, Any]]
    benched: Dict[str, List[str]]

    def ok(self, key: str) -> bool:
        return self.points.get(key, {}).get("status") == "optimized"

    def failed(self, key: str) -> bool:
        return self.points.get(key, {}).get("status") == "failed"

    def needs(self, key: str, devices: Sequence[Any]) -> List[Any]:
        return [d for d in devices if d.name not in self.benched.get(key, [])] if self.ok(key) else []

    def done(self, key: str, devices: Sequence[Any]) -> bool:
        return self.failed(key) or (self.ok(key) and not self.needs(key, devices))


@dataclass
class SweepResult:
    sweep_id: int
    skipped: List[str] = field(default_factory=list)  # points done before this invocation
    optimized: List[str] = field(default_factory=list)  # runs optimized by this invocation
    benched: List[str] = field(default_factory=list)  # "run @ device" benched by this invocation
    failed: Dict[str, str] = field(default_factory=dict)  # every failed point and why
    missing: List[str] = field(default_factory=list)  # points not done at the end
    interrupted: bool = False


def point_outcomes(run_points: List[Point], document: Any) -> List[Tuple[Point, str, Optional[str], Optional[str]]]:
    """(point, status, variant, reason) for each point from its run's manifest: the variant whose table row is the
    point's (its built name carries the structure's tag, so it is read, never made)."""
    outcomes = []
    for point in run_points:
        entry = next((e for e in document.variants if variant_table.get(e.name).name == point.row), None)
        if entry is None:
            outcomes.append((point, "failed", None, f"{point.row} is not in the run's manifest"))
        elif not entry.ok:
            outcomes.append((point, "failed", entry.name, entry.error or "failed"))
        else:
            outcomes.append((point, "optimized", entry.name, None))
    return outcomes


class Sweep:
    """The sweep's work with its store, devices and where runs are optimized (``runner``: local or Ray)."""

    def __init__(self, state: SweepState, devices: Sequence[Any], db: Path, runner: Any, display: Any,
                 host_keys: Any, bench_jobs: int = 8, retry_failed: bool = False) -> None:
        self.state, self.devices, self.db, self.runner, self.display = state, list(devices), db, runner, display
        self.host_keys, self.bench_jobs, self.retry_failed = host_keys, bench_jobs, retry_failed
        self.stop = threading.Event()
        self.store = Store.open(db)
        self.sweep_id = self.store.open_sweep(str(state.folder.resolve()), state.grid.to_dict(),
                                              {"devices": state.devices, "db": str(db)})
        self.points = {p.key: p for p in state.points()}
        self.lock = threading.Lock()
        self.result = SweepResult(self.sweep_id)

    def close(self) -> None:
        self.store.close()

    # -- where the sweep stands ----------------------------------------------------------------------------
    def standing(self) -> Standing:
        """The store's view, after storing the outcome of any run whose folder is complete but not yet stored
        (a sweep killed between the two)."""
        rows = {r["key"]: dict(r) for r in self.store.sweep_points(self.sweep_id)}
        for run in self.state.runs():
            mine = [p for p in self.points.values() if p.run == run.key]
            if any(rows.get(p.key, {}).get("status") == "optimized" for p in mine) or \
                    all(p.key in rows for p in mine):
                continue
            document = folders.complete(self.state.run_folder(run.key))
            if document is not None:
                self._store_run(run.key, document, None)
                rows = {r["key"]: dict(r) for r in self.store.sweep_points(self.sweep_id)}
        benched: Dict[str, List[str]] = {}
        for row in self.store.sweep_benches(self.sweep_id):
            if row["done"]:
                benched.setdefault(row["key"], []).append(row["device"])
        return Standing(rows, benched)

    def _store_run(self, run: str, document: Any, reason: Optional[str]) -> None:
        """A run's end, into the store at once: its points optimized (or failed, with the reason)."""
        mine = [p for p in self.points.values() if p.run == run]
        folder = str(self.state.run_folder(run))
        if document is None:
            for point in mine:
                self.store.record_point(self.sweep_id, point.key, run, "failed", None, None, reason)
            return
        for point, status, variant, why in point_outcomes(mine, document):
            self.store.record_point(self.sweep_id, point.key, run, status, folder, variant, why)

    # -- the work ------------------------------------------------------------------------------------------
    def run(self) -> SweepResult:
        standing = self.standing()
        self.result.skipped = [k for k in self.points if standing.done(k, self.devices)]
        todo = self._runs_to_optimize(standing)
        self._say_plan(standing, todo)
        remote = [d for d in self.devices if d.kind != "local"]
        local = [d for d in self.devices if d.kind == "local"]
        benches = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgeprune-sweep-bench")
        queued: List[Future] = []
        try:
            for run in self.state.runs():  # runs finished before (a resume) go to the remote devices at once
                if run not in todo and remote:
                    queued.append(benches.submit(self._bench_run, run.key, remote))
            if todo:
                self._optimize(todo, lambda key: queued.append(benches.submit(self._bench_run, key, remote))
                               if remote else None)
            for future in queued:
                future.result()
            if local:
                if todo:
                    self.display.say(f"optimize work on {self.runner.where} is done; benching on "
                                     f"{', '.join(d.name for d in local)} now (not during training: its load "
                                     f"would skew the timings)")
                for run in self.state.runs():
                    if not self.stop.is_set():
                        self._bench_run(run.key, local)
        except KeyboardInterrupt:
            self.result.interrupted = True
            self.stop.set()
        finally:
            benches.shutdown(wait=True, cancel_futures=True)
        final = self.standing()
        self.result.failed = {k: str(r.get("reason") or "failed") for k, r in final.points.items()
                              if r.get("status") == "failed" and k in self.points}
        self.result.missing = [k for k in self.points if not final.done(k, self.devices)]
        return self.result

    def _runs_to_optimize(self, standing: Standing) -> List[Run]:
        todo = []
        for run in self.state.runs():
            keys = [p.key for p in self.points.values() if p.run == run.key]
            if any(standing.ok(k) for k in keys) and folders.complete(self.state.run_folder(run.key)):
                if not (self.retry_failed and any(standing.failed(k) for k in keys)):
                    continue
            elif all(standing.failed(k) for k in keys) and not self.retry_failed:
                continue
            todo.append(run)
        return todo

    def _say_plan(self, standing: Standing, todo: List[Run]) -> None:
        points, runs = len(self.points), len(self.state.runs())
        done = self.result.skipped
        failed = [k for k in done if standing.failed(k)]
        if done:
            self.display.say(f"{len(done)} of {points} points already done, skipped: {', '.join(done)}"
                             + (f" ({len(failed)} failed: --retry-failed runs them again)" if failed else ""))
        if todo:
            self.display.say(f"optimizing {len(todo)} of {runs} runs on {self.runner.where}: "
                             f"{', '.join(r.key for r in todo)}")
        waiting = [k for k in self.points if k not in done and standing.ok(k)]
        if waiting:
            self.display.say(f"optimized before, still to bench: {', '.join(waiting)}")

    def _optimize(self, todo: List[Run], on_ready: Any) -> None:
        baseline = self.state.baseline_folder
        if not ((baseline / BASELINE_MODEL).is_file() and (baseline / BASELINE_DATA).is_file()):
            self.display.say(f"preparing the baseline once on {self.runner.where}")
            self.runner.baseline(self.state.baseline_config(), baseline, self.display.run_progress("baseline"))
        configs = [(run.key, self.state.run_config(run)) for run in todo]
        outcomes = self.runner.optimize(configs, self.display.run_progress)
        try:
            for finished in outcomes:
                document = folders.complete(finished.folder) if finished.folder else None
                self._store_run(finished.run, document, finished.reason or (
                    None if document else "the run folder is incomplete"))
                self.result.optimized.append(finished.run)
                self.display.run_done(finished.run, finished.reason)
                if document is not None:
                    on_ready(finished.run)
        finally:
            outcomes.close()  # on Ctrl-C: the runner stops its children or cancels its tasks

    def _bench_run(self, run: str, devices: List[Any]) -> None:
        """Bench the run's optimized points on the devices that have not measured all of them (one plan per
        device: the run's variants, its baseline and the A/A twin), and link each point to that bench."""
        from ..devices.fleet import bench

        store = Store.open(self.db)  # this may be the bench thread: its own connection
        try:
            standing_rows = {r["key"]: dict(r) for r in store.sweep_points(self.sweep_id)}
            done = {(r["key"], r["device"]) for r in store.sweep_benches(self.sweep_id) if r["done"]}
            keys = [k for k, p in self.points.items() if p.run == run and
                    standing_rows.get(k, {}).get("status") == "optimized"]
            chosen = [d for d in devices if any((k, d.name) not in done for k in keys)]
            if not keys or not chosen or self.stop.is_set():
                return
            variants = [standing_rows[k]["variant"] for k in keys]
            result = bench(self.state.run_folder(run), chosen, self.db, jobs=self.bench_jobs,
                           host_keys=self.host_keys, variants=variants,
                           progress=self.display.bench_progress(run), stop=self.stop)
            for key in keys:
                for device in chosen:
                    store.record_point_bench(self.sweep_id, key, device.name, result.run_id)
            with self.lock:
                self.result.benched += [f"{run} @ {d.name}" for d in chosen]
            if result.interrupted:
                raise KeyboardInterrupt
        except EdgepruneError as exc:  # this run's bench could not start (a changed folder, a store error)
            self.display.note(f"{run}: bench: {exc}")
        finally:
            store.close()
