"""Sweep work on a Ray cluster (``--ray ADDRESS``): Ray schedules, edgeprune only submits and collects.

The baseline and every run are Ray tasks (``max_retries=0``: a worker that dies is that run's recorded failure, not
a silent retry). Nothing assumes a shared file system: the baseline's files go to the object store once
(``ray.put``) and every run task receives them as bytes; a task returns its run folder's files as bytes and the
driver writes them here (``folders``). On the worker, the run is the same ``optimize_in_child`` as on this
machine (so a native crash is a one-line reason there too), in a temporary folder. ``TF_USE_LEGACY_KERAS=1`` and
TensorFlow's thread counts (the CPUs each task asks Ray for, ``--ray-cpus``) reach the workers through the job's
``runtime_env``. Progress comes back through a Ray queue (an actor that takes no CPU). The workers need
edgeprune (with the same version) installed; Ray ships the call, not the package.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ..errors import ConfigError, EdgepruneError
from ..optimize.config import OptimizeConfig
from ..text import clean
from . import folders
from .local import Finished, LocalRunner, one_line
from .state import BASELINE_DATA, BASELINE_MODEL

#: What every worker process of the sweep's job gets in its environment.
ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


class _Events:
    """A task's progress, sent to the driver through the queue actor as (run, call, args)."""

    def __init__(self, run: str, queue: Any) -> None:
        self.run, self.queue = run, queue

    def _put(self, *event: Any) -> None:
        try:
            self.queue.put((self.run,) + event, timeout=5)
        except Exception:  # progress is best effort: a full or gone queue must not fail the run
            pass

    def stage(self, name: str, total: Optional[int] = None) -> None:
        self._put("stage", name, total)

    def advance(self, detail: str = "") -> None:
        self._put("advance", detail)

    def note(self, message: str) -> None:
        self._put("note", message)


def _baseline_task(config: Dict[str, Any], queue: Any) -> Dict[str, Any]:
    """On a worker: the baseline in a child process there, returned as its files."""
    with tempfile.TemporaryDirectory(prefix="edgeprune-sweep-") as tmp:
        folder = Path(tmp) / "baseline"
        try:
            LocalRunner(1).baseline(OptimizeConfig.from_dict(dict(config, out=str(folder))), folder,
                                    _Events("baseline", queue))
        except EdgepruneError as exc:
            return {"error": one_line(exc)}
        return {"files": folders.read_files(folder)}


def _run_task(key: str, config: Dict[str, Any], baseline: Dict[str, bytes], queue: Any) -> Dict[str, Any]:
    """On a worker: one run's optimize from the baseline's bytes, returned as its run folder's files."""
    from ..optimize.child import optimize_in_child

    with tempfile.TemporaryDirectory(prefix="edgeprune-sweep-") as tmp:
        root = Path(tmp)
        folders.write_files(root / "baseline", baseline)
        run = root / "run"
        run.mkdir()
        local = dict(config, out=str(run), model=str(root / "baseline" / BASELINE_MODEL),
                     data=str(root / "baseline" / BASELINE_DATA))
        try:
            optimize_in_child(OptimizeConfig.from_dict(local), _Events(key, queue), run / "native.log")
        except EdgepruneError as exc:
            return {"error": one_line(exc)}
        return {"files": folders.read_files(run)}


def _reason(exc: BaseException) -> str:
    """A Ray failure (a task's exception, a dead worker or node) as one line."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return one_line(cause)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return clean(f"the Ray task failed: {type(exc).__name__}: {lines[0] if lines else ''}", 2000)


#: Seconds to wait for the cluster's address to answer before saying it does not (Ray itself retries for minutes).
CONNECT_TIMEOUT = 10.0


def reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """ConfigError when a ``host:port`` address does not accept a connection; other forms (``auto``,
    ``ray://...``) are left to Ray."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"cannot connect to the Ray cluster at {address}: {exc.strerror or exc} (is `ray start "
                          f"--head` running there?)") from exc


class RayRunner:
    """Submits to the cluster at ``address``; this machine only writes the results (unless it is a node)."""

    trains_here = False

    def __init__(self, address: str, cpus: float = 1.0) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--ray needs Ray on this machine: pip install 'edgeprune[ray]'") from None
        reachable(address)
        self.ray, self.address, self.cpus = ray, address, cpus
        self.where = f"the Ray cluster at {address}"
        threads = str(max(1, int(cpus)))
        env = dict(ENV, TF_NUM_INTRAOP_THREADS=threads, TF_NUM_INTEROP_THREADS=threads)
        try:
            ray.init(address=address, runtime_env={"env_vars": env}, logging_level=logging.ERROR,
                     log_to_driver=False)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError... for a bad address
            raise ConfigError(f"cannot connect to the Ray cluster at {address}: {clean(exc, 300)}") from exc
        from ray.util.queue import Queue

        self.queue = Queue(actor_options={"num_cpus": 0})
        options = {"num_cpus": cpus, "max_retries": 0}
        self._baseline = ray.remote(**options)(_baseline_task)
        self._run = ray.remote(**options)(_run_task)
        self._baseline_ref: Any = None

    def close(self) -> None:
        self.ray.shutdown()

    def _drain(self, progress_for: Callable[[str], Any]) -> None:
        try:
            events = self.queue.get_nowait_batch(self.queue.qsize())
        except Exception:  # progress is best effort
            return
        for run, call, *args in events:
            getattr(progress_for(run), call)(*args)

    def _wait(self, refs: Dict[Any, str], progress_for: Callable[[str], Any]) -> Iterator[Tuple[str, Any]]:
        """(run, result or the exception) for each task as it ends; Ctrl-C cancels the rest."""
        pending = list(refs)
        try:
            while pending:
                ready, pending = self.ray.wait(pending, num_returns=1, timeout=0.2)
                self._drain(progress_for)
                for ref in ready:
                    try:
                        yield refs[ref], self.ray.get(ref)
                    except self.ray.exceptions.RayError as exc:
                        yield refs[ref], exc
            self._drain(progress_for)
        except BaseException:
            for ref in pending:
                self.ray.cancel(ref, force=True)
            raise

    def baseline(self, config: OptimizeConfig, folder: Path, progress: Any) -> None:
        """The baseline on a worker, written into ``folder`` here."""
        ref = self._baseline.remote(config.to_dict(), self.queue)
        for _, result in self._wait({ref: "baseline"}, lambda run: progress):
            if isinstance(result, BaseException) or "error" in result:
                reason = _reason(result) if isinstance(result, BaseException) else result["error"]
                raise EdgepruneError(f"the sweep's baseline could not be prepared on {self.where}: {reason}")
            attempt = folders.new_attempt(folder)
            folders.write_files(attempt, result["files"])
            folders.promote(attempt, folder)

    def optimize(self, runs: List[Tuple[str, OptimizeConfig]],
                 progress_for: Callable[[str], Any]) -> Iterator[Finished]:
        """Every run submitted at once (Ray runs as many as the cluster's CPUs allow); yields each as it ends."""
        if not runs:
            return
        baseline_folder = Path(runs[0][1].model or "").parent
        if self._baseline_ref is None:
            self._baseline_ref = self.ray.put(folders.read_files(baseline_folder))
        configs = dict(runs)
        refs = {self._run.remote(key, config.to_dict(), self._baseline_ref, self.queue): key for key, config in runs}
        for key in configs:
            progress_for(key).stage(f"queued on {self.where}")
        for key, result in self._wait(refs, progress_for):
            yield self._finished(key, configs[key], result)

    def _finished(self, key: str, config: OptimizeConfig, result: Any) -> Finished:
        if isinstance(result, BaseException):
            return Finished(key, reason=_reason(result))
        if "error" in result:
            return Finished(key, reason=result["error"])
        final = config.out_path
        attempt = folders.new_attempt(final)
        try:
            folders.write_files(attempt, result["files"])
            folders.finish(attempt, final, config.to_dict())
        except (EdgepruneError, OSError) as exc:
            return Finished(key, reason=one_line(exc))
        return Finished(key, folder=final)
