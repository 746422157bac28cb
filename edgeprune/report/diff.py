"""Two runs side by side: what changed per device x variant (a new runtime version, a new pruning schedule...)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, List, Optional

from . import stats
from .columns import latency_unit
from .frame import load
from ..text import for_rich

KEEP = ("device", "variant", "status", "runtime", "runtime_version", "size_kb", "device_accuracy", "p50_us")


def compare_runs(db: "str | Path", run_a: int, run_b: int) -> Any:
    """The change from run A to run B per device x variant; a pair in only one run has the other side empty."""
    a, b = load(db, run_a), load(db, run_b)
    merged = a.frame[list(KEEP)].merge(b.frame[list(KEEP)], on=["device", "variant"], how="outer",
                                       suffixes=("_a", "_b"), sort=False)
    order = list(dict.fromkeys([*zip(a.frame["device"], a.frame["variant"]),
                                *zip(b.frame["device"], b.frame["variant"])]))
    merged = merged.set_index(["device", "variant"]).loc[order].reset_index()
    merged["p50_change"] = merged["p50_us_b"] / merged["p50_us_a"] - 1
    merged["accuracy_change"] = merged["device_accuracy_b"] - merged["device_accuracy_a"]
    merged["size_change"] = merged["size_kb_b"] / merged["size_kb_a"] - 1
    significant: List[Optional[bool]] = []
    for _, row in merged.iterrows():
        pair = (row["device"], row["variant"])
        significant.append(stats.outside_noise(stats.ratio_interval(b.medians.get(pair), a.medians.get(pair))))
    merged["p50_change_significant"] = significant
    merged.attrs["runs"] = (a.run, b.run)
    return merged


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _runtime(row: Any, side: str) -> str:
    return " ".join(_text(row[f"{c}_{side}"]) for c in ("runtime", "runtime_version")).strip()


def _change(row: Any) -> str:
    change = row["p50_change"]
    if change != change:
        return ""
    return ("~" if row["p50_change_significant"] is False else "") + f"{change:+.1%}"


def print_comparison(db: "str | Path", run_a: int, run_b: int, console: Any) -> Any:
    """One table per device; ``~`` marks a p50 change within the bootstrap noise. Returns the DataFrame."""
    from rich import box
    from rich.table import Table

    frame = compare_runs(db, run_a, run_b)
    console.print(f"[bold]edgeprune report --compare {run_a} {run_b}[/]: change from run {run_a} to run {run_b}",
                  highlight=False)
    for device, rows in frame.groupby("device", sort=False):
        unit, scale = latency_unit([*rows["p50_us_a"], *rows["p50_us_b"]])
        table = Table(title=for_rich(device), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for column in ("variant", f"status {run_a} → {run_b}", f"runtime {run_a} → {run_b}", f"p50 {unit} {run_a}",
                       f"p50 {unit} {run_b}", "p50 change", "Δ acc pts", "size change"):
            table.add_column(column, justify="left" if column.split()[0] in ("variant", "status", "runtime")
                             else "right")
        for _, row in rows.iterrows():
            statuses = [for_rich(_text(row[f"status_{side}"]), 100) or "-" for side in "ab"]
            runtimes = [for_rich(_runtime(row, side), 100) or "-" for side in "ab"]
            table.add_row(
                for_rich(row["variant"]),
                statuses[0] if statuses[0] == statuses[1] else " → ".join(statuses),
                runtimes[0] if runtimes[0] == runtimes[1] else " → ".join(runtimes),
                *[f"{v / scale:.1f}" if v == v else "" for v in (row["p50_us_a"], row["p50_us_b"])],
                _change(row),
                "" if row["accuracy_change"] != row["accuracy_change"] else f"{row['accuracy_change'] * 100:+.2f}",
                "" if row["size_change"] != row["size_change"] else f"{row['size_change']:+.1%}",
            )
        console.print(table)
    console.print("[dim]p50 change = run B's p50 / run A's - 1 (negative is faster); ~ = within the noise (the "
                  "bootstrap 95% interval of the ratio contains 1).[/]", highlight=False)
    return frame
