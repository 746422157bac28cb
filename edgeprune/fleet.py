"""Benchmarking a run folder on many devices: in parallel across devices, one benchmark at a time per device.

Every device x variant pair ends as a stored result, whatever happens: a device that cannot be reached, refuses
its host key, times out or lacks a runtime becomes ``failed`` or ``error`` rows with the reason, and the rest of
the fleet goes on (fabric's GroupResult idea, without raising at the end). Each worker thread has its own SQLite
connection and commits each result as it arrives.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from . import manifest as manifest_io
from .deploy import AgentOutcome, FileSpec, TransferStats, open_device
from .devices import DeviceProfile
from .errors import ConfigError, DeviceError
from .store import Store


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


@dataclass
class BenchResult:
    run_id: int
    devices: List[DeviceSummary]
    interrupted: bool = False

    @property
    def counts(self) -> Dict[str, int]:
        return {
            "ok": sum(d.ok for d in self.devices),
            "error": sum(d.errors for d in self.devices),
            "failed": sum(d.failed for d in self.devices),
        }


def result_values(outcome: AgentOutcome, host_predictions: Optional[np.ndarray]) -> Dict[str, Any]:
    """The columns stored beside the agent's whole JSON (which is kept verbatim only when it was valid)."""
    import json

    doc = outcome.document or {}
    runtime = doc.get("runtime") or {}
    timing = doc.get("timing") or {}
    accuracy = doc.get("accuracy") or {}
    device = doc.get("device") or {}
    after = doc.get("device_after") or {}
    memory = doc.get("memory") or {}
    agreement = None
    predictions = accuracy.get("predictions")
    if host_predictions is not None and isinstance(predictions, list) and len(predictions) == len(host_predictions):
        agreement = float(np.mean(np.asarray(predictions) == host_predictions))
    throttled = None
    for facts in (device, after):
        flags = facts.get("throttled")
        if isinstance(flags, dict) and flags.get("value") is not None:
            throttled = int(bool(flags.get("value")) or bool(throttled))
    return {
        "status": outcome.status,
        "error_kind": outcome.error_kind,
        "error_message": outcome.message,
        "runtime": runtime.get("module"),
        "runtime_version": runtime.get("version"),
        "threads": runtime.get("threads"),
        "python_version": (device.get("python") or {}).get("version"),
        "machine": device.get("machine"),
        "init_ms": timing.get("init_ms"),
        "p50_us": timing.get("p50_us"),
        "p90_us": timing.get("p90_us"),
        "p99_us": timing.get("p99_us"),
        "mean_us": timing.get("mean_us"),
        "runs": timing.get("runs"),
        "accuracy": accuracy.get("accuracy"),
        "predictions_digest": accuracy.get("predictions_digest"),
        "agreement": agreement,
        "rss_peak_kib": memory.get("rss_peak_kib"),
        "throttled": throttled,
        "agent_json": json.dumps(doc) if outcome.document is not None else outcome.raw,
    }


def _load_host_predictions(folder: Path, manifest: Dict[str, Any]) -> Dict[str, np.ndarray]:
    path = folder / manifest.get("predictions_file", "predictions.npz")
    if not path.is_file():
        return {}
    with np.load(path) as npz:
        return {key.replace("_", "-"): npz[key] for key in npz.files}


def _bench_device(profile: DeviceProfile, folder: Path, manifest: Dict[str, Any], variants: Sequence[str],
                  db_path: Path, run_id: int, accept_new: bool, stop: threading.Event,
                  progress: FleetProgress, host_predictions: Dict[str, np.ndarray]) -> DeviceSummary:
    summary = DeviceSummary(profile.name)
    store = Store.open(db_path)
    total = len(variants)
    by_name = {v["name"]: v for v in manifest["variants"]}
    eval_spec = FileSpec(folder / manifest["dataset"]["eval_file"], manifest["dataset"]["eval_sha256"], ".npz")
    specs = {name: FileSpec(folder / by_name[name]["file"], by_name[name]["sha256"], ".tflite") for name in variants}
    done = 0

    def fail_rest(reason: str, kind: str = "device") -> None:
        for name in variants[done:]:
            store.record(run_id, profile.name, name, {"status": "failed", "error_kind": kind, "error_message": reason})
            summary.failed += 1
        summary.reason = reason

    try:
        with open_device(profile, accept_new) as device:
            progress.device_state(profile.name, "connecting", done, total)
            try:
                progress.device_state(profile.name, "uploading", done, total)
                paths = device.prepare([eval_spec, *specs.values()], stop=stop)
            except DeviceError as exc:
                fail_rest(str(exc), "host-key" if type(exc).__name__ == "HostKeyError" else "deploy")
                progress.device_state(profile.name, f"failed: {exc}", done, total)
                return summary
            for name in variants:
                if stop.is_set():
                    fail_rest("interrupted", "interrupted")
                    return summary
                progress.device_state(profile.name, f"measuring {name}", done, total)
                try:
                    outcome = device.run_agent(paths[specs[name].sha256], paths[eval_spec.sha256], stop=stop)
                except DeviceError as exc:
                    fail_rest(str(exc), "connection")
                    progress.device_state(profile.name, f"failed: {exc}", done, total)
                    return summary
                if stop.is_set() and outcome.status == "failed":
                    fail_rest("interrupted", "interrupted")
                    return summary
                measured = ((outcome.document or {}).get("model") or {}).get("sha256")
                if outcome.document is not None and measured != specs[name].sha256 and (
                        measured is not None or outcome.status == "ok"):
                    outcome = AgentOutcome("invalid", outcome.document, "sha256-mismatch",
                                           f"the device measured a model with sha256 {str(measured)[:16]}, "
                                           f"expected {specs[name].sha256[:16]} (damaged copy on the device?)")
                store.record(run_id, profile.name, name, result_values(outcome, host_predictions.get(name)))
                done += 1
                if outcome.status == "ok":
                    summary.ok += 1
                elif outcome.status == "error":
                    summary.errors += 1
                else:
                    summary.failed += 1
            summary.transfer = getattr(device, "stats", TransferStats())
        progress.device_state(profile.name, "done", done, total)
    except DeviceError as exc:
        fail_rest(str(exc), "host-key" if type(exc).__name__ == "HostKeyError" else "connection")
        progress.device_state(profile.name, f"failed: {exc}", done, total)
    except Exception as exc:  # one device's bug or broken reply must not stop the fleet: record it
        fail_rest(f"internal error: {type(exc).__name__}: {exc}", "internal")
        progress.device_state(profile.name, f"failed: {exc}", done, total)
    finally:
        store.close()
    return summary


def bench(folder: Path, devices: Sequence[DeviceProfile], db_path: Path, jobs: int = 8,
          accept_new_host_keys: bool = False, resume: Optional[int] = None,
          variants: Optional[Sequence[str]] = None, progress: Optional[FleetProgress] = None,
          stop: Optional[threading.Event] = None) -> BenchResult:
    """Benchmark every ok variant of ``folder`` on ``devices``; results are stored as they arrive."""
    progress = progress or FleetProgress()
    stop = stop or threading.Event()
    if jobs < 1:
        raise ConfigError("--jobs must be >= 1")
    store = Store.open(db_path)
    try:
        if resume is not None:
            row = store.run(resume)
            folder = Path(row["run_folder"])
            manifest = manifest_io.read(folder)
            known = {r["name"]: r for r in store.devices(resume)}
            if not devices:
                raise ConfigError(f"run {resume}: name the devices to resume with --device/--fleet")
            run_id = resume
            done = set(store.done_pairs(run_id))
        else:
            manifest = manifest_io.read(folder)
            run_id = store.create_run(str(folder.resolve()), manifest, {"jobs": jobs})
            known = {}
            done = set()
        names = [v["name"] for v in manifest["variants"] if v["status"] == "ok"]
        if variants:
            missing = [v for v in variants if v not in names]
            if missing:
                raise ConfigError(f"variant {missing[0]!r} is not in {folder} (have: {', '.join(names)})")
            names = [n for n in names if n in variants]
        for device in devices:
            if device.name not in known:
                store.add_device(run_id, device.name, device.kind, device.address, device.tags, device.to_dict())
    finally:
        store.close()
    host_predictions = _load_host_predictions(folder, manifest)
    work = [(d, [n for n in names if (d.name, n) not in done]) for d in devices]
    work = [(d, todo) for d, todo in work if todo]
    summaries: List[DeviceSummary] = []
    interrupted = False
    executor = ThreadPoolExecutor(max_workers=min(jobs, max(1, len(work))), thread_name_prefix="edgeprune-device")
    try:
        futures = [
            executor.submit(_bench_device, d, folder, manifest, todo, db_path, run_id, accept_new_host_keys, stop,
                            progress, host_predictions)
            for d, todo in work
        ]
        for future in as_completed(futures):
            summaries.append(future.result())
    except KeyboardInterrupt:
        interrupted = True
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)
    finally:
        executor.shutdown(wait=True)
    return BenchResult(run_id, sorted(summaries, key=lambda s: s.device), interrupted)
