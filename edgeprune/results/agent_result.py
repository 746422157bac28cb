"""The agent's result document on the host: unframed, parsed, validated and checked before anything is trusted.

A device is untrusted: its output may be preceded by a login banner, cut short by a dead link, forged by a broken
or hostile agent, or simply impossible (p50 above p99, three predictions for 450 samples). ``judge`` turns one
agent invocation into an :class:`AgentOutcome` whose status says how far it can be trusted:

- ``ok``: a valid document that is consistent in itself and with the run (model sha256, sample count, labels);
- ``error``: the agent measured a problem and said so (a runtime lacking an op): final, the reason is the agent's;
- ``failed``: the device or the transport failed (timeout, connection lost, no Python): ``--resume`` retries it;
- ``invalid``: the output cannot be trusted (not framed, not JSON, fails the schema, inconsistent): retried too.
"""
from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import PythonMissingError
from ..resources import schema_path
from ..devices.ssh import MAX_OUTPUT_BYTES, CommandResult, missing_python_message

AGENT_SCHEMA = schema_path("agent-result")

# Host-side error kinds, beside the agent's own (runtime-missing, model-load, data-mismatch, delegate, ...).
TIMEOUT = "timeout"
INTERRUPTED = "interrupted"
CONNECTION_LOST = "connection-lost"
PYTHON_MISSING = PythonMissingError.kind
INVALID_OUTPUT = "invalid-output"
INCONSISTENT = "inconsistent"
SHA256_MISMATCH = "sha256-mismatch"

#: Integers beyond this cannot be a count or a size the agent measured (and overflow SQLite's 64-bit integers).
MAX_INT = 2 ** 53
#: Nesting beyond this is not an agent document (json would raise RecursionError far deeper).
MAX_DEPTH = 32
#: How much untrusted text is kept with an invalid outcome.
EXCERPT = 2000


@dataclass
class AgentOutcome:
    """What one agent invocation produced, already judged: ok, error (agent-reported), failed, or invalid."""

    status: str
    document: Optional[Dict[str, Any]] = None
    error_kind: Optional[str] = None
    message: Optional[str] = None
    raw: Optional[str] = None
    notes: List[str] = field(default_factory=list)


@dataclass
class Expected:
    """What the host knows about the measurement it asked for, to check the document against."""

    model_sha256: Optional[str] = None
    model_size: Optional[int] = None
    labels: Optional[np.ndarray] = None  # the eval set's labels, in order
    num_classes: Optional[int] = None


_validator: Any = None
_validator_lock = threading.Lock()


def _agent_validator() -> Any:
    global _validator
    with _validator_lock:
        if _validator is None:
            import jsonschema

            _validator = jsonschema.Draft202012Validator(json.loads(AGENT_SCHEMA.read_text()))
        return _validator


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-finite number {name} in agent output")


def _first_line(text: str) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line[:120]


def unframe(text: str, token: Optional[str]) -> "tuple[Optional[str], str]":
    """``(document, text before it)``; document is None when the frame is missing or incomplete."""
    if token is None:
        return text, ""
    from device_agent.protocol import FRAME_BEGIN, FRAME_END

    begin, end = FRAME_BEGIN % token, FRAME_END % token
    start = text.rfind("\n" + begin + "\n")
    if start < 0:
        return None, text
    body = text[start + len(begin) + 2:]
    stop = body.find("\n" + end)
    if stop < 0 and body.endswith(end):
        stop = len(body) - len(end) - 1
    if stop < 0:
        return None, text[:start]
    return body[:stop + 1], text[:start]


def _too_deep_or_large(value: Any, depth: int = 0) -> Optional[str]:
    if depth > MAX_DEPTH:
        return f"nested more than {MAX_DEPTH} levels"
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) > MAX_INT:
        return f"integer {str(value)[:30]} out of range"
    if isinstance(value, dict):
        return next((r for r in (_too_deep_or_large(v, depth + 1) for v in value.values()) if r), None)
    if isinstance(value, list):
        return next((r for r in (_too_deep_or_large(v, depth + 1) for v in value) if r), None)
    return None


def _failed_transport(result: CommandResult, text: str, python: str) -> Optional[AgentOutcome]:
    """Outcomes decided by how the command ended rather than by what it printed."""
    if result.interrupted:
        return AgentOutcome("failed", error_kind=INTERRUPTED, message="interrupted (Ctrl-C); the agent was stopped",
                            raw=text[-EXCERPT:])
    if result.timed_out:
        return AgentOutcome("failed", error_kind=TIMEOUT,
                            message=f"the agent did not finish within {result.limit:g} s (command_timeout); "
                                    f"it was stopped on the device", raw=text[-EXCERPT:])
    if result.connection_lost:
        return AgentOutcome("failed", error_kind=CONNECTION_LOST,
                            message="connection lost while the agent ran (device rebooted, powered off or "
                                    "unreachable)", raw=text[-EXCERPT:])
    if result.exit_status in (126, 127) and not text.strip():
        return AgentOutcome("failed", error_kind=PYTHON_MISSING, message=missing_python_message(python, result))
    return None


def judge(result: CommandResult, token: Optional[str] = None, expected: Optional[Expected] = None,
          python: str = "python3") -> AgentOutcome:
    """Turn the agent's raw output into an outcome; nothing in an invalid document is trusted.

    ``token`` is the --frame token the agent was given (None: stdout is the bare document, as when the agent is
    run by hand); ``expected`` enables the checks against the run.
    """
    text = result.stdout.decode("utf-8", "replace")
    stderr = result.stderr.decode("utf-8", "replace")
    transport = _failed_transport(result, text, python)
    if transport is not None:
        return transport
    if result.truncated:
        return AgentOutcome("invalid", error_kind=INVALID_OUTPUT,
                            message=f"agent output exceeded {MAX_OUTPUT_BYTES} bytes", raw=text[:EXCERPT])
    body, before = unframe(text, token)
    banner = _first_line(before)
    if body is None:
        hint = f"; stderr: {stderr.strip().splitlines()[-1][:300]}" if stderr.strip() else ""
        seen = f"; it printed {banner!r}" if banner else "; it printed nothing"
        return AgentOutcome("invalid", error_kind=INVALID_OUTPUT,
                            message=f"agent output is not JSON from the agent: no result document (exit status "
                                    f"{result.exit_status}{seen}){hint}", raw=text[:EXCERPT])
    notes = [f"the device's login printed text before the agent's result (ignored): {banner!r}"] if banner else []
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        cause = f"; the login also printed {banner!r}" if banner else ""
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        return AgentOutcome("invalid", error_kind=INVALID_OUTPUT,
                            message=f"agent output is not JSON ({reason}; exit status {result.exit_status}){cause}",
                            raw=body[:EXCERPT])
    problem = _too_deep_or_large(document) if isinstance(document, (dict, list)) else None
    if problem:
        return AgentOutcome("invalid", error_kind=INVALID_OUTPUT, message=f"agent output has a value {problem}",
                            raw=body[:EXCERPT])
    try:
        error = next(iter(_agent_validator().iter_errors(document)), None) if isinstance(document, dict) else True
    except RecursionError:
        error = True
    if error is not None:
        where = "/".join(str(p) for p in getattr(error, "absolute_path", [])) or "(top)"
        reason = getattr(error, "message", "not a JSON object")
        return AgentOutcome("invalid", error_kind=INVALID_OUTPUT,
                            message=f"agent output fails its schema at {where}: {reason[:300]}", raw=body[:EXCERPT])
    if document.get("command") == "run" and (document.get("model") or {}).get("sha256") is not None:
        mismatch = _sha256_mismatch(document, expected)  # an error about another file is no verdict on this one
        if mismatch:
            return AgentOutcome("invalid", document, SHA256_MISMATCH, mismatch, notes=notes)
    if document.get("status") != "ok":
        err = document.get("error") or {}
        return AgentOutcome("error", document, err.get("kind"), err.get("message"), notes=notes)
    if result.exit_status != 0:
        return AgentOutcome("invalid", document, INVALID_OUTPUT,
                            f"agent said ok but exited with status {result.exit_status}", notes=notes)
    if document.get("command") == "run":
        mismatch = _sha256_mismatch(document, expected)
        if mismatch:
            return AgentOutcome("invalid", document, SHA256_MISMATCH, mismatch, notes=notes)
        problem = inconsistency(document, expected)
        if problem:
            return AgentOutcome("invalid", document, INCONSISTENT, f"impossible result: {problem}", notes=notes)
    return AgentOutcome("ok", document, notes=notes)


def _sha256_mismatch(document: Dict[str, Any], expected: Optional[Expected]) -> Optional[str]:
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


def inconsistency(document: Dict[str, Any], expected: Optional[Expected] = None) -> Optional[str]:
    """Why a schema-valid ``run`` document cannot be true, or None. The schema checks types; this checks sense."""
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
    return _accuracy_problem(document.get("accuracy") or {}, expected)


def new_token() -> str:
    """A fresh --frame token: unguessable, so no banner or stray output can forge the frame."""
    import secrets

    return secrets.token_hex(12)
