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
from ..devices.cells import split_cell


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
    sections: Tuple[int, ...] = ()  # in a matrix bench: the rows that end a configuration's group


def _heading(device: str, rows: Any) -> str:
    """``device: runtime version, N threads, machine`` from the rows the agent answered: a fact that differs
    between the rows of a matrix bench (runtime, threads) is left to each row's configuration."""
    known = rows[rows["runtime"].notna()]
    if known.empty:
        return device
    first = known.iloc[0]
    parts = []
    if known[["runtime", "runtime_version"]].astype(str).drop_duplicates().shape[0] == 1:
        parts.append(" ".join(str(first[c]) for c in ("runtime", "runtime_version") if present(first[c])))
    if present(first["threads"]) and known["threads"].nunique() == 1:
        parts.append(f"{int(first['threads'])} thread{'s' if first['threads'] != 1 else ''}")
    if present(first["machine"]):
        parts.append(str(first["machine"]))
    return f"{device}: " + ", ".join(p for p in parts if p)


def _by_configuration(rows: Any) -> Tuple[Any, Tuple[int, ...]]:
    """A matrix bench's rows grouped by configuration (runtime, threads, XNNPACK, delegate: the order the
    configurations were measured in), and the positions that end each group."""
    if "config" not in rows or rows["config"].isna().all():
        return rows, ()
    order = {c: i for i, c in enumerate(dict.fromkeys(rows["config"].fillna("")))}
    rows = rows.assign(_group=rows["config"].fillna("").map(order)).sort_values("_group", kind="stable")
    groups_ = rows.pop("_group").tolist()
    return rows, tuple(i for i in range(len(groups_) - 1) if groups_[i] != groups_[i + 1])


def _configuration_columns(table: Any, rows: Any) -> Any:
    """In a matrix bench, the variant column holds the variant alone, then its configuration and the ship mark."""
    if not rows["config"].notna().any():
        return table
    table = table.copy()
    table["variant"] = [split_cell(v)[0] for v in rows["variant"]]
    table.insert(1, "configuration", [c if present(c) else "" for c in rows["config"]])
    table.insert(2, "ship", ["◀ ship" if s is True else "" for s in rows["ship"]])
    return table


def groups(frame: Any, terminal: bool = False, facts: Optional[Dict[str, DeviceFacts]] = None) -> List[Group]:
    """Per-device display tables; columns empty for a whole device are left out. ``terminal`` keeps it narrow.
    ``facts`` (``RunReport.devices``) adds each device's noise floor, verdict and unsettled cells."""
    import pandas as pd

    result = []
    for device, rows in frame.groupby("device", sort=False):
        rows, sections = _by_configuration(rows)
        view = View(*latency_unit(rows["p50_us"]), terminal=terminal)
        records = rows.to_dict("records")
        columns = shown(view)
        table = pd.DataFrame({c.heading(view): [c.cell(row, view) for row in records] for c in columns})
        table = table[[c for c in table.columns if c == "variant" or (table[c] != "").any()]]
        table = _configuration_columns(table, rows)
        failures = [(r["variant"], r["status"], r["error"] or "") for r in records if r["status"] != "ok"]
        host = tuple(c.heading(view) for c in columns if c.host and c.heading(view) in table.columns)
        group = Group(str(device), _heading(str(device), rows), table, failures, view.unit, host,
                      sections=sections)
        fact = (facts or {}).get(device)
        if fact is not None:
            group.floor, group.verdicts = fact.floor, tuple(fact.verdicts)
            group.unsettled, group.unsettled_heading = tuple(fact.unsettled), fact.unsettled_heading
            group.advice = ADVICE if fact.unsettled else ""
        result.append(group)
    return result
