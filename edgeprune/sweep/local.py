"""Sweep work on this machine: the baseline and every run's optimize, each in its own spawned child process.

A run is ``optimize_in_child`` (edgeprune/optimize/child.py), so a native crash in one run is that run's one-line
reason and the sweep goes on; ``--jobs N`` runs N of them at once, each child's TensorFlow given about cores/N
threads (``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS``, read by TensorFlow at start-up; values the user
set are kept), so N children do not each start a thread per core and fight over them. Ctrl-C stops the children
at once: what finished is on disk (and in the store), the rest is what a resume does.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue as queue_mod
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ..errors import EdgepruneError
from ..optimize.config import OptimizeConfig
from ..text import clean
from . import folders

THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


@dataclass
class Finished:
    """One run's end: its final folder, or why it failed (one line)."""

    run: str
    folder: Optional[Path] = None
    reason: Optional[str] = None


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def thread_share(jobs: int) -> Iterator[int]:
    """TensorFlow's thread counts for ``jobs`` children at once (children copy the environment when started);
    yields the count (0: left to TensorFlow)."""
    share = max(1, cores() // jobs) if jobs > 1 else 0
    changes = {name: str(share) for name in THREAD_VARIABLES if share and name not in os.environ}
    os.environ.update(changes)
    try:
        yield share
    finally:
        for name in changes:
            os.environ.pop(name, None)


def stop_children() -> None:
    """Stop this process's child processes (the optimize children) now, the way optimize_in_child would."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    deadline = time.monotonic() + 5
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()


def one_line(exc: BaseException) -> str:
    """An optimize failure as the point's reason: the edgeprune error's message, anything else named."""
    text = str(exc) if isinstance(exc, EdgepruneError) else f"internal error: {type(exc).__name__}: {exc}"
    return clean(text, 2000)


class LocalRunner:
    """Runs on this machine; its training load is why local devices are benched only after it is done."""

    where = "this machine"
    trains_here = True

    def __init__(self, jobs: int, native_log: bool = True) -> None:
        self.jobs = max(1, jobs)
        self.native_log = native_log  # False (--debug): the native output stays in the terminal

    def close(self) -> None:
        """Nothing to release: every child is gone when its run ends."""

    def _log(self, folder: Path) -> Optional[Path]:
        return folder / "native.log" if self.native_log else None

    def baseline(self, config: OptimizeConfig, folder: Path, progress: Any) -> None:
        """Train (or load) the baseline once, in a child, into ``folder`` (baseline.keras, data.npz)."""
        attempt = folders.new_attempt(folder)
        attempt.mkdir(parents=True)
        context = multiprocessing.get_context("spawn")
        events = context.Queue()
        child = context.Process(target=_prepare_child, args=(config, str(attempt), self._log(attempt), events),
                                name="edgeprune-sweep-baseline", daemon=True)
        child.start()
        try:
            outcome = _follow(child, events, progress)
        except BaseException:
            stop_children()
            raise
        if outcome[0] == "error":
            raise EdgepruneError(f"the sweep's baseline could not be prepared: {outcome[1]}")
        folders.promote(attempt, folder)

    def optimize(self, runs: List[Tuple[str, OptimizeConfig]],
                 progress_for: Callable[[str], Any]) -> Iterator[Finished]:
        """Each run optimized in a child, ``jobs`` at a time; yields each run's end as it comes."""
        if not runs:
            return
        with thread_share(min(self.jobs, len(runs))):
            executor = ThreadPoolExecutor(max_workers=min(self.jobs, len(runs)), thread_name_prefix="edgeprune-run")
            futures: Dict[Future, str] = {executor.submit(self._one, key, config, progress_for(key)): key
                                          for key, config in runs}
            pending = set(futures)
            try:
                while pending:
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
            except BaseException:  # Ctrl-C (or the consumer stopped): the children go now, finished runs stay
                executor.shutdown(wait=False, cancel_futures=True)
                stop_children()
                raise
            executor.shutdown(wait=True)

    def _one(self, key: str, config: OptimizeConfig, progress: Any) -> Finished:
        from ..optimize.child import optimize_in_child

        final = config.out_path
        attempt = folders.new_attempt(final)
        attempt.mkdir(parents=True)
        try:
            optimize_in_child(_with_out(config, attempt), progress, self._log(attempt))
            folders.finish(attempt, final, config.to_dict())
        except Exception as exc:  # this run's failure, recorded; the sweep goes on
            return Finished(key, reason=one_line(exc))
        return Finished(key, folder=final)


def _with_out(config: OptimizeConfig, out: Path) -> OptimizeConfig:
    return OptimizeConfig.from_dict(dict(config.to_dict(), out=str(out)))


def _prepare_child(config: OptimizeConfig, folder: str, log: Optional[Path], events: Any) -> None:
    """Runs in the child: prepare_baseline, its native stderr in ``log``, its end on ``events``."""
    from ..optimize._tf import native_stderr_to
    from ..optimize.child import QueueProgress, die_with_parent  # the optimize child's progress events, as they are
    from ..optimize.pipeline import prepare_baseline

    die_with_parent()
    with native_stderr_to(log):
        try:
            prepare_baseline(config, Path(folder), QueueProgress(events))
            events.put(("done",))
        except BaseException as exc:  # the parent says it in one line; the log has the native rest
            events.put(("error", one_line(exc)))


def _follow(child: Any, events: Any, progress: Any) -> Tuple[str, ...]:
    """Forward the child's progress until it ends: ("done",), ("error", reason), or a crash as an error."""
    while True:
        try:
            event = events.get(timeout=0.2)
        except queue_mod.Empty:
            if child.is_alive() or not events.empty():  # its last words may still be in the pipe
                continue
            child.join()
            return ("error", f"the child process died (exit status {child.exitcode}); see native.log")
        if event[0] in ("done", "error"):
            child.join()
            return tuple(event)
        getattr(progress, event[0])(*event[1:])
