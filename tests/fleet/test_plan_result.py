"""The host's one reader of the agent's ``plan`` result (edgeprune.results.plan_result, issue 12).

A real plan is run once with the agent as a subprocess (host venv) on the digits run's files: the A/A pair of the
baseline, pruned-int8 and a missing model. Its framed output is judged as it came, then edited as a broken or
hostile agent might (each edit must make only the edited cell ``invalid``), then replaced by garbage, and finally
an agent from before the plan command (a git worktree of an older commit) is asked to run it.
"""
from __future__ import annotations

import copy
import json
import math
import shutil
import subprocess
import sys
from typing import Any, Dict

import numpy as np
import pytest

from edgeprune.devices.command import CommandResult
from edgeprune.report import stats
from edgeprune.results.agent_checks import Expected
from edgeprune.results.agent_result import new_token
from edgeprune.results.plan_result import OLD_AGENT, judge_plan
from support.agent_harness import REPO_ROOT, agent_env

#: An agent that has `run` and `probe` but no `plan` (before issue 12).
OLD_AGENT_COMMIT = "6631d03"
#: The baseline and its A/A twin as the host names them in a bench's plan (devices.cells.aa_cell).
AA, AA2, INT8, MISSING = "baseline-float32", "baseline-float32@aa", "pruned-int8", "missing"


def _frame(document: Dict[str, Any], token: str) -> bytes:
    from device_agent.protocol import FRAME_BEGIN, FRAME_END

    return ("\n" + FRAME_BEGIN % token + "\n" + json.dumps(document) + "\n" + FRAME_END % token + "\n").encode()


def _result(stdout: bytes, exit_status: int = 0, stderr: bytes = b"") -> CommandResult:
    return CommandResult(exit_status, stdout, stderr)


@pytest.fixture(scope="module")
def real_plan(digits_run, tmp_path_factory):
    """(plan path, token, CommandResult, expected) of one real plan run by the agent."""
    folder, manifest = digits_run
    variants = {v["name"]: v for v in manifest["variants"]}
    with np.load(folder / manifest["dataset"]["eval_file"]) as data:
        labels = np.asarray(data["y"]).astype(np.int64)
    classes = manifest["dataset"]["num_classes"]

    def expect(name: str) -> Expected:
        v = variants[name]
        return Expected(v["sha256"], v["size_bytes"], labels, classes)

    cells = [{"id": AA, "model": str(folder / "baseline-float32.tflite")},
             {"id": AA2, "model": str(folder / "baseline-float32.tflite")},
             {"id": INT8, "model": str(folder / "pruned-int8.tflite")},
             {"id": MISSING, "model": str(folder / "no-such-variant.tflite")}]
    plan = {"plan_version": 1, "eval": str(folder / "eval.npz"), "seed": 3,
            "rounds": {"min": 3, "max": 6, "target_ci": 1.0, "budget_s": 120},
            "cells": [dict(c, warmup=2, runs=5) for c in cells]}
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    path.write_text(json.dumps(plan))
    token = new_token()
    proc = subprocess.run([sys.executable, "-m", "device_agent", "plan", str(path), "--frame", token],
                          cwd=str(REPO_ROOT), env=agent_env(), capture_output=True, timeout=300)
    expected = {AA: expect("baseline-float32"), AA2: expect("baseline-float32"), INT8: expect("pruned-int8"),
                MISSING: Expected(None, None, labels, classes)}
    return path, token, _result(proc.stdout, proc.returncode, proc.stderr), expected


def _document(real_plan) -> Dict[str, Any]:
    _, token, result, _ = real_plan
    from edgeprune.results.agent_result import unframe

    body, _ = unframe(result.stdout.decode(), token)
    assert body is not None, result.stderr.decode()[-2000:]
    return json.loads(body)


def _judge_edit(real_plan, edit) -> Any:
    _, token, result, expected = real_plan
    document = copy.deepcopy(_document(real_plan))
    edit(document)
    return judge_plan(_result(_frame(document, token)), token, expected)


def _cell(document: Dict[str, Any], cell_id: str) -> Dict[str, Any]:
    return next(c for c in document["cells"] if c["id"] == cell_id)


def test_a_real_plan_is_judged_cell_by_cell(real_plan):
    _, token, result, expected = real_plan
    outcome = judge_plan(result, token, expected)
    assert outcome.status == "ok", (outcome.error_kind, outcome.message, result.stderr.decode()[-2000:])
    assert list(outcome.cells) == [AA, AA2, INT8, MISSING]
    statuses = {cid: c.status for cid, c in outcome.cells.items()}
    assert statuses == {AA: "ok", AA2: "ok", INT8: "ok", MISSING: "error"}, {
        cid: c.message for cid, c in outcome.cells.items()}
    missing = outcome.cells[MISSING]
    assert missing.error_kind == "model-load" and missing.message
    assert outcome.stopped_by in ("target", "max_rounds") and outcome.rounds_done >= 3
    assert len(outcome.visits) == 3 * outcome.rounds_done
    for cid in (AA, AA2, INT8):
        cell = outcome.cells[cid]
        assert cell.init_ms > 0 and cell.rss_peak_kib > 0
        assert 0 < cell.pooled["min_us"] <= cell.pooled["p50_us"] <= cell.pooled["max_us"]
        assert cell.accuracy["num_samples"] == len(expected[cid].labels) and cell.accuracy["accuracy"] > 0.6
        p50s = cell.round_p50s()
        assert len(p50s) == outcome.rounds_total == outcome.rounds_done
        assert all(math.isfinite(v) and v > 0 for v in p50s)
        assert p50s == [v["p50_us"] for v in sorted(cell.rounds, key=lambda v: v["round"])]
    missing_p50s = missing.round_p50s()
    assert len(missing_p50s) == outcome.rounds_total and all(math.isnan(v) for v in missing_p50s)
    assert missing.init_ms is None and missing.pooled == {}

    # Wiring into report.stats: the A/A pair's paired ratio is about 1 (loose: this checks the wiring).
    ratio = stats.paired_ratio_interval(outcome.cells[AA].round_p50s(), outcome.cells[AA2].round_p50s())
    assert ratio is not None and ratio.low <= 1.1 and ratio.high >= 0.9, ratio
    assert stats.round_p50_interval(outcome.cells[INT8].round_p50s()) is not None


def test_round_p50s_are_aligned_with_nan_where_a_cell_has_no_visit(real_plan):
    def budget_cut(doc):  # the budget interrupted a 4th round after its first visit
        first = doc["visits"][0][1]
        doc["stopped_by"] = "budget"
        doc["visits"].append([doc["rounds_done"], first])
        cell = _cell(doc, first)
        entry = dict(cell["rounds"][0], round=doc["rounds_done"], position=0)
        cell["rounds"].append(entry)
        cell["timing"]["visits"] += 1
        cell["timing"]["invokes"] += entry["invokes"]
        cell["timing"]["pooled"].pop("samples_us", None)
        cell["timing"]["pooled"].pop("samples_stride", None)
        p50s = sorted(v["p50_us"] for v in cell["rounds"])
        cell["p50_interval"]["p50_us"] = float(np.median(p50s))
        return first

    doc = copy.deepcopy(_document(real_plan))
    first = budget_cut(doc)
    _, token, _, expected = real_plan
    outcome = judge_plan(_result(_frame(doc, token)), token, expected)
    assert outcome.status == "ok", outcome.message
    assert outcome.rounds_total == outcome.rounds_done + 1
    assert all(c.status == "ok" for cid, c in outcome.cells.items() if cid != MISSING), {
        cid: c.message for cid, c in outcome.cells.items()}
    for cid in (AA, AA2, INT8):
        p50s = outcome.cells[cid].round_p50s()
        assert len(p50s) == outcome.rounds_total
        assert all(math.isfinite(v) for v in p50s[:-1])
        assert math.isfinite(p50s[-1]) == (cid == first)
    others = [cid for cid in (AA, AA2, INT8) if cid != first]
    # the partial round is dropped from the pairing, not misaligned
    assert stats.paired_ratio_interval(outcome.cells[first].round_p50s(),
                                       outcome.cells[others[0]].round_p50s()) is not None


def _zero_p50(doc):
    _cell(doc, INT8)["rounds"][1]["p50_us"] = 0


def _rounds_off_visits(doc):
    rounds = _cell(doc, AA2)["rounds"]
    rounds[0]["round"], rounds[1]["round"] = rounds[1]["round"], rounds[0]["round"]


def _wrong_sha(doc):
    _cell(doc, INT8)["model"]["sha256"] = "0" * 64


def _wrong_correct(doc):
    accuracy = _cell(doc, AA)["accuracy"]
    accuracy["correct"] -= 1
    accuracy["accuracy"] = accuracy["correct"] / accuracy["num_samples"]


def _p50_above_max(doc):
    entry = _cell(doc, AA2)["rounds"][0]
    entry["p50_us"] = entry["max_us"] * 2


@pytest.mark.parametrize("edit, cell_id, reason", [
    (_zero_p50, INT8, "round 1"),
    (_p50_above_max, AA2, "cannot be one block's figures"),
    (_rounds_off_visits, AA2, "do not match its visits"),
    (_wrong_sha, INT8, "sha256"),
    (_wrong_correct, AA, "correct claimed"),
], ids=["p50-zero", "p50-above-max", "rounds-not-visits", "sha256", "correct-vs-labels"])
def test_a_hostile_edit_makes_only_that_cell_invalid(real_plan, edit, cell_id, reason):
    outcome = _judge_edit(real_plan, edit)
    assert outcome.status == "ok", outcome.message
    cell = outcome.cells[cell_id]
    assert cell.status == "invalid" and reason in cell.message, cell.message
    assert cell.init_ms is None and all(math.isnan(v) for v in cell.round_p50s())
    others = {cid: c.status for cid, c in outcome.cells.items() if cid != cell_id}
    assert others == {cid: ("error" if cid == MISSING else "ok") for cid in others}, {
        cid: c.message for cid, c in outcome.cells.items()}


def test_a_document_inconsistent_as_a_whole_is_invalid(real_plan):
    def rounds_done_high(doc):
        doc["rounds_done"] += 1

    def unknown_visit(doc):
        doc["visits"][0][1] = "nobody"

    for edit, words in ((rounds_done_high, "rounds_done"), (unknown_visit, "not in the plan")):
        outcome = _judge_edit(real_plan, edit)
        assert outcome.status == "invalid" and outcome.error_kind == "inconsistent", outcome.message
        assert words in outcome.message and outcome.cells == {}
    _, token, result, expected = real_plan
    fewer = {k: v for k, v in expected.items() if k != INT8}
    outcome = judge_plan(result, token, fewer)
    assert outcome.status == "invalid" and "answered but not asked for" in outcome.message


def test_garbage_and_unframed_output_is_invalid(real_plan):
    _, token, result, expected = real_plan
    body = json.dumps(_document(real_plan)).encode()
    cases = {
        "unframed": _result(body + b"\n"),
        "garbage": _result(b"Welcome to the Pi!\n\x00\xff not json at all\n", 1),
        "cut short": _result(result.stdout[: len(result.stdout) // 2]),
        "not JSON": _result(_frame_raw(b"{\"schema_version\": 2, NaN}", token)),
        "NaN": _result(_frame_raw(body.replace(b'"rounds_done": ', b'"rounds_done": NaN, "x": '), token)),
        "schema": _result(_frame({**_document(real_plan), "surprise": 1}, token)),
    }
    for name, bad in cases.items():
        outcome = judge_plan(bad, token, expected)
        assert outcome.status == "invalid" and outcome.error_kind == "invalid-output", (name, outcome.message)
        assert outcome.cells == {} and outcome.stopped_by is None, name
    timed_out = CommandResult(124, b"", b"", timed_out=True, limit=10)
    late = judge_plan(timed_out, token, expected)
    assert late.status == "failed" and late.error_kind == "timeout"
    # the limit a plan runs into is the plan's deadline, not command_timeout alone
    assert "within 10 s (the plan's deadline: budget_s + cells x command_timeout)" in late.message, late.message


def _frame_raw(body: bytes, token: str) -> bytes:
    from device_agent.protocol import FRAME_BEGIN, FRAME_END

    return b"\n" + (FRAME_BEGIN % token).encode() + b"\n" + body + b"\n" + (FRAME_END % token).encode() + b"\n"


def test_an_agent_too_old_for_plans_is_refused_clearly(real_plan, tmp_path):
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs the git repository for the old agent")
    plan_path, token, _, expected = real_plan
    worktree = tmp_path / "old-agent"
    subprocess.run(["git", "worktree", "add", "--detach", str(worktree), OLD_AGENT_COMMIT], cwd=str(REPO_ROOT),
                   check=True, capture_output=True, timeout=120)
    try:
        proc = subprocess.run([sys.executable, "-m", "device_agent", "plan", str(plan_path), "--frame", token],
                              cwd=str(worktree), env=agent_env(), capture_output=True, timeout=120)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=str(REPO_ROOT),
                       capture_output=True, timeout=120)
    assert b"invalid choice" in proc.stdout + proc.stderr, proc.stdout + proc.stderr  # really an old agent
    for tok in (token, None):
        outcome = judge_plan(_result(proc.stdout, proc.returncode, proc.stderr), tok, expected)
        assert outcome.status == "failed" and outcome.error_kind == OLD_AGENT, outcome.message
        assert outcome.message.startswith(
            "the agent on the device is too old for measurement plans (schema 1): "), outcome.message
        assert "invalid choice: 'plan'" in outcome.message and outcome.cells == {}
    # A framed schema-1 document (an old agent that frames its answer) and argparse's bare refusal on stderr.
    old_doc = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    framed = judge_plan(_result(_frame(old_doc, token), 2), token, expected)
    assert framed.error_kind == OLD_AGENT and "(schema 1)" in framed.message
    bare = judge_plan(_result(b"", 2, b"usage: ...\nerror: argument {run,probe}: invalid choice: 'plan'\n"),
                      token, expected)
    assert bare.status == "failed" and bare.error_kind == OLD_AGENT
