"""The comparison table: one row per device x variant, built from the SQLite store alone.

``compare(db, run_id)`` returns it as a pandas DataFrame (machine units: bytes as KB, latency in µs, accuracy as
a fraction); ``groups()`` turns it into per-device display tables for the terminal, Markdown and HTML. Nothing
here measures anything: every figure is read from the store, and the ratios are computed from the stored sizes
and latencies.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import stats
from ..errors import ConfigError
from ..results.store import Store
from ..text import for_csv, for_markdown, for_markdown_code, for_rich

BASELINE = "baseline-float32"
FORMATS = ("csv", "md", "html", "png")

#: The DataFrame's columns, in order.
COLUMNS = (
    "run_id", "device", "variant", "status", "error", "runtime", "runtime_version", "threads", "machine",
    "size_kb", "gzip_kb", "gzip_ratio", "sparsity", "host_accuracy", "device_accuracy", "accuracy_delta",
    "agreement", "p50_us", "p50_ci_low_us", "p50_ci_high_us", "p90_us", "p99_us", "speedup", "speedup_ci_low",
    "speedup_ci_high", "speedup_significant", "init_ms", "rss_peak_mib", "throttled", "samples",
)


@dataclass
class RunReport:
    """A run's metadata and its comparison table."""

    run: Dict[str, Any]
    frame: Any  # pandas.DataFrame
    medians: Dict[Tuple[str, str], Optional[np.ndarray]] = field(default_factory=dict, repr=False)


def _agent_samples(agent_json: Optional[str]) -> Optional[List[float]]:
    try:
        doc = json.loads(agent_json or "")
    except ValueError:
        return None
    samples = ((doc if isinstance(doc, dict) else {}).get("timing") or {}).get("samples_us")
    return samples if isinstance(samples, list) else None


def _error(row: Any) -> Optional[str]:
    if row["status"] == "ok":
        return None
    return ": ".join(str(part) for part in (row["error_kind"], row["error_message"]) if part) or row["status"]


def _kb(value: Optional[float]) -> float:
    return math.nan if value is None else value / 1024


def _num(value: Optional[float]) -> float:
    return math.nan if value is None else float(value)


def _pair_row(run_id: int, device: str, variant: Dict[str, Any], base: Optional[Dict[str, Any]],
              result: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """One device x variant row: the host's figures from the variant, the device's from its stored result."""
    row: Dict[str, Any] = {"run_id": run_id, "device": device, "variant": variant["name"]}
    row["size_kb"], row["gzip_kb"] = _kb(variant["size_bytes"]), _kb(variant["gzip_bytes"])
    row["gzip_ratio"] = base["gzip_bytes"] / variant["gzip_bytes"] if base and variant["gzip_bytes"] else math.nan
    row["sparsity"], row["host_accuracy"] = _num(variant["sparsity"]), _num(variant["accuracy"])
    if variant["status"] != "ok":
        row["status"] = "not-built"
        row["error"] = json.loads(variant["manifest_json"]).get("error") or "conversion failed"
        return row
    if result is None:
        row["status"] = "not-measured"
        row["error"] = f"no result stored (finish with `edgeprune bench --resume {run_id}`)"
        return row
    row["status"], row["error"] = result["status"], _error(result)
    for column in ("runtime", "runtime_version", "threads", "machine"):
        row[column] = result[column]
    if result["status"] != "ok":
        return row
    samples = _agent_samples(result["agent_json"])
    medians = stats.bootstrap_medians(samples)
    ci = stats.interval(medians)
    row.update({
        "device_accuracy": _num(result["accuracy"]), "agreement": _num(result["agreement"]),
        "p50_us": _num(result["p50_us"]), "p90_us": _num(result["p90_us"]), "p99_us": _num(result["p99_us"]),
        "p50_ci_low_us": ci.low if ci else math.nan, "p50_ci_high_us": ci.high if ci else math.nan,
        "init_ms": _num(result["init_ms"]), "rss_peak_mib": _kb(result["rss_peak_kib"]),
        "throttled": None if result["throttled"] is None else bool(result["throttled"]),
        "samples": len(samples or []), "_medians": medians,
    })
    return row


def load(db: "str | Path", run_id: Optional[int] = None) -> RunReport:
    """Read one run (default: the latest) from the store and build its comparison table."""
    import pandas as pd

    with Store.open(db, create=False) as store:
        run = dict(store.run(run_id))
        run_id = int(run["id"])
        variants = [dict(v) for v in store.variants(run_id)]
        results = {(r["device"], r["variant"]): dict(r) for r in store.results(run_id)}
        devices = [d["name"] for d in store.devices(run_id)]
    devices += sorted({device for device, _ in results} - set(devices))
    base = next((v for v in variants if v["name"] == BASELINE and v["status"] == "ok"), None)
    rows: List[Dict[str, Any]] = []
    medians: Dict[Tuple[str, str], Optional[np.ndarray]] = {}
    for device in devices:
        for variant in variants:
            row = _pair_row(run_id, device, variant, base, results.get((device, variant["name"])))
            medians[(device, variant["name"])] = row.pop("_medians", None)
            rows.append(row)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    _relative_to_baseline(frame, medians)
    run_info = {key: run[key] for key in ("id", "created", "run_folder", "model_source", "dataset")}
    run_info["db"] = str(db)
    return RunReport(run_info, frame, medians)


def _relative_to_baseline(frame: Any, medians: Dict[Tuple[str, str], Optional[np.ndarray]]) -> None:
    """Speed-up of p50 and accuracy delta against the baseline measured on the same device."""
    frame["speedup_significant"] = frame["speedup_significant"].astype(object)
    for index, row in frame.iterrows():
        base = frame[(frame["device"] == row["device"]) & (frame["variant"] == BASELINE)]
        if base.empty or row["status"] != "ok" or base.iloc[0]["status"] != "ok":
            continue
        base_row = base.iloc[0]
        frame.at[index, "speedup"] = base_row["p50_us"] / row["p50_us"]
        frame.at[index, "accuracy_delta"] = row["device_accuracy"] - base_row["device_accuracy"]
        if row["variant"] == BASELINE:
            continue
        ratio = stats.ratio_interval(medians.get((row["device"], BASELINE)), medians.get((row["device"], row["variant"])))
        if ratio is not None:
            frame.at[index, "speedup_ci_low"], frame.at[index, "speedup_ci_high"] = ratio.low, ratio.high
        frame.at[index, "speedup_significant"] = stats.outside_noise(ratio)


def compare(db: "str | Path", run_id: Optional[int] = None) -> Any:
    """The comparison table of a run (default: the latest) as a pandas DataFrame, one row per device x variant."""
    return load(db, run_id).frame


def list_runs(db: "str | Path") -> Any:
    """One row per stored run: id, date, model, devices, variants and result status counts."""
    import pandas as pd

    rows = []
    with Store.open(db, create=False) as store:
        for run in store.runs():
            results = store.results(run["id"])
            variants = store.variants(run["id"])
            counts = {status: sum(r["status"] == status for r in results) for status in ("ok", "error", "failed", "invalid")}
            rows.append({
                "id": run["id"], "created": str(run["created"])[:16].replace("T", " "), "model": run["model_source"], "dataset": run["dataset"],
                "devices": ", ".join(d["name"] for d in store.devices(run["id"])),
                "variants": sum(v["status"] == "ok" for v in variants), **counts,
            })
    return pd.DataFrame(rows, columns=["id", "created", "model", "dataset", "devices", "variants", "ok", "error",
                                       "failed", "invalid"])


# -- display ----------------------------------------------------------------------------------------------------

#: Two-line headers keep the terminal table within 100 columns.
TERMINAL_HEADERS = {
    "size KB": "size\nKB", "gzip ratio": "gzip\nratio", "sparsity": "sparse", "Δ acc pts": "Δ acc\npts",
    "p50 µs": "p50\nµs", "p90 µs": "p90\nµs", "p99 µs": "p99\nµs", "p50 ms": "p50\nms", "p90 ms": "p90\nms",
    "p99 ms": "p99\nms", "speed-up": "speed\nup", "init ms": "init\nms", "RSS MiB": "RSS\nMiB",
    "throttled": "thrott-\nled",
}


@dataclass
class Group:
    """One device's part of the table, formatted for people."""

    device: str
    heading: str
    table: Any  # DataFrame of strings; failed pairs have an empty cell for every measured figure
    failures: List[Tuple[str, str, str]]  # (variant, status, reason)
    unit: str


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if _present(value) else ""


def _latency(value: float) -> str:
    """Three significant digits or so, at most 5 characters below 100000: 7.12, 27.7, 123, 4567."""
    return _fmt(value, ".2f" if abs(value) < 10 else ".1f" if abs(value) < 100 else ".0f") if value == value else ""


def _speedup(row: Any) -> str:
    text = _fmt(row["speedup"], ".2f")
    if not text:
        return ""
    return ("~" if row["speedup_significant"] is False else "") + text + "x"


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value != ""


def _heading(device: str, rows: Any) -> str:
    """``device: runtime version, N threads, machine`` from the first row the agent answered."""
    known = rows[rows["runtime"].notna()]
    if known.empty:
        return device
    first = known.iloc[0]
    parts = [" ".join(str(first[c]) for c in ("runtime", "runtime_version") if _present(first[c]))]
    if _present(first["threads"]):
        parts.append(f"{int(first['threads'])} thread{'s' if first['threads'] != 1 else ''}")
    if _present(first["machine"]):
        parts.append(str(first["machine"]))
    return f"{device}: " + ", ".join(parts)


def groups(frame: Any, terminal: bool = False) -> List[Group]:
    """Per-device display tables; columns empty for a whole device are left out. ``terminal`` keeps it narrow."""
    import pandas as pd

    result = []
    for device, rows in frame.groupby("device", sort=False):
        unit, scale = ("ms", 1000.0) if rows["p50_us"].max() >= 1000 else ("µs", 1.0)

        def ci(r: Any) -> str:
            low, high = _latency(r["p50_ci_low_us"] / scale), _latency(r["p50_ci_high_us"] / scale)
            return f"{low}-{high}" if low else ""

        columns: Dict[str, Any] = {
            "variant": rows["variant"],
            "status": rows["status"].where(rows["status"] != "ok", ""),
            "size KB": rows["size_kb"].map(lambda v: _fmt(v, ".1f")),
            "gzip KB": rows["gzip_kb"].map(lambda v: _fmt(v, ".1f")),
            "gzip ratio": rows["gzip_ratio"].map(lambda v: _fmt(v, ".2f") + "x" if v == v else ""),
            "sparsity": rows["sparsity"].map(lambda v: _fmt(v, ".0%")),
            "host acc": rows["host_accuracy"].map(lambda v: _fmt(v, ".2%")),
            "acc": rows["device_accuracy"].map(lambda v: _fmt(v, ".1%" if terminal else ".2%")),
            "Δ acc pts": rows["accuracy_delta"].map(lambda v: _fmt(v * 100, "+.2f")),
            "agree": rows["agreement"].map(lambda v: "100%" if v == 1 else _fmt(v, ".1%")),
            f"p50 {unit}": rows["p50_us"].map(lambda v: _latency(v / scale)),
            "p50 95% CI": rows.apply(ci, axis=1),
            f"p90 {unit}": rows["p90_us"].map(lambda v: _latency(v / scale)),
            f"p99 {unit}": rows["p99_us"].map(lambda v: _latency(v / scale)),
            "speed-up": rows.apply(_speedup, axis=1),
            "init ms": rows["init_ms"].map(lambda v: _fmt(v, ".1f")),
            "RSS MiB": rows["rss_peak_mib"].map(lambda v: _fmt(v, ".0f")),
            "throttled": rows["throttled"].map(lambda v: "" if v is None or v != v else ("yes" if v else "no")),
        }
        if terminal:
            for name in ("gzip KB", "host acc", "p50 95% CI"):
                del columns[name]
            columns = {TERMINAL_HEADERS.get(k, k).replace("UNIT", unit): v for k, v in columns.items()}
        table = pd.DataFrame(columns).reset_index(drop=True)
        table = table[[c for c in table.columns if c == "variant" or (table[c] != "").any()]]
        failures = [(r["variant"], r["status"], r["error"] or "") for _, r in rows.iterrows() if r["status"] != "ok"]
        result.append(Group(str(device), _heading(str(device), rows), table, failures, unit))
    return result


LEGEND = ("gzip ratio = baseline gzip size / variant gzip size; Δ acc = device accuracy minus the baseline's on the same "
          "device; agree = share of the device's predictions equal to the host's for that variant; speed-up = "
          "baseline p50 / variant p50 on the same device, ~ = within the noise (the bootstrap 95% interval of the "
          "ratio contains 1); RSS = peak resident memory of the agent.")


def markdown(report: RunReport) -> str:
    run = report.run
    lines = [f"# edgeprune report: run {run['id']}", "",
             f"{for_markdown(run['created'])} · model: {for_markdown(run['model_source'])} · "
             f"data: {for_markdown(run['dataset'])} · folder: {for_markdown_code(run['run_folder'])}", ""]
    for group in groups(report.frame):
        lines += [f"## {for_markdown(group.heading)}", "", _markdown_table(group.table), ""]
        lines += [f"- **{for_markdown(variant)}** ({for_markdown(status)}): {for_markdown(reason)}"
                  for variant, status, reason in group.failures]
        lines += [""] if group.failures else []
    lines += [LEGEND, ""]
    return "\n".join(lines)


def _markdown_table(table: Any) -> str:
    header = "| " + " | ".join(for_markdown(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" if c == "variant" else "---:" for c in table.columns) + "|"
    body = ["| " + " | ".join(for_markdown(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _same_reason(group: Group) -> List[Tuple[str, str, str]]:
    """Failures that share status and reason on one line (a device that is down fails every variant alike)."""
    merged: Dict[Tuple[str, str], List[str]] = {}
    for variant, status, reason in group.failures:
        merged.setdefault((status, reason), []).append(variant)
    return [("every variant" if len(names) == len(group.table) > 1 else ", ".join(names), status, reason)
            for (status, reason), names in merged.items()]


def print_report(report: RunReport, console: Any) -> None:
    """The terminal version: one narrow table per device, failures listed under it."""
    from rich import box
    from rich.table import Table

    run = report.run
    console.print(f"[bold]edgeprune report: run {run['id']}[/] ({for_rich(run['created'])}, "
                  f"{for_rich(run['model_source'])}, {for_rich(run['dataset'])})", highlight=False)
    for group in groups(report.frame, terminal=True):
        table = Table(title=for_rich(group.heading), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                      collapse_padding=True)
        for column in group.table.columns:
            table.add_column(column, justify="left" if column in ("variant", "status") else "right",
                             no_wrap=column == "variant")
        failed = group.table["status"] != "" if "status" in group.table else [False] * len(group.table)
        for row, bad in zip(group.table.itertuples(index=False), failed):
            table.add_row(*[for_rich(v) for v in row], style="red" if bad else None)
        console.print(table)
        for variants, status, reason in _same_reason(group):
            console.print(f"  [red]{for_rich(variants)}[/] ({for_rich(status)}): {for_rich(reason)}", highlight=False)
    console.print(f"[dim]{LEGEND}[/]", highlight=False)


def default_out(report: RunReport) -> Path:
    """The run folder's ``report/`` when the folder still exists, else ``report-<id>`` beside the database."""
    folder = Path(report.run["run_folder"] or "")
    if report.run["run_folder"] and folder.is_dir():
        return folder / "report"
    return Path(report.run["db"]).parent / f"report-{report.run['id']}"


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
        from .plots import write_plots

        pngs = write_plots(report.frame, out)
        written += list(pngs.values()) if "png" in formats else []
    if "html" in formats:
        from .html import html

        (out / "report.html").write_text(html(report, pngs), encoding="utf-8")
        written.append(out / "report.html")
    return written
