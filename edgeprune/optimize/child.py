"""``optimize`` in a child process (issue 15): a native crash takes the child down, never the CLI.

TensorFlow's oneDNN path aborts in C++ while fine-tuning some models ("free(): invalid size", exit 134); a
converter can segfault on an odd graph. In the same process that killed edgeprune with nothing printed but a
line in native.log. Here the pipeline runs in a ``spawn``-ed child that reports its progress (stage, steps,
notes) and its end (the run folder, or an edgeprune error) through a queue; the parent draws the progress and,
when the child dies without a word, raises :class:`OptimizeCrash`: one line with the stage it was in, the signal,
the last lines of native.log and the remedy where one is known. For the oneDNN abort the remedy is known and
safe, so it is applied once, automatically and said: the stage is run again with ``TF_ENABLE_ONEDNN_OPTS=0``.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue as queue_mod
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from .. import errors
from ..errors import EdgepruneError

#: TensorFlow reads this at import: "0" turns its oneDNN (MKL-DNN) kernels off.
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
#: What a oneDNN abort leaves in native.log (glibc's heap checks, or oneDNN's own name).
ONEDNN_SIGNS = re.compile(r"free\(\): invalid|double free or corruption|corrupted size vs|munmap_chunk\(\)")
#: TensorFlow's start-up chatter in native.log: never the reason for a crash, so never in the one line.
NOISE = re.compile(r"^[IW]\d{4} |^WARNING: All log messages|^To enable the following instructions|cuInit|"
                   r"cuda drivers|cudart_stub")
TAIL_LINES = 3


class OptimizeCrash(EdgepruneError):
    """The optimize child died natively (a signal or an exit without a result)."""


@dataclass
class Crash:
    stage: str
    exitcode: Optional[int]
    tail: List[str]

    @property
    def how(self) -> str:
        if self.exitcode is not None and self.exitcode < 0:
            try:
                return f"signal {signal.Signals(-self.exitcode).name}"
            except ValueError:
                return f"signal {-self.exitcode}"
        return f"exit status {self.exitcode}"

    @property
    def onednn(self) -> bool:
        return any(ONEDNN_SIGNS.search(line) for line in self.tail)


def die_with_parent() -> None:
    """In a child: be killed when the process that started it dies, however it dies (Linux's PR_SET_PDEATHSIG).

    A SIGKILLed ``optimize`` or ``sweep`` cannot stop its children, and a spawned child would otherwise go on
    training for minutes with no one to read its result. Elsewhere, or if prctl is unavailable, nothing changes."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


class QueueProgress:
    """The child's side of the pipeline's Progress: every call becomes an event for the parent."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def stage(self, name: str, total: Optional[int] = None) -> None:
        self.queue.put(("stage", name, total))

    def advance(self, detail: str = "") -> None:
        self.queue.put(("advance", detail))

    def note(self, message: str) -> None:
        self.queue.put(("note", message))


def _child(config: Any, log: Optional[str], queue: Any) -> None:
    """Runs in the child: the pipeline, its native stderr in ``log``, its end on ``queue``."""
    from ._tf import native_stderr_to
    from .pipeline import optimize

    die_with_parent()
    with native_stderr_to(Path(log) if log else None):
        try:
            result = optimize(config, QueueProgress(queue))
            queue.put(("done", str(result.folder), list(result.notes)))
        except EdgepruneError as exc:
            queue.put(("error", type(exc).__name__, str(exc)))
        except BaseException as exc:  # a bug: the parent shows it as one line too, the log has the rest
            queue.put(("error", "EdgepruneError", f"internal error in optimize: {type(exc).__name__}: {exc}"))


@contextlib.contextmanager
def _environ(changes: Dict[str, str]) -> Iterator[None]:
    """``changes`` in os.environ while the child is started (a spawned child copies the environment)."""
    saved = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _tail(log: Optional[Path], since: int) -> List[str]:
    """The last lines the native code wrote to ``log`` in this attempt."""
    if log is None or not log.is_file():
        return []
    with open(log, "rb") as handle:
        handle.seek(since)
        text = handle.read()[-16384:].decode("utf-8", "replace")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not NOISE.search(line.strip())]
    return [line[:300] for line in lines[-TAIL_LINES:]]


def _attempt(config: Any, progress: Any, log: Optional[Path], env: Dict[str, str]) -> Tuple[Any, Optional[Crash]]:
    """One child: (its run folder and notes, None), or (None, how it crashed); an edgeprune error is raised."""
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    since = log.stat().st_size if log is not None and log.is_file() else 0
    with _environ(env):
        child = context.Process(target=_child, args=(config, str(log) if log else None, events),
                                name="edgeprune-optimize", daemon=True)
        child.start()
    stage = "starting"
    try:
        while True:
            try:
                event = events.get(timeout=0.2)
            except queue_mod.Empty:
                if child.is_alive():
                    continue
                try:  # it may have put its last words just before exiting
                    event = events.get(timeout=1.0)
                except queue_mod.Empty:
                    child.join()
                    return None, Crash(stage, child.exitcode, _tail(log, since))
            kind = event[0]
            if kind == "stage":
                stage = event[1]
                progress.stage(event[1], event[2])
            elif kind == "advance":
                progress.advance(event[1])
            elif kind == "note":
                progress.note(event[1])
            elif kind == "done":
                child.join()
                return (Path(event[1]), event[2]), None
            elif kind == "error":
                child.join()
                raise getattr(errors, event[1], EdgepruneError)(event[2])
    except BaseException:  # Ctrl-C, or the error above: the child does not outlive its parent's interest
        if child.is_alive():
            child.terminate()
            child.join(5)
            if child.is_alive():
                child.kill()
        raise


def crash_message(crash: Crash, retried: bool = False) -> str:
    said = f"; native.log ends: {' | '.join(crash.tail)}" if crash.tail else ""
    if crash.onednn and not retried:
        remedy = f"; this is TensorFlow's oneDNN path: set {ONEDNN_ENV}=0 and run again"
    elif crash.onednn:
        remedy = f" (it crashed with {ONEDNN_ENV}=0 too)"
    else:
        remedy = "; run with --debug to see the native output in the terminal"
    return f"optimize crashed in stage {crash.stage!r} ({crash.how}){said}{remedy}"


def _kept(folder: Path, message: str) -> str:
    """After a crash: the incomplete manifest the child wrote (the variants built before it) says why the others
    are missing; returns what to add to the error line."""
    from ..errors import ManifestError
    from ..results import manifest as manifest_io
    from .pipeline import NOT_BUILT

    try:
        document = manifest_io.load(folder)
    except ManifestError:
        return ""
    if document.complete is not False:
        return ""
    for entry in document.variants:
        if entry.error == NOT_BUILT:
            entry.error = f"{NOT_BUILT}: {message}"[:2000]
    manifest_io.save(document, folder)
    built = [v.name for v in document.variants if v.ok]
    return f"; measured before the crash and kept in {folder / 'manifest.json'}: {', '.join(built)}" if built else ""


def optimize_in_child(config: Any, progress: Any, log: Optional[Path]) -> Any:
    """The pipeline's result, computed in a child (see the module docstring); raises OptimizeCrash."""
    from ..results import manifest as manifest_io
    from .pipeline import OptimizeResult

    outcome, crash = _attempt(config, progress, log, {})
    retried = False
    if crash is not None and crash.onednn and os.environ.get(ONEDNN_ENV) != "0":
        progress.note(f"optimize crashed in stage {crash.stage!r} ({crash.how}) in TensorFlow's oneDNN path; "
                      f"running it again with {ONEDNN_ENV}=0")
        retried = True
        outcome, crash = _attempt(config, progress, log, {ONEDNN_ENV: "0"})
    if crash is not None:
        message = crash_message(crash, retried)
        raise OptimizeCrash(message + _kept(config.out_path, message))
    folder, notes = outcome
    document = manifest_io.load(folder)
    if retried:
        notes = list(notes) + [f"measured with {ONEDNN_ENV}=0 after a native crash in TensorFlow's oneDNN path"]
    return OptimizeResult(folder, document, notes)
