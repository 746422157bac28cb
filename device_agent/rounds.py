"""Measuring a plan's cells in interleaved rounds, and when to stop.

Every round visits every loaded cell once, in a fresh order drawn from ``random.Random(seed + round)``; a visit
is the cell's warm-up plus one block of timed invokes (``measure.time_invokes``, the loop ``run`` uses). Drift
of the device (heat, other load) then hits all cells alike, and the spread of a cell's per-round p50s measures
it: a cell's p50 interval is a bootstrap over those per-round p50s, not over the samples of one block.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import measure
from .protocol import DATA_MISMATCH, UNSUPPORTED_INPUT, AgentError
from .runtime import runtime_message

#: Bootstrap resamples of the per-round p50s, and the seed they are drawn with (fixed: the same rounds give
#: the same interval).
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20240601
#: Raw latency samples sent back per cell with ``samples``, at most (evenly strided over its invokes).
MAX_SAMPLES = 5000


class LoadedCell:
    """A cell the parent has an interpreter for: what a visit needs, and what its visits gave."""

    def __init__(self, cell: Dict[str, Any], interpreter: Any, in_details: List[Dict[str, Any]],
                 out_details: List[Dict[str, Any]], feeds: List[Any],
                 prepared: Optional[List[np.ndarray]]) -> None:
        self.cell = cell
        self.interpreter = interpreter
        self.in_details = in_details
        self.out_details = out_details
        self.feeds = feeds  # per invoke, cycled: every input's (tensor index, value)
        self.prepared = prepared  # the eval inputs in the model's types (one array per input); None: generated
        self.visits: List[Dict[str, Any]] = []
        self.samples_ns: List[int] = []
        self.total_s = 0.0
        self.capped = False
        self.failure: Optional[AgentError] = None

    @property
    def id(self) -> str:
        return self.cell["id"]

    def visit(self, round_index: int, position: int) -> None:
        cell = self.cell
        try:
            timing = measure.time_invokes(self.interpreter, self.feeds, cell["warmup"], cell["runs"],
                                          cell["min_seconds"])
        except Exception as exc:  # this cell's inputs or kernels: the others go on
            kind = UNSUPPORTED_INPUT if self.prepared is None else DATA_MISMATCH
            self.failure = AgentError(kind, "invoke failed in round %d: %s" % (round_index, runtime_message(exc)),
                                      hint="the generated inputs may not suit this model (integer inputs are ids "
                                           "in [0, 64)); give the plan an eval file with real inputs"
                                      if self.prepared is None else None)
            return
        samples: List[int] = timing.pop("_samples_ns")
        self.samples_ns.extend(samples)
        self.total_s += timing["total_s"]
        self.capped = self.capped or timing["capped"]
        self.visits.append({"round": round_index, "position": position, "p50_us": timing["p50_us"],
                            "mean_us": timing["mean_us"], "min_us": timing["min_us"],
                            "max_us": timing["max_us"], "invokes": len(samples)})


def p50_interval(round_p50s: List[float]) -> Dict[str, Any]:
    """Median of the per-round p50s and its 95% bootstrap interval (percentiles 2.5 and 97.5 of the medians
    of ``BOOTSTRAP_RESAMPLES`` resamples); ``half_width`` is half the interval relative to the median."""
    values = np.asarray(round_p50s, dtype=np.float64)
    center = float(np.median(values))
    if values.size < 2:
        return {"p50_us": center, "low_us": None, "high_us": None, "half_width": None}
    rng = np.random.RandomState(BOOTSTRAP_SEED)
    picks = rng.randint(0, values.size, size=(BOOTSTRAP_RESAMPLES, values.size))
    medians = np.median(values[picks], axis=1)
    low, high = (float(v) for v in np.percentile(medians, [2.5, 97.5]))
    half = (high - low) / 2.0 / center if center > 0 else None
    return {"p50_us": center, "low_us": low, "high_us": high, "half_width": half}


def settled(cell: LoadedCell, target: float) -> Tuple[bool, Dict[str, Any]]:
    interval = p50_interval([v["p50_us"] for v in cell.visits])
    half = interval["half_width"]
    return (half is not None and half <= target), interval


def run_rounds(cells: List[LoadedCell], seed: int, rounds: Dict[str, Any],
               clock: Callable[[], float] = time.monotonic) -> Dict[str, Any]:
    """Visit the cells round after round until the stopping rule says so.

    Stops when, after at least ``rounds["min"]`` rounds, every cell's p50 half-width is within
    ``rounds["target_ci"]`` (``target``); when ``rounds["budget_s"]`` has passed, checked before every visit
    after the first round (``budget``; the round it interrupts stays partial); or after ``rounds["max"]``
    rounds (``max_rounds``). A cell whose invoke fails (``LoadedCell.failure``) leaves the rounds, and its
    visits are dropped. Returns the visit order and why it stopped.
    """
    start = clock()
    visits: List[List[Any]] = []
    stopped_by: Optional[str] = None
    done = 0
    live = list(cells)
    for round_index in range(rounds["max"]):
        order = list(live)
        random.Random(seed + round_index).shuffle(order)
        for position, cell in enumerate(order):
            if round_index > 0 and clock() - start >= rounds["budget_s"]:
                stopped_by = "budget"
                break
            cell.visit(round_index, position)
            if cell.failure is None:
                visits.append([round_index, cell.id])
            else:
                live.remove(cell)
        if stopped_by or not live:
            break
        done = round_index + 1
        if done >= rounds["min"] and all(settled(c, rounds["target_ci"])[0] for c in live):
            stopped_by = "target"
            break
    return {"visits": _without_failed(visits, cells), "stopped_by": stopped_by or "max_rounds",
            "rounds_done": done, "rounds_s": clock() - start}


def _without_failed(visits: List[List[Any]], cells: List[LoadedCell]) -> List[List[Any]]:
    """The visits of the cells that did not fail, each cell's positions renumbered to match: a failed cell's
    figures are dropped, so the rounds read as if it had never been in them."""
    failed = {c.id for c in cells if c.failure is not None}
    if not failed:
        return visits
    kept = [v for v in visits if v[1] not in failed]
    places: Dict[Tuple[int, str], int] = {}
    count: Dict[int, int] = {}
    for round_index, cell_id in kept:
        places[(round_index, cell_id)] = count.get(round_index, 0)
        count[round_index] = places[(round_index, cell_id)] + 1
    for cell in cells:
        if cell.failure is None:
            for entry in cell.visits:
                entry["position"] = places[(entry["round"], cell.id)]
    return kept


def pooled_timing(cell: LoadedCell, samples: bool, target: float) -> Dict[str, Any]:
    """The cell's figures over all its timed invokes, and its between-round interval."""
    pooled = measure.latency_stats(cell.samples_ns) if cell.samples_ns else {}
    if samples and cell.samples_ns:
        stride = max(1, -(-len(cell.samples_ns) // MAX_SAMPLES))
        pooled["samples_us"] = [s / 1000.0 for s in cell.samples_ns[::stride]]
        pooled["samples_stride"] = stride
    ok, interval = settled(cell, target)
    spec = cell.cell
    return {
        "timing": {"warmup": spec["warmup"], "runs_requested": spec["runs"],
                   "min_seconds": spec["min_seconds"], "visits": len(cell.visits),
                   "invokes": len(cell.samples_ns), "capped": cell.capped, "total_s": cell.total_s,
                   "pooled": pooled},
        "rounds": cell.visits,
        "settled": ok,
        "ci_half_width": interval["half_width"],
        "p50_interval": interval,
    }
