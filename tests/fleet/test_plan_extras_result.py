"""The host's side of a plan's extras (issue 13): the cells a `--delegate` matrix makes, the cell `--sustained`
keeps running, the plan's deadline, and the reader's checks on a real agent's sustained run (a run that cannot be
the answer is not stored, and the cells keep their figures)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from device_agent.protocol import FRAME_BEGIN, FRAME_END
from edgeprune.devices.cells import (Extras, Matrix, config_label, delegate_label, plan_cells, plan_limit,
                                     reference_cell, sustained_cell)
from edgeprune.devices.command import CommandResult
from edgeprune.devices.profiles import DeviceProfile
from edgeprune.results.agent_result import new_token, unframe
from edgeprune.results.plan_columns import plan_columns
from edgeprune.results.plan_result import judge_plan
from support.agent_harness import REPO_ROOT, agent_env
from support.tflite_zoo import zoo_dir


@pytest.mark.parametrize("library, label", [
    (None, "cpu"), ("libedgetpu.so.1", "edgetpu"), ("/usr/lib/aarch64-linux-gnu/libedgetpu.so.1.0", "edgetpu"),
    ("libvx_delegate.so", "vx_delegate"), ("mydelegate", "mydelegate"),
])
def test_a_delegate_is_labelled_by_its_library(library, label):
    assert delegate_label(library) == label


def test_a_delegate_matrix_multiplies_the_cells_and_none_means_no_delegate():
    matrix = Matrix(threads=(1, 2), delegates=("none", "libedgetpu.so.1"))
    assert matrix.size == 4
    configs = matrix.configurations()
    assert configs[0] == {"threads": 1, "delegate": None} and configs[1] == {"threads": 1,
                                                                           "delegate": "libedgetpu.so.1"}
    assert [config_label(c) for c in configs] == ["1t/cpu", "1t/edgetpu", "2t/cpu", "2t/edgetpu"]
    cells = plan_cells(["pruned"], "base", matrix)
    assert list(cells)[:2] == ["base#1t/cpu", "base#1t/cpu@aa"] and len(cells) == 9
    assert Matrix.from_dict(matrix.to_dict()) == matrix


def test_the_sustained_cell_is_the_chosen_variant_else_the_reference():
    matrix = Matrix(threads=(1, 2))
    cells = plan_cells(["pruned"], "base", matrix)
    reference = reference_cell("base", matrix)
    assert sustained_cell(cells, Extras(), reference) is None
    assert sustained_cell(cells, Extras(sustained_s=60), reference) == "base#1t"
    assert sustained_cell(cells, Extras(sustained_s=60, sustained_variant="pruned"), reference) == "pruned#1t"
    profile = DeviceProfile(name="d", kind="local", budget_s=100, command_timeout=10)
    assert plan_limit(profile, 9) == 190
    assert plan_limit(profile, 9, Extras(sustained_s=60, op_profile=True)) == 190 + 60 + 9 * 120


@pytest.fixture(scope="module")
def sustained_plan(tmp_path_factory):
    """(token, CommandResult) of a real latency-only plan with a 2-second sustained run."""
    model = str(zoo_dir() / "multi_io.tflite")
    plan = {"plan_version": 1, "seed": 5, "rounds": {"min": 2, "max": 3, "target_ci": 1.0, "budget_s": 30},
            "cells": [{"id": "a", "model": model, "warmup": 2, "runs": 10},
                      {"id": "a@aa", "model": model, "warmup": 2, "runs": 10}],
            "sustained": {"cell": "a", "seconds": 2}}
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    path.write_text(json.dumps(plan))
    token = new_token()
    proc = subprocess.run([sys.executable, "-m", "device_agent", "plan", str(path), "--frame", token],
                          cwd=str(REPO_ROOT), env=agent_env(), capture_output=True, timeout=300)
    return token, CommandResult(proc.returncode, proc.stdout, proc.stderr)


def _edited(sustained_plan, edit):
    token, result = sustained_plan
    body, _ = unframe(result.stdout.decode(), token)
    document = json.loads(body)
    edit(document)
    framed = ("\n" + FRAME_BEGIN % token + "\n" + json.dumps(document) + "\n" + FRAME_END % token + "\n").encode()
    edited = judge_plan(CommandResult(0, framed, b""), token)
    assert edited.trusted or edited.error_kind, edited
    return edited


def test_a_real_sustained_run_is_read_and_stored(sustained_plan):
    token, result = sustained_plan
    outcome = judge_plan(result, token)
    assert outcome.trusted, (outcome.message, result.stderr.decode()[-2000:])
    run = outcome.sustained
    assert run is not None and run["cell"] == "a" and 1 <= len(run["samples"]) <= 3
    stored = json.loads(plan_columns(outcome)["sustained_json"])
    assert stored == run


@pytest.mark.parametrize("edit, reason", [
    (lambda d: d["sustained"]["samples"].reverse(), "its sample times do not increase"),
    (lambda d: d["sustained"].update(cell="a@aa"), "it ran cell 'a@aa', the plan asked for 'a'"),
    (lambda d: d["sustained"]["samples"][-1].update(t_s=999.0), "a sample at 999 s of a 2.0 s run"),
    (lambda d: d["sustained"]["samples"][0].update(p50_us=0), "a second's p50 is not a positive latency"),
])
def test_a_sustained_run_that_cannot_be_true_is_not_stored_and_the_cells_keep_theirs(sustained_plan, edit, reason):
    def with_two_samples(document):
        samples = document["sustained"]["samples"]
        if len(samples) < 2:  # a slow machine may give one: the edits need two
            samples.append(dict(samples[0], t_s=samples[0]["t_s"] + 1))
        edit(document)
    outcome = _edited(sustained_plan, with_two_samples)
    assert outcome.trusted and outcome.sustained is None
    assert f"the sustained run is not stored: {reason}" in outcome.notes
    assert plan_columns(outcome)["sustained_json"] is None
    assert all(cell.trusted for cell in outcome.cells.values())


def test_a_hostile_sustained_sample_fails_the_schema(sustained_plan):
    outcome = _edited(sustained_plan, lambda d: d["sustained"]["samples"][0].update(temp_c=1e9))
    assert outcome.status == "invalid" and not outcome.trusted
