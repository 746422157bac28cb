"""The regression gate for CI (issue 17): did any device x variant get worse from run BASE to run NEW?

``judge`` is pure: it takes ``diff.compare_runs``'s frame (and, optionally, what only the store knows: the host's
accuracy per variant, each NEW pair's measuring time and error) and returns every pair judged and whether the gate
passed. It judges nothing itself that ``diff`` did not: a latency regression is the comparison's own verdict, so
the gate can never disagree with the table printed above it. The rules (also in docs/ci-gate.md):

- **slower** (``--fail-if-slower PCT``): a pair fails when its p50 change from BASE to NEW was called ``slower``
  against the wider of the two runs' A/A bands (the change interval lies entirely beyond the noise) AND the lower
  end of that interval (p50 NEW / p50 BASE - 1) is above PCT%. Both, because a real 3% slow-down is not worth a
  red build at ``--fail-if-slower 10``, and a 15% change inside a ±20% noise band is not evidence of anything.
- **less accurate** (``--fail-if-less-accurate POINTS``): a pair fails when its accuracy dropped by more than
  POINTS accuracy points: device accuracy when both runs have it, else the host's (said so), else not compared.
- **lost**: a pair ok in BASE that is not ok in NEW (failed, error, invalid, not built, not measured, absent) fails:
  a model that stopped converting or loading is the worst regression there is.
- **not judged** (a JUnit ``<skipped>``): a pair not ok in BASE (nothing to compare against), or one whose
  requested check cannot be made: no rounds, too few rounds, no noise floor in either run, no accuracy. It never
  fails the gate, and it is always listed, so a gate that judged nothing cannot pass silently.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import stats

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
#: The JUnit failure ``type`` (and terminal word) of each way a pair fails.
SLOWER, LESS_ACCURATE, LOST = "slower", "less-accurate", "lost"

Key = Tuple[str, str]


@dataclass(frozen=True)
class Thresholds:
    """``slower_pct``: percent (10 = 10% slower); ``accuracy_points``: accuracy points (0.5 = 0.5 pts); None: that
    check is not made."""

    slower_pct: Optional[float] = None
    accuracy_points: Optional[float] = None

    def describe(self) -> str:
        parts = []
        if self.slower_pct is not None:
            parts.append(f"slower by more than {self.slower_pct:g}% outside the noise")
        if self.accuracy_points is not None:
            parts.append(f"less accurate by more than {self.accuracy_points:g} pts")
        return " or ".join(parts)


@dataclass(frozen=True)
class StoreFacts:
    """What the comparison frame lacks, read from the store (``read_facts``): the host's accuracy per run and
    variant, and per NEW pair its timed seconds and error text."""

    host_accuracy: Mapping[Tuple[int, str], Optional[float]] = field(default_factory=dict)
    seconds: Mapping[Key, float] = field(default_factory=dict)
    errors: Mapping[Key, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pair:
    """One device x variant as judged: its outcome, why (``reasons``, one per failed or unjudged check, and a
    ``kind`` per failure), the figures behind it, and a one-line ``detail`` for a passed pair."""

    device: str
    variant: str
    outcome: str
    kinds: Tuple[str, ...]
    reasons: Tuple[str, ...]
    detail: str
    p50_change: Optional[float]
    p50_change_low: Optional[float]
    p50_change_high: Optional[float]
    verdict: Optional[str]
    accuracy_change_points: Optional[float]
    accuracy_source: Optional[str]
    seconds: float

    @property
    def message(self) -> str:
        return "; ".join(self.reasons) if self.reasons else self.detail


@dataclass(frozen=True)
class GateResult:
    """Every pair judged, in the comparison's order; ``passed`` when none failed."""

    pairs: List[Pair]
    thresholds: Thresholds
    base: Dict[str, Any]
    new: Dict[str, Any]
    noise: Dict[str, str]

    def of(self, outcome: str) -> List[Pair]:
        return [p for p in self.pairs if p.outcome == outcome]

    @property
    def passed(self) -> bool:
        return not self.of(FAILED)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def summary(self) -> str:
        """The one line a CI log ends with: the outcome, the exit code, and counts by reason."""
        failed, skipped = self.of(FAILED), self.of(SKIPPED)
        runs = f"run {self.base['id']} -> run {self.new['id']}"
        tail = f"; {len(skipped)} not judged (listed above)" if skipped else ""
        if not failed:
            return (f"Gate passed ({runs}): no device x variant {self.thresholds.describe()}; "
                    f"{len(self.of(PASSED))} of {len(self.pairs)} pairs judged{tail}.")
        kinds = [k for p in failed for k in p.kinds]
        counts = ", ".join(f"{kinds.count(k)} {word}" for k, word in (
            (SLOWER, "slower"), (LESS_ACCURATE, "less accurate"), (LOST, "ok before, not now")) if k in kinds)
        return (f"Gate FAILED ({runs}, exit 1): {len(failed)} of {len(self.pairs)} device x variant pairs regressed "
                f"({counts}; rule: {self.thresholds.describe()}){tail}.")



def _status(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None


def _latency(row: Any, pct: float) -> Tuple[str, str]:
    """(``FAILED``/``PASSED``/``SKIPPED``, the reason or detail) of the slower check on a pair ok in both runs."""
    verdict, text = _status(row.get("p50_change_verdict")), _status(row.get("p50_change_text")) or ""
    change, low, high = (stats.finite(row.get(c)) for c in ("p50_change", "p50_change_low", "p50_change_high"))
    figures = (f"p50 {change:+.1%}" if change is not None else "p50 change unknown") + (
        f" (95% CI {low:+.1%}..{high:+.1%})" if low is not None and high is not None else "")
    if verdict not in (stats.FASTER, stats.SLOWER, stats.NO_CHANGE):
        return SKIPPED, f"latency not judged: {text or verdict or 'no verdict'}"
    if verdict == stats.SLOWER and low is not None and low > pct / 100:
        return FAILED, f"{figures}: {text}; its low end is beyond {pct:g}% and outside the noise"
    if verdict == stats.SLOWER:
        return PASSED, f"{figures}: {text}, but its low end is within {pct:g}%"
    return PASSED, f"{figures}: {text}"


def _accuracy(row: Any, variant: str, points: float, runs: Tuple[int, int],
              facts: StoreFacts) -> Tuple[str, str, Optional[float], Optional[str]]:
    """(outcome, reason or detail, change in points, which accuracy) of the accuracy check on a pair ok in both."""
    device = [stats.finite(row.get(f"device_accuracy_{side}")) for side in "ab"]
    base_name = variant.split("#")[0]  # a matrix cell's variant (devices.cells.split_cell)
    host = [stats.finite(facts.host_accuracy.get((run, base_name))) for run in runs]
    if None not in device:
        pair, source = device, "device"
    elif None not in host:
        pair, source = host, "host"
    else:
        missing = [f"run {run}" for run, d, h in zip(runs, device, host) if d is None and h is None]
        return SKIPPED, f"accuracy not compared: no accuracy in {' and '.join(missing) or 'both runs'}", None, None
    change = (pair[1] - pair[0]) * 100  # type: ignore[operator]
    note = "" if source == "device" else " (host accuracy: the device measured none in " + " and ".join(
        f"run {run}" for run, d in zip(runs, device) if d is None) + ")"
    text = f"{source} accuracy {pair[0]:.2%} -> {pair[1]:.2%} ({change:+.2f} pts){note}"
    if change < -points:
        return FAILED, f"{text}: dropped by more than {points:g} pts", change, source
    return PASSED, text, change, source


def _judge_pair(row: Any, thresholds: Thresholds, runs: Tuple[int, int], facts: StoreFacts) -> Pair:
    device, variant = str(row["device"]), str(row["variant"])
    status_a, status_b = _status(row.get("status_a")), _status(row.get("status_b"))
    outcomes: List[Tuple[str, str, str]] = []  # (outcome, kind, text) per check
    accuracy: Tuple[Optional[float], Optional[str]] = (None, None)
    if status_a != "ok":
        outcomes.append((SKIPPED, "", f"not judged: {status_a or 'absent'} in run {runs[0]}, nothing to compare "
                                      "against"))
    elif status_b != "ok":
        error = facts.errors.get((device, variant))
        outcomes.append((FAILED, LOST, f"ok in run {runs[0]}, {status_b or 'absent'} in run {runs[1]}"
                                       + (f": {error}" if error else "")))
    else:
        if thresholds.slower_pct is not None:
            outcome, text = _latency(row, thresholds.slower_pct)
            outcomes.append((outcome, SLOWER, text))
        if thresholds.accuracy_points is not None:
            outcome, text, change, source = _accuracy(row, variant, thresholds.accuracy_points, runs, facts)
            outcomes.append((outcome, LESS_ACCURATE, text))
            accuracy = (change, source)
    kinds = [o for o, _, _ in outcomes]
    overall = FAILED if FAILED in kinds else SKIPPED if SKIPPED in kinds or not kinds else PASSED
    reasons = tuple(t for o, _, t in outcomes if o == overall) if overall != PASSED else ()
    return Pair(device, variant, overall, tuple(k for o, k, _ in outcomes if o == FAILED), reasons,
                "; ".join(t for _, _, t in outcomes), stats.finite(row.get("p50_change")),
                stats.finite(row.get("p50_change_low")), stats.finite(row.get("p50_change_high")),
                _status(row.get("p50_change_verdict")), accuracy[0], accuracy[1],
                float(facts.seconds.get((device, variant), 0.0)))


def check_thresholds(thresholds: Thresholds) -> None:
    """A threshold must be a finite number >= 0: a negative one would fail every unchanged pair."""
    from ..errors import ConfigError

    for value, flag in ((thresholds.slower_pct, "--fail-if-slower"),
                        (thresholds.accuracy_points, "--fail-if-less-accurate")):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{flag} takes a number >= 0 (got {value:g})")
    if thresholds.slower_pct is None and thresholds.accuracy_points is None:
        raise ConfigError("the gate needs --fail-if-slower PCT and/or --fail-if-less-accurate POINTS")


def judge(frame: Any, thresholds: Thresholds, facts: Optional[StoreFacts] = None) -> GateResult:
    """Judge every row of ``diff.compare_runs``'s frame (its ``attrs['runs']`` name BASE and NEW)."""
    check_thresholds(thresholds)
    base, new = frame.attrs["runs"]
    runs = (int(base["id"]), int(new["id"]))
    pairs = [_judge_pair(row, thresholds, runs, facts or StoreFacts()) for row in frame.to_dict("records")]
    return GateResult(pairs, thresholds, dict(base), dict(new), dict(frame.attrs.get("noise", {})))


def read_facts(db: "str | Path", base: int, new: int) -> StoreFacts:
    """The host's accuracy of every variant of both runs, and each NEW pair's timed seconds (timed invokes x mean
    latency: what the JUnit file reports as the testcase's time) and error text, from the store."""
    from ..results.store import Store

    host: Dict[Tuple[int, str], Optional[float]] = {}
    seconds: Dict[Key, float] = {}
    errors: Dict[Key, str] = {}
    with Store.open(db, create=False) as store:
        for run in (base, new):
            for variant in store.variants(run):
                host[(run, variant["name"])] = variant["accuracy"]
        for result in store.results(new):
            key = (result["device"], result["variant"])
            runs, mean = stats.finite(result["runs"]), stats.finite(result["mean_us"])
            if runs is not None and mean is not None:
                seconds[key] = runs * mean / 1e6
            if result["status"] != "ok":
                errors[key] = ": ".join(str(p) for p in (result["error_kind"], result["error_message"]) if p)
    return StoreFacts(host, seconds, errors)


def gate_runs(db: "str | Path", base: int, new: int, thresholds: Thresholds) -> Tuple[Any, GateResult]:
    """The comparison frame of BASE -> NEW and the gate's verdict on it (the Python API of ``report --compare
    ... --fail-if-slower``)."""
    from .diff import compare_runs

    check_thresholds(thresholds)
    frame = compare_runs(db, base, new)
    return frame, judge(frame, thresholds, read_facts(db, base, new))


def print_gate(result: GateResult, console: Any) -> None:
    """The failed and the unjudged pairs, one line each (names escaped: they come from devices and stores), then
    the summary line."""
    from ..text import for_rich

    console.print(f"[bold]Gate[/]: fails on a device x variant {for_rich(result.thresholds.describe())}, or ok in "
                  f"run {result.base['id']} and not in run {result.new['id']}.", highlight=False)
    for pair in result.of(FAILED) + result.of(SKIPPED):  # failures first: what a CI log reader looks for
        word = "[bold red]FAIL[/]" if pair.outcome == FAILED else "[yellow]SKIP[/]"
        console.print(f"  {word} {for_rich(pair.device, 120)} / {for_rich(pair.variant, 120)}: "
                      f"{for_rich(pair.message, 600)}", highlight=False, soft_wrap=True)
    style = "bold green" if result.passed else "bold red"
    console.print(f"[{style}]{for_rich(result.summary(), 1000)}[/]", highlight=False, soft_wrap=True)
