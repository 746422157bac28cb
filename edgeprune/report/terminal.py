"""The report in the terminal (Rich): one narrow table per device, each failure's reason under it, then the
device's noise floor, its verdict and the cells that did not settle."""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from .columns import LEGEND
from .frame import RunReport
from .views import Group, groups
from ..text import for_rich


def _same_reason(group: Group) -> List[Tuple[str, str, str]]:
    """Failures that share status and reason on one line (a device that is down fails every variant alike)."""
    merged: Dict[Tuple[str, str], List[str]] = {}
    for variant, status, reason in group.failures:
        merged.setdefault((status, reason), []).append(variant)
    return [("every variant" if len(names) == len(group.table) > 1 else ", ".join(names), status, reason)
            for (status, reason), names in merged.items()]


def print_report(report: RunReport, console: Any) -> None:
    """The terminal version: one narrow table per device, failures listed under it."""
    from rich import box
    from rich.table import Table

    run = report.run
    console.print(f"[bold]edgeprune report: run {run['id']}[/] ({for_rich(run['created'])}, "
                  f"{for_rich(run['model_source'])}, {for_rich(run['dataset'])})", highlight=False)
    for group in groups(report.frame, terminal=True, facts=report.devices):
        table = Table(title=for_rich(group.heading), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                      collapse_padding=True)
        for column in group.table.columns:
            table.add_column(column, justify="left" if column in ("variant", "status", "configuration", "ship")
                             else "right", no_wrap=column in ("variant", "configuration"))
        failed = group.table["status"] != "" if "status" in group.table else [False] * len(group.table)
        for index, (row, bad) in enumerate(zip(group.table.itertuples(index=False), failed)):
            table.add_row(*[for_rich(v) for v in row], style="red" if bad else None,
                          end_section=index in group.sections)
        console.print(table)
        for variants, status, reason in _same_reason(group):
            console.print(f"  [red]{for_rich(variants)}[/] ({for_rich(status)}): {for_rich(reason)}", highlight=False)
        print_notes(group, console)
    from . import opprofile, sustained
    from .extras import op_views, sustained_runs

    for line in sustained.terminal_lines(sustained_runs(report)) + opprofile.terminal_lines(op_views(report)):
        console.print(line, highlight=False)
    console.print(f"[dim]{LEGEND}[/]", highlight=False)


def indented(console: Any, markup: str) -> None:
    """One note under a table, indented by two spaces, its wrapped lines too."""
    from rich.padding import Padding
    from rich.text import Text

    console.print(Padding(Text.from_markup(markup), (0, 0, 0, 2)), highlight=False)


def print_notes(group: Group, console: Any) -> None:
    """The device's noise floor, its verdict (one line each) and the cells that did not settle."""
    if group.floor:
        indented(console, f"[dim]{for_rich(group.floor, 600)}[/]")
    for line in group.verdicts:
        indented(console, f"[bold]{for_rich(line, 600)}[/]")
    if group.unsettled:
        indented(console, f"[yellow]{for_rich(group.unsettled_heading)}[/] "
                 + "; ".join(for_rich(cell) for cell in group.unsettled) + ".")
        indented(console, f"[dim]{for_rich(group.advice, 600)}[/]")
