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
from typing import Any, Dict, List, Optional

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


def time_invokes(interpreter: Any, input_index: int, inputs: List[np.ndarray],
                 warmup: int, runs: int, min_seconds: float) -> Dict[str, Any]:
    """Warm up, then time ``runs`` invokes (more if min_seconds asks for it).

    Samples cycle through the eval inputs (set outside the timed region) so
    data-dependent kernels see realistic data.  The garbage collector is
    paused so a collection never lands inside a sample.
    """
    set_tensor = interpreter.set_tensor
    invoke = interpreter.invoke
    clock = time.perf_counter_ns
    n = len(inputs)
    for i in range(warmup):
        set_tensor(input_index, inputs[i % n])
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
            set_tensor(input_index, inputs[i % n])
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
    """Predict every eval sample; argmax of the (dequantized) output.

    batch > 1 resizes the input tensor; if the runtime or model refuses, the
    agent falls back to batch 1 and says so (``batch_used``).
    """
    used = 1
    note: Optional[str] = None
    preds: List[int] = []
    if batch > 1:
        try:
            preds = _evaluate_batched(interpreter, in_detail, out_detail, prepared, batch)
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
        in_index = in_detail["index"]
        out_index = out_detail["index"]
        for i in range(prepared.shape[0]):
            interpreter.set_tensor(in_index, prepared[i:i + 1])
            interpreter.invoke()
            out = dequantize(interpreter.get_tensor(out_index), out_detail)
            preds.append(int(np.argmax(out.reshape(-1))))
    correct = int(np.sum(np.asarray(preds) == labels))
    result: Dict[str, Any] = {
        "num_samples": len(preds),
        "correct": correct,
        "accuracy": correct / len(preds),
        "batch_requested": batch,
        "batch_used": used,
        "predictions_digest": predictions_digest(preds),
        "predictions": preds,
    }
    if note:
        result["note"] = note
    return result


def _evaluate_batched(interpreter: Any, in_detail: Dict[str, Any],
                      out_detail: Dict[str, Any], prepared: np.ndarray,
                      batch: int) -> List[int]:
    in_index = in_detail["index"]
    shape = [batch] + [int(d) for d in in_detail["shape"][1:]]
    interpreter.resize_tensor_input(in_index, shape)
    interpreter.allocate_tensors()
    out_index = out_detail["index"]
    preds: List[int] = []
    n = prepared.shape[0]
    for start in range(0, n, batch):
        chunk = prepared[start:start + batch]
        real = chunk.shape[0]
        if real < batch:  # pad the last chunk instead of re-allocating
            pad = np.zeros([batch - real] + shape[1:], dtype=prepared.dtype)
            chunk = np.concatenate([chunk, pad])
        interpreter.set_tensor(in_index, np.ascontiguousarray(chunk))
        interpreter.invoke()
        out = dequantize(interpreter.get_tensor(out_index), out_detail)
        out = out.reshape(batch, -1)[:real]
        preds.extend(int(p) for p in np.argmax(out, axis=1))
    return preds
