"""The self-contained HTML report: inline CSS, the PNG plots embedded as data URIs, no scripts, no network."""
from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any, Dict

from .columns import LEGEND
from .frame import RunReport
from .views import Group, groups
from ..text import for_html

CSS = """
body { font: 13px/1.4 system-ui, sans-serif; margin: 20px; color: #222; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta, .legend { color: #555; } .legend { font-size: 12px; max-width: 1100px; }
table { border-collapse: collapse; margin: 4px 0 8px; }
th, td { padding: 3px 7px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th { background: #f2f4f7; font-weight: 600; white-space: normal; } td.left, th.left { text-align: left; }
tr.failed td { background: #fff1f0; } td.reason { color: #a8071a; text-align: left; white-space: normal; }
p.floor { color: #555; margin: 4px 0; } ul.verdict { margin: 4px 0 8px; font-weight: 600; }
div.unsettled { background: #fffbe6; border-left: 3px solid #faad14; padding: 4px 10px; margin: 6px 0; }
img { display: block; margin: 12px 0; border: 1px solid #eee; max-width: 100%; }
"""


def _align(column: str) -> str:
    return "left" if column in ("variant", "status") else ""


def _cells(row: Dict[str, Any], columns: Any) -> str:
    return "".join(f'<td class="{_align(c)}">{for_html(row[c])}</td>' for c in columns)


def _table(group: Group) -> str:
    """A failed pair shows the host's figures (``group.host``), and its reason spans the rest of the row."""
    columns = list(group.table.columns)
    reasons = {variant: (status, reason) for variant, status, reason in group.failures}
    host = [c for c in columns if c in group.host]
    rest = len(columns) - len(host)
    head = "".join(f'<th class="{_align(c)}">{for_html(c)}</th>' for c in columns)
    if reasons and not rest:  # nothing was measured on this device: the reasons get a column of their own
        head += '<th class="left">reason</th>'
        rest = 1
    body = []
    for row in group.table.to_dict("records"):
        failure = reasons.get(row["variant"])
        if failure is None:
            body.append(f"<tr>{_cells(row, columns)}</tr>")
            continue
        cells = _cells(row, host) + f'<td class="reason" colspan="{rest}">{for_html(failure[1])}</td>'
        body.append(f'<tr class="failed">{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _notes(group: Group) -> str:
    """The device's noise floor, its verdict and the cells that did not settle, under its table."""
    parts = [f'<p class="floor">{for_html(group.floor, 600)}</p>'] if group.floor else []
    if group.verdicts:
        items = "".join(f"<li>{for_html(line, 600)}</li>" for line in group.verdicts)
        parts.append(f'<ul class="verdict">{items}</ul>')
    if group.unsettled:
        cells = "".join(f"<li>{for_html(cell)}</li>" for cell in group.unsettled)
        parts.append(f'<div class="unsettled"><p>{for_html(group.unsettled_heading)}</p><ul>{cells}</ul>'
                     f"<p>{for_html(group.advice, 600)}</p></div>")
    return "".join(parts)


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def html(report: RunReport, pngs: Dict[str, Path]) -> str:
    run = report.run
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>edgeprune report: run {run['id']}</title><style>{CSS}</style></head><body>",
        f"<h1>edgeprune report: run {run['id']}</h1>",
        f'<p class="meta">{for_html(run["created"])} · model: {for_html(run["model_source"])} · '
        f'data: {for_html(run["dataset"])} · folder: <code>{for_html(run["run_folder"])}</code></p>',
    ]
    for group in groups(report.frame, facts=report.devices):
        parts += [f"<h2>{for_html(group.heading)}</h2>", _table(group), _notes(group)]
    from . import opprofile, sustained
    from .extras import op_views, sustained_runs

    parts += [part for part in (sustained.html(sustained_runs(report)), opprofile.html(op_views(report))) if part]
    parts += [_image(path, f"{key.split(':', 1)[1]}: p50 latency and CPU temperature over the sustained run")
              for key, path in pngs.items() if key.startswith("sustained:")]
    parts.append(f'<p class="legend">{escape(LEGEND)}</p>')
    if pngs:
        parts.append("<h2>Plots</h2>")
        parts += [_image(pngs[key], alt) for key, alt in (("latency", "p50 latency with p90/p99 whiskers"),
                                                         ("size_latency", "size vs latency")) if key in pngs]
    else:
        parts.append('<p class="meta">No pair was measured, so there is nothing to plot.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
