"""``pareto.png``: accuracy against gzip size, one panel per device, p50 as the colour.

Each measured point is a dot coloured by its p50 on that device (one colour scale for all panels, log when the
p50s span more than 30x); the Pareto front's points are ringed and joined in gzip order, the recommended point is
a star, the baseline a grey square. Drawn headless (a ``Figure`` on Agg, no pyplot state); every label goes through
``text.for_matplotlib`` (a ``$`` in a name never turns into mathtext).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..text import for_matplotlib
from .pareto import REFERENCE, ParetoResult

PANEL = (6.0, 4.5)  # inches per device
DPI = 100


def draw(result: ParetoResult, path: Path, title: str) -> Path:
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure

    frame = result.frame
    devices = list(dict.fromkeys(frame["device"])) or ["(no device)"]
    figure = Figure(figsize=(PANEL[0] * len(devices), PANEL[1]), dpi=DPI, layout="constrained")
    axes = figure.subplots(1, len(devices), squeeze=False)[0]
    measured = frame[(frame["status"] == "ok") & frame["p50_us"].notna() & frame["accuracy"].notna()
                     & frame["gzip_bytes"].notna()]
    p50 = measured["p50_us"].astype(float)
    if len(p50):
        low, high = float(p50.min()), float(p50.max())
        norm: Any = LogNorm(low, high) if low > 0 and high / low > 30 else Normalize(low, high if high > low else
                                                                                     low + 1)
    else:
        norm = Normalize(0, 1)
    scatter = None
    for axis, device in zip(axes, devices):
        rows = measured[measured["device"] == device]
        points, reference = rows[rows["point"] != REFERENCE], rows[rows["point"] == REFERENCE]
        x, y = points["gzip_bytes"] / 1024, points["accuracy"] * 100
        scatter = axis.scatter(x, y, c=points["p50_us"], cmap="viridis", norm=norm, s=60, zorder=3)
        front = rows[rows["pareto"].astype(bool)].sort_values("gzip_bytes")
        axis.plot(front["gzip_bytes"] / 1024, front["accuracy"] * 100, color="black", linewidth=1, linestyle="--",
                  zorder=2, label="Pareto front")
        axis.scatter(front["gzip_bytes"] / 1024, front["accuracy"] * 100, s=160, facecolors="none",
                     edgecolors="black", zorder=4)
        best = rows[rows["recommended"].astype(bool)]
        axis.scatter(best["gzip_bytes"] / 1024, best["accuracy"] * 100, marker="*", s=320, color="red", zorder=5,
                     label="recommended")
        axis.scatter(reference["gzip_bytes"] / 1024, reference["accuracy"] * 100, marker="s", s=70, color="grey",
                     zorder=3, label="baseline")
        for _, row in rows.iterrows():
            axis.annotate(for_matplotlib(row["point"], 40), (row["gzip_bytes"] / 1024, row["accuracy"] * 100),
                          textcoords="offset points", xytext=(5, 4), fontsize=7)
        budget = result.baseline_accuracy
        if budget is not None and not math.isnan(budget):
            axis.axhline(budget * 100 - result.budget, color="red", linewidth=0.8, linestyle=":",
                         label=f"accuracy budget (-{result.budget:g} pts)")
        axis.set_title(for_matplotlib(device, 60))
        axis.set_xlabel("gzip size (KB)")
        axis.set_ylabel("accuracy on the test set (%)")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7, loc="lower right")
    if scatter is not None and len(p50):
        figure.colorbar(scatter, ax=list(axes), label="p50 on the device (µs)")
    figure.suptitle(for_matplotlib(title, 100))
    figure.savefig(path)
    return path
