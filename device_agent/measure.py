"""Timing a loaded model, measuring its accuracy, and the agent's memory.

Timing brackets ``invoke()`` alone with ``perf_counter_ns``: the input is set
before the clock starts, so the figures are the interpreter's latency and
not the agent's Python overhead (the goal is to be within a few percent of a
bare hand-written loop).  Accuracy runs the eval set one sample at a time by
default, exactly as the host's reference interpreter does, so predictions
can be compared bit for bit.
"""

from __future__ import annotations

import gc
import hashlib
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .evaldata import dequantize
from .protocol import AgentError
from .runtime import runtime_message

# --min-seconds keeps invoking past --runs, but never beyond this many
# invokes in total: a typo like --min-seconds 36000 on a 50 µs model must not
# fill the device's memory with samples.
MAX_RUNS_FOR_MIN_SECONDS = 1000000


def predictions_digest(preds: List[int]) -> str:
    """Must stay byte-identical to the host's digest of its own predictions."""
    return hashlib.sha256(np.asarray(preds, dtype="<i4").tobytes()).hexdigest()[:16]


def rss_peak_kib() -> Optional[int]:
    """Peak resident set size of this process in KiB.

    Linux's VmHWM first: ru_maxrss survives exec, so an agent started by a large parent (the host's Python
    with TensorFlow loaded, when the device is ``local``) would report the parent's peak instead of its own.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":  # bytes there, KiB on Linux
        peak //= 1024
    return int(peak)


def time_invokes(interpreter: Any, feeds: Sequence[Sequence[Tuple[int, np.ndarray]]],
                 warmup: int, runs: int, min_seconds: float) -> Dict[str, Any]:
    """Warm up, then time ``runs`` invokes (more if min_seconds asks for it).

    Each invoke takes the next feed (every input's tensor index and value, set outside the timed region),
    cycling through them, so data-dependent kernels see realistic data. The garbage collector is paused so
    a collection never lands inside a sample.
    """
    set_tensor = interpreter.set_tensor
    invoke = interpreter.invoke
    clock = time.perf_counter_ns
    n = len(feeds)
    for i in range(warmup):
        for index, value in feeds[i % n]:
            set_tensor(index, value)
        invoke()
    min_ns = int(min_seconds * 1e9)
    cap = max(runs, MAX_RUNS_FOR_MIN_SECONDS)
    samples: List[int] = []
    append = samples.append
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        i = 0
        while True:
            for index, value in feeds[i % n]:
                set_tensor(index, value)
            t0 = clock()
            invoke()
            t1 = clock()
            append(t1 - t0)
            i += 1
            if i >= runs and (t1 - start >= min_ns or i >= cap):
                break
        total_ns = clock() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    stats = latency_stats(samples)
    stats.update({"warmup": warmup, "runs": len(samples), "runs_requested": runs,
                  "min_seconds": min_seconds,
                  "capped": bool(len(samples) >= cap and total_ns < min_ns),
                  "total_s": total_ns / 1e9})
    stats["_samples_ns"] = samples
    return stats


def latency_stats(samples_ns: List[int]) -> Dict[str, Any]:
    """min/mean/std (sample, ddof=1)/percentiles (linear interpolation) in µs."""
    us = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    return {
        "min_us": float(us.min()),
        "mean_us": float(us.mean()),
        "std_us": float(us.std(ddof=1)) if us.size > 1 else 0.0,
        "p50_us": float(p50),
        "p90_us": float(p90),
        "p99_us": float(p99),
        "max_us": float(us.max()),
    }


def evaluate(interpreter: Any, in_detail: Dict[str, Any], out_detail: Dict[str, Any],
             prepared: np.ndarray, labels: np.ndarray, batch: int) -> Dict[str, Any]:
    """``run``: predict every eval sample; argmax of the (dequantized) output.

    batch > 1 resizes the input tensor; if the runtime or model refuses, the
    agent falls back to batch 1 and says so (``batch_used``).
    """
    used = 1
    note: Optional[str] = None
    preds: List[int] = []
    if batch > 1:
        try:
            interpreter.resize_tensor_input(in_detail["index"], [batch] + [int(d) for d in in_detail["shape"][1:]])
            interpreter.allocate_tensors()
            preds = predict(interpreter, [in_detail], out_detail, [prepared], batch)
            used = batch
        except AgentError:
            raise
        except Exception as exc:
            note = "batch %d not possible (%s: %s); used batch 1" % (
                batch, type(exc).__name__, runtime_message(exc))
            interpreter.resize_tensor_input(in_detail["index"], list(in_detail["shape"]))
            interpreter.allocate_tensors()
            preds = []
    if not preds:
        preds = predict(interpreter, [in_detail], out_detail, [prepared], 1)
    return accuracy_result(preds, labels, batch, used, note)


def evaluate_inputs(interpreter: Any, in_details: Sequence[Dict[str, Any]], out_detail: Dict[str, Any],
                    prepared: Sequence[np.ndarray], labels: np.ndarray) -> Dict[str, Any]:
    """``plan``: predict every eval sample at the inputs' own batch (their first dimension, 1 unless the cell's
    input_shapes says otherwise) from the first output."""
    batch = int(in_details[0]["shape"][0])
    preds = predict(interpreter, in_details, out_detail, prepared, batch)
    return accuracy_result(preds, labels, batch, batch, None)


def accuracy_result(preds: List[int], labels: np.ndarray, batch_requested: int, batch_used: int,
                    note: Optional[str]) -> Dict[str, Any]:
    correct = int(np.sum(np.asarray(preds) == labels))
    result: Dict[str, Any] = {
        "num_samples": len(preds),
        "correct": correct,
        "accuracy": correct / len(preds),
        "batch_requested": batch_requested,
        "batch_used": batch_used,
        "predictions_digest": predictions_digest(preds),
        "predictions": preds,
    }
    if note:
        result["note"] = note
    return result


def predict(interpreter: Any, in_details: Sequence[Dict[str, Any]], out_detail: Dict[str, Any],
            prepared: Sequence[np.ndarray], batch: int) -> List[int]:
    """The argmax of the (dequantized) output for every sample, ``batch`` samples per invoke (the inputs'
    tensors must already have that batch; the last chunk is padded with zeros)."""
    out_index = out_detail["index"]
    n = prepared[0].shape[0]
    preds: List[int] = []
    for start in range(0, n, batch):
        real = min(batch, n - start)
        for detail, values in zip(in_details, prepared):
            chunk = values[start:start + batch]
            if real < batch:  # pad the last chunk instead of re-allocating
                pad = np.zeros((batch - real,) + chunk.shape[1:], dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            interpreter.set_tensor(detail["index"], np.ascontiguousarray(chunk))
        interpreter.invoke()
        out = dequantize(interpreter.get_tensor(out_index), out_detail)
        out = out.reshape(batch, -1)[:real]
        preds.extend(int(p) for p in np.argmax(out, axis=1))
    return preds
