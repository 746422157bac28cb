"""What the CLI draws: progress on stderr (stdout carries only tables or JSON) and the optimize table.

Consoles are created per command, never at import, and rich is imported inside, so ``--help`` stays fast.
Text from a device or a user's file goes through ``edgeprune.text``: escaped where it is put into markup, and the
progress columns that show it do not parse markup at all.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional

from ..optimize.variants import BASELINE
from ..text import clean, for_rich


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def stdout_console() -> Any:
    """Tables go to stdout; when it is a file or pipe, use $COLUMNS or a width that fits the whole table."""
    import os

    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    columns = os.environ.get("COLUMNS", "")
    return Console(width=int(columns) if columns.isdigit() and int(columns) > 0 else 120)


class RichProgress:
    """Progress on stderr so stdout carries only the table or the JSON."""

    def __init__(self, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = stderr_console()
        self.quiet = quiet
        self.bar = Progress(
            TextColumn("{task.description:<22}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}", markup=False),
            TimeElapsedColumn(),
            console=self.console,
            disable=quiet,
        )
        self.task: Optional[int] = None

    def __enter__(self) -> "RichProgress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._finish()
        self.bar.__exit__(*exc)

    def _finish(self) -> None:
        if self.task is not None:
            task = self.bar.tasks[self.task]
            if task.total is not None:
                self.bar.update(self.task, completed=task.total)
            self.bar.refresh()

    def stage(self, name: str, total: Optional[int] = None) -> None:
        self._finish()
        self.task = self.bar.add_task(clean(name), total=total, detail="")
        self.bar.refresh()

    def advance(self, detail: str = "") -> None:
        if self.task is not None:
            self.bar.update(self.task, advance=1, detail=clean(detail, 70))
            self.bar.refresh()

    def note(self, message: str) -> None:
        self.bar.console.print(f"[yellow]note:[/] {for_rich(message)}", highlight=False)


def variants_table(manifest: Dict[str, Any]) -> Any:
    from rich.table import Table

    variants = manifest["variants"]
    base = next((v for v in variants if v["name"] == BASELINE and v["status"] == "ok"), None)
    table = Table(title=f"edgeprune optimize: {for_rich(manifest['dataset']['name'])} "
                        f"({for_rich(manifest['baseline']['source'])})")
    for column in ("variant", "size KB", "gzip KB", "size ratio", "gzip ratio", "sparsity", "accuracy", "Δ acc (pts)"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for v in variants:
        if v["status"] != "ok":
            table.add_row(for_rich(v["name"]), f"[red]failed: {for_rich(v['error'])}[/]", *[""] * 6)
            continue
        row = [for_rich(v["name"]), f"{v['size_bytes'] / 1024:.1f}", f"{v['gzip_bytes'] / 1024:.1f}"]
        if base:
            row += [
                f"{base['size_bytes'] / v['size_bytes']:.2f}x",
                f"{base['gzip_bytes'] / v['gzip_bytes']:.2f}x",
            ]
        else:
            row += ["-", "-"]
        row += [f"{v['sparsity']:.1%}", f"{v['accuracy']:.2%}" + (" [red]![/]" if v.get("over_budget") else "")
                + (" [red]≠ Keras[/]" if v.get("mismatch") else "")]
        row.append(f"{(v['accuracy'] - base['accuracy']) * 100:+.2f}" if base else "-")
        table.add_row(*row)
    pruning = manifest["pruning"]
    schedule = pruning["schedule"]
    coverage = pruning.get("coverage") or []
    if coverage:  # what share of the whole model that is, and how many layers with weights were pruned
        pruned = sum(1 for c in coverage if c["status"] == "pruned")
        whole = (f"all weights: {pruning['all_weights_sparsity']:.1%} zero, {pruned} of {len(coverage)} layers "
                 f"with weights pruned (see the notes for what stayed dense); ")
    else:
        whole = ""
    table.caption = (
        whole + f"pruned kernels: {pruning['sparsity']:.1%} sparse "
        f"(PolynomialDecay {schedule['initial_sparsity']:.2f}->{schedule['final_sparsity']:.2f}, steps "
        f"{schedule['begin_step']}-{schedule['end_step']} every {schedule['frequency']}, "
        f"{schedule['recovery_steps']} recovery steps); total {manifest['timings']['total']:.1f} s"
    )
    return table


class FleetDisplay:
    """One progress row per device, on stderr; thread-safe because rich's Progress is."""

    def __init__(self, devices: List[str], quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description:<20}", markup=False), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[state]}", markup=False), TimeElapsedColumn(),
            console=stderr_console(), disable=quiet,
        )
        self.tasks = {name: self.bar.add_task(clean(name, 40), total=None, state="waiting") for name in devices}
        self._holders: dict = {}

    def __enter__(self) -> "FleetDisplay":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def device_state(self, device: str, state: str, done: int = 0, total: int = 0) -> None:
        """``state`` may hold a device's exception message: shown as plain text (the column parses no markup)."""
        task = self.tasks.get(device)
        if task is not None:
            self.bar.update(task, completed=done, total=total or None, state=clean(state, 70))
        self._log_wait(device, state)

    def _log_wait(self, device: str, state: str) -> None:
        """Waiting for another controller's lease (issue 17): where no live progress is drawn (a CI log, a pipe),
        one line each time the holder changes, so the log says why this bench is not measuring."""
        console = self.bar.console
        holder = state.partition(": ")[2] if state.startswith("waiting ") else ""
        if not holder or console.is_terminal or self.bar.disable or self._holders.get(device) == holder:
            return
        self._holders[device] = holder
        console.print(f"{clean(device, 40)}: waiting for the device: {clean(holder, 300)}", markup=False,
                      highlight=False)
