"""The report's two PNG plots, drawn headless (matplotlib's Agg renderer through ``Figure``, no pyplot state).

- ``latency.png``: p50 per variant and device as bars, with the p50's bootstrap 95% interval, and whiskers up to
  p90 (thick) and p99 (thin).
- ``size_latency.png``: file size against p50, one colour per device, each point labelled with its variant and
  device accuracy.

Both have a fixed size in pixels (``SIZE`` at ``DPI``) so the HTML report lays out the same every time. Device
and variant names are untrusted text: every label goes through ``text.for_matplotlib`` (no mathtext from ``$``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from .columns import latency_unit
from ..text import for_matplotlib

SIZE: Tuple[float, float] = (10.0, 5.0)  # inches
DPI = 100
PIXELS = (int(SIZE[0] * DPI), int(SIZE[1] * DPI))
NEAR = 0.06
FILES = {"latency": "latency.png", "size_latency": "size_latency.png"}


def _log_if_wide(axis: Any, values: Any, set_scale: Any) -> None:
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) and values.max() / values.min() > 30:
        set_scale("log")


def latency_figure(frame: Any) -> Any:
    from matplotlib.figure import Figure

    ok = frame[frame["status"] == "ok"]
    unit, scale = latency_unit(ok["p50_us"])
    variants = list(dict.fromkeys(frame["variant"]))
    devices = list(dict.fromkeys(ok["device"]))
    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(devices))
    colors = _colors(len(devices))
    for d, device in enumerate(devices):
        rows = ok[ok["device"] == device].set_index("variant")
        xs = np.array([variants.index(v) for v in rows.index]) - 0.4 + width * (d + 0.5)
        p50, p90, p99 = (rows[c].to_numpy(dtype=float) / scale for c in ("p50_us", "p90_us", "p99_us"))
        ax.bar(xs, p50, width * 0.9, color=colors[d], label=for_matplotlib(device), alpha=0.85)
        ax.vlines(xs, p50, p99, color="black", linewidth=1)
        ax.scatter(xs, p90, marker="_", color="black", s=260 * width, linewidths=2.5, zorder=3,
                   label="p90" if d == 0 else None)
        ax.scatter(xs, p99, marker="_", color="dimgray", s=140 * width, linewidths=1.2, zorder=3,
                   label="p99" if d == 0 else None)
        low, high = (rows[c].to_numpy(dtype=float) / scale for c in ("p50_ci_low_us", "p50_ci_high_us"))
        has_ci = np.isfinite(low)
        if has_ci.any():
            ax.errorbar(xs[has_ci], p50[has_ci], yerr=[np.clip(p50[has_ci] - low[has_ci], 0, None), np.clip(high[has_ci] - p50[has_ci], 0, None)],
                        fmt="none", ecolor="white", elinewidth=1.5, capsize=3)
    _log_if_wide(ax, ok["p50_us"].to_numpy(dtype=float), ax.set_yscale)
    _clip_outliers(ax, ok, scale, variants, devices, width)
    ax.set_xticks(range(len(variants)), [for_matplotlib(v) for v in variants], rotation=15)
    ax.set_ylabel(f"latency ({unit}, batch 1)")
    ax.set_title("p50 latency per variant and device (bar: p50, white: its 95% CI; ticks: p90 and p99)")
    ax.grid(axis="y", alpha=0.3)
    if devices:
        ax.legend(loc="best")
    return fig


def _clip_outliers(ax: Any, ok: Any, scale: float, variants: List[str], devices: List[str], width: float) -> None:
    """Tails far above every p50 would squash the bars: cut the axis at 3x the top p50 and write the values cut."""
    top = 3 * ok["p50_us"].max() / scale
    if ax.get_yscale() != "linear" or not top > 0 or ok["p99_us"].max() / scale <= top * 1.05:
        return
    ax.set_ylim(0, top * 1.05)
    for _, row in ok[ok["p99_us"] / scale > top * 1.05].iterrows():
        x = variants.index(row["variant"]) - 0.4 + width * (devices.index(row["device"]) + 0.5)
        cut = [f"{p} {row[f'{p}_us'] / scale:.0f}" for p in ("p90", "p99") if row[f"{p}_us"] / scale > top * 1.05]
        ax.annotate("\n".join(cut), (x, top * 1.05), xytext=(0, -3), textcoords="offset points", ha="center",
                    va="top", fontsize=8, bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.6"})


def size_latency_figure(frame: Any) -> Any:
    from matplotlib.figure import Figure

    ok = frame[frame["status"] == "ok"]
    unit, scale = latency_unit(ok["p50_us"])
    devices = list(dict.fromkeys(ok["device"]))
    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    colors = _colors(len(devices))
    for d, device in enumerate(devices):
        rows = ok[ok["device"] == device]
        # gzip size: what pruning buys in size is invisible in the raw file (its zeros are stored as zeros)
        ax.scatter(rows["gzip_kb"], rows["p50_us"] / scale, color=colors[d], label=for_matplotlib(device), s=50,
                   zorder=3)
    for x, y, lines in _label_clusters(ok, scale, len(devices) > 1):
        ax.annotate("\n".join(lines), (x, y), xytext=(7, 0), textcoords="offset points", fontsize=8, va="center")
    _log_if_wide(ax, ok["p50_us"].to_numpy(dtype=float), ax.set_yscale)
    ax.set_xlabel("gzip -9 size (KB): what it costs to ship")
    ax.set_ylabel(f"p50 latency ({unit})")
    ax.set_title("compressed size vs latency (label: variant and accuracy on the device)")
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.15)
    if devices:
        ax.legend(title="device", loc="best")
    return fig


def _label_clusters(ok: Any, scale: float, with_device: bool) -> List[Tuple[float, float, List[str]]]:
    """Points closer than ``NEAR`` of the axis ranges share one label (one line each) instead of overprinting."""
    x = ok["gzip_kb"].to_numpy(dtype=float)
    y = ok["p50_us"].to_numpy(dtype=float) / scale
    span_x, span_y = max(np.ptp(x), 1e-9), max(np.ptp(y), 1e-9)
    clusters: List[Tuple[float, float, List[str]]] = []
    for (_, row), px, py in zip(ok.iterrows(), x, y):
        accuracy = row["device_accuracy"]
        text = for_matplotlib(row["variant"]) + (f" {accuracy:.1%}" if accuracy == accuracy else "")
        text += f" ({for_matplotlib(row['device'])})" if with_device else ""
        near = next((c for c in clusters if abs(c[0] - px) / span_x < NEAR and abs(c[1] - py) / span_y < NEAR), None)
        if near:
            near[2].append(text)
        else:
            clusters.append((px, py, [text]))
    return clusters


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def write_plots(frame: Any, out: Path) -> Dict[str, Path]:
    """Write both PNGs to ``out``; none when no pair was measured (there is nothing to draw)."""
    if not (frame["status"] == "ok").any():
        return {}
    written = {}
    for key, build in (("latency", latency_figure), ("size_latency", size_latency_figure)):
        path = out / FILES[key]
        build(frame).savefig(path, dpi=DPI, format="png")
        written[key] = path
    return written
