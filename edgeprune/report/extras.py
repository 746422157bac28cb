"""What a bench recorded besides its rounds (issue 13), from a RunReport to the views that show it: each cell's
op profile (``bench --op-profile``) and each device's sustained run (``bench --sustained``). The terminal,
Markdown, HTML and the plots all take them from here."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from . import opprofile, sustained
from .frame import RunReport
from ..devices.cells import split_cell


def op_views(report: RunReport) -> List[opprofile.OpProfileView]:
    """One view per profiled cell, devices and cells in the store's order."""
    views = []
    for (device, cell), profile in report.op_profiles.items():
        variant, configuration = split_cell(cell)
        views.append(opprofile.OpProfileView(device, cell, variant, configuration, profile))
    return views


def sustained_runs(report: RunReport) -> List[sustained.SustainedSummary]:
    """One summary per device that kept a cell running."""
    return [sustained.summarize(device, data) for device, data in report.sustained.items()]


def sustained_file(device: str) -> str:
    """``sustained-<device>.png`` (a device name is 1-64 letters, digits, '.', '_' or '-': a safe file name)."""
    return f"sustained-{device}.png"


def write_sustained_plots(report: RunReport, out: Path) -> Dict[str, Path]:
    """Latency and temperature over time, one PNG per device with a sustained run (its samples, if any)."""
    written = {}
    for summary in sustained_runs(report):
        if summary.samples:
            written[summary.device] = sustained.plot(summary, out / sustained_file(summary.device))
    return written
