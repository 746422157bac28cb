#!/usr/bin/env python
"""How much does the device agent add on top of a bare invoke loop, and how does it compare with litert-benchmark?

Run with the host venv:  .venv/bin/python benchmarks/agent_overhead.py [--rounds 15 --runs 1000 --threads 1]

1. Builds MobileNetV2 (32x32x3, 10 classes, random weights) with tf_keras in a child process, converts it to a
   float32 .tflite (cached under .cache/bench/) and writes a small random eval.npz.
2. Measures three ways, interleaved: every round runs the three, each in a fresh process, in an order drawn from
   ``random.Random(seed + round)`` (a shared machine's noise then lands on all three alike, and the ratios are
   paired by round, as docs/statistics.md describes):
   (a) bare: a few lines of ai_edge_litert in ``python -c``: same threads, warm-up and runs, perf_counter_ns around
       invoke() only, the way a person would write it (no GC pause, nothing else);
   (b) agent: ``python -m device_agent plan PLAN.json --frame TOKEN`` with one cell (runtime ai_edge_litert) and
       rounds min = max = 1, as a bench runs it, read by the host's own reader (results.plan_result.judge_plan);
       its one round's p50;
   (c) litert-benchmark (ai-edge-litert's tool, next to this Python): --model --num_threads --num_runs --warmup_runs
       --result_json. It uses the CompiledModel API (not the Interpreter) and times run_by_name() with
       perf_counter, feeding random inputs. Its JSON has milliseconds rounded to 2 decimals: its median moves in
       steps of 10 µs. Its mean is recovered far more precisely from ``throughput_mb_s`` (input MiB / unrounded
       mean, rounded to 2 decimals), and checked against ``avg_ms``.
3. Prints, for agent/bare, agent/litert-benchmark and litert-benchmark/bare, the ratio of the p50s (and of the means)
   with its 95% interval from report.stats.paired_ratio_interval over the rounds. The goal (issue 12): every agent
   ratio's interval contains 1, or lies below it (the agent is the faster one). Also the agent's start-to-result
   wall time.

Expected failures (no litert-benchmark, no TensorFlow to build the model, an agent error) end with one line and a
non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "bench"
EVAL_SAMPLES = 64
INPUT_SHAPE = (32, 32, 3)
#: No single process of a round may take longer than this (seconds).
TIMEOUT_S = 600.0
METHODS = ("bare", "agent", "litert-benchmark")
LETTER = {"bare": "B", "agent": "A", "litert-benchmark": "L"}
#: litert-benchmark writes milliseconds with 2 decimals.
LB_STEP_US = 10.0

#: (a): what a person would write by hand. argv: model eval threads warmup runs; prints one JSON line.
BARE_LOOP = r"""
import json, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
model, eval_path, threads, warmup, runs = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
x = np.load(eval_path)["x"]
interpreter = Interpreter(model_path=model, num_threads=threads)
interpreter.allocate_tensors()
index = interpreter.get_input_details()[0]["index"]
inputs = [x[i:i + 1] for i in range(x.shape[0])]
for i in range(warmup):
    interpreter.set_tensor(index, inputs[i % len(inputs)])
    interpreter.invoke()
samples = []
for i in range(runs):
    interpreter.set_tensor(index, inputs[i % len(inputs)])
    t0 = time.perf_counter_ns()
    interpreter.invoke()
    samples.append(time.perf_counter_ns() - t0)
us = np.asarray(samples) / 1000.0
print(json.dumps({"p50_us": float(np.percentile(us, 50)), "mean_us": float(us.mean())}))
"""


class Missing(SystemExit):
    """An expected failure: one line on stderr, exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__("agent_overhead: " + message)


def _build_model_child(out: Path) -> None:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
        import tf_keras as keras
    except ImportError as exc:
        raise Missing("cannot build the benchmark model: %s (install the dev extras into .venv)" % exc)

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=INPUT_SHAPE, weights=None,
                                           classes=10)
    blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(blob)
    tmp.replace(out)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def _failure(proc: subprocess.CompletedProcess) -> str:
    """How a child ended, and the last line it wrote to stderr."""
    ended = "killed by signal %d" % -proc.returncode if proc.returncode < 0 else "exit %d" % proc.returncode
    return "%s: %s" % (ended, _last_line(proc.stderr.decode("utf-8", "replace")))


def ensure_model() -> Path:
    from importlib import metadata

    try:
        tf_version = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        tf_version = None
    CACHE.mkdir(parents=True, exist_ok=True)
    cached = sorted(CACHE.glob("mobilenetv2-32x32-f32-tf*.tflite"))
    if tf_version is None:  # a model built earlier still serves; only building it needs TensorFlow
        if cached:
            return cached[-1]
        raise Missing("tensorflow is not installed in %s, and no model is cached under %s"
                      % (sys.prefix, CACHE))
    path = CACHE / ("mobilenetv2-32x32-f32-tf%s.tflite" % tf_version)
    if not path.exists():
        print("building %s ..." % path.name, file=sys.stderr)
        proc = subprocess.run([sys.executable, __file__, "--build-model", str(path)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise Missing("building the model failed: %s" % _last_line(proc.stderr))
    return path


def ensure_eval() -> Path:
    import numpy as np

    path = CACHE / "mobilenetv2-32x32-eval.npz"
    if not path.exists():
        rng = np.random.default_rng(0)
        np.savez(path, x=rng.normal(size=(EVAL_SAMPLES,) + INPUT_SHAPE).astype("float32"),
                 y=rng.integers(0, 10, EVAL_SAMPLES).astype("int64"))
    return path


def find_litert_benchmark() -> Path:
    beside = Path(sys.executable).parent / "litert-benchmark"
    found = beside if beside.exists() else shutil.which("litert-benchmark")
    if not found:
        raise Missing("litert-benchmark not found next to %s nor on PATH (it ships with ai-edge-litert: "
                      "`.venv/bin/pip install -U ai-edge-litert`)" % sys.executable)
    return Path(found)


def input_bytes(model: Path) -> int:
    """Bytes of the model's inputs, as litert-benchmark counts them for its throughput."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model))
    return sum(int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize
               for d in interpreter.get_input_details())


def _child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def _run(argv: List[str], what: str, cwd: Optional[Path] = None) -> "tuple[subprocess.CompletedProcess, float]":
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=str(cwd) if cwd else None, capture_output=True, env=_child_env(),
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise Missing("%s took longer than %.0f s" % (what, TIMEOUT_S))
    except OSError as exc:
        raise Missing("cannot start %s: %s" % (what, exc))
    return proc, time.perf_counter() - t0


class Bench:
    """The three ways of measuring, each one process per call, each returning one round's figures."""

    def __init__(self, args: argparse.Namespace, model: Path, eval_path: Path, litert_benchmark: Path,
                 work: Path) -> None:
        self.args = args
        self.model = model
        self.eval_path = eval_path
        self.litert_benchmark = litert_benchmark
        self.work = work
        self.input_mib = input_bytes(model) / 2 ** 20
        self.plan_path = work / "plan.json"
        self.plan_path.write_text(json.dumps({
            "plan_version": 1, "eval": str(eval_path), "seed": 0,
            "rounds": {"min": 1, "max": 1},
            "cells": [{"id": "model", "model": str(model), "runtime": "ai_edge_litert", "threads": args.threads,
                       "warmup": args.warmup, "runs": args.runs}]}))

    def bare(self) -> Dict[str, Any]:
        a = self.args
        proc, wall = _run([sys.executable, "-c", BARE_LOOP, str(self.model), str(self.eval_path),
                           str(a.threads), str(a.warmup), str(a.runs)], "the bare loop")
        out = proc.stdout.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise Missing("the bare loop failed (%s)" % _failure(proc))
        try:
            row = json.loads(_last_line(out))
        except ValueError:
            raise Missing("the bare loop printed no result: %r" % _last_line(out))
        row["wall_s"] = wall
        return row

    def agent(self) -> Dict[str, Any]:
        from edgeprune.devices.command import CommandResult
        from edgeprune.results.agent_result import new_token
        from edgeprune.results.plan_result import judge_plan

        token = new_token()
        proc, wall = _run([sys.executable, "-m", "device_agent", "plan", str(self.plan_path), "--frame", token],
                          "the agent", cwd=REPO)
        outcome = judge_plan(CommandResult(proc.returncode, proc.stdout, proc.stderr), token,
                             python=sys.executable)
        if outcome.status != "ok":
            raise Missing("the agent's plan is %s (%s): %s" % (outcome.status, outcome.error_kind, outcome.message))
        cell = outcome.cells["model"]
        if not cell.trusted:
            raise Missing("the agent's cell is %s (%s): %s" % (cell.status, cell.error_kind, cell.message))
        visit = cell.rounds[0]
        runtime = cell.runtime
        return {"p50_us": visit["p50_us"], "mean_us": visit["mean_us"], "wall_s": wall,
                "agent_wall_s": outcome.document["wall_s"], "init_ms": cell.init_ms,
                "runtime": "%s %s" % (runtime.get("module"), runtime.get("version")),
                "xnnpack": runtime.get("xnnpack")}

    def litert(self) -> Dict[str, Any]:
        a = self.args
        result = self.work / "litert-benchmark.json"
        result.unlink(missing_ok=True)
        proc, wall = _run([str(self.litert_benchmark), "--model", str(self.model), "--num_threads", str(a.threads),
                           "--num_runs", str(a.runs), "--warmup_runs", str(a.warmup), "--result_json", str(result)],
                          "litert-benchmark")
        if proc.returncode != 0 or not result.exists():
            raise Missing("litert-benchmark failed (%s)" % _failure(proc))
        try:
            doc = json.loads(result.read_text())
            latency = doc["latency"]
            median_ms, avg_ms = float(latency["median_ms"]), float(latency["avg_ms"])
        except (ValueError, KeyError, TypeError) as exc:
            raise Missing("litert-benchmark wrote a result this script cannot read (%s: %s)"
                          % (type(exc).__name__, exc))
        # throughput_mb_s = input MiB / (unrounded mean s), rounded to 2 decimals: the mean to ~1e-4 when it is
        # consistent with avg_ms (the rounded mean); otherwise fall back to avg_ms.
        throughput = doc.get("throughput_mb_s")
        mean_us, precision = avg_ms * 1000.0, None
        if isinstance(throughput, (int, float)) and throughput > 0:
            derived = self.input_mib / throughput * 1e6
            if abs(derived - mean_us) <= LB_STEP_US / 2 + 1e-3 * derived:
                mean_us, precision = derived, 0.005 / throughput
        return {"p50_us": median_ms * 1000.0, "mean_us": mean_us, "mean_precision": precision, "wall_s": wall,
                "init_ms": latency.get("init_ms"), "accelerated": doc.get("fully_accelerated")}


def _ratio_line(label: str, num: List[float], den: List[float], goal: bool) -> str:
    from edgeprune.report import stats

    ci = stats.paired_ratio_interval(num, den)
    if ci is None:
        return "  %-28s not enough rounds (fewer than %d)" % (label, stats.MIN_ROUNDS)
    text = "  %-28s %6.3f  (%.3f-%.3f)" % (label, ci.mid, ci.low, ci.high)
    if not goal:
        return text + "  for information"
    if ci.high < 1.0:
        return text + "  goal met: the agent is faster"
    if ci.contains(1.0):
        return text + "  goal met: contains 1"
    return text + "  GOAL NOT MET: the agent is slower"


def _p50_line(label: str, values: List[float], means: List[float], walls: List[float],
              init: List[Optional[float]]) -> str:
    from edgeprune.report import stats

    ci = stats.round_p50_interval(values)
    spread = "(%.1f-%.1f)" % (ci.low, ci.high) if ci else ""
    inits = [v for v in init if v is not None]
    return "  %-20s %9.1f %-17s %9.1f %8.3f %8s" % (
        label, statistics.median(values), spread, statistics.median(means), statistics.median(walls),
        "%.2f" % statistics.median(inits) if inits else "-")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--runs", type=int, default=1000, help="timed invokes per method and round (default 1000)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed invokes before them (default 50)")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="round r runs the methods in the order "
                                                            "random.Random(seed + r) shuffles them into")
    parser.add_argument("--build-model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_model:
        _build_model_child(args.build_model)
        return 0
    for name in ("rounds", "runs", "threads"):
        if getattr(args, name) < 1:
            parser.error("--%s must be at least 1" % name)
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")

    litert_benchmark = find_litert_benchmark()
    try:
        import numpy  # noqa: F401
        import ai_edge_litert.interpreter  # noqa: F401
        from edgeprune.report import stats  # noqa: F401
        from edgeprune.results import plan_result  # noqa: F401
    except ImportError as exc:
        raise Missing("%s; run with the project venv: .venv/bin/python benchmarks/agent_overhead.py" % exc)
    model = ensure_model()
    eval_path = ensure_eval()
    print("model %s (%.1f MiB), threads=%d warmup=%d runs=%d rounds=%d seed=%d, %d CPUs"
          % (model.name, model.stat().st_size / 2 ** 20, args.threads, args.warmup, args.runs, args.rounds,
             args.seed, os.cpu_count() or 0))
    rows: Dict[str, List[Dict[str, Any]]] = {m: [] for m in METHODS}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agent-overhead-") as tmp:
        bench = Bench(args, model, eval_path, litert_benchmark, Path(tmp))
        measure: Dict[str, Callable[[], Dict[str, Any]]] = {
            "bare": bench.bare, "agent": bench.agent, "litert-benchmark": bench.litert}
        print("\n%-5s %-24s %10s %10s %10s %10s %10s %8s" % (
            "round", "order", "bare p50", "agent p50", "lb p50", "agent/bare", "agent/lb", "agent s"))
        for r in range(args.rounds):
            order = list(METHODS)
            random.Random(args.seed + r).shuffle(order)
            got = {m: measure[m]() for m in order}
            for m in METHODS:
                rows[m].append(got[m])
            b, a, lb = (got[m]["p50_us"] for m in METHODS)
            print("%-5d %-24s %10.1f %10.1f %10.1f %10.3f %10.3f %8.3f" % (
                r + 1, ",".join(LETTER[m] for m in order),
                b, a, lb, a / b, a / lb, got["agent"]["wall_s"]))
    elapsed = time.perf_counter() - started

    p50 = {m: [row["p50_us"] for row in rows[m]] for m in METHODS}
    mean = {m: [row["mean_us"] for row in rows[m]] for m in METHODS}
    agent0 = rows["agent"][0]
    print("(order: B = bare, A = agent, L = litert-benchmark; µs; agent s = its process, start to exit)")
    print("\nmedian over %d rounds; p50 interval: 95%%, bootstrap over rounds" % args.rounds)
    print("  %-20s %9s %-17s %9s %8s %8s" % ("", "p50 µs", "(interval)", "mean µs", "wall s", "init ms"))
    for m, label in zip(METHODS, ("(a) bare loop", "(b) agent (plan)", "(c) litert-benchmark")):
        print(_p50_line(label, p50[m], mean[m], [row["wall_s"] for row in rows[m]],
                        [row.get("init_ms") for row in rows[m]]))

    print("\nratio of p50s, paired by round (median of the per-round ratios, 95% interval over rounds)")
    print(_ratio_line("agent / bare", p50["agent"], p50["bare"], True))
    print(_ratio_line("agent / litert-benchmark", p50["agent"], p50["litert-benchmark"], True))
    print(_ratio_line("litert-benchmark / bare", p50["litert-benchmark"], p50["bare"], False))
    print("ratio of means, paired by round")
    print(_ratio_line("agent / bare", mean["agent"], mean["bare"], True))
    print(_ratio_line("agent / litert-benchmark", mean["agent"], mean["litert-benchmark"], True))
    print(_ratio_line("litert-benchmark / bare", mean["litert-benchmark"], mean["bare"], False))

    lb_p50 = statistics.median(p50["litert-benchmark"])
    precisions = [row["mean_precision"] for row in rows["litert-benchmark"]]
    print("\nnotes:")
    print("  litert-benchmark writes milliseconds with 2 decimals: its p50 moves in steps of %.0f µs (%.1f%% of it), "
          "so its p50 ratios may be off by up to half a step beyond their interval;"
          % (LB_STEP_US, 100 * LB_STEP_US / lb_p50))
    if None in precisions:
        print("  its mean is its rounded avg_ms in some rounds (throughput_mb_s missing or inconsistent there)")
    else:
        print("  its mean is recovered from throughput_mb_s (to within %.2f%%), so the ratio of means is the precise "
              "comparison with it" % (100 * max(precisions)))
    print("  litert-benchmark times CompiledModel.run_by_name() (buffers in and out included) on random inputs; "
          "bare and agent time Interpreter.invoke() on the eval inputs")
    print("  agent: runtime %s, XNNPACK applied: %s; litert-benchmark fully accelerated: %s"
          % (agent0["runtime"], agent0["xnnpack"], rows["litert-benchmark"][0]["accelerated"]))
    walls = [row["wall_s"] for row in rows["agent"]]
    print("\nagent start-to-result wall time (plan, 1 cell, 1 round of %d+%d invokes, then accuracy on %d samples): "
          "median %.3f s (min %.3f, max %.3f); the agent's own wall_s (import to result) median %.3f s"
          % (args.warmup, args.runs, EVAL_SAMPLES, statistics.median(walls), min(walls), max(walls),
             statistics.median(row["agent_wall_s"] for row in rows["agent"])))
    print("benchmark took %.1f s" % elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
