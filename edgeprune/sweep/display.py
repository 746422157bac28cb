"""The sweep's progress on stderr: a row per run being optimized, a row per run x device being benched, and
plain lines for what the sweep decides (what it skips, when it benches).

Thread-safe (rich's Progress is): runs report from worker threads, benches from the bench thread. Everything shown
is plain text (``rich.text.Text`` and columns that parse no markup), cleaned by ``edgeprune.text``: stage names,
notes and device states can come from a device or a user's model.
"""
from __future__ import annotations

import threading
from typing import Any, Dict, Optional, Set

from ..text import clean


class _RunRow:
    """One run's row: what optimize_in_child's progress calls say, drawn as a bar per stage."""

    def __init__(self, display: "SweepDisplay", run: str) -> None:
        self.display, self.run = display, run
        self.task = display.bar.add_task(clean(run, 40), total=None, detail="waiting")
        self.stage_name = ""

    def stage(self, name: str, total: Optional[int] = None) -> None:
        self.stage_name = clean(name, 40)
        self.display.bar.reset(self.task, total=total, detail=self.stage_name)

    def advance(self, detail: str = "") -> None:
        self.display.bar.update(self.task, advance=1, detail=clean(f"{self.stage_name}: {detail}", 70))

    def note(self, message: str) -> None:
        self.display.note(message)


class _BenchRow:
    """A run's bench: one row per device (devices.fleet.FleetProgress)."""

    def __init__(self, display: "SweepDisplay", run: str) -> None:
        self.display, self.run = display, run
        self.tasks: Dict[str, Any] = {}

    def device_state(self, device: str, state: str, done: int = 0, total: int = 0) -> None:
        with self.display.lock:
            if device not in self.tasks:
                self.tasks[device] = self.display.bar.add_task(clean(f"bench {self.run} @ {device}", 40),
                                                               total=None, detail="")
        self.display.bar.update(self.tasks[device], completed=done, total=total or None, detail=clean(state, 70))


class SweepDisplay:
    def __init__(self, quiet: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.bar = Progress(TextColumn("{task.description:<30}", markup=False), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[detail]}", markup=False), TimeElapsedColumn(),
                            console=self.console, disable=quiet)
        self.lock = threading.Lock()
        self.rows: Dict[str, _RunRow] = {}
        self.noted: Set[str] = set()

    def __enter__(self) -> "SweepDisplay":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def say(self, message: str) -> None:
        """A line of what the sweep does (shown with -q too: it says what was skipped and what was run)."""
        from rich.text import Text

        self.console.print(Text(clean(message, 2000)), soft_wrap=True)

    def note(self, message: str) -> None:
        """A pipeline note, once: every run of a sweep would repeat the same ones."""
        from rich.text import Text

        text = clean(message, 500)
        with self.lock:
            if text in self.noted:
                return
            self.noted.add(text)
        self.console.print(Text.assemble(("note: ", "yellow"), text), soft_wrap=True)

    def run_progress(self, run: str) -> _RunRow:
        with self.lock:
            if run not in self.rows:
                self.rows[run] = _RunRow(self, run)
            return self.rows[run]

    def run_done(self, run: str, reason: Optional[str]) -> None:
        row = self.run_progress(run)
        task = next((t for t in self.bar.tasks if t.id == row.task), None)
        total = task.total if task is not None and task.total is not None else 1
        self.bar.update(row.task, total=total, completed=total, detail="done" if reason is None else "failed")
        if reason is not None:
            self.say(f"{run}: failed: {reason}")

    def bench_progress(self, run: str) -> _BenchRow:
        return _BenchRow(self, run)
