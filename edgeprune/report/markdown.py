"""The report as Markdown: the run's line, one table per device with its failures, its noise floor, verdict and
unsettled cells, the legend."""
from __future__ import annotations

from typing import Any

from .columns import LEGEND
from .frame import RunReport
from .views import Group, groups
from ..text import for_markdown, for_markdown_code


def markdown(report: RunReport) -> str:
    run = report.run
    lines = [f"# edgeprune report: run {run['id']}", "",
             f"{for_markdown(run['created'])} · model: {for_markdown(run['model_source'])} · "
             f"data: {for_markdown(run['dataset'])} · folder: {for_markdown_code(run['run_folder'])}", ""]
    for group in groups(report.frame, facts=report.devices):
        lines += [f"## {for_markdown(group.heading)}", "", _markdown_table(group.table), ""]
        lines += [f"- **{for_markdown(variant)}** ({for_markdown(status)}): {for_markdown(reason)}"
                  for variant, status, reason in group.failures]
        lines += [""] if group.failures else []
        lines += _notes(group)
    from . import opprofile, sustained
    from .extras import op_views, sustained_runs

    lines += [part for part in (sustained.markdown(sustained_runs(report)), opprofile.markdown(op_views(report)))
              if part]
    lines += [LEGEND, ""]
    return "\n".join(lines)


def _markdown_table(table: Any) -> str:
    header = "| " + " | ".join(for_markdown(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" if c == "variant" else "---:" for c in table.columns) + "|"
    body = ["| " + " | ".join(for_markdown(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _notes(group: Group) -> list:
    """The noise floor, the verdict as a list, the unsettled cells and what to do about them."""
    lines = [for_markdown(group.floor, 600), ""] if group.floor else []
    if group.verdicts:
        lines += [f"- {for_markdown(line, 600)}" for line in group.verdicts] + [""]
    if group.unsettled:
        lines += [f"**{for_markdown(group.unsettled_heading)}**", ""]
        lines += [f"- {for_markdown(cell)}" for cell in group.unsettled]
        lines += ["", for_markdown(group.advice, 600), ""]
    return lines
