"""The comparison table for people: one display table per device, its cells formatted by ``columns.COLUMNS``,
and under it the device's noise floor, its verdict (what pruning and quantization bought) and the cells that did
not settle, with what to do about them.

The terminal, Markdown and HTML all show these groups; each escapes the untrusted text in them for its own output.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .columns import View, latency_unit, present, shown
from .noise import ADVICE, DeviceFacts


@dataclass
class Group:
    """One device's part of the table, formatted for people."""

    device: str
    heading: str
    table: Any  # DataFrame of strings; failed pairs have an empty cell for every measured figure
    failures: List[Tuple[str, str, str]]  # (variant, status, reason)
    unit: str
    host: Tuple[str, ...] = ()  # headers of the host's figures: a failed pair still shows them
    floor: str = ""  # the A/A noise band and how the plan stopped, or why there is no noise floor
    verdicts: Tuple[str, ...] = ()  # what pruning, quantization and both bought on this device
    unsettled: Tuple[str, ...] = ()  # cells that did not settle, with their ± width
    unsettled_heading: str = ""
    advice: str = ""  # what to do about them (set when there are some)


def _heading(device: str, rows: Any) -> str:
    """``device: runtime version, N threads, machine`` from the first row the agent answered."""
    known = rows[rows["runtime"].notna()]
    if known.empty:
        return device
    first = known.iloc[0]
    parts = [" ".join(str(first[c]) for c in ("runtime", "runtime_version") if present(first[c]))]
    if present(first["threads"]):
        parts.append(f"{int(first['threads'])} thread{'s' if first['threads'] != 1 else ''}")
    if present(first["machine"]):
        parts.append(str(first["machine"]))
    return f"{device}: " + ", ".join(parts)


def groups(frame: Any, terminal: bool = False, facts: Optional[Dict[str, DeviceFacts]] = None) -> List[Group]:
    """Per-device display tables; columns empty for a whole device are left out. ``terminal`` keeps it narrow.
    ``facts`` (``RunReport.devices``) adds each device's noise floor, verdict and unsettled cells."""
    import pandas as pd

    result = []
    for device, rows in frame.groupby("device", sort=False):
        view = View(*latency_unit(rows["p50_us"]), terminal=terminal)
        records = rows.to_dict("records")
        columns = shown(view)
        table = pd.DataFrame({c.heading(view): [c.cell(row, view) for row in records] for c in columns})
        table = table[[c for c in table.columns if c == "variant" or (table[c] != "").any()]]
        failures = [(r["variant"], r["status"], r["error"] or "") for r in records if r["status"] != "ok"]
        host = tuple(c.heading(view) for c in columns if c.host and c.heading(view) in table.columns)
        group = Group(str(device), _heading(str(device), rows), table, failures, view.unit, host)
        fact = (facts or {}).get(device)
        if fact is not None:
            group.floor, group.verdicts = fact.floor, tuple(fact.verdicts)
            group.unsettled, group.unsettled_heading = tuple(fact.unsettled), fact.unsettled_heading
            group.advice = ADVICE if fact.unsettled else ""
        result.append(group)
    return result
