"""The per-round statistics (issue 12): intervals from the variation between rounds, speed-ups paired by round, the
A/A noise band, the verdict against it, the run-to-run change and the stopping rule. Pure functions on synthetic
rounds, so every number here is known in advance; all of it runs in well under five seconds."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgeprune.report import stats

NAN = math.nan


def drifting(rounds: int, rise: float = 0.01, base: float = 1000.0) -> np.ndarray:
    """A device that gets ``rise`` slower every round (a Pi warming up, a machine filling with work)."""
    return base * (1 + rise) ** np.arange(rounds)


def with_noise(level: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    return level * (1 + rng.normal(0, spread, len(level)))


def test_round_p50_interval_is_deterministic_holds_the_median_and_needs_three_rounds():
    p50s = with_noise(np.full(15, 500.0), 0.02, np.random.default_rng(1))
    ci = stats.round_p50_interval(p50s)
    assert ci == stats.round_p50_interval(p50s)  # the same seed, the same interval
    assert ci.mid == pytest.approx(float(np.median(p50s))) and ci.low <= ci.mid <= ci.high
    assert 0 < stats.relative_half_width(ci) < 0.02
    assert stats.round_p50_interval(p50s, seed=5) != ci  # the seed is really used
    assert stats.round_p50_interval([500.0, 510.0]) is None
    assert stats.round_p50_interval([500.0, NAN, 510.0, NAN]) is None  # failed rounds do not count
    assert stats.round_p50_interval(None) is None
    assert stats.relative_half_width(None) is None


def test_round_interval_widens_with_drift_that_a_block_bootstrap_cannot_see():
    rng = np.random.default_rng(2)
    steady = stats.round_p50_interval(with_noise(np.full(20, 1000.0), 0.003, rng))
    warming = stats.round_p50_interval(with_noise(drifting(20, 0.01), 0.003, rng))
    assert stats.relative_half_width(warming) > 5 * stats.relative_half_width(steady)


def test_drift_cancels_when_paired_by_round_but_the_old_block_bootstrap_calls_it_an_effect():
    """Both cells get 1% slower every round and are otherwise identical. Measured the old way (the first cell's
    invokes in one block during the early rounds, the second's during the late ones), the sample bootstrap sees a
    10% "slow-down" with a tight interval; paired by round, the ratio stays at 1 and is just as tight."""
    rng = np.random.default_rng(7)
    rounds = 20
    level = drifting(rounds, 0.01)
    first, second = with_noise(level, 0.003, rng), with_noise(level, 0.003, rng)
    new = stats.paired_ratio_interval(first, second)
    assert new.contains(1.0)
    assert stats.relative_half_width(new) < 0.005
    assert (new.low, new.mid, new.high) == pytest.approx((0.99674, 0.99915, 1.00326), abs=1e-5)

    invokes = 50  # per round, with the sample noise of single invokes
    early = np.concatenate([with_noise(np.full(invokes, x), 0.01, rng) for x in level[: rounds // 2]])
    late = np.concatenate([with_noise(np.full(invokes, x), 0.01, rng) for x in level[rounds // 2:]])
    old = stats.ratio_interval(stats.bootstrap_medians(early), stats.bootstrap_medians(late))
    assert stats.outside_noise(old) is True
    assert old.high < 0.92  # "the variant is 9-10% slower", from drift alone
    assert (old.low, old.high) == pytest.approx((0.89882, 0.91132), abs=1e-5)


def test_aa_band_of_identical_cells_sits_around_one():
    """One A/A pair (a 95% band misses 1 in about one bench in 15 by chance: see the simulated benches below)."""
    rng = np.random.default_rng(30)
    level = drifting(15, 0.005)
    band = stats.noise_band(with_noise(level, 0.015, rng), with_noise(level, 0.015, rng))
    assert band.contains(1.0)
    assert 0.95 < band.low < 1.0 < band.high < 1.05
    assert stats.noise_fraction(band) == pytest.approx(max(band.high - 1, 1 - band.low))


def test_a_true_speedup_is_called_faster_with_its_interval_near_the_truth():
    rng = np.random.default_rng(4)
    level = drifting(12, 0.005)
    aa = [with_noise(level, 0.03, rng) for _ in range(2)]
    variant = with_noise(level / 1.3, 0.03, rng)
    band = stats.noise_band(*aa)
    verdict = stats.call_speedup(stats.paired_ratio_interval(aa[0], variant), band)
    assert verdict.kind == stats.FASTER and verdict.real
    assert 1.2 < verdict.ratio.low <= verdict.ratio.mid <= verdict.ratio.high < 1.4
    assert verdict.ratio.mid == pytest.approx(1.3, abs=0.05)
    assert str(verdict).startswith(f"{verdict.ratio.mid:.2f}x faster (")
    assert "noise ±" in verdict.phrase

    slower = stats.call_speedup(stats.paired_ratio_interval(variant, aa[0]), band)
    assert slower.kind == stats.SLOWER and slower.phrase.startswith("1.")  # "1.3x slower", not "0.77x slower"
    assert " slower (" in slower.phrase


def test_a_small_ratio_inside_the_aa_band_is_no_measurable_change_even_if_it_excludes_one():
    ratio = stats.Interval(low=1.005, high=1.015, mid=1.01)  # its own interval excludes 1
    band = stats.Interval(low=0.97, high=1.03, mid=1.0)
    verdict = stats.call_speedup(ratio, band)
    assert stats.outside_noise(ratio) is True
    assert verdict.kind == stats.NO_CHANGE and not verdict.real
    assert verdict.phrase == "no measurable change, noise ±3%"
    # Just beyond the band it is called, and the band is taken symmetric: a lopsided A/A band does not let a
    # slow-down through on its narrow side.
    assert stats.call_speedup(stats.Interval(1.035, 1.06, 1.045), band).phrase == \
        "1.04x faster (1.03-1.06), noise ±3%"
    lopsided = stats.Interval(low=0.995, high=1.03, mid=1.01)
    assert stats.call_speedup(stats.Interval(0.975, 0.99, 0.98), lopsided).kind == stats.NO_CHANGE


def test_failed_rounds_are_dropped_pairwise():
    base = [100.0, 101.0, NAN, 99.0, 100.0, 102.0]
    variant = [80.0, NAN, 79.0, 81.0, 80.0, 80.5]
    ratio = stats.paired_ratio_interval(base, variant)
    kept = np.array([100 / 80, 99 / 81, 100 / 80, 102 / 80.5])  # rounds 0, 3, 4, 5
    assert ratio.mid == pytest.approx(float(np.median(kept)))
    assert kept.min() <= ratio.low <= ratio.high <= kept.max()
    with pytest.raises(ValueError, match="same number of rounds"):
        stats.paired_ratio_interval([1.0, 2.0, 3.0], [1.0, 2.0])


def test_fewer_than_three_rounds_give_no_interval_and_say_not_enough_rounds():
    base, variant = [100.0, 101.0, NAN, 99.0], [80.0, NAN, 79.0, 81.0]  # two rounds with both cells
    assert stats.paired_ratio_interval(base, variant) is None
    band = stats.Interval(0.98, 1.02, 1.0)
    verdict = stats.call_speedup(stats.paired_ratio_interval(base, variant), band)
    assert verdict.kind == stats.NOT_ENOUGH and not verdict.real and "not enough rounds" in verdict.phrase
    assert stats.noise_band([1.0, 1.0], [1.0, 1.0]) is None
    no_floor = stats.call_speedup(stats.Interval(1.2, 1.3, 1.25), None)
    assert no_floor.kind == stats.NO_FLOOR and not no_floor.real and "no noise floor" in no_floor.phrase
    assert stats.run_change_interval([1.0, 2.0], [1.0, 2.0, 3.0]) is None


def test_run_change_is_bootstrapped_independently_and_sees_both_runs_variation():
    rng = np.random.default_rng(5)
    a, b = with_noise(np.full(12, 1000.0), 0.01, rng), with_noise(np.full(12, 1050.0), 0.01, rng)
    change = stats.run_change_interval(a, b)
    assert change == stats.run_change_interval(a, b)
    assert change.mid == pytest.approx(float(np.median(b) / np.median(a)))
    assert change.low > 1.0 and change.contains(1.05)
    noisy_b = with_noise(np.full(12, 1050.0), 0.05, rng)
    wider = stats.run_change_interval(a, noisy_b)
    assert wider.high - wider.low > 2 * (change.high - change.low)
    # Unpaired: a different number of rounds is fine, and NaN rounds of one run leave the other's intact.
    assert stats.run_change_interval(a[:5], np.append(b, NAN)) is not None
    widest = stats.widest_band(stats.Interval(0.99, 1.02), stats.Interval(0.97, 1.01))
    assert (widest.low, widest.mid, widest.high) == pytest.approx((0.97, 1.0, 1.03))
    assert stats.widest_band(stats.Interval(0.99, 1.02), None) is None


def test_settled_follows_the_target_and_reports_the_half_width():
    rng = np.random.default_rng(6)
    quiet = stats.settled(with_noise(np.full(10, 800.0), 0.005, rng))
    assert quiet.ok and quiet.half_width < 0.02 and quiet.rounds == 10
    loud = stats.settled(with_noise(np.full(10, 800.0), 0.08, rng))
    assert not loud.ok and loud.half_width > 0.02
    assert stats.settled(with_noise(np.full(10, 800.0), 0.08, rng), target=0.5).ok
    few = stats.settled([800.0, 801.0, NAN])
    assert not few.ok and few.half_width is None and few.interval is None and few.rounds == 2
    # Three or four rounds have an interval (their range) but never settle: the range of 3 rounds holds the median
    # only 75% of the time, of 5 rounds 94%.
    steady = [800.0, 800.5, 799.8, 800.2, 800.1, 799.9]
    assert [stats.settled(steady[:n]).ok for n in (3, 4, 5, 6)] == [False, False, True, True]
    assert stats.settled(steady[:3]).half_width < 0.001
    assert stats.settled(steady[:3], min_rounds=3).ok


def _bench(rng: np.random.Generator, rounds: int, noise: float, speedup: float):
    """One simulated bench: a drifting, wandering device (a random walk of 1% per round on a 0.3% rise) and three
    cells visited every round: the A/A pair and a third cell that is ``speedup`` times faster."""
    level = 1000 * np.cumprod(1 + rng.normal(0.003, 0.01, rounds))
    first, second, third = (with_noise(level, noise, rng) for _ in range(3))
    return stats.noise_band(first, second), stats.paired_ratio_interval(first, third / speedup)


def test_over_many_simulated_benches_identical_cells_are_rarely_called_and_real_ones_always():
    rng = np.random.default_rng(20240601)
    benches = 200
    called = [stats.call_speedup(ratio, band).real for band, ratio in
              (_bench(rng, rounds=12, noise=0.02, speedup=1.0) for _ in range(benches))]
    assert sum(called) / benches <= 0.05
    # The A/A band itself is a 95% bootstrap interval over 12 rounds: it holds 1 in about 93% of benches (the
    # percentile bootstrap of a median over few rounds is a little narrow), hence the symmetric, stricter use.
    bands = [_bench(rng, rounds=12, noise=0.02, speedup=1.0)[0] for _ in range(benches)]
    assert sum(b.contains(1.0) for b in bands) / benches >= 0.88
    detected = [stats.call_speedup(ratio, band).kind == stats.FASTER for band, ratio in
                (_bench(rng, rounds=12, noise=0.02, speedup=1.3) for _ in range(50))]
    assert all(detected)
