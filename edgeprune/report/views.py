"""The comparison table for people: one display table per device, its cells formatted by ``columns.COLUMNS``.

The terminal, Markdown and HTML all show these groups; each escapes the untrusted text in them for its own output.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Tuple

from .columns import View, latency_unit, present, shown


@dataclass
class Group:
    """One device's part of the table, formatted for people."""

    device: str
    heading: str
    table: Any  # DataFrame of strings; failed pairs have an empty cell for every measured figure
    failures: List[Tuple[str, str, str]]  # (variant, status, reason)
    unit: str
    host: Tuple[str, ...] = ()  # headers of the host's figures: a failed pair still shows them


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


def groups(frame: Any, terminal: bool = False) -> List[Group]:
    """Per-device display tables; columns empty for a whole device are left out. ``terminal`` keeps it narrow."""
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
        result.append(Group(str(device), _heading(str(device), rows), table, failures, view.unit, host))
    return result
