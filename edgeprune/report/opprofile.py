"""Where the time goes inside one measured cell: its top op types by time and what the delegate took.

A p50 says how fast a variant is on a device, not why: a pruned model that is no faster usually spends its time in
the same few ops, and a model that is slower with XNNPACK often has ops that fell back from the delegate to the
reference kernels (and split the graph into partitions). The agent's per-op profile of a cell (device x variant x
configuration) answers both; this module turns it into a few lines per cell for the terminal, Markdown and HTML.

The profile is plain data (already validated by the host's reader), but every string in it came from the device:
op types, node names, the tool and the note are escaped by each renderer for its own output (``text.for_*``),
never here, so ``top_ops`` and ``delegation_line`` return the text as the device sent it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..text import for_html, for_markdown, for_rich

#: How many op types a cell shows by default: the few that hold most of the time.
TOP = 5
HEADING = "Per-op profile"
#: What a cell says when its profile has neither times nor a note why.
NO_TIMES = "no per-op times"


@dataclass(frozen=True)
class OpProfileView:
    """One measured cell's per-op profile (``profile`` None: not profiled, the cell is not shown)."""

    device: str
    cell: str  # the plan cell's label
    variant: str
    configuration: str  # e.g. "4 threads, xnnpack"; "" when the cell has one configuration only
    profile: Optional[Mapping[str, Any]]


@dataclass(frozen=True)
class CellLines:
    """One cell's profile as plain text (unescaped): what every renderer shows."""

    variant: str
    configuration: str
    delegation: str  # "" when nothing is known about a delegate
    ops: Tuple[str, ...]  # "CONV_2D x30: 1.23 ms (45.6%)", most time first
    note: str  # why there are no times ("" when there are)
    tool: str  # the profiler's name, "" when not said

    @property
    def title(self) -> str:
        return f"{self.variant} ({self.configuration})" if self.configuration else self.variant


def _ms(value: float) -> str:
    """Three significant digits, no exponent: 0.00412, 1.23, 45.7, 123."""
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _op_text(op: Mapping[str, Any]) -> str:
    count = op.get("count")
    text = str(op.get("type", "?")) + (f" x{count}" if count is not None else "")
    text += f": {_ms(float(op['avg_ms']))} ms" if op.get("avg_ms") is not None else ": time unknown"
    return text + (f" ({float(op['percent']):.1f}%)" if op.get("percent") is not None else "")


def top_ops(profile: Optional[Mapping[str, Any]], n: int = TOP) -> List[Mapping[str, Any]]:
    """The ``n`` op types with the most time (the reader sorts them; sorted again here, so a caller's list works
    too). Empty without a profile or without times."""
    ops = list((profile or {}).get("ops") or [])
    ops.sort(key=lambda op: -(op.get("avg_ms") or 0.0))
    return ops[:max(n, 0)]


def delegation_line(profile: Optional[Mapping[str, Any]]) -> str:
    """What the delegate took, in one phrase; "" when nothing is known.

    ``fallback`` lists the ops a delegate that *was* applied did not take: they run on the reference kernels and
    split the graph (more partitions, more copies between the delegate and the interpreter).
    """
    delegation = (profile or {}).get("delegation")
    if not delegation:
        return ""
    if not delegation.get("applied"):
        return "no delegate applied"
    delegated = sum((delegation.get("delegated") or {}).values())
    fallback: Dict[str, int] = dict(delegation.get("fallback") or {})
    partitions = _plural(int(delegation.get("partitions") or 0), "partition")
    if fallback:
        fell = ", ".join(f"{name} x{count}" for name, count in sorted(fallback.items()))
        total = delegated + sum(fallback.values())
        return f"fell back from the delegate: {fell} ({delegated} of {total} ops delegated, {partitions})"
    if delegated == 0:
        return f"a delegate was applied, but no op counts were reported ({partitions})"
    return f"all {delegated} ops ran in the delegate ({partitions})"


def cell_lines(view: OpProfileView, n: int = TOP) -> CellLines:
    """One profiled cell in plain text (``view.profile`` must not be None)."""
    profile = view.profile or {}
    ops = tuple(_op_text(op) for op in top_ops(profile, n))
    note = "" if ops else str(profile.get("note") or NO_TIMES)
    tool = str((profile.get("tool") or {}).get("name") or "")
    return CellLines(view.variant or view.cell, view.configuration, delegation_line(profile), ops, note, tool)


def by_device(views: Sequence[OpProfileView], n: int = TOP) -> List[Tuple[str, List[CellLines]]]:
    """The profiled cells grouped by device, devices and cells in the order given; cells without a profile are
    left out, and so is a device with none."""
    grouped: Dict[str, List[CellLines]] = {}
    for view in views:
        if view.profile is not None:
            grouped.setdefault(view.device, []).append(cell_lines(view, n))
    return list(grouped.items())


def _what(n: int) -> str:
    return f"top {n} op types by time per cell: average ms per run and share of the run"


# -- renderers: each escapes the device's text for its own output ----------------------------------------------

def terminal_lines(views: Sequence[OpProfileView], n: int = TOP) -> List[str]:
    """Rich markup lines: a heading, then per device its name and per cell one line for the delegate and one for
    the op types (or the note). [] when no cell was profiled."""
    groups = by_device(views, n)
    if not groups:
        return []
    lines = [f"[bold]{HEADING}[/] [dim]({_what(n)})[/]"]
    for device, cells in groups:
        notes = {cell.note for cell in cells}
        shared = notes.pop() if len(notes) == 1 and all(not cell.ops for cell in cells) else ""
        lines.append(f"  [bold]{for_rich(device)}[/]" + (f" [dim]({for_rich(shared, 600)})[/]" if shared else ""))
        for cell in cells:  # a note every cell shares (no profiler on the device) is said once, above
            delegation = f": {for_rich(cell.delegation, 600)}" if cell.delegation else ""
            lines.append(f"    {for_rich(cell.title)}{delegation}")
            if cell.ops:
                tool = f"[dim]{for_rich(cell.tool)}:[/] " if cell.tool else ""
                lines.append("      " + tool + "; ".join(for_rich(op) for op in cell.ops))
            elif not shared:
                lines.append(f"      [dim]{for_rich(cell.note, 600)}[/]")
    return lines


def _markdown_ops(cell: CellLines) -> str:
    if not cell.ops:
        return f"*{for_markdown(cell.note, 600)}*"
    tool = f"{for_markdown(cell.tool)}: " if cell.tool else ""
    return tool + "; ".join(for_markdown(op) for op in cell.ops)


def markdown(views: Sequence[OpProfileView], n: int = TOP) -> str:
    """A section with one table per device (cell, configuration, delegate, top op types); "" when no cell was
    profiled."""
    groups = by_device(views, n)
    if not groups:
        return ""
    lines = [f"## {HEADING}", "", _what(n).capitalize() + ".", ""]
    for device, cells in groups:
        lines += [f"### {for_markdown(device)}", "", "| variant | configuration | delegate | top op types by time |",
                  "|---|---|---|---|"]
        lines += [f"| {for_markdown(cell.variant)} | {for_markdown(cell.configuration)} | "
                  f"{for_markdown(cell.delegation, 600)} | {_markdown_ops(cell)} |" for cell in cells]
        lines.append("")
    return "\n".join(lines)


def _html_ops(cell: CellLines) -> str:
    if not cell.ops:
        return f"<em>{for_html(cell.note, 600)}</em>"
    items = "".join(f"<li>{for_html(op)}</li>" for op in cell.ops)
    tool = f'<span class="tool">{for_html(cell.tool)}</span>' if cell.tool else ""
    return f'{tool}<ol class="ops">{items}</ol>'


def html(views: Sequence[OpProfileView], n: int = TOP) -> str:
    """A ``<section>`` with one table per device; "" when no cell was profiled."""
    groups = by_device(views, n)
    if not groups:
        return ""
    parts = [f'<section class="op-profile"><h2>{HEADING}</h2><p class="meta">{for_html(_what(n).capitalize())}.</p>']
    for device, cells in groups:
        rows = "".join(f'<tr><td class="left">{for_html(cell.variant)}</td>'
                       f'<td class="left">{for_html(cell.configuration)}</td>'
                       f'<td class="left">{for_html(cell.delegation, 600)}</td>'
                       f'<td class="left">{_html_ops(cell)}</td></tr>' for cell in cells)
        parts.append(f"<h3>{for_html(device)}</h3><table><thead><tr><th class=\"left\">variant</th>"
                     '<th class="left">configuration</th><th class="left">delegate</th>'
                     f'<th class="left">top op types by time</th></tr></thead><tbody>{rows}</tbody></table>')
    parts.append("</section>")
    return "\n".join(parts)
