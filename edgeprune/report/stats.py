"""Bootstrap statistics for the report: how sure is a p50, and is a speed-up more than noise?

The agent sends its latency samples (``timing.samples_us``, evenly strided, at most 5000). A p50's 95% confidence
interval is the 2.5th..97.5th percentile of the medians of ``resamples`` bootstrap resamples. A ratio of two p50s
(a speed-up, or the change between two runs) is bootstrapped from independent resamples of both sides; it is
outside the noise when its interval does not contain 1. A fixed seed keeps a report the same every time it is
built from the same store.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

RESAMPLES = 1000
SEED = 20240601
#: Fewer samples than this give no interval: a bootstrap of a handful of values says nothing useful.
MIN_SAMPLES = 10


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def bootstrap_medians(samples: Optional[Sequence[float]], resamples: int = RESAMPLES,
                      seed: int = SEED) -> Optional[np.ndarray]:
    """The medians of ``resamples`` resamples (with replacement) of ``samples``; None when there are too few."""
    if samples is None:
        return None
    x = np.asarray(samples, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < MIN_SAMPLES:
        return None
    rng = np.random.default_rng(seed)
    drawn = x[rng.integers(0, n, size=(resamples, n))]
    middle = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
    drawn.partition(middle, axis=1)
    return drawn[:, middle].mean(axis=1)


def interval(values: Optional[np.ndarray], level: float = 0.95) -> Optional[Interval]:
    if values is None:
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(low), float(high))


def ratio_interval(numerator: Optional[np.ndarray], denominator: Optional[np.ndarray],
                   level: float = 0.95) -> Optional[Interval]:
    """Interval of numerator / denominator from two independent bootstrap distributions of the same length."""
    if numerator is None or denominator is None:
        return None
    # The same seed drew both sides' resample indices: shuffle one side so the pairing is independent.
    rng = np.random.default_rng(SEED + 1)
    return interval(numerator / rng.permutation(denominator), level)


def outside_noise(ratio: Optional[Interval]) -> Optional[bool]:
    """True when the ratio's interval excludes 1, False when it includes it, None when unknown."""
    if ratio is None:
        return None
    return not ratio.contains(1.0)
