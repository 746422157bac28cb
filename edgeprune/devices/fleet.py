"""Benchmarking a run folder on many devices: in parallel across devices, one benchmark at a time per device.

Every device x variant pair ends as a stored result, whatever happens: a device that cannot be reached, refuses
its host key, times out or lacks a runtime becomes ``failed`` or ``error`` rows with the reason, and the rest of
the fleet goes on (fabric's GroupResult idea, without raising at the end). A hostile or broken reply costs that
pair only. Each worker thread has its own SQLite connection and commits each result as it arrives; a result the
store cannot take is kept in a side file, never dropped. Every device has an overall deadline, and Ctrl-C stops
every worker within seconds (stopping the agents on the devices).
"""
from __future__ import annotations

import json
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from ..results.agent_result import DEPLOY, INTERNAL, INTERRUPTED, LOCAL_FILE, TIMEOUT
from ..results.plan_columns import cell_columns, plan_columns
from ..results.imported import Imported
from ..results.plan_result import PlanOutcome
from .cells import (Extras, Matrix, is_aa, new_seed, plan_cells, plan_document, plan_limit, reference_cell,
                    sustained_cell, write_plan)
from .plan import RunInputs, local_mismatches, open_source, status_counts, stored_devices
from .device import Lease, describe_holder
from .kinds import open_device
from .remote import TransferStats
from .ssh import HostKeyPolicy
from .profiles import DeviceProfile
from ..errors import ConfigError, DeviceError, HostKeyError, PythonMissingError, StoreError
from ..results.store import Store

#: Seconds Ctrl-C waits for the workers to stop their agents and return before giving up on them.
STOP_GRACE = 20.0


class FleetProgress:
    """Callbacks from worker threads; implementations must be thread-safe."""

    def device_state(self, device: str, state: str, done: int = 0, total: int = 0) -> None:
        """A device moved to ``state`` (connecting, uploading, measuring <variant>, done, failed: ...)."""


@dataclass
class DeviceSummary:
    device: str
    ok: int = 0
    errors: int = 0
    failed: int = 0
    transfer: TransferStats = field(default_factory=TransferStats)
    reason: Optional[str] = None
    unsaved: Optional[Path] = None  # results the store refused, kept in this file


@dataclass
class BenchResult:
    run_id: int
    devices: List[DeviceSummary]
    interrupted: bool = False
    #: What the store holds for this run's pairs now (ok, error, failed, invalid, not-measured): the truth after
    #: a Ctrl-C too, when some workers never reported back.
    stored: Dict[str, int] = field(default_factory=dict)
    #: Workers still busy when Ctrl-C gave up waiting (the CLI then exits at once).
    stragglers: bool = False
    unsaved: Optional[Path] = None
    #: Whether the counts include the baseline's A/A twin (a cell that is not a variant: cells.aa_cell).
    twins: bool = False

    @property
    def counts(self) -> Dict[str, int]:
        if self.stored:
            return self.stored
        return {
            "ok": sum(d.ok for d in self.devices),
            "error": sum(d.errors for d in self.devices),
            "failed": sum(d.failed for d in self.devices),
        }

    @property
    def all_ok(self) -> bool:
        return not self.interrupted and all(n == 0 for k, n in self.counts.items() if k != "ok")


@dataclass
class Waiting:
    """What a bench does when another controller's agent holds a device (issue 17): wait for it (showing who
    holds it and since when), at most ``timeout`` seconds beyond the device's own deadline, or with ``wait``
    False record the device's cells as ``busy`` at once (``bench --no-wait``)."""

    wait: bool = True
    timeout: float = 1800.0

    def __post_init__(self) -> None:
        if not self.timeout >= 0:
            raise ConfigError(f"--wait-timeout must be >= 0 seconds, got {self.timeout}")


class DeviceStop:
    """Set when the bench is interrupted or the device's overall deadline passed; ``is_set`` like an Event."""

    def __init__(self, stop: threading.Event, seconds: float) -> None:
        self.stop, self.seconds = stop, seconds
        self.start = time.monotonic()
        self.deadline = self.start + seconds

    @property
    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def is_set(self) -> bool:
        return self.stop.is_set() or self.expired

    def reason(self) -> Tuple[str, str]:
        if self.stop.is_set():
            return INTERRUPTED, "interrupted"
        return TIMEOUT, f"the device's overall deadline of {self.seconds:g} s passed (device_timeout)"

    def waited(self, seconds: float, limit: float) -> None:
        """Time spent waiting for another controller's lease does not count against the device's own deadline,
        up to ``limit`` seconds of waiting in all (the bench's --wait-timeout)."""
        self.deadline = max(self.deadline, self.start + self.seconds + min(seconds, limit))


def device_deadline(profile: DeviceProfile, files: int, cells: int, extras: Optional[Extras] = None) -> float:
    """``device_timeout`` when set, else enough for a connect, every upload and the plan at their limits."""
    if getattr(profile, "device_timeout", 0):
        return float(profile.device_timeout)
    return profile.connect_timeout * 3 + profile.transfer_timeout * (files + 4) + plan_limit(profile, cells, extras) + 15


class _Recorder:
    """Stores results for one worker. A locked store is waited for (in short slices, so Ctrl-C is not held up
    by another process's lock); a result the store cannot take, or still cannot take when the bench is
    interrupted, goes to a side file next to the database instead of being lost."""

    #: Each attempt waits this long for a lock; the whole wait for one result is WRITE_PATIENCE.
    SLICE = 2.0
    WRITE_PATIENCE = 3600.0

    def __init__(self, db_path: "str | Path", run_id: int, device: str, stop: threading.Event) -> None:
        self.db_path, self.run_id, self.device, self.stop = db_path, run_id, device, stop
        self.store = Store.open(db_path, write_patience=self.SLICE)
        self.unsaved: Optional[Path] = None

    def record(self, variant: str, values: Dict[str, Any]) -> None:
        self._patiently(lambda: self.store.record(self.run_id, self.device, variant, values),
                        lambda reason: self._keep(variant, values, reason))

    def record_plan(self, values: Dict[str, Any]) -> Optional[int]:
        """The plan's row id, or None when the store would not take it (then it is in the side file)."""
        return self._patiently(lambda: self.store.record_plan(self.run_id, self.device, values),
                               lambda reason: self._keep("(plan)", values, reason))

    def _patiently(self, write: Callable[[], Any], keep: Callable[[str], None]) -> Any:
        deadline = time.monotonic() + self.WRITE_PATIENCE
        while True:
            try:
                return write()
            except StoreError as exc:
                if "locked" in str(exc) and not self.stop.is_set() and time.monotonic() < deadline:
                    continue
                keep(str(exc))
                return None

    def _keep(self, variant: str, values: Dict[str, Any], reason: str) -> None:
        from ..results.store import backend_for, local_folder
        from ..results.store_sqlite import SQLiteBackend

        backend = backend_for(self.db_path)  # beside a SQLite file; under runs/ for a database on a server
        name = backend.path.name if isinstance(backend, SQLiteBackend) else f"edgeprune-run-{self.run_id}"
        local = local_folder(self.db_path)
        local.mkdir(parents=True, exist_ok=True)
        self.unsaved = local / f"{name}.unsaved.jsonl"
        with open(self.unsaved, "a") as handle:
            handle.write(json.dumps({"run_id": self.run_id, "device": self.device, "variant": variant,
                                     "store_error": reason, "values": values}, default=str) + "\n")

    def close(self) -> None:
        self.store.close()


def _bench_device(profile: DeviceProfile, inputs: RunInputs, cells: Dict[str, Tuple[str, Dict[str, Any]]],
                  done_before: Set[str], extras: Extras, sustained: Optional[str],
                  db_path: "str | Path", run_id: int, host_keys: HostKeyPolicy, stop: threading.Event,
                  progress: FleetProgress, waiting: "Waiting") -> DeviceSummary:
    """Measure every cell (cell id -> variant) on one device in one plan, and store one result per cell.

    A resumed device is measured again as a whole (its ratios must come from one plan); when that fails, the
    cells it had already measured keep their stored results (``done_before``) and only the others are failed.
    """
    summary = DeviceSummary(profile.name)
    recorder = _Recorder(db_path, run_id, profile.name, stop)
    variants = list(dict.fromkeys(variant for variant, _ in cells.values()))
    total = len(cells)
    halt = DeviceStop(stop, device_deadline(profile, len(variants) + 1, total, extras))

    def count(status: str) -> None:
        if status == "ok":
            summary.ok += 1
        elif status == "error":
            summary.errors += 1
        else:
            summary.failed += 1

    def fail_all(reason: str, kind: str) -> None:
        for cell in cells:
            if cell not in done_before:
                recorder.record(cell, {"status": "failed", "error_kind": kind, "error_message": reason})
                summary.failed += 1
        summary.reason = reason
        progress.device_state(profile.name, f"failed: {reason}", 0, total)

    try:
        with open_device(profile, host_keys) as device, tempfile.TemporaryDirectory(prefix="edgeprune-plan-") as tmp:
            progress.device_state(profile.name, "connecting", 0, total)
            try:
                progress.device_state(profile.name, "uploading", 0, total)
                files = ([inputs.eval_spec] if inputs.eval_spec else []) + [inputs.specs[n] for n in variants]
                paths = device.prepare(files, stop=halt)
                document = plan_document(profile, cells, {n: paths[inputs.specs[n].sha256] for n in variants},
                                         paths[inputs.eval_spec.sha256] if inputs.eval_spec else None, new_seed(),
                                         inputs.input_shapes, extras, sustained)
                spec = write_plan(Path(tmp), document)
                plan_file = device.prepare([spec], stop=halt)[spec.sha256]
            except DeviceError as exc:
                if halt.is_set():
                    kind, reason = halt.reason()
                else:
                    named = isinstance(exc, (HostKeyError, PythonMissingError))
                    kind, reason = (exc.kind if named else DEPLOY), str(exc)
                fail_all(reason, kind)
                return summary
            if halt.is_set():
                fail_all(*reversed(halt.reason()))
                return summary
            progress.device_state(profile.name, f"measuring {total} cells in rounds (budget "
                                                f"{profile.budget_s:g} s)", 0, total)
            def on_wait(holder: Dict[str, Any], seconds: float) -> None:
                halt.waited(seconds, waiting.timeout)
                progress.device_state(profile.name, f"waiting {seconds:.0f} s for the device: "
                                                    f"{describe_holder(holder)}", 0, total)

            try:
                outcome = device.run_plan(plan_file, total, stop=halt,
                                          expected={c: inputs.expected[v] for c, (v, _) in cells.items()},
                                          lease=Lease(run_id, waiting.wait, on_wait))
            except DeviceError as exc:
                fail_all(str(exc), halt.reason()[0] if halt.is_set() else exc.kind)
                return summary
            if not halt.is_set():
                device.discard(plan_file)
            if outcome.error_kind == INTERRUPTED and halt.expired and not stop.is_set():
                outcome.error_kind, outcome.message = TIMEOUT, halt.reason()[1]
            if not outcome.trusted:  # one line for the whole device (the CLI prints it under the counts)
                summary.reason = f"{outcome.error_kind or outcome.status}: {outcome.message}"
            _store_plan(outcome, cells, done_before, inputs, recorder, count)
            summary.transfer = getattr(device, "stats", TransferStats())
        progress.device_state(profile.name, "done", total, total)
    except DeviceError as exc:
        fail_all(str(exc), halt.reason()[0] if halt.is_set() else exc.kind)
    except Exception as exc:  # one device's bug must not stop the fleet: record it
        fail_all(f"internal error: {type(exc).__name__}: {exc}", INTERNAL)
    finally:
        recorder.close()
        summary.unsaved = recorder.unsaved
    return summary


def _store_plan(outcome: PlanOutcome, cells: Dict[str, Tuple[str, Dict[str, Any]]], done_before: Set[str],
                inputs: RunInputs,
                recorder: _Recorder, count: Callable[[str], None]) -> None:
    """The plan's row, then one result per cell pointing at it. A plan that failed as a whole does not replace
    cells measured before (a resume); a cell the host cannot process costs that cell only."""
    plan_id = recorder.record_plan(plan_columns(outcome))
    for cell, (variant, _) in cells.items():
        if not outcome.trusted and cell in done_before:
            continue
        try:
            values = cell_columns(outcome, outcome.cells.get(cell), inputs.host_predictions.get(variant), cell)
        except Exception as exc:  # a reply that breaks the host's code costs this cell only
            values = {"status": "invalid", "error_kind": INTERNAL,
                      "error_message": f"the host could not process this result: {type(exc).__name__}: "
                                       f"{str(exc)[:300]}"}
        values["plan_id"] = plan_id
        recorder.record(cell, values)
        count(values["status"])


def bench(folder: "Optional[Path | Imported]", devices: Optional[Sequence[DeviceProfile]], db_path: "str | Path",
          jobs: int = 8,
          host_keys: HostKeyPolicy = HostKeyPolicy.REJECT, resume: Optional[int] = None,
          variants: Optional[Sequence[str]] = None, progress: Optional[FleetProgress] = None,
          stop: Optional[threading.Event] = None, matrix: Optional[Matrix] = None,
          extras: Optional[Extras] = None, waiting: Optional["Waiting"] = None) -> BenchResult:
    """Benchmark every ok variant of ``folder`` (a run folder, or imported .tflite files) on ``devices``; results
    are stored as they arrive.

    With ``resume``, ``folder`` may be None (the stored run folder) and ``devices`` may be None (the run's stored
    devices); a folder whose files changed since that run is refused. ``waiting``: what to do when another
    controller holds a device (wait, up to its timeout, or record the device's cells ``busy`` at once).
    ``db_path`` is the store as ``--db`` names it: a SQLite path or a URL (results.store).
    """
    progress = progress or FleetProgress()
    waiting = waiting or Waiting()
    stop = stop or threading.Event()
    if jobs < 1:
        raise ConfigError("--jobs must be >= 1")
    if resume is not None and resume < 1:
        raise ConfigError(f"--resume takes a run id (1 or more), got {resume}: `edgeprune runs` lists them")
    store = Store.open(db_path)
    try:
        source = open_source(store, folder, resume)
        if resume is not None:
            devices = list(devices) if devices else stored_devices(store, resume)
            known = {r["name"] for r in store.devices(resume)}
            run_id = resume
            done = set(store.done_pairs(run_id))
        else:
            if not devices:
                raise ConfigError("bench needs at least one device")
            known, done = set(), set()
        names = list(source.names)
        if resume is not None:  # the run is what it was: its own selection of variants and its matrix
            options = json.loads(store.run(resume)["options_json"] or "{}")
            chosen = options.get("variants")
            names = [n for n in names if chosen is None or n in chosen]
            matrix = Matrix.from_dict(options.get("matrix"))
            extras = Extras.from_dict(options.get("extras"))
        matrix, extras = matrix or Matrix(), extras or Extras()
        if variants:
            missing = [v for v in variants if v not in names]
            if missing:
                where = f"run {resume}" if resume is not None else source.run_folder
                raise ConfigError(f"variant {missing[0]!r} is not in {where} (have: {', '.join(names)})")
            names = [n for n in names if n in variants]
        baseline = source.reference
        if extras.sustained_variant and extras.sustained_variant not in names + [baseline]:
            raise ConfigError(f"--sustained-variant {extras.sustained_variant!r} is not a variant of this bench "
                              f"(have: {', '.join(dict.fromkeys([baseline] + names))})")
        inputs = source.inputs(list(dict.fromkeys(([baseline] if baseline else []) + names)))
        local_bad = local_mismatches(inputs)
        if resume is None:
            run_id = store.create_run(source.run_folder, source.manifest,
                                      {"jobs": jobs, "variants": names, "reference": reference_cell(baseline, matrix),
                                       "matrix": matrix.to_dict(), "extras": extras.to_dict()})
        for device in devices:
            if device.name not in known:
                store.add_device(run_id, device.name, device.kind, device.address, device.tags, device.to_dict())
            for name, reason in local_bad.items():
                if (device.name, name) not in done:
                    store.record(run_id, device.name, name,
                                 {"status": "failed", "error_kind": LOCAL_FILE, "error_message": reason})
    finally:
        store.close()
    cells = plan_cells([n for n in names if n not in local_bad], None if baseline in local_bad else baseline, matrix)
    keep_running = sustained_cell(cells, extras, reference_cell(baseline, matrix))
    work = [d for d in devices if any((d.name, c) not in done for c in cells)]
    summaries: List[DeviceSummary] = []
    interrupted = stragglers = False
    executor = ThreadPoolExecutor(max_workers=min(jobs, max(1, len(work))), thread_name_prefix="edgeprune-device")
    futures = [executor.submit(_bench_device, d, inputs, cells, {c for c in cells if (d.name, c) in done}, extras,
                               keep_running, db_path, run_id, host_keys, stop, progress, waiting) for d in work]
    pending = set(futures)
    try:
        _collect(pending, summaries, None)
    except KeyboardInterrupt:
        interrupted = True
        stop.set()
        try:  # the workers stop their agents and return; a second Ctrl-C stops waiting for them
            _collect(pending, summaries, time.monotonic() + STOP_GRACE)
        except KeyboardInterrupt:
            pass
        stragglers = any(not f.done() for f in futures)
    finally:
        executor.shutdown(wait=not stragglers, cancel_futures=True)
    with Store.open(db_path) as store:
        counts = status_counts(store, run_id, [d.name for d in devices], list(cells) + sorted(local_bad))
    unsaved = next((s.unsaved for s in summaries if s.unsaved), None)
    return BenchResult(run_id, sorted(summaries, key=lambda s: s.device), interrupted, counts, stragglers, unsaved,
                       any(is_aa(c) for c in cells))


def _collect(pending: set, summaries: List[DeviceSummary], deadline: Optional[float]) -> None:
    """Move finished workers from ``pending`` (changed in place) to ``summaries`` until none is left or
    ``deadline`` passes. Waits in short slices so Ctrl-C reaches the main thread at once."""
    while pending and (deadline is None or time.monotonic() < deadline):
        finished, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        for future in finished:
            pending.discard(future)
            if not future.cancelled():
                summaries.append(future.result())
