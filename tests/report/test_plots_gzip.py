"""The size plot uses the gzip size (issue 12): a pruned float model is as large as the baseline on disk, and only
compressed does pruning's benefit show."""
from __future__ import annotations

import math

import pandas as pd

from edgeprune.report import plots


def test_size_plot_puts_the_gzip_size_on_the_x_axis():
    frame = pd.DataFrame([
        {"device": "pi", "variant": "baseline-float32", "status": "ok", "size_kb": 1100.0, "gzip_kb": 1000.0,
         "p50_us": 40.0, "device_accuracy": 0.98},
        {"device": "pi", "variant": "pruned-float32", "status": "ok", "size_kb": 1100.0, "gzip_kb": 290.0,
         "p50_us": 40.5, "device_accuracy": 0.97},
        {"device": "pi", "variant": "pruned-int8", "status": "failed", "size_kb": 290.0, "gzip_kb": 90.0,
         "p50_us": math.nan, "device_accuracy": math.nan},
    ])
    fig = plots.size_latency_figure(frame)
    ax = fig.axes[0]
    assert "gzip" in ax.get_xlabel()
    xs = sorted(float(x) for collection in ax.collections for x, _ in collection.get_offsets())
    assert xs == [290.0, 1000.0]  # the ok pairs' gzip sizes; raw sizes (1100, 1100) would hide pruning
