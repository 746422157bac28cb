"""The agent's ``plan`` result on the host: unframed, parsed, validated and checked before any figure is trusted.

The one reader of ``schemas/agent-plan-result.schema.json`` documents (issue 12). ``judge_plan`` turns one ``plan``
invocation into a :class:`PlanOutcome`. Its ``status`` says what happened to the plan as a whole, with the meanings
of :mod:`edgeprune.results.agent_result`:

- ``ok``: a valid document, consistent as a whole (cells, visits, rounds_done); each cell then has its own status;
- ``error``: the agent said the plan as a whole failed (bad plan, eval set, no loadable cell): final;
- ``failed``: transport or device failure, another agent held the lock (``busy``), or an agent too old for plans
  (``old-agent``): retried once the cause is gone;
- ``invalid``: the output cannot be trusted (not framed, not JSON, fails the schema, inconsistent as a whole).

Each cell of an ``ok`` plan is a :class:`CellOutcome`: ``ok`` (its figures passed the sense checks), ``error`` (the
agent measured a problem with that cell: its kind and message) or ``invalid`` (a figure cannot be true: the reason;
the other cells are not affected). Figures are read only from ``ok`` cells; :meth:`CellOutcome.round_p50s` gives the
per-round p50s aligned by round index, what :mod:`edgeprune.report.stats`' per-round functions take.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..devices.command import CommandResult
from .agent_checks import Expected, inconsistency, sha256_mismatch
from .agent_result import (EXCERPT, INCONSISTENT, SHA256_MISMATCH, document_verdict, read_output, reject_constant,
                           too_deep_or_large)

#: The schema_version of the plan protocol's documents (device_agent.PLAN_SCHEMA_VERSION).
PLAN_SCHEMA_VERSION = 2
#: The agent on the device predates the plan command (it answers with a schema 1 document or argparse's refusal).
OLD_AGENT = "old-agent"


@dataclass
class CellOutcome:
    """One cell of a plan, judged: ``ok``, ``error`` (the agent's reason) or ``invalid`` (the host's reason)."""

    id: str
    status: str
    document: Dict[str, Any] = field(default_factory=dict)
    error_kind: Optional[str] = None
    message: Optional[str] = None
    #: Rounds of the plan (complete ones and a partial one the budget interrupted): the length of round_p50s().
    rounds_total: int = 0

    @property
    def trusted(self) -> bool:
        return self.status == "ok"

    def _trusted(self, name: str) -> Any:
        return self.document.get(name) if self.trusted else None

    @property
    def model_sha256(self) -> Optional[str]:
        return (self.document.get("model") or {}).get("sha256")

    @property
    def runtime(self) -> Dict[str, Any]:
        return self.document.get("runtime") or {}

    @property
    def init_ms(self) -> Optional[float]:
        return self._trusted("init_ms")

    @property
    def rss_peak_kib(self) -> Optional[int]:
        return self._trusted("rss_peak_kib")

    @property
    def timing(self) -> Dict[str, Any]:
        """``timing`` (warmup, runs_requested, visits, invokes, ..., ``pooled``); empty unless ok."""
        return self._trusted("timing") or {}

    @property
    def pooled(self) -> Dict[str, Any]:
        """The pooled latency figures (µs) over every timed invoke of every visit; empty unless ok."""
        return self.timing.get("pooled") or {}

    @property
    def accuracy(self) -> Dict[str, Any]:
        return self._trusted("accuracy") or {}

    @property
    def rounds(self) -> List[Dict[str, Any]]:
        return self._trusted("rounds") or []

    @property
    def settled(self) -> Optional[bool]:
        return self._trusted("settled")

    @property
    def ci_half_width(self) -> Optional[float]:
        return self._trusted("ci_half_width")

    @property
    def op_profile(self) -> Optional[Dict[str, Any]]:
        """The cell's op profile (``bench --op-profile``: delegation, per-op times or why there are none)."""
        return self._trusted("op_profile")

    def round_p50s(self) -> List[float]:
        """The cell's p50 (µs) per round, index = round; NaN where it has no visit in that round, and everywhere
        unless the cell is ok (report.stats drops NaN rounds, pairing drops them on both sides)."""
        values = [math.nan] * self.rounds_total
        for visit in self.rounds:
            if 0 <= visit["round"] < self.rounds_total:
                values[visit["round"]] = float(visit["p50_us"])
        return values


@dataclass
class PlanOutcome:
    """One ``plan`` invocation, judged. ``cells`` is keyed by cell id, in the plan's order."""

    status: str
    document: Optional[Dict[str, Any]] = None
    error_kind: Optional[str] = None
    message: Optional[str] = None
    raw: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    cells: Dict[str, CellOutcome] = field(default_factory=dict)

    @property
    def trusted(self) -> bool:
        return self.status == "ok"

    @property
    def stopped_by(self) -> Optional[str]:
        return (self.document or {}).get("stopped_by") if self.trusted else None

    @property
    def rounds_done(self) -> Optional[int]:
        return (self.document or {}).get("rounds_done") if self.trusted else None

    @property
    def visits(self) -> List[List[Any]]:
        """``[round, cell id]`` in the order measured."""
        return list((self.document or {}).get("visits") or []) if self.trusted else []

    @property
    def sustained(self) -> Optional[Dict[str, Any]]:
        """The plan's sustained run (``bench --sustained``), when the document has one that passed its checks."""
        if not self.trusted:
            return None
        return _sustained_checked((self.document or {}).get("sustained"), (self.document or {}).get("plan") or {},
                                  self.notes)

    @property
    def rounds_total(self) -> int:
        """Rounds that have at least one visit (rounds_done, plus a partial round the budget interrupted)."""
        return max((v[0] for v in self.visits), default=-1) + 1


def _sustained_problem(run: Dict[str, Any], plan: Dict[str, Any]) -> Optional[str]:
    """Why a sustained run cannot be the answer to the plan's ``sustained``, or None."""
    asked = plan.get("sustained") or {}
    if run.get("cell") != asked.get("cell"):
        return f"it ran cell {str(run.get('cell'))[:140]!r}, the plan asked for {str(asked.get('cell'))[:140]!r}"
    times = [s["t_s"] for s in run["samples"]]
    if any(b <= a for a, b in zip(times, times[1:])):
        return "its sample times do not increase"
    if times and times[-1] > float(asked.get("seconds") or 0) + 60:
        return f"a sample at {times[-1]:g} s of a {asked.get('seconds')} s run"
    if any(s["p50_us"] is not None and not s["p50_us"] > 0 for s in run["samples"]):
        return "a second's p50 is not a positive latency"
    return None


def _sustained_checked(run: Any, plan: Dict[str, Any], notes: List[str]) -> Optional[Dict[str, Any]]:
    if not isinstance(run, dict):
        return None
    problem = _sustained_problem(run, plan)
    if problem:
        note = f"the sustained run is not stored: {problem}"
        if note not in notes:
            notes.append(note)
        return None
    return run


def _old_agent(document: Any, text: str, stderr: str) -> Optional[PlanOutcome]:
    """An agent that does not know ``plan``: a document of an older schema, or argparse's refusal on stderr."""
    said = None
    if isinstance(document, dict):
        version = document.get("schema_version")
        if isinstance(version, int) and not isinstance(version, bool) and version < PLAN_SCHEMA_VERSION:
            err = document.get("error") if isinstance(document.get("error"), dict) else {}
            said = (f"schema {version}", str(err.get("message") or f"a {document.get('command')!r} document"))
    if said is None and "invalid choice: 'plan'" in (text + stderr):
        line = next((ln for ln in (text + "\n" + stderr).splitlines() if "invalid choice: 'plan'" in ln), "")
        said = ("schema 1", line.strip())
    if said is None:
        return None
    return PlanOutcome("failed", document if isinstance(document, dict) else None, OLD_AGENT,
                       f"the agent on the device is too old for measurement plans ({said[0]}): it answered "
                       f"{said[1][:300]!r}; deploy the current device_agent to the device", raw=text[:EXCERPT])


def _bare_document(text: str) -> Any:
    """The last line of unframed output as JSON, or None (an old agent's argparse error is never framed)."""
    line = next((ln for ln in reversed(text.splitlines()) if ln.strip()), "")
    try:
        value = json.loads(line, parse_constant=reject_constant)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) and not too_deep_or_large(value) else None


def _parse(result: CommandResult, token: Optional[str], python: str) -> "PlanOutcome":
    """The outcome of the plan document, as far as its schema: agent_result reads it; an old agent is named."""
    reading = read_output(result, token, python, "agent-plan-result")
    if reading.failure is not None:
        old = None
        if reading.stage == "frame":  # an old agent's argparse refusal is never framed
            old = _old_agent(_bare_document(reading.text), reading.text, reading.stderr)
        elif reading.stage == "schema":
            old = _old_agent(reading.document, "", reading.stderr)
            if old is not None:
                old.raw = reading.failure.raw
        if old is not None:
            old.notes = reading.notes
            return old
        failed = reading.failure
        return PlanOutcome(failed.status, None, failed.error_kind, failed.message, failed.raw, notes=failed.notes)
    document, notes = reading.document, reading.notes
    said = document_verdict(document, result.exit_status)
    if said is not None:
        return PlanOutcome(said[0], document, said[1], said[2], notes=notes)
    return PlanOutcome("ok", document, notes=notes)


def _plan_problem(document: Dict[str, Any], expected: Optional[Dict[str, Expected]]) -> Optional[str]:
    """Why the document as a whole cannot be the answer to the plan, or None."""
    cells, plan = document["cells"], document["plan"]
    ids = [c["id"] for c in cells]
    if len(set(ids)) != len(ids):
        return "a cell id appears twice in cells"
    if ids != [c["id"] for c in plan["cells"]]:
        return "cells are not the plan's cells in the plan's order"
    if expected is not None and set(expected) != set(ids):
        missing, extra = sorted(set(expected) - set(ids)), sorted(set(ids) - set(expected))
        return f"cells asked for but not answered: {missing or 'none'}; answered but not asked for: {extra or 'none'}"
    status = {c["id"]: c["status"] for c in cells}
    visited = [v[1] for v in document["visits"]]
    stray = sorted({cid for cid in visited if status.get(cid) is None})
    if stray:
        return f"visits of cells that are not in the plan: {', '.join(map(str, stray))[:200]}"
    done, total = document["rounds_done"], max((v[0] for v in document["visits"]), default=-1) + 1
    rounds_plan = plan["rounds"]
    if done > total or total > done + 1 or (total == done + 1 and document["stopped_by"] != "budget"):
        return f"rounds_done {done} does not match visits in {total} rounds (stopped by {document['stopped_by']})"
    if [v[0] for v in document["visits"]] != sorted(v[0] for v in document["visits"]):
        return "visits are not in round order"
    in_rounds = sorted({cid for cid in visited})
    for index in range(done):
        order = sorted(cid for r, cid in document["visits"] if r == index)
        if order != in_rounds:
            return f"round {index} is complete but does not visit every measured cell exactly once"
    if document["stopped_by"] == "max_rounds" and done != rounds_plan["max"]:
        return f"stopped by max_rounds after {done} rounds, the plan's max is {rounds_plan['max']}"
    if document["stopped_by"] == "target" and done < rounds_plan["min"]:
        return f"stopped by the target after {done} rounds, before the plan's min {rounds_plan['min']}"
    if any(s == "ok" for s in status.values()) and not visited:
        return "cells are ok but no visit was measured"
    return None


def _run_like(cell: Dict[str, Any]) -> Dict[str, Any]:
    """A ``run``-shaped document for one plan cell, so agent_checks' sense checks apply to its pooled figures."""
    timing = cell["timing"]
    pooled = dict(timing["pooled"])
    pooled.update(init_ms=cell["init_ms"], runs=timing["invokes"])
    return {"command": "run", "status": "ok", "model": cell["model"], "memory": cell["memory"],
            "timing": pooled, "options": {"runs": timing["runs_requested"] * timing["visits"]},
            "accuracy": cell["accuracy"]}


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= max(1e-3, 1e-6 * max(abs(a), abs(b)))


def _rounds_problem(cell: Dict[str, Any], visits: List[List[Any]], target: float) -> Optional[str]:
    """Why the cell's per-round figures cannot be true or do not match the plan's visits, or None."""
    rounds, timing = cell["rounds"], cell["timing"]
    for entry in rounds:
        p50, low, high, mean = entry["p50_us"], entry["min_us"], entry["max_us"], entry["mean_us"]
        if not 0 < low <= p50 <= high or not low <= mean <= high:
            return (f"round {entry['round']}: min {low:g} / p50 {p50:g} / mean {mean:g} / max {high:g} µs "
                    f"cannot be one block's figures")
        if entry["invokes"] < timing["runs_requested"]:
            return f"round {entry['round']}: {entry['invokes']} timed invokes, {timing['runs_requested']} were asked for"
    expected_places = []
    position: Dict[int, int] = {}
    for round_index, cid in visits:
        place = position.get(round_index, 0)
        position[round_index] = place + 1
        if cid == cell["id"]:
            expected_places.append((round_index, place))
    places = [(e["round"], e["position"]) for e in rounds]
    if places != expected_places:
        return (f"its rounds {places[:8]} do not match its visits in the plan's order {expected_places[:8]} "
                f"(round, position)")
    if timing["visits"] != len(rounds):
        return f"timing.visits {timing['visits']}, {len(rounds)} round entries"
    if timing["invokes"] != sum(e["invokes"] for e in rounds):
        return f"timing.invokes {timing['invokes']} is not the sum of its rounds' invokes"
    p50s = sorted(e["p50_us"] for e in rounds)
    median = (p50s[(len(p50s) - 1) // 2] + p50s[len(p50s) // 2]) / 2
    interval = cell["p50_interval"]
    if not _close(interval["p50_us"], median):
        return f"p50_interval.p50_us {interval['p50_us']:g} is not the median of its rounds' p50s ({median:g})"
    if interval["low_us"] is not None and interval["high_us"] is not None:
        if not interval["low_us"] <= interval["p50_us"] * (1 + 1e-9) + 1e-6 <= interval["high_us"] * (1 + 1e-9) + 2e-6:
            return f"p50_interval {interval['low_us']:g}..{interval['high_us']:g} does not contain its p50"
    half = cell["ci_half_width"]
    if cell["settled"] and (half is None or half > target * (1 + 1e-9)):
        return f"settled with a p50 interval of ±{half} (target ±{target:g})"
    return None


def judge_cell(cell: Dict[str, Any], visits: List[List[Any]], target: float, expected: Optional[Expected],
               rounds_total: int, latency_only: bool = False) -> CellOutcome:
    """One cell of a whole-document-consistent plan result."""
    cid = cell["id"]
    if cell["status"] != "ok":
        err = cell.get("error") or {}
        mismatch = sha256_mismatch(cell, expected) if (cell.get("model") or {}).get("sha256") else None
        if mismatch:  # an error about another file is no verdict on this one
            return CellOutcome(cid, "invalid", cell, SHA256_MISMATCH, mismatch, rounds_total)
        if any(v[1] == cid for v in visits):
            return CellOutcome(cid, "invalid", cell, INCONSISTENT, "impossible result: a failed cell was visited",
                               rounds_total)
        return CellOutcome(cid, "error", cell, err.get("kind"), err.get("message"), rounds_total)
    mismatch = sha256_mismatch(cell, expected)
    if mismatch:
        return CellOutcome(cid, "invalid", cell, SHA256_MISMATCH, mismatch, rounds_total)
    problem = (inconsistency(_run_like(cell), expected, latency_only) or _rounds_problem(cell, visits, target))
    if problem:
        return CellOutcome(cid, "invalid", cell, INCONSISTENT, f"impossible result: {problem}", rounds_total)
    return CellOutcome(cid, "ok", cell, rounds_total=rounds_total)


def judge_plan(result: CommandResult, token: Optional[str] = None,
               expected: Optional[Dict[str, Expected]] = None, python: str = "python3") -> PlanOutcome:
    """Turn one ``plan`` invocation's raw output into a :class:`PlanOutcome`; nothing invalid is trusted.

    ``token`` is the --frame token the agent was given (None: stdout is the bare document); ``expected`` maps each
    cell id of the plan to what the host knows about its model and the eval set (sha256, size, labels, classes):
    the document must answer exactly those cells.
    """
    parsed = _parse(result, token, python)
    if isinstance(parsed, PlanOutcome) and parsed.status != "ok":
        return parsed
    outcome = parsed
    document = outcome.document or {}
    problem = _plan_problem(document, expected)
    if problem:
        return PlanOutcome("invalid", document, INCONSISTENT, f"impossible result: {problem}", notes=outcome.notes)
    total = outcome.rounds_total
    target = document["plan"]["rounds"]["target_ci"]
    for cell in document["cells"]:
        outcome.cells[cell["id"]] = judge_cell(cell, document["visits"], target, (expected or {}).get(cell["id"]),
                                               total, document["plan"].get("eval") is None)
    return outcome


__all__ = ["CellOutcome", "PlanOutcome", "judge_plan", "judge_cell", "OLD_AGENT", "PLAN_SCHEMA_VERSION"]
