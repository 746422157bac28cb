"""The check as terminal text: Rich markup in which every name that comes from the file is escaped.

Op names, custom op names and the reasons built from them are the file's data: they go through
``edgeprune.text.for_rich`` (escape sequences and control characters stripped, markup escaped, length capped)
at the point of output, never before, so ``to_dict`` keeps what the file says. ``host_note`` says when the
machine running the command cannot take the sparse path at all, whatever the file (x86 with AVX, see
docs/explain.md), so a user does not read an eligible verdict as a promise for this host.
"""
from __future__ import annotations

import platform
from typing import List, Optional

from ..text import for_rich
from .check import Explanation

MARKS = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[dim]·[/]"}


def lines(explanation: Explanation) -> List[str]:
    """The Rich markup lines for one file: its name, the delegate's share, what falls back, the sparse rules."""
    e = explanation
    taken = ", ".join(f"{for_rich(name, 64)} {count}" for name, count in e.xnnpack_ops.items())
    out = [f"[bold]{for_rich(e.label)}[/]",
           f"  XNNPACK takes {e.taken} of {e.ops} ops" + (f" ({taken})" if taken else "")]
    for item in e.fallback:
        out.append(f"  [yellow]falls back[/]: {for_rich(item['op'], 64)} ×{int(item['count'])}: "
                   f"{for_rich(item['why'])}")
    verdict = "[green]yes[/]" if e.sparse_eligible else f"[red]no[/] — {for_rich(e.sparse_reason, 600)}"
    out.append(f"  sparse path: {verdict}")
    for rule in e.rules:
        out.append(f"    {MARKS.get(rule['ok'], MARKS[None])} {for_rich(rule['title'])}: "
                   f"[dim]{for_rich(rule['detail'], 600)}[/]")
    return out


def has_avx() -> Optional[bool]:
    """Whether this x86 CPU has AVX (Linux' /proc/cpuinfo); None when unknown or not x86."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return None
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "avx" in line.split()
    except OSError:
        return None
    return None


def host_note() -> str:
    """A line for the terminal when this host never takes XNNPACK's sparse path, else ""."""
    avx = has_avx()
    if avx is None and platform.machine().lower() not in ("x86_64", "amd64"):
        return ""
    if avx is False:
        return ""
    return ("[dim]Note: this host is x86 with AVX, where XNNPACK never takes its sparse path (eligible or not: "
            "xnn_is_chw_compatible_config); measure on an Arm device. See docs/explain.md.[/]")
