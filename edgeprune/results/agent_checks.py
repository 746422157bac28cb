"""Sense checks on a schema-valid agent ``run`` document: the schema checks types, this checks that it can be true.

A document that fails is stored ``invalid`` (``inconsistent`` or ``sha256-mismatch``) with the reason: p50 above
p99, a mean outside min..max, samples that do not give the stated percentiles, an accuracy that is not
correct/num_samples, fewer predictions than eval samples, a ``correct`` that the predictions and the run's own eval
labels contradict, another model than the one sent.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np


@dataclass
class Expected:
    """What the host knows about the measurement it asked for, to check the document against."""

    model_sha256: Optional[str] = None
    model_size: Optional[int] = None
    labels: Optional[np.ndarray] = None  # the eval set's labels, in order
    num_classes: Optional[int] = None


def sha256_mismatch(document: Dict[str, Any], expected: Optional[Expected]) -> Optional[str]:
    if expected is None or expected.model_sha256 is None:
        return None
    measured = (document.get("model") or {}).get("sha256")
    if measured == expected.model_sha256:
        return None
    return (f"the device measured a model with sha256 {str(measured)[:16]}, expected {expected.model_sha256[:16]} "
            f"(damaged copy on the device?)")


def _close(a: float, b: float, rel: float = 1e-6, abs_: float = 1e-3) -> bool:
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


def _timing_problem(timing: Dict[str, Any], options: Dict[str, Any]) -> Optional[str]:
    names = ("min_us", "p50_us", "p90_us", "p99_us", "max_us")
    values = [timing.get(n) for n in names]
    if any(v is None for v in values) or timing.get("mean_us") is None:
        return "latency figures missing"
    if min(values) <= 0 or timing["mean_us"] <= 0:
        return "a latency of 0 µs or less"
    for (a, va), (b, vb) in zip(zip(names, values), zip(names[1:], values[1:])):
        if va > vb * (1 + 1e-9) + 1e-6:
            return f"{a} {va:g} > {b} {vb:g}"
    if not values[0] * (1 - 1e-9) - 1e-6 <= timing["mean_us"] <= values[-1] * (1 + 1e-9) + 1e-6:
        return f"mean_us {timing['mean_us']:g} outside min..max"
    runs = timing.get("runs")
    requested = options.get("runs")
    if isinstance(requested, int) and isinstance(runs, int) and runs < requested:
        return f"{runs} timed invokes, {requested} were asked for"
    if timing.get("std_us") is not None and timing["std_us"] > (values[-1] - values[0]) + 1e-6:
        return f"std_us {timing['std_us']:g} larger than max - min"
    samples = timing.get("samples_us")
    if isinstance(samples, list) and samples:
        stride = timing.get("samples_stride") or 1
        if isinstance(runs, int) and len(samples) != -(-runs // stride):
            return f"{len(samples)} latency samples for {runs} invokes at stride {stride}"
        if min(samples) <= 0 or min(samples) < values[0] * (1 - 1e-6) - 1e-3 or max(samples) > values[-1] * (1 + 1e-6) + 1e-3:
            return "latency samples outside the reported min..max"
        if stride == 1 and not _close(float(np.median(samples)), values[1], rel=1e-6):
            return f"p50_us {values[1]:g} is not the median of the samples ({float(np.median(samples)):g})"
    return None


def _accuracy_problem(accuracy: Dict[str, Any], expected: Optional[Expected]) -> Optional[str]:
    n, correct, predictions = accuracy.get("num_samples"), accuracy.get("correct"), accuracy.get("predictions")
    if not isinstance(n, int) or n < 1 or not isinstance(correct, int) or correct > n:
        return f"{correct} correct of {n} samples"
    if not _close(float(accuracy.get("accuracy", -1)), correct / n, abs_=1e-9):
        return f"accuracy {accuracy.get('accuracy')} is not correct/num_samples = {correct}/{n}"
    if not isinstance(predictions, list) or len(predictions) != n:
        return f"{len(predictions) if isinstance(predictions, list) else 'no'} predictions for {n} samples"
    preds = np.asarray(predictions, dtype=np.int64)
    digest = hashlib.sha256(preds.astype("<i4").tobytes()).hexdigest()[:16]
    if accuracy.get("predictions_digest") != digest:
        return "predictions_digest does not match the predictions"
    if expected is None:
        return None
    if expected.num_classes and (preds.min() < 0 or preds.max() >= expected.num_classes):
        return f"a predicted class outside 0..{expected.num_classes - 1}"
    labels = expected.labels
    if labels is not None:
        if n != len(labels):
            return f"{n} accuracy samples, the eval set has {len(labels)}"
        actual = int(np.sum(preds == labels))
        if actual != correct:
            return f"{correct} correct claimed, the predictions match {actual} of the eval labels"
    return None


def inconsistency(document: Dict[str, Any], expected: Optional[Expected] = None,
                  latency_only: bool = False) -> Optional[str]:
    """Why a schema-valid ``run`` document cannot be true, or None. The schema checks types; this checks sense.
    ``latency_only``: no eval set was sent (the agent generated inputs), so there must be no accuracy."""
    timing = document.get("timing") or {}
    problem = _timing_problem(timing, document.get("options") or {})
    if problem:
        return problem
    init_ms = timing.get("init_ms")
    if init_ms is None or not math.isfinite(init_ms) or init_ms < 0:
        return "interpreter init time missing"
    model = document.get("model") or {}
    if expected is not None and expected.model_size is not None and model.get("size_bytes") != expected.model_size:
        return f"model size {model.get('size_bytes')} bytes, the file has {expected.model_size}"
    memory = document.get("memory") or {}
    peak, before = memory.get("rss_peak_kib"), memory.get("rss_before_load_kib")
    if isinstance(peak, int) and isinstance(before, int) and peak < before:
        return f"peak RSS {peak} KiB below the RSS before loading ({before} KiB)"
    if latency_only:
        return "an accuracy without an eval set" if document.get("accuracy") is not None else None
    return _accuracy_problem(document.get("accuracy") or {}, expected)
