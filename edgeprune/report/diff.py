"""Two runs side by side: what changed per device x variant (a new runtime version, a new pruning schedule...).

A p50's change from run A to run B comes with an interval from both runs' between-round variation
(``stats.run_change_interval``: each run's rounds resampled on their own, since round 7 of one bench has nothing to
do with round 7 of another). The change is called real only when that interval excludes 1 and lies beyond the
wider of the two runs' A/A noise bands on that device (``stats.widest_band``, then ``stats.call_speedup`` on the
speed-up from A to B). A pair measured without rounds in either run says "no rounds" and is never called.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from . import stats
from .columns import latency_text, latency_unit
from .frame import RunReport, load
from .noise import NO_ROUNDS, NO_ROUNDS_TEXT
from .terminal import indented
from ..text import for_rich

KEEP = ("device", "variant", "status", "runtime", "runtime_version", "size_kb", "device_accuracy", "p50_us")
#: The columns each pair's judged change adds (besides p50_change, accuracy_change and size_change).
JUDGED = ("p50_change_low", "p50_change_high", "p50_change_significant", "p50_change_verdict", "p50_change_text")


def _floor(a: RunReport, b: RunReport, device: str) -> Tuple[Optional[stats.Interval], str]:
    """The wider of the two runs' A/A bands on ``device`` (None when either run has none), and why not."""
    facts = [(report.run["id"], report.devices.get(device)) for report in (a, b)]
    band = stats.widest_band(*[fact.band if fact else None for _, fact in facts])
    why = "; ".join(f"run {run}: {fact.why if fact else 'not measured'}" for run, fact in facts
                    if fact is None or fact.band is None)
    return band, why


def judge_change(a_rounds: Optional[List[float]], b_rounds: Optional[List[float]], band: Optional[stats.Interval],
                 no_floor: str = "") -> stats.Verdict:
    """Run B against run A for one cell, as a speed-up p50(A) / p50(B) (above 1: B is faster), judged against
    ``band``; its ``ratio`` is that speed-up's interval. No rounds in either run: NO_ROUNDS, never real."""
    if a_rounds is None or b_rounds is None:
        return stats.Verdict(NO_ROUNDS, NO_ROUNDS_TEXT)
    change = stats.run_change_interval(a_rounds, b_rounds)
    speedup = None if change is None else stats.Interval(1 / change.high, 1 / change.low,
                                                         1 / change.mid if change.mid else None)
    verdict = stats.call_speedup(speedup, band)
    if verdict.kind == stats.NO_FLOOR and speedup is not None and no_floor:
        text = stats.ratio_text(speedup.mid or 1.0, speedup.low, speedup.high)
        return stats.Verdict(stats.NO_FLOOR, f"{text}, no noise floor ({no_floor})", speedup, band)
    return verdict


def _judged(row: Any, a: RunReport, b: RunReport) -> Dict[str, Any]:
    """The JUDGED columns of one merged row: its change's interval (as p50 B / p50 A - 1) and verdict."""
    empty: Dict[str, Any] = {"p50_change_low": math.nan, "p50_change_high": math.nan,
                             "p50_change_significant": None, "p50_change_verdict": None, "p50_change_text": None}
    if row["status_a"] != "ok" or row["status_b"] != "ok":
        return empty
    pair = (row["device"], row["variant"])
    verdict = judge_change(a.rounds.get(pair), b.rounds.get(pair), *_floor(a, b, row["device"]))
    judged = dict(empty, p50_change_verdict=verdict.kind, p50_change_text=verdict.phrase)
    if verdict.ratio is not None:
        judged.update(p50_change_low=1 / verdict.ratio.high - 1, p50_change_high=1 / verdict.ratio.low - 1)
    if verdict.kind in (stats.FASTER, stats.SLOWER, stats.NO_CHANGE):
        judged["p50_change_significant"] = verdict.real
    return judged


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
    judged = [_judged(row, a, b) for _, row in merged.iterrows()]
    for column in JUDGED:
        merged[column] = [j[column] for j in judged]
        if column in ("p50_change_significant", "p50_change_verdict", "p50_change_text"):
            merged[column] = merged[column].astype("object")
    merged.attrs["runs"] = (a.run, b.run)
    merged.attrs["noise"] = {device: _noise_line(a, b, device) for device in dict.fromkeys(merged["device"])}
    return merged


def _noise_line(a: RunReport, b: RunReport, device: str) -> str:
    """``Noise (A/A): run 1 ±0.6%, run 2 ±0.9%; a change counts beyond ±0.9%.`` or why nothing is called."""
    parts = []
    for report in (a, b):
        fact = report.devices.get(device)
        noise = fact.noise if fact else None
        parts.append(f"run {report.run['id']} " + (stats.percent(noise) if noise is not None else "none"))
    band, why = _floor(a, b, device)
    tail = (f"a change counts only beyond {stats.percent(stats.noise_fraction(band))}"  # type: ignore[arg-type]
            if band is not None else f"nothing is called ({why})")
    return f"Noise (A/A): {', '.join(parts)}; {tail}."


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _runtime(row: Any, side: str) -> str:
    return " ".join(_text(row[f"{c}_{side}"]) for c in ("runtime", "runtime_version")).strip()


def _change(row: Any) -> str:
    """``+12.3%``; ``~`` within the noise, ``?`` not judged."""
    change = row["p50_change"]
    if change != change:
        return ""
    judged = row["p50_change_significant"]
    mark = "~" if judged is False else "?" if judged is None and row["p50_change_verdict"] else ""
    return f"{mark}{change:+.1%}"


def _interval(row: Any) -> str:
    low, high = row["p50_change_low"], row["p50_change_high"]
    return "" if low != low else f"{low * 100:+.1f}..{high * 100:+.1f}%"


#: The verdict in the narrow table (the phrase is in the DataFrame; the interval and the noise are shown apart).
SHORT = {stats.NO_CHANGE: "no change", stats.NOT_ENOUGH: "too few rounds", stats.NO_FLOOR: "no noise floor",
         NO_ROUNDS: NO_ROUNDS}


def _verdict(row: Any) -> str:
    """``1.99x slower``, ``no change``, ``no rounds``..."""
    kind, text = row["p50_change_verdict"], row["p50_change_text"]
    if not isinstance(kind, str):
        return ""
    return text.split(" (")[0] if kind in (stats.FASTER, stats.SLOWER) else SHORT.get(kind, kind)


def print_comparison(db: "str | Path", run_a: int, run_b: int, console: Any) -> Any:
    """One table per device, with its noise line under it; returns the DataFrame."""
    from rich import box
    from rich.table import Table

    frame = compare_runs(db, run_a, run_b)
    console.print(f"[bold]edgeprune report --compare {run_a} {run_b}[/]: change from run {run_a} to run {run_b}",
                  highlight=False)
    for device, rows in frame.groupby("device", sort=False):
        unit, scale = latency_unit([*rows["p50_us_a"], *rows["p50_us_b"]])
        known = {for_rich(_runtime(row, side), 100) for _, row in rows.iterrows() for side in "ab"} - {""}
        same = next(iter(known)) if len(known) == 1 else None  # one runtime throughout: said once, in the title
        title = for_rich(device) + (f": {same}" if same else "")
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        columns = ["variant", f"status {run_a} → {run_b}", *([] if same else [f"runtime {run_a} → {run_b}"]),
                   f"p50 {unit} {run_a}", f"p50 {unit} {run_b}", "p50 change", "95% CI", f"run {run_b} vs {run_a}",
                   "Δ acc pts", "size change"]
        for column in columns:
            table.add_column(column, justify="left" if column.split()[0] in ("variant", "status", "runtime", "run")
                             else "right", no_wrap=column in ("variant", "95% CI", f"run {run_b} vs {run_a}"))
        for _, row in rows.iterrows():
            statuses = [for_rich(_text(row[f"status_{side}"]), 100) or "-" for side in "ab"]
            runtimes = [for_rich(_runtime(row, side), 100) or "-" for side in "ab"]
            table.add_row(
                for_rich(row["variant"]),
                statuses[0] if statuses[0] == statuses[1] else " → ".join(statuses),
                *([] if same else [runtimes[0] if runtimes[0] == runtimes[1] else " → ".join(runtimes)]),
                *[latency_text(v / scale) for v in (row["p50_us_a"], row["p50_us_b"])],
                _change(row), _interval(row), for_rich(_verdict(row)),
                "" if row["accuracy_change"] != row["accuracy_change"] else f"{row['accuracy_change'] * 100:+.2f}",
                "" if row["size_change"] != row["size_change"] else f"{row['size_change']:+.1%}",
            )
        console.print(table)
        indented(console, f"[dim]{for_rich(frame.attrs['noise'][device], 600)}[/]")
    console.print(f"[dim]p50 change = run {run_b}'s p50 / run {run_a}'s - 1 (negative is faster), its 95% interval "
                  "from both runs' between-round variation; it counts only when that interval excludes no change "
                  "and lies beyond both runs' A/A noise (~ = within the noise, ? = not judged: no rounds or too "
                  "few).[/]", highlight=False)
    return frame
