"""Loading a model, timing it, and measuring its accuracy.

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
import os
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .protocol import DATA_MISMATCH, DELEGATE, MODEL_LOAD, AgentError
from .runtime import Runtime

# --min-seconds keeps invoking past --runs, but never beyond this many
# invokes in total: a typo like --min-seconds 36000 on a 50 µs model must not
# fill the device's memory with samples.
MAX_RUNS_FOR_MIN_SECONDS = 1000000


def model_load_hint(rt: Runtime, message: str) -> str:
    """A next step for a person, chosen from the runtime's own message."""
    lowered = message.lower()
    if "didn't find op" in lowered or "version" in lowered or "custom op" in lowered \
            or "unsupported" in lowered:
        return ("the model uses an op (or op version) that %s %s does not have: install "
                "a newer runtime (`pip install -U ai-edge-litert`) or convert the model "
                "for this runtime" % (rt.name, rt.version))
    if "identifier" in lowered or "flatbuffer" in lowered or "mmap" in lowered:
        return ("this is not a valid .tflite file (wrong file, or truncated in "
                "transfer): compare its sha256 with the host's copy")
    return "the runtime could not load this model; see its message for why"


def file_digest(path: str) -> Tuple[str, int]:
    """sha256 and size of a file, read in chunks (models can be large)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


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


def check_model_file(path: str) -> Tuple[str, int]:
    if not os.path.exists(path):
        raise AgentError(MODEL_LOAD, "model file not found: %s" % path,
                         hint="check the path passed to `run`")
    if not os.path.isfile(path):
        raise AgentError(MODEL_LOAD, "model path is not a regular file: %s" % path)
    try:
        sha, size = file_digest(path)
    except OSError as exc:
        raise AgentError(MODEL_LOAD, "cannot read model file: %s" % exc)
    if size == 0:
        raise AgentError(MODEL_LOAD, "model file is empty: %s" % path,
                         hint="the transfer to the device probably failed; copy it again")
    return sha, size


def _runtime_message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text else type(exc).__name__


def preflight_load(rt: Runtime, model_path: str) -> None:
    """Parse the model in a forked child first.

    tflite_runtime 2.14 has no flatbuffer verifier: a truncated .tflite
    (an interrupted scp, a full SD card) makes it segfault, which would kill
    the agent before it could print any JSON.  The child takes that crash
    instead, and its exception text (e.g. an unsupported op version) becomes
    the error message.  Where fork does not exist the check is skipped.
    """
    if not hasattr(os, "fork"):
        return
    kwargs = rt.interpreter_kwargs(threads=1, no_default_delegates=True)
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: never return into the agent
        status = 0
        try:
            os.close(read_fd)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            message = b""
            try:
                interpreter = rt.Interpreter(model_path=model_path, **kwargs)
                interpreter.allocate_tensors()
            except BaseException as exc:  # noqa: B902 - report anything
                message = ("ERR" + _runtime_message(exc)).encode("utf-8", "replace")
            view = memoryview(message)
            while view:
                view = view[os.write(write_fd, view):]
        except BaseException:
            status = 70
        finally:
            os._exit(status)
    os.close(write_fd)
    chunks: List[bytes] = []
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    _, wait_status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode("utf-8", "replace")
    if os.WIFSIGNALED(wait_status):
        signum = os.WTERMSIG(wait_status)
        try:
            import signal
            signame = signal.Signals(signum).name
        except (ValueError, AttributeError):
            signame = "signal %d" % signum
        raise AgentError(
            MODEL_LOAD,
            "%s %s crashed (%s) while parsing the model; the file is probably "
            "truncated or corrupt" % (rt.name, rt.version, signame),
            hint="compare the file's sha256 with the host's copy and transfer it again")
    if text.startswith("ERR"):
        message = text[3:].strip()
        raise AgentError(MODEL_LOAD, message, hint=model_load_hint(rt, message))


def load_delegates(rt: Runtime, path: Optional[str],
                   options: Dict[str, str]) -> List[Any]:
    if not path:
        return []
    if rt.load_delegate is None:
        raise AgentError(DELEGATE, "runtime %s has no load_delegate" % rt.name)
    if os.sep in path and not os.path.exists(path):
        raise AgentError(DELEGATE, "delegate library not found: %s" % path,
                         hint="install the delegate (e.g. libedgetpu1-std for a Coral "
                              "USB accelerator) or fix the path")
    message = ""
    # A Delegate whose library failed to load raises AttributeError from its
    # __del__ (tflite_runtime and ai_edge_litert alike), which Python prints
    # as a scary "Exception ignored" traceback; that one is muted.
    previous_hook = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        exc = getattr(unraisable, "exc_value", None)
        if isinstance(exc, AttributeError) and "_library" in str(exc):
            return
        previous_hook(unraisable)

    sys.unraisablehook = hook
    try:
        try:
            return [rt.load_delegate(path, options or None)]
        except Exception as exc:
            message = _runtime_message(exc)
    finally:
        sys.unraisablehook = previous_hook
    raise AgentError(DELEGATE, "cannot load delegate %s: %s" % (path, message),
                     hint="check that the library exists for this architecture "
                          "and that its device is attached")


def load_interpreter(rt: Runtime, model_path: str, threads: Optional[int],
                     no_xnnpack: bool, delegates: List[Any]) -> Tuple[Any, float]:
    """Create the interpreter and allocate tensors; returns (it, init_ms)."""
    kwargs = rt.interpreter_kwargs(threads, no_xnnpack, delegates)
    start = time.perf_counter_ns()
    try:
        interpreter = rt.Interpreter(model_path=model_path, **kwargs)
        interpreter.allocate_tensors()
    except Exception as exc:
        message = _runtime_message(exc)
        if delegates and "delegate" in message.lower():
            raise AgentError(DELEGATE, message,
                             hint="the delegate could not take this model; run without "
                                  "--delegate or compile the model for it")
        raise AgentError(MODEL_LOAD, message, hint=model_load_hint(rt, message))
    init_ms = (time.perf_counter_ns() - start) / 1e6
    return interpreter, init_ms


def xnnpack_applied(interpreter: Any, external_delegate: bool) -> Optional[bool]:
    """Whether the XNNPACK default delegate took over part of the graph.

    There is no public API for this; a delegated subgraph shows up as a node
    named DELEGATE in the execution plan.  With an external delegate loaded
    the DELEGATE nodes could be either, so the answer is then only "no" when
    there are none; null means "cannot tell".
    """
    getter = getattr(interpreter, "_get_ops_details", None)
    if getter is None:
        return None
    try:
        names = [op.get("op_name") for op in getter()]
    except Exception:
        return None
    has_delegate = "DELEGATE" in names
    if external_delegate:
        return False if not has_delegate else None
    return has_delegate


def tensor_info(detail: Dict[str, Any]) -> Dict[str, Any]:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    signature = detail.get("shape_signature")
    return {
        "name": detail.get("name"),
        "dtype": np.dtype(detail["dtype"]).name,
        "shape": [int(d) for d in detail["shape"]],
        "shape_signature": [int(d) for d in signature] if signature is not None else None,
        "quantization": {"scale": float(scale), "zero_point": int(zero_point)},
    }


def load_eval(path: str, max_eval: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    """Read eval.npz (x float [N, ...], y int [N]) without unpickling anything."""
    if not os.path.isfile(path):
        raise AgentError(DATA_MISMATCH, "eval file not found: %s" % path)
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = sorted(data.files)
            if "x" not in keys or "y" not in keys:
                raise AgentError(
                    DATA_MISMATCH,
                    "eval file must contain arrays 'x' and 'y'; it has %s" % (keys,),
                    hint="write it with np.savez(path, x=inputs, y=labels)")
            x = data["x"]
            y = data["y"]
    except AgentError:
        raise
    except Exception as exc:
        raise AgentError(DATA_MISMATCH, "cannot read eval file %s: %s: %s"
                         % (path, type(exc).__name__, exc),
                         hint="the eval set must be an .npz written by np.savez")
    if x.ndim < 1 or x.shape[0] == 0:
        raise AgentError(DATA_MISMATCH, "eval 'x' is empty (shape %s)" % (list(x.shape),))
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise AgentError(DATA_MISMATCH, "eval 'y' must have shape [%d], got %s"
                         % (x.shape[0], list(y.shape)))
    if not np.issubdtype(y.dtype, np.integer):
        raise AgentError(DATA_MISMATCH, "eval 'y' must hold integer labels, got %s" % y.dtype)
    if max_eval is not None:
        x, y = x[:max_eval], y[:max_eval]
    return x, y


def prepare_inputs(x: np.ndarray, detail: Dict[str, Any]) -> np.ndarray:
    """Convert eval inputs to what the model's input tensor takes.

    Integer inputs are quantized with the tensor's own scale/zero-point:
    q = clip(round(x / scale + zero_point)) in float32, round half to even
    (np.round), the formula the host uses for its reference predictions.
    """
    shape = [int(d) for d in detail["shape"]]
    dtype = np.dtype(detail["dtype"])
    if x.ndim != len(shape) or list(x.shape[1:]) != shape[1:]:
        raise AgentError(
            DATA_MISMATCH,
            "eval 'x' has shape %s but the model input is %s (batch first)"
            % (list(x.shape), shape),
            hint="export eval.npz from the same model the variants came from")
    if np.issubdtype(dtype, np.floating):
        if not np.issubdtype(x.dtype, np.floating):
            raise AgentError(DATA_MISMATCH, "model input is %s but eval 'x' is %s"
                             % (dtype.name, x.dtype.name))
        return np.ascontiguousarray(x, dtype=dtype)
    if np.issubdtype(dtype, np.integer):
        if x.dtype == dtype:
            return np.ascontiguousarray(x)
        scale, zero_point = detail.get("quantization", (0.0, 0))
        if not np.issubdtype(x.dtype, np.floating) or not scale:
            raise AgentError(DATA_MISMATCH,
                             "model input is %s (scale %r) and eval 'x' is %s: cannot quantize"
                             % (dtype.name, scale, x.dtype.name))
        info = np.iinfo(dtype)
        xf = np.asarray(x, dtype=np.float32)
        q = np.round(xf / np.float32(scale) + np.float32(zero_point))
        return np.ascontiguousarray(np.clip(q, info.min, info.max).astype(dtype))
    raise AgentError(DATA_MISMATCH, "unsupported model input dtype %s" % dtype.name)


def dequantize(values: np.ndarray, detail: Dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if np.issubdtype(values.dtype, np.integer) and scale:
        return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return values


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
                batch, type(exc).__name__, _runtime_message(exc))
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
