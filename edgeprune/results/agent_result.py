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

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import PythonMissingError
from ..resources import schema_validator
from .agent_checks import Expected, inconsistency, sha256_mismatch
from ..devices.command import MAX_OUTPUT_BYTES, CommandResult, missing_python_message

# Host-side error kinds, beside the agent's own (runtime-missing, model-load, data-mismatch, delegate, ...).
TIMEOUT = "timeout"
INTERRUPTED = "interrupted"
CONNECTION_LOST = "connection-lost"
PYTHON_MISSING = PythonMissingError.kind
INVALID_OUTPUT = "invalid-output"
INCONSISTENT = "inconsistent"
#: The agent found the device's agent lock taken by another agent (device_agent/lock.py).
BUSY = "busy"
#: Host-side failures around the agent: uploading (deploy), a changed run-folder file, a bug on the host side.
DEPLOY = "deploy"
LOCAL_FILE = "local-file"
INTERNAL = "internal"
SHA256_MISMATCH = "sha256-mismatch"

#: Integers beyond this cannot be a count or a size the agent measured (and overflow SQLite's 64-bit integers).
MAX_INT = 2 ** 53
#: Nesting beyond this is not an agent document (json would raise RecursionError far deeper).
MAX_DEPTH = 32
#: How much untrusted text is kept with an invalid outcome.
EXCERPT = 2000


@dataclass
class AgentOutcome:
    """One agent invocation, judged (ok, error, failed, invalid) and typed: the one place the agent's document is
    read. The fleet stores :meth:`columns`, ``devices check`` shows :meth:`probe_facts`, the report reads the
    stored document back through :func:`stored_samples`. Figures are read only from a document judged ``ok``."""

    status: str
    document: Optional[Dict[str, Any]] = None
    error_kind: Optional[str] = None
    message: Optional[str] = None
    raw: Optional[str] = None
    notes: List[str] = field(default_factory=list)

    def _section(self, name: str) -> Dict[str, Any]:
        value = (self.document or {}).get(name)
        return value if isinstance(value, dict) else {}

    @property
    def trusted(self) -> bool:
        return self.status == "ok"

    @property
    def model_sha256(self) -> Optional[str]:
        return self._section("model").get("sha256")

    @property
    def runtime(self) -> Optional[str]:
        return self._section("runtime").get("module")

    @property
    def runtime_version(self) -> Optional[str]:
        return self._section("runtime").get("version")

    @property
    def timing(self) -> Dict[str, Any]:
        """The latency figures (µs), empty unless the document was judged ok."""
        return self._section("timing") if self.trusted else {}

    @property
    def samples_us(self) -> Optional[List[float]]:
        samples = self.timing.get("samples_us")
        return samples if isinstance(samples, list) else None

    @property
    def predictions(self) -> Optional[List[int]]:
        predictions = self._section("accuracy").get("predictions") if self.trusted else None
        return predictions if isinstance(predictions, list) else None

    def throttled(self) -> Optional[int]:
        """1 when the Pi reported throttling before or after the run, 0 when it said no, None when unknown."""
        flag = None
        for facts in (self._section("device"), self._section("device_after")):
            value = (facts.get("throttled") or {}).get("value") if isinstance(facts.get("throttled"), dict) else None
            if value is not None:
                flag = int(bool(value) or bool(flag))
        return flag

    def columns(self, host_predictions: Optional[np.ndarray] = None) -> Dict[str, Any]:
        """The store's columns for this result (the agent's whole JSON beside them: verbatim only when valid)."""
        runtime, timing, device = self._section("runtime"), self.timing, self._section("device")
        accuracy = self._section("accuracy") if self.trusted else {}
        predictions = self.predictions
        agreement = None
        if host_predictions is not None and predictions is not None and len(predictions) == len(host_predictions):
            agreement = float(np.mean(np.asarray(predictions) == host_predictions))
        return {
            "status": self.status, "error_kind": self.error_kind, "error_message": self.message,
            "runtime": runtime.get("module"), "runtime_version": runtime.get("version"),
            "threads": runtime.get("threads"), "python_version": (device.get("python") or {}).get("version"),
            "machine": device.get("machine"),
            **{key: timing.get(key) for key in ("init_ms", "p50_us", "p90_us", "p99_us", "mean_us", "runs")},
            "accuracy": accuracy.get("accuracy"), "predictions_digest": accuracy.get("predictions_digest"),
            "agreement": agreement,
            "rss_peak_kib": self._section("memory").get("rss_peak_kib") if self.trusted else None,
            "throttled": self.throttled(),
            "agent_json": json.dumps(self.document) if self.document is not None else self.raw,
        }

    def probe_facts(self) -> "ProbeFacts":
        return ProbeFacts.from_document(self.document or {})


@dataclass
class ProbeFacts:
    """What a ``probe`` says about a device, for ``devices check``."""

    python: str = ""
    numpy: str = ""
    runtimes: List[str] = field(default_factory=list)  # "module version" of each usable runtime
    machine: str = ""
    pi_model: str = ""

    @classmethod
    def from_document(cls, document: Dict[str, Any]) -> "ProbeFacts":
        device = document.get("device") if isinstance(document.get("device"), dict) else {}
        runtimes = document.get("runtimes") if isinstance(document.get("runtimes"), list) else []
        usable = [f"{r.get('module')} {r.get('version')}" for r in runtimes if isinstance(r, dict) and r.get("available")]
        return cls(str((device.get("python") or {}).get("version") or ""), str(device.get("numpy") or ""), usable,
                   str(device.get("machine") or ""), str(device.get("pi_model") or ""))


def stored_samples(agent_json: Optional[str]) -> Optional[List[float]]:
    """The latency samples (µs) of a stored agent document, or None; the report's one way to read them.

    Only documents judged ok are stored verbatim with their figures, so what is read here was checked once."""
    try:
        doc = json.loads(agent_json or "")
    except (ValueError, RecursionError):
        return None
    samples = ((doc if isinstance(doc, dict) else {}).get("timing") or {}).get("samples_us")
    return samples if isinstance(samples, list) else None


def reject_constant(name: str) -> None:
    raise ValueError(f"non-finite number {name} in agent output")


def first_line(text: str) -> str:
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


def too_deep_or_large(value: Any, depth: int = 0) -> Optional[str]:
    if depth > MAX_DEPTH:
        return f"nested more than {MAX_DEPTH} levels"
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) > MAX_INT:
        return f"integer {str(value)[:30]} out of range"
    if isinstance(value, dict):
        return next((r for r in (too_deep_or_large(v, depth + 1) for v in value.values()) if r), None)
    if isinstance(value, list):
        return next((r for r in (too_deep_or_large(v, depth + 1) for v in value) if r), None)
    return None


#: What set the limit a timed-out agent ran into, per document it was to print.
LIMITS = {"agent-result": "command_timeout",
          "agent-plan-result": "the plan's deadline: budget_s + cells x command_timeout"}


def failed_transport(result: CommandResult, text: str, python: str,
                     limit: str = "command_timeout") -> Optional[AgentOutcome]:
    """Outcomes decided by how the command ended rather than by what it printed."""
    if result.interrupted:
        return AgentOutcome("failed", error_kind=INTERRUPTED, message="interrupted (Ctrl-C); the agent was stopped",
                            raw=text[-EXCERPT:])
    if result.timed_out:
        return AgentOutcome("failed", error_kind=TIMEOUT,
                            message=f"the agent did not finish within {result.limit:g} s ({limit}); "
                                    f"it was stopped on the device", raw=text[-EXCERPT:])
    if result.connection_lost:
        return AgentOutcome("failed", error_kind=CONNECTION_LOST,
                            message="connection lost while the agent ran (device rebooted, powered off or "
                                    "unreachable)", raw=text[-EXCERPT:])
    if result.exit_status in (126, 127) and not text.strip():
        return AgentOutcome("failed", error_kind=PYTHON_MISSING, message=missing_python_message(python, result))
    return None


@dataclass
class Reading:
    """The agent's output read up to a schema-valid document, or the outcome that stopped it, and where
    (``stage``: transport, frame, json, schema) so a reader can look closer (plan_result spots old agents)."""

    text: str
    stderr: str
    failure: Optional[AgentOutcome] = None
    stage: str = ""
    document: Any = None
    notes: List[str] = field(default_factory=list)


def document_verdict(document: Dict[str, Any], exit_status: int) -> Optional[Tuple[str, Any, Any]]:
    """(status, error kind, message) when a schema-valid document is not an ok result, else None; shared by the
    ``run`` and ``plan`` readers. ``busy``: another agent held the device's lock; nothing was measured, so it is
    retried (failed). Any other error the agent reports is final; ok with a non-zero exit cannot be trusted."""
    if document.get("status") != "ok":
        err = document.get("error") or {}
        return ("failed" if err.get("kind") == BUSY else "error"), err.get("kind"), err.get("message")
    if exit_status != 0:
        return "invalid", INVALID_OUTPUT, f"agent said ok but exited with status {exit_status}"
    return None


def read_output(result: CommandResult, token: Optional[str], python: str, schema: str) -> Reading:
    """The shared front half of every reader of the agent's stdout: how the command ended, the frame, strict JSON
    with size and depth limits, then the boundary's JSON Schema."""
    text = result.stdout.decode("utf-8", "replace")
    stderr = result.stderr.decode("utf-8", "replace")
    reading = Reading(text, stderr)

    def stop(stage: str, outcome: AgentOutcome) -> Reading:
        reading.stage, reading.failure = stage, outcome
        outcome.notes = outcome.notes or reading.notes
        return reading

    transport = failed_transport(result, text, python, LIMITS.get(schema, "command_timeout"))
    if transport is not None:
        return stop("transport", transport)
    if result.truncated:
        return stop("transport", AgentOutcome("invalid", error_kind=INVALID_OUTPUT,
                                               message=f"agent output exceeded {MAX_OUTPUT_BYTES} bytes",
                                               raw=text[:EXCERPT]))
    body, before = unframe(text, token)
    banner = first_line(before)
    if body is None:
        hint = f"; stderr: {stderr.strip().splitlines()[-1][:300]}" if stderr.strip() else ""
        seen = f"; it printed {banner!r}" if banner else "; it printed nothing"
        return stop("frame", AgentOutcome("invalid", error_kind=INVALID_OUTPUT,
                                          message=f"agent output is not JSON from the agent: no result document "
                                                  f"(exit status {result.exit_status}{seen}){hint}",
                                          raw=text[:EXCERPT]))
    reading.notes = [f"the device's login printed text before the agent's result (ignored): {banner!r}"] if banner else []
    try:
        document = json.loads(body, parse_constant=reject_constant)
    except (ValueError, RecursionError) as exc:
        cause = f"; the login also printed {banner!r}" if banner else ""
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        return stop("json", AgentOutcome("invalid", error_kind=INVALID_OUTPUT,
                                         message=f"agent output is not JSON ({reason}; exit status "
                                                 f"{result.exit_status}){cause}", raw=body[:EXCERPT]))
    reading.document = document
    problem = too_deep_or_large(document) if isinstance(document, (dict, list)) else None
    if problem:
        return stop("json", AgentOutcome("invalid", error_kind=INVALID_OUTPUT,
                                         message=f"agent output has a value {problem}", raw=body[:EXCERPT]))
    try:
        validator = schema_validator(schema)
        error = next(iter(validator.iter_errors(document)), None) if isinstance(document, dict) else True
    except RecursionError:
        error = True
    if error is not None:
        where = "/".join(str(p) for p in getattr(error, "absolute_path", [])) or "(top)"
        reason = getattr(error, "message", "not a JSON object")
        return stop("schema", AgentOutcome("invalid", error_kind=INVALID_OUTPUT,
                                           message=f"agent output fails its schema at {where}: {reason[:300]}",
                                           raw=body[:EXCERPT]))
    return reading


def judge(result: CommandResult, token: Optional[str] = None, expected: Optional[Expected] = None,
          python: str = "python3") -> AgentOutcome:
    """Turn the agent's raw output into an outcome; nothing in an invalid document is trusted.

    ``token`` is the --frame token the agent was given (None: stdout is the bare document, as when the agent is
    run by hand); ``expected`` enables the checks against the run.
    """
    reading = read_output(result, token, python, "agent-result")
    if reading.failure is not None:
        return reading.failure
    document, notes = reading.document, reading.notes
    if document.get("command") == "run" and (document.get("model") or {}).get("sha256") is not None:
        mismatch = sha256_mismatch(document, expected)  # an error about another file is no verdict on this one
        if mismatch:
            return AgentOutcome("invalid", document, SHA256_MISMATCH, mismatch, notes=notes)
    said = document_verdict(document, result.exit_status)
    if said is not None:
        return AgentOutcome(said[0], document, said[1], said[2], notes=notes)
    if document.get("command") == "run":
        mismatch = sha256_mismatch(document, expected)
        if mismatch:
            return AgentOutcome("invalid", document, SHA256_MISMATCH, mismatch, notes=notes)
        problem = inconsistency(document, expected)
        if problem:
            return AgentOutcome("invalid", document, INCONSISTENT, f"impossible result: {problem}", notes=notes)
    return AgentOutcome("ok", document, notes=notes)


def new_token() -> str:
    """A fresh --frame token: unguessable, so no banner or stray output can forge the frame."""
    import secrets

    return secrets.token_hex(12)
