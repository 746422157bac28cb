"""Bootstrap statistics for the report: how sure is a p50, and is a speed-up more than noise?

Two families live here. The per-round functions (``round_p50_interval``, ``paired_ratio_interval``, ``noise_band``,
``call_speedup``, ``run_change_interval``, ``settled``) work on what an agent measuring in rounds sends: per cell, one
block p50 per round, aligned by round index (NaN where the cell failed that round). Their intervals come from the
variation *between rounds*, so drift (a warming Pi, a loaded host) widens them or, paired by round, cancels; see
docs/statistics.md. The per-sample functions below them are the old way (one block of invokes per variant): the
report no longer uses them, and tests/report/test_stats_rounds.py keeps them to show what they miss.

The old way: an agent's latency samples (``timing.samples_us``) bootstrapped into a p50 interval, a ratio of two
p50s from independent resamples of both sides, "outside the noise" when its interval did not contain 1. It only
knew the noise inside one block, so drift between blocks passed for an effect. Every function here uses a fixed
seed, so a report is the same every time it is built from the same store.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import numpy as np

RESAMPLES = 1000
SEED = 20240601
#: Fewer samples than this give no interval: a bootstrap of a handful of values says nothing useful.
MIN_SAMPLES = 10


@dataclass(frozen=True)
class Interval:
    """A confidence interval; ``mid`` is the point estimate when the function that built it has one."""

    low: float
    high: float
    mid: Optional[float] = None

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


# ---------------------------------------------------------------------------------------------------------------
# Rounds: every round visits every cell once (in a fresh random order); each visit gives one block p50.

#: Fewer usable rounds than this give no interval: with 1 or 2 rounds there is no between-round variation to speak of.
MIN_ROUNDS = 3
#: A cell has settled when its p50 interval is within ±this of its p50 (the agent's default stopping target).
SETTLE_TARGET = 0.02
#: ...and it has at least this many usable rounds. With n rounds the bootstrap interval of a median is about the range
#: of the rounds until n = 5, and the range of n values holds the true median with probability 1 - 2 / 2**n: 75% for
#: 3 rounds, 94% for 5. A stopping rule that could stop at 3 would stop on luck.
MIN_SETTLE_ROUNDS = 5


def _rounds(values: Optional[Sequence[float]]) -> np.ndarray:
    """The usable per-round figures: finite and positive (a failed round is NaN, a p50 is never <= 0)."""
    if values is None:
        return np.empty(0)
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[np.isfinite(x) & (x > 0)]


def _paired(first: Optional[Sequence[float]], second: Optional[Sequence[float]]) -> Tuple[np.ndarray, np.ndarray]:
    """The rounds in which both cells have a usable figure, still aligned (a round missing on either side is dropped
    on both, so every remaining pair was measured under the same conditions)."""
    if first is None or second is None:
        return np.empty(0), np.empty(0)
    a = np.asarray(first, dtype=np.float64).ravel()
    b = np.asarray(second, dtype=np.float64).ravel()
    if len(a) != len(b):
        raise ValueError(f"paired rounds need the same number of rounds on both sides, got {len(a)} and {len(b)}")
    keep = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    return a[keep], b[keep]


def _bootstrap_rounds(x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The medians of ``resamples`` resamples of the rounds ``x``, drawn with replacement (whole rounds: a round is
    the unit that drift moves, so it is the unit that is resampled)."""
    return np.median(x[rng.integers(0, len(x), size=(resamples, len(x)))], axis=1)


def _percentiles(values: np.ndarray, level: float, mid: float) -> Interval:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(low=float(low), high=float(high), mid=float(mid))


def round_p50_interval(per_round_p50: Optional[Sequence[float]], resamples: int = RESAMPLES, seed: int = 0,
                       level: float = 0.95) -> Optional[Interval]:
    """A cell's p50 and its interval from the variation between rounds; None with fewer than ``MIN_ROUNDS`` rounds.

    Why rounds and not samples: the invokes inside one block are measured within a second or so, under one thermal
    and load state, so their bootstrap says how precisely *that block* was measured, not how the cell's speed moves
    over the bench. Resampling whole rounds (median of the per-round p50s) lets every drift and every disturbance
    that hit some rounds and not others show in the width. ``mid`` is the median of the per-round p50s.
    """
    x = _rounds(per_round_p50)
    if len(x) < MIN_ROUNDS:
        return None
    medians = _bootstrap_rounds(x, resamples, np.random.default_rng(seed))
    return _percentiles(medians, level, float(np.median(x)))


def relative_half_width(ci: Optional[Interval]) -> Optional[float]:
    """Half the interval's width as a fraction of its middle (0.02 = ±2%); None without an interval."""
    if ci is None:
        return None
    mid = ci.mid if ci.mid is not None else (ci.low + ci.high) / 2
    if not mid or not math.isfinite(mid):
        return None
    return (ci.high - ci.low) / 2 / abs(mid)


def paired_ratio_interval(base_rounds: Optional[Sequence[float]], variant_rounds: Optional[Sequence[float]],
                          resamples: int = RESAMPLES, seed: int = 0, level: float = 0.95) -> Optional[Interval]:
    """The speed-up base / variant and its interval, from the per-round ratios paired by round.

    Why paired: in round r both cells were measured within seconds of each other, in random order, so whatever
    slowed the device in round r (heat, a background task, a frequency step) slowed both. Their ratio in that round
    cancels it; the ratios then vary only by what differs between the cells plus the noise of one block. The
    interval is a percentile bootstrap over rounds of the median per-round ratio (resampling rounds, never single
    figures, keeps each pair together). ``mid`` is the median per-round ratio. Rounds in which either cell has no
    figure are dropped from both; None when fewer than ``MIN_ROUNDS`` paired rounds remain.
    """
    base, variant = _paired(base_rounds, variant_rounds)
    if len(base) < MIN_ROUNDS:
        return None
    ratios = base / variant
    medians = _bootstrap_rounds(ratios, resamples, np.random.default_rng(seed))
    return _percentiles(medians, level, float(np.median(ratios)))


def noise_band(aa_first_rounds: Optional[Sequence[float]], aa_second_rounds: Optional[Sequence[float]],
               resamples: int = RESAMPLES, seed: int = 0, level: float = 0.95) -> Optional[Interval]:
    """The device's noise floor in this bench: the paired ratio interval of the A/A pair (the baseline measured as
    two cells, interleaved like all the others). Both cells run the same file, so any "speed-up" between them is
    what this device, in this bench, produces by chance (e.g. 0.97-1.03); a real effect has to lie beyond it."""
    return paired_ratio_interval(aa_first_rounds, aa_second_rounds, resamples, seed, level)


def noise_fraction(band: Optional[Interval]) -> Optional[float]:
    """How far the A/A band reaches from 1 on its wider side (0.03 = "noise ±3%"); None without a band."""
    if band is None:
        return None
    return max(band.high - 1.0, 1.0 - band.low, 0.0)


def widest_band(*bands: Optional[Interval]) -> Optional[Interval]:
    """The band 1 ± the widest noise of ``bands`` (e.g. both runs' A/A bands for ``report --compare``); None if any
    band is missing, since an unknown noise floor cannot be covered by a known one."""
    noise = [noise_fraction(b) for b in bands]
    if not noise or any(n is None for n in noise):
        return None
    widest = max(noise)  # type: ignore[type-var]
    return Interval(low=1.0 - widest, high=1.0 + widest, mid=1.0)


def floored_band(band: Optional[Interval], floor: Optional[float]) -> Optional[Interval]:
    """The A/A band, widened to at least 1 ± ``floor`` (the plan's ``target_ci``); None without a band.

    Why a floor: one A/A pair is one sample of how much two cells running the same file differ. On an x86 host two
    such cells differed by a steady 0.5% in every round (where each cell's memory sits, its place in the process),
    so their band (0.994-0.995) was narrower than the differences between any other two cells; an identical graph
    (pruned-float32) then came out "1.009x faster". Effects smaller than the precision the plan asked for are not
    claimed: the band is never narrower than ±target_ci."""
    if band is None:
        return None
    noise = max(noise_fraction(band) or 0.0, floor or 0.0)
    return Interval(low=1.0 - noise, high=1.0 + noise, mid=band.mid)


FASTER, SLOWER, NO_CHANGE, NOT_ENOUGH, NO_FLOOR = (
    "faster", "slower", "no measurable change", "not enough rounds", "no noise floor")


@dataclass(frozen=True)
class Verdict:
    """What a speed-up's interval says against the device's noise floor: ``kind`` is one of FASTER, SLOWER,
    NO_CHANGE, NOT_ENOUGH (too few rounds for the ratio) or NO_FLOOR (the A/A pair has too few rounds), and
    ``phrase`` says it in words for the terminal, the HTML and the CSV."""

    kind: str
    phrase: str
    ratio: Optional[Interval] = None
    band: Optional[Interval] = None

    @property
    def real(self) -> bool:
        """True only for a change called faster or slower."""
        return self.kind in (FASTER, SLOWER)

    def __str__(self) -> str:
        return self.phrase


def finite(value: Any) -> Optional[float]:
    """A table cell as a float, or None when it is missing (None, NaN, pandas' NA), not a number or infinite: the
    verdicts and the gate compare only figures that exist."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def percent(fraction: float) -> str:
    """A fraction as the report writes a ± width: ``±0.8%``, ``±2.5%``, ``±12%``."""
    value = fraction * 100
    text = f"{value:.0f}" if value >= 9.95 else f"{value:.1f}".rstrip("0").rstrip(".")
    return f"±{text}%"


def call_speedup(ratio: Optional[Interval], band: Optional[Interval]) -> Verdict:
    """Call a speed-up (base / variant, paired by round) real only when its interval excludes 1 AND lies entirely
    beyond the A/A noise band: faster when ``ratio.low`` > 1 + noise, slower when ``ratio.high`` < 1 - noise.

    Why both: an interval that excludes 1 only says the two cells differed in this bench; the A/A pair shows how
    much two cells running the *same* file differ here (position in the round, cache and allocator luck, a device
    that never quite settles). A difference no bigger than that is not evidence of anything the variant did. The
    band is taken symmetric (1 ± its wider side, the "noise ±x%" the user reads), which is the stricter reading.
    """
    if ratio is None:
        return Verdict(NOT_ENOUGH, f"not enough rounds (fewer than {MIN_ROUNDS} with both cells measured)",
                       None, band)
    mid = ratio.mid if ratio.mid is not None else (ratio.low + ratio.high) / 2
    noise = noise_fraction(band)
    if noise is None:
        return Verdict(NO_FLOOR, f"{ratio_text(mid, ratio.low, ratio.high)}, no noise floor "
                                 f"(the A/A pair has fewer than {MIN_ROUNDS} rounds)", ratio, band)
    noise_text = f"noise {percent(noise)}"
    if ratio.low > 1.0 + noise:
        return Verdict(FASTER, f"{ratio_text(mid, ratio.low, ratio.high, 'faster')}, {noise_text}", ratio, band)
    if ratio.high < 1.0 - noise:
        # Said the way round a user reads it: the variant takes 1/ratio times as long.
        return Verdict(SLOWER, f"{ratio_text(1 / mid, 1 / ratio.high, 1 / ratio.low, 'slower')}, {noise_text}",
                       ratio, band)
    return Verdict(NO_CHANGE, f"no measurable change, {noise_text}", ratio, band)


def _digits(low: float, high: float) -> int:
    return 3 if f"{low:.2f}" == f"{high:.2f}" else 2


def span_text(low: float, high: float) -> str:
    """``1.28-1.36``; three decimals when two would print one number twice (``1.008-1.011``)."""
    digits = _digits(low, high)
    return f"{low:.{digits}f}-{high:.{digits}f}"


def ratio_text(mid: float, low: float, high: float, word: str = "") -> str:
    """``1.30x faster (1.28-1.36)``, or ``1.009x faster (1.008-1.011)`` for a small, tight effect (not
    ``1.01x (1.01-1.01)``)."""
    return f"{mid:.{_digits(low, high)}f}x{' ' + word if word else ''} ({span_text(low, high)})"


def run_change_interval(a_rounds: Optional[Sequence[float]], b_rounds: Optional[Sequence[float]],
                        resamples: int = RESAMPLES, seed: int = 0, level: float = 0.95) -> Optional[Interval]:
    """The change of one cell from bench A to bench B as p50(B) / p50(A) (1.05 = B is 5% slower), for
    ``report --compare``.

    Why independent: two benches ran at different times, so round r of A has nothing to do with round r of B and
    pairing them would invent a correlation. Each run's rounds are resampled on their own (two independent streams
    from ``seed``) and the ratio of the two bootstrap medians is taken, so both runs' between-round variation widens
    the interval. ``mid`` is the ratio of the two medians. None when either run has fewer than ``MIN_ROUNDS`` rounds.
    """
    a, b = _rounds(a_rounds), _rounds(b_rounds)
    if len(a) < MIN_ROUNDS or len(b) < MIN_ROUNDS:
        return None
    rng_a, rng_b = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    ratios = _bootstrap_rounds(b, resamples, rng_b) / _bootstrap_rounds(a, resamples, rng_a)
    return _percentiles(ratios, level, float(np.median(b) / np.median(a)))


@dataclass(frozen=True)
class Settled:
    """Whether a cell's p50 is known to within ±target: ``ok``, its ``half_width`` (a fraction, None with too few
    rounds), its ``interval`` and how many usable ``rounds`` it had."""

    ok: bool
    half_width: Optional[float]
    interval: Optional[Interval]
    rounds: int


def settled(per_round_p50: Optional[Sequence[float]], target: float = SETTLE_TARGET, resamples: int = RESAMPLES,
            seed: int = 0, level: float = 0.95, min_rounds: int = MIN_SETTLE_ROUNDS) -> Settled:
    """Whether the cell's between-round p50 interval lies within ±``target`` of its p50.

    The agent's stopping rule asks this of every cell after each round (more rounds until all settle or the time
    budget is spent); the report lists the cells that did not, with their half-width. Fewer than ``min_rounds``
    usable rounds never count as settled (see ``MIN_SETTLE_ROUNDS``), though from ``MIN_ROUNDS`` on the half-width
    is given.
    """
    ci = round_p50_interval(per_round_p50, resamples, seed, level)
    half = relative_half_width(ci)
    rounds = len(_rounds(per_round_p50))
    return Settled(half is not None and half <= target and rounds >= min_rounds, half, ci, rounds)
