"""`plan`: one agent measures many cells in interleaved rounds, in both environments (issue 12).

The plans are small (warmup 2, runs 5, a few rounds) so the file stays fast; the models are the agent tests'
variants (float32/dynamic/int8/float16 + eval.npz) and, for the memory test, one large float model.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from support.agent_harness import REPO_ROOT, agent_env, run_agent

FAST = {"warmup": 2, "runs": 5}


def _plan(folder: Path, cells: List[Dict[str, Any]], **top: Any) -> Dict[str, Any]:
    plan = {"plan_version": 1, "eval": str(folder / "eval.npz"), "seed": 7,
            "rounds": {"min": 3, "max": 3, "target_ci": 1.0, "budget_s": 120},
            "cells": [dict(FAST, **c) for c in cells]}
    plan.update(top)
    return plan


def _cell(folder: Path, cell_id: str, stem: Optional[str] = None, **extra: Any) -> Dict[str, Any]:
    return dict({"id": cell_id, "model": str(folder / ((stem or cell_id) + ".tflite"))}, **extra)


def _cells(doc: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {c["id"]: c for c in doc["cells"]}


def _dynamic_loads(env) -> bool:
    # TF 2.21's dynamic-range FULLY_CONNECTED is op version 12, which tflite-runtime 2.14 does not have.
    return env.name != "pi"


def test_rounds_interleave_every_cell_in_a_seeded_order(env, variants_dir, tmp_path, labels, plans):
    cells = [_cell(variants_dir, "base", "float32"), _cell(variants_dir, "base-aa", "float32"),
             _cell(variants_dir, "int8"), _cell(variants_dir, "float16", threads=1, xnnpack=False),
             _cell(variants_dir, "dynamic")]
    plan = _plan(variants_dir, cells, seed=11, samples=True,
                 rounds={"min": 4, "max": 4, "target_ci": 1e-9, "budget_s": 120})
    res = plans.run(env, plan, tmp_path)
    doc = res.doc
    assert res.returncode == 0 and doc["status"] == "ok", res.describe()
    by_id = _cells(doc)
    assert [c["id"] for c in doc["cells"]] == [c["id"] for c in cells]  # the plan's order
    loaded = [c["id"] for c in cells if by_id[c["id"]]["status"] == "ok"]
    assert loaded == [c["id"] for c in cells if c["id"] != "dynamic" or _dynamic_loads(env)]
    if not _dynamic_loads(env):
        assert by_id["dynamic"]["error"]["kind"] == "model-load"
        assert "FULLY_CONNECTED" in by_id["dynamic"]["error"]["message"]

    assert doc["stopped_by"] == "max_rounds" and doc["rounds_done"] == 4
    rounds = [[cell for r, cell in doc["visits"] if r == index] for index in range(4)]
    assert sum(len(r) for r in rounds) == len(doc["visits"])
    for index, order in enumerate(rounds):
        assert sorted(order) == sorted(loaded)  # every loaded cell exactly once per round
        expected = list(loaded)
        random.Random(11 + index).shuffle(expected)
        assert order == expected  # the seeded order: the same seed gives the same plan
    assert len({tuple(r) for r in rounds}) > 1  # and it changes from round to round

    for cell_id in loaded:
        cell = by_id[cell_id]
        assert [(v["round"], v["position"]) for v in cell["rounds"]] == [
            (r, order.index(cell_id)) for r, order in enumerate(rounds)]
        for visit in cell["rounds"]:
            assert visit["invokes"] == 5
            assert 0 < visit["min_us"] <= visit["p50_us"] <= visit["max_us"]
        timing = cell["timing"]
        pooled = timing["pooled"]
        assert timing["visits"] == 4 and timing["invokes"] == 20 and timing["warmup"] == 2
        assert 0 < pooled["min_us"] <= pooled["p50_us"] <= pooled["p90_us"] <= pooled["p99_us"] <= pooled["max_us"]
        assert len(pooled["samples_us"]) == 20 and pooled["samples_stride"] == 1
        assert cell["settled"] is False and cell["ci_half_width"] > 1e-9
        assert cell["init_ms"] > 0 and cell["rss_peak_kib"] > 0
        acc = cell["accuracy"]
        assert acc["num_samples"] == len(labels) and acc["accuracy"] > 0.6
        assert cell["runtime"]["module"] == env.runtime

    # The A/A pair: the same file, two cells with figures of their own.
    a, b = by_id["base"], by_id["base-aa"]
    assert a["model"]["sha256"] == b["model"]["sha256"]
    assert a["timing"]["pooled"]["samples_us"] != b["timing"]["pooled"]["samples_us"]
    assert a["accuracy"]["predictions"] == b["accuracy"]["predictions"]
    assert by_id["float16"]["runtime"]["xnnpack_disable_requested"] is True
    assert by_id["float16"]["runtime"]["threads"] == 1
    assert doc["device"]["python"]["version"] and doc["device_after"]["loadavg"] is not None


def test_a_cell_that_fails_to_load_does_not_stop_the_others(env, variants_dir, tmp_path, plans):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes((variants_dir / "float32.tflite").read_bytes()[:5000])
    cells = [_cell(variants_dir, "missing", "no-such-model"), _cell(variants_dir, "int8"),
             {"id": "truncated", "model": str(truncated)}]
    res = plans.run(env, _plan(variants_dir, cells), tmp_path)
    assert res.returncode == 0 and res.doc["status"] == "ok", res.describe()
    by_id = _cells(res.doc)
    assert by_id["missing"]["status"] == "error" and by_id["missing"]["error"]["kind"] == "model-load"
    assert "not found" in by_id["missing"]["error"]["message"]
    assert by_id["truncated"]["error"]["kind"] == "model-load"
    assert by_id["truncated"]["model"]["size_bytes"] == 5000  # what was known before it failed
    assert "timing" not in by_id["truncated"] and "accuracy" not in by_id["truncated"]
    assert by_id["int8"]["status"] == "ok" and by_id["int8"]["timing"]["visits"] == 3
    assert {cell for _, cell in res.doc["visits"]} == {"int8"}


def test_a_cell_whose_delegate_is_missing_is_that_cells_delegate_error(env, variants_dir, tmp_path, plans):
    """A Coral profile on a board without libedgetpu: that cell says so, a cell without the delegate measures."""
    cells = [_cell(variants_dir, "tpu", "int8", delegate="libedgetpu-missing.so.1",
                   delegate_options={"device": "usb"}), _cell(variants_dir, "cpu", "int8")]
    res = plans.run(env, _plan(variants_dir, cells), tmp_path)
    assert res.returncode == 0 and res.doc["status"] == "ok", res.describe()
    by_id = _cells(res.doc)
    assert by_id["tpu"]["status"] == "error" and by_id["tpu"]["error"]["kind"] == "delegate", by_id["tpu"]
    assert "libedgetpu-missing.so.1" in by_id["tpu"]["error"]["message"]
    assert by_id["tpu"]["runtime"]["delegate"] == {"path": "libedgetpu-missing.so.1", "options": {"device": "usb"}}
    assert by_id["cpu"]["status"] == "ok" and by_id["cpu"]["runtime"]["delegate"] is None
    assert {cell for _, cell in res.doc["visits"]} == {"cpu"}


def test_no_loadable_cell_fails_the_plan_with_the_cells_kind(env, variants_dir, tmp_path, plans):
    res = plans.run(env, _plan(variants_dir, [_cell(variants_dir, "missing", "no-such-model")]), tmp_path)
    assert res.returncode == 4 and res.doc["error"]["kind"] == "model-load", res.describe()
    assert res.doc["cells"][0]["error"]["kind"] == "model-load"


def test_stops_on_the_target_once_the_minimum_rounds_are_done(env, variants_dir, tmp_path, plans):
    plan = _plan(variants_dir, [_cell(variants_dir, "float32"), _cell(variants_dir, "int8")],
                 rounds={"min": 3, "max": 40, "target_ci": 1.0, "budget_s": 120})
    res = plans.run(env, plan, tmp_path)
    doc = res.doc
    assert doc["stopped_by"] == "target" and doc["rounds_done"] == 3, res.describe()
    assert len(doc["visits"]) == 6
    for cell in doc["cells"]:
        assert cell["settled"] is True and 0 <= cell["ci_half_width"] <= 1.0
        interval = cell["p50_interval"]
        assert interval["low_us"] <= interval["p50_us"] <= interval["high_us"]


def test_stops_on_the_time_budget(env, variants_dir, tmp_path, plans):
    plan = _plan(variants_dir, [_cell(variants_dir, "float32", min_seconds=0.05),
                                _cell(variants_dir, "int8", min_seconds=0.05)],
                 rounds={"min": 3, "max": 40, "target_ci": 1e-9, "budget_s": 0.05})  # a round takes 0.1 s
    res = plans.run(env, plan, tmp_path)
    doc = res.doc
    assert doc["stopped_by"] == "budget" and doc["rounds_done"] == 1, res.describe()
    assert sorted(cell for _, cell in doc["visits"]) == ["float32", "int8"]  # the first round is always whole
    assert all(c["settled"] is False and c["ci_half_width"] is None for c in doc["cells"])


def test_init_time_and_peak_memory_come_from_each_cells_own_child(env, variants_dir, big_model, tmp_path, plans):
    cells = [{"id": "big", "model": str(big_model)}, _cell(variants_dir, "small", "int8")]
    res = plans.run(env, _plan(variants_dir, cells), tmp_path)
    assert res.returncode == 0, res.describe()
    big, small = _cells(res.doc)["big"], _cells(res.doc)["small"]
    assert big["status"] == small["status"] == "ok", res.describe()
    assert big["memory"]["rss_peak_reset"] and small["memory"]["rss_peak_reset"]
    # Measured in one process after the big one, the small cell's peak would be at least the big one's.
    assert big["rss_peak_kib"] - small["rss_peak_kib"] > 8 * 1024, (big["memory"], small["memory"])
    assert small["memory"]["rss_before_load_kib"] <= small["memory"]["rss_after_load_kib"] <= small["rss_peak_kib"]
    assert big["init_ms"] > 0 and small["init_ms"] > 0
    assert res.doc["rss_peak_kib"] >= big["rss_peak_kib"] - 1024  # the parent holds every cell at once


#: Rules of a plan that JSON Schema cannot state (the agent checks them; the schema describes them in words).
SCHEMA_CANNOT_SAY = ("cell ids must be unique; repeated: a", "rounds.max must be an integer in [5,")


@pytest.mark.parametrize("change, words", [
    (lambda p: p.update(plan_version=2), "plan_version 2 is not supported"),
    (lambda p: p.update(extra=1), "unknown keys extra"),
    (lambda p: p.pop("cells"), "lacks cells"),
    (lambda p: p.update(cells=[]), "cells must be a list of 1"),
    (lambda p: p["cells"].append(dict(p["cells"][0])), "cell ids must be unique; repeated: a"),
    (lambda p: p["cells"][0].update(runs=0), "cells[0].runs must be an integer"),
    (lambda p: p["cells"][0].update(warmup=True), "cells[0].warmup must be an integer"),
    (lambda p: p["cells"][0].update(runtime="onnx"), "cells[0].runtime must be one of"),
    (lambda p: p["cells"][0].update(xnnpack="no"), "cells[0].xnnpack must be true or false"),
    (lambda p: p["cells"][0].pop("model"), "cells[0] lacks model"),
    (lambda p: p.update(rounds={"min": 5, "max": 2}), "rounds.max must be an integer in [5,"),
    (lambda p: p.update(rounds={"target_ci": 0}), "rounds.target_ci must be a number"),
    (lambda p: p.update(rounds={"budget": 3}), "rounds has unknown keys budget"),
    (lambda p: p.update(seed=-1), "seed must be an integer"),
    (lambda p: p["cells"][0].update(delegate=""), "cells[0].delegate must be null or a library path"),
    (lambda p: p["cells"][0].update(delegate_options={"k": 1}), "cells[0].delegate_options must be an object"),
])
def test_a_malformed_plan_is_bad_arguments(host_env, variants_dir, tmp_path, change, words, plans):
    plan = _plan(variants_dir, [_cell(variants_dir, "a", "int8")])
    change(plan)
    res = plans.run(host_env, plan, tmp_path, check_plan=False)
    assert res.returncode == 2 and res.doc["error"]["kind"] == "bad-arguments", res.describe()
    assert words in res.doc["error"]["message"], res.doc["error"]
    assert "cells" not in res.doc
    if words not in SCHEMA_CANNOT_SAY:
        with pytest.raises(AssertionError):  # the plan schema refuses it too
            plans.validate(plan, plans.PLAN_SCHEMA)


@pytest.mark.parametrize("content, words", [(None, "cannot read"), ("{not json", "is not JSON"),
                                            ('{"plan_version": NaN}', "is not JSON"), ("[1]", "must be an object")])
def test_an_unreadable_plan_file_is_bad_arguments(host_env, tmp_path, content, words, plans):
    path = tmp_path / "plan.json"
    if content is not None:
        path.write_text(content)
    res = run_agent(host_env.python, ["plan", path])
    plans.validate(res.doc, plans.RESULT_SCHEMA)
    assert res.returncode == 2 and res.doc["error"]["kind"] == "bad-arguments" and words in res.doc["error"]["message"]


def test_a_plan_command_line_error_is_a_plan_document(host_env, plans):
    res = run_agent(host_env.python, ["plan", "--frame", "short"])
    plans.validate(res.doc, plans.RESULT_SCHEMA)
    assert res.returncode == 2 and res.doc["error"]["kind"] == "bad-arguments"
    assert res.doc["schema_version"] == 2 and res.doc["command"] == "plan"


def test_framed_plan_with_a_deadline(host_env, variants_dir, tmp_path, plans):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(_plan(variants_dir, [_cell(variants_dir, "int8")])))
    proc = subprocess.run([str(host_env.python), "-m", "device_agent", "plan", str(path), "--frame",
                           "tok-12345678", "--deadline", "120"], cwd=str(REPO_ROOT), capture_output=True,
                          text=True, env=agent_env(), timeout=120)
    begin, end = "<<<edgeprune-result tok-12345678>>>\n", "\n<<<edgeprune-end tok-12345678>>>"
    assert begin in proc.stdout and end in proc.stdout, proc.stdout
    doc = json.loads(proc.stdout.split(begin, 1)[1].split(end, 1)[0])
    plans.validate(doc, plans.RESULT_SCHEMA)
    assert proc.returncode == 0 and doc["status"] == "ok"


def _holder(lock: Path) -> Optional[int]:
    try:
        return json.loads(lock.read_text() or "null").get("pid")
    except (OSError, ValueError, AttributeError):
        return None


def test_the_lock_is_held_for_the_whole_plan(env, variants_dir, tmp_path, plans):
    lock = tmp_path / "agent.lock"
    plan = _plan(variants_dir, [dict(_cell(variants_dir, "int8"), min_seconds=0.25),
                                dict(_cell(variants_dir, "float32"), min_seconds=0.25)],
                 rounds={"min": 6, "max": 6, "target_ci": 1.0, "budget_s": 120})
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    first = subprocess.Popen([str(env.python), "-m", "device_agent", "plan", str(path), "--lock", str(lock),
                              "--controller", "laptop:1234"], cwd=str(REPO_ROOT), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=agent_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while _holder(lock) != first.pid:
            assert time.monotonic() < deadline and first.poll() is None, "the plan never took the lock"
            time.sleep(0.05)
        for pause in (0.0, 1.5):  # as it starts, and later in its rounds (3 s of them)
            time.sleep(pause)
            second = run_agent(env.python, ["run", variants_dir / "int8.tflite", "--eval",
                                            variants_dir / "eval.npz", "--lock", lock])
            assert second.returncode == 7 and second.doc["error"]["kind"] == "busy", second.describe()
            assert second.doc["lock"]["holder"]["pid"] == first.pid
            assert first.poll() is None
        out, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, 9)
    doc = json.loads(out)
    plans.validate(doc, plans.RESULT_SCHEMA)
    assert first.returncode == 0 and doc["status"] == "ok" and doc["rounds_done"] == 6
    assert doc["lock"]["holder"]["pid"] == first.pid and doc["lock"]["holder"]["controller"] == "laptop:1234"
    # A plan that finds the lock taken measures nothing.
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)", str(lock)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = plans.run(env, plan, tmp_path, "--lock", str(lock))
        assert busy.returncode == 7 and busy.doc["error"]["kind"] == "busy" and "cells" not in busy.doc
    finally:
        holder.kill()
        holder.wait()


def test_plan_schema_runtimes_are_the_agents(host_env, plans):
    proc = subprocess.run([str(host_env.python), "-c", "from device_agent.runtime import RUNTIME_NAMES; "
                           "print(' '.join(RUNTIME_NAMES))"], cwd=str(REPO_ROOT), capture_output=True, text=True,
                          env=agent_env(), timeout=60)
    names = proc.stdout.split()
    schema = json.loads(plans.PLAN_SCHEMA.read_text())
    assert names and schema["$defs"]["cell"]["properties"]["runtime"]["enum"] == ["auto", *names]


BIG_MODEL = """
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf, tf_keras as keras
model = keras.Sequential([keras.layers.Input((12, 12, 3)), keras.layers.Flatten(),
                          keras.layers.Dense(8192, activation="relu"), keras.layers.Dense(5)])
open(sys.argv[1], "wb").write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
"""


@pytest.fixture(scope="session")
def big_model(tmp_path_factory) -> Path:
    """A float model of about 14 MB (a 432x8192 dense kernel), built with TensorFlow in a process of its own."""
    path = tmp_path_factory.mktemp("big-model") / "big.tflite"
    env = dict(agent_env(), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", BIG_MODEL, str(path)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0 and path.stat().st_size > 10_000_000, proc.stderr[-3000:]
    return path
