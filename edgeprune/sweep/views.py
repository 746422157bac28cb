"""The Pareto table drawn: in the terminal (rich, a table per device), and as ``pareto.csv`` and ``pareto.md`` in
the sweep folder, with ``pareto.png`` (``plot``).

Text from files and devices (variant names, error messages, device names) is escaped for each output with
``edgeprune.text``; the CSV keeps the values as data (one line each, capped).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from ..text import for_csv, for_markdown, for_rich
from .pareto import REFERENCE, ParetoResult

FILES = {"csv": "pareto.csv", "md": "pareto.md", "png": "pareto.png"}


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _fmt(spec: str, suffix: str = "") -> Callable[[Any], str]:
    return lambda v: f"{v:{spec}}{suffix}" if _present(v) else ""


def _speedup(row: Dict[str, Any]) -> str:
    if not _present(row["speedup"]):
        return ""
    mark = "" if row["verdict"] in ("faster", "slower", "reference") else "~" if row[
        "verdict"] == "no measurable change" else "?"
    return f"{mark}{row['speedup']:.2f}x"


def _marks(row: Dict[str, Any]) -> str:
    """★ recommended, ◆ on the front; a row without figures says its status instead (the reason is under it)."""
    if row["status"] != "ok":
        return str(row["status"])
    return ("★" if row["recommended"] else "") + ("◆" if row["pareto"] else "")


#: (header, how a row's cell reads) for the terminal and Markdown; the CSV has every column of the frame.
SHOWN: Tuple[Tuple[str, Callable[[Dict[str, Any]], str]], ...] = (
    ("point", lambda r: str(r["point"])),
    ("variant", lambda r: str(r["variant"]) if _present(r["variant"]) else ""),
    ("sparse", lambda r: _fmt(".0%")(r["sparsity"])),
    ("accuracy", lambda r: _fmt(".2%")(r["accuracy"])),
    ("Δ acc", lambda r: _fmt("+.1f")(0.0 - r["accuracy_drop"] if _present(r["accuracy_drop"]) else None)),
    ("gzip KB", lambda r: _fmt(".1f")(r["gzip_bytes"] / 1024 if _present(r["gzip_bytes"]) else None)),
    ("gzip ratio", lambda r: _fmt(".2f", "x")(r["gzip_ratio"])),
    ("p50 µs", lambda r: _fmt(".4g")(r["p50_us"])),
    ("speed-up", _speedup),
    ("front", _marks),
)
LEGEND = ("Δ acc = accuracy points against the baseline; speed-up = baseline p50 / point p50 in the same plan, paired by round (~ within the device's noise, "
          "? not judged); front: ◆ on the Pareto front (accuracy, gzip size, speed-up), ★ recommended, or why a point has "
          "no figures (failed, not measured: the reasons are under the table)")


def _records(result: ParetoResult, device: str) -> List[Dict[str, Any]]:
    frame = result.frame
    return frame[frame["device"] == device].to_dict("records")


def _why(records: List[Dict[str, Any]]) -> List[str]:
    """Why each row without figures has none (plain text: each view escapes it)."""
    return [f"{r['point']}: {r['status']}: {r['reason']}" for r in records
            if r["status"] != "ok" and _present(r["reason"])]


def devices(result: ParetoResult) -> List[str]:
    return list(dict.fromkeys(result.frame["device"]))


def print_pareto(result: ParetoResult, console: Any, title: str) -> None:
    from rich import box
    from rich.table import Table

    for device in devices(result):
        table = Table(title=f"{for_rich(title)} on {for_rich(device)}", title_justify="left", box=box.SIMPLE_HEAD,
                      pad_edge=False, collapse_padding=True)
        records = _records(result, device)
        for header, _ in SHOWN:
            table.add_column(header.replace(" ", "\n", 1), no_wrap=True,
                             justify="left" if header in ("point", "variant", "front") else "right")
        for row in records:
            cells = [for_rich(read(row)) for _, read in SHOWN]
            style = "bold" if row["recommended"] else "dim" if row["point"] == REFERENCE else None
            table.add_row(*cells, style=style)
        table.caption = LEGEND
        console.print(table)
        for line in _why(records):
            console.print(f"  [red]{for_rich(line, 2000)}[/]", highlight=False, soft_wrap=True)
    for recommendation in result.recommendations:
        console.print(f"[bold]Recommended[/] (budget {result.budget:g} accuracy points): "
                      f"{for_rich(recommendation.text, 2000)}", highlight=False, soft_wrap=True)


def markdown(result: ParetoResult, title: str) -> str:
    lines = [f"# {for_markdown(title)}", ""]
    for device in devices(result):
        lines += [f"## {for_markdown(device)}", "", "| " + " | ".join(h for h, _ in SHOWN) + " |",
                  "|" + "|".join("---" for _ in SHOWN) + "|"]
        records = _records(result, device)
        lines += ["| " + " | ".join(for_markdown(read(row)) for _, read in SHOWN) + " |" for row in records]
        lines += [""] + [f"- {for_markdown(line, 2000)}" for line in _why(records)] + [""]
    lines += [for_markdown(LEGEND), "", "## Recommendation", ""]
    lines += [f"- {for_markdown(r.text, 2000)}" for r in result.recommendations]
    return "\n".join(lines) + "\n"


def write(result: ParetoResult, folder: Path, title: str) -> List[Path]:
    """pareto.csv, pareto.md and pareto.png in ``folder``; returns their paths."""
    from .plot import draw

    frame = result.frame.copy()
    for column in ("point", "variant", "reason", "device", "structure", "block_size", "quant", "verdict", "status"):
        frame[column] = [for_csv(v) if _present(v) else "" for v in frame[column]]
    paths = [folder / FILES["csv"], folder / FILES["md"], folder / FILES["png"]]
    frame.to_csv(paths[0], index=False)
    paths[1].write_text(markdown(result, title))
    draw(result, paths[2], title)
    return paths
