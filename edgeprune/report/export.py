"""The report's files: ``write`` puts the chosen formats (CSV, Markdown, HTML, PNG) in a folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

from .extras import write_sustained_plots
from .frame import RunReport
from .html import html
from .markdown import markdown
from .plots import write_plots
from ..errors import ConfigError
from ..text import for_csv

FORMATS = ("csv", "md", "html", "png")


def default_out(report: RunReport) -> Path:
    """The run folder's ``report/`` when the folder still exists, else ``report-<id>`` beside the database (under
    ``runs/`` for a database on a server)."""
    from ..results.store import local_folder

    folder = Path(report.run["run_folder"] or "")
    if report.run["run_folder"] and folder.is_dir():
        return folder / "report"
    return local_folder(report.run["db"]) / f"report-{report.run['id']}"


def parse_formats(text: str) -> List[str]:
    chosen = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown report format {unknown[0]!r} (choose from {', '.join(FORMATS)})")
    return chosen


def _csv_frame(frame: Any) -> Any:
    """The table as the CSV file holds it: text cells cleaned and capped (the DataFrame keeps what was stored)."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].map(lambda v: isinstance(v, str)).any():
            frame[column] = frame[column].map(lambda v: for_csv(v) if isinstance(v, str) else v)
    return frame


def write(report: RunReport, out: Path, formats: Sequence[str] = FORMATS) -> List[Path]:
    """Write the chosen exports to ``out``; returns the files written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create report folder {out}: {exc}") from exc
    written: List[Path] = []
    if "csv" in formats:
        _csv_frame(report.frame).to_csv(out / "report.csv", index=False)
        written.append(out / "report.csv")
    if "md" in formats:
        (out / "report.md").write_text(markdown(report), encoding="utf-8")
        written.append(out / "report.md")
    pngs: Dict[str, Path] = {}
    if "png" in formats or "html" in formats:
        pngs = write_plots(report.frame, out)
        pngs.update({f"sustained:{device}": path for device, path in write_sustained_plots(report, out).items()})
        written += list(pngs.values()) if "png" in formats else []
    if "html" in formats:
        (out / "report.html").write_text(html(report, pngs), encoding="utf-8")
        written.append(out / "report.html")
    return written
