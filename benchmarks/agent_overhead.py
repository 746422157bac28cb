#!/usr/bin/env python
"""How much does the device agent add on top of a bare invoke loop?

Run with the host venv:  .venv/bin/python benchmarks/agent_overhead.py

1. Builds MobileNetV2 (32x32x3, 10 classes, random weights) with tf_keras in
   a child process, converts it to a float32 .tflite (cached under
   .cache/bench/) and writes a small random eval.npz.
2. Alternates, for --rounds rounds:
   (a) a hand-written ai_edge_litert loop in this process: same threads,
       warm-up and runs, perf_counter_ns around invoke() only;
   (b) the agent as a subprocess (`python -m device_agent run`), same
       runtime, threads, warm-up and runs.
   Alternating spreads machine noise (other processes, frequency changes)
   over both instead of letting it land on one.
3. Runs `litert-benchmark` (ai-edge-litert's own tool) once on the same
   model and threads.

Prints the ratio of median p50 latencies (agent / bare; the goal is <= 1.03)
and the agent's start-to-result wall time.  TensorFlow is only imported in
the model-building child, so neither timed side pays for it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "bench"
EVAL_SAMPLES = 64
INPUT_SHAPE = (32, 32, 3)


def _build_model_child(out: Path) -> None:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=INPUT_SHAPE, weights=None,
                                           classes=10)
    blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(blob)
    tmp.replace(out)


def ensure_model() -> Path:
    from importlib import metadata

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / ("mobilenetv2-32x32-f32-tf%s.tflite" % metadata.version("tensorflow"))
    if not path.exists():
        print("building %s ..." % path.name, file=sys.stderr)
        proc = subprocess.run([sys.executable, __file__, "--build-model", str(path)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit("building the model failed:\n" + proc.stderr[-3000:])
    return path


def ensure_eval() -> Path:
    import numpy as np

    path = CACHE / "mobilenetv2-32x32-eval.npz"
    if not path.exists():
        rng = np.random.default_rng(0)
        np.savez(path, x=rng.normal(size=(EVAL_SAMPLES,) + INPUT_SHAPE).astype("float32"),
                 y=rng.integers(0, 10, EVAL_SAMPLES).astype("int64"))
    return path


def bare_loop(model: Path, eval_path: Path, threads: int, warmup: int,
              runs: int) -> Dict[str, float]:
    """The reference: what a person would write by hand."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    x = np.load(eval_path)["x"]
    interpreter = Interpreter(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    inputs = [x[i:i + 1] for i in range(x.shape[0])]
    for i in range(warmup):
        interpreter.set_tensor(index, inputs[i % len(inputs)])
        interpreter.invoke()
    samples: List[int] = []
    for i in range(runs):
        interpreter.set_tensor(index, inputs[i % len(inputs)])
        t0 = time.perf_counter_ns()
        interpreter.invoke()
        samples.append(time.perf_counter_ns() - t0)
    us = np.asarray(samples) / 1000.0
    return {"p50_us": float(np.percentile(us, 50)), "mean_us": float(us.mean()),
            "min_us": float(us.min())}


def agent_run(model: Path, eval_path: Path, threads: int, warmup: int,
              runs: int) -> Dict[str, Any]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    argv = [sys.executable, "-m", "device_agent", "run", str(model), "--eval", str(eval_path),
            "--runtime", "ai_edge_litert", "--threads", str(threads),
            "--warmup", str(warmup), "--runs", str(runs)]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=str(REPO), capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    doc = json.loads(proc.stdout)
    if doc["status"] != "ok":
        raise SystemExit("agent failed: %s" % doc.get("error"))
    timing = doc["timing"]
    return {"p50_us": timing["p50_us"], "mean_us": timing["mean_us"],
            "min_us": timing["min_us"], "wall_s": wall, "init_ms": timing["init_ms"],
            "xnnpack": doc["runtime"]["xnnpack"]}


def litert_benchmark(model: Path, threads: int, warmup: int, runs: int) -> Dict[str, Any]:
    exe = Path(sys.executable).parent / "litert-benchmark"
    if not exe.exists():
        return {"error": "litert-benchmark not found next to %s" % sys.executable}
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        proc = subprocess.run([str(exe), "--model", str(model), "--num_threads", str(threads),
                               "--num_runs", str(runs), "--warmup_runs", str(warmup),
                               "--result_json", str(result)],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not result.exists():
            return {"error": (proc.stderr or proc.stdout)[-500:]}
        latency = json.loads(result.read_text())["latency"]
    return {"p50_us": latency["median_ms"] * 1000.0, "mean_us": latency["avg_ms"] * 1000.0,
            "min_us": latency["min_ms"] * 1000.0, "init_ms": latency["init_ms"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--build-model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_model:
        _build_model_child(args.build_model)
        return 0

    model = ensure_model()
    eval_path = ensure_eval()
    print("model %s (%.1f MiB), threads=%d warmup=%d runs=%d rounds=%d"
          % (model.name, model.stat().st_size / 2**20, args.threads, args.warmup,
             args.runs, args.rounds))
    bare: List[Dict[str, float]] = []
    agent: List[Dict[str, Any]] = []
    print("\n%-6s %14s %14s %8s %12s" % ("round", "bare p50 µs", "agent p50 µs", "ratio",
                                         "agent wall s"))
    for r in range(args.rounds):
        b = bare_loop(model, eval_path, args.threads, args.warmup, args.runs)
        a = agent_run(model, eval_path, args.threads, args.warmup, args.runs)
        bare.append(b)
        agent.append(a)
        print("%-6d %14.1f %14.1f %8.3f %12.3f"
              % (r + 1, b["p50_us"], a["p50_us"], a["p50_us"] / b["p50_us"], a["wall_s"]))

    lb = litert_benchmark(model, args.threads, args.warmup, args.runs)

    def med(rows: List[Dict[str, Any]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    ratio = med(agent, "p50_us") / med(bare, "p50_us")
    print("\nmedian over %d rounds" % args.rounds)
    print("%-34s %10s %10s %10s %10s" % ("", "p50 µs", "mean µs", "min µs", "init ms"))
    print("%-34s %10.1f %10.1f %10.1f %10s" % ("(a) bare ai_edge_litert loop",
                                            med(bare, "p50_us"), med(bare, "mean_us"),
                                            med(bare, "min_us"), "-"))
    print("%-34s %10.1f %10.1f %10.1f %10.2f" % ("(b) device_agent (subprocess)",
                                              med(agent, "p50_us"), med(agent, "mean_us"),
                                              med(agent, "min_us"), med(agent, "init_ms")))
    if "error" in lb:
        print("(c) litert-benchmark: %s" % lb["error"])
    else:
        print("%-34s %10.1f %10.1f %10.1f %10.2f" % ("(c) litert-benchmark (median/avg)",
                                                  lb["p50_us"], lb["mean_us"], lb["min_us"],
                                                  lb["init_ms"]))
    print("\nagent/bare p50 ratio: %.3f (goal <= 1.03) -> %s"
          % (ratio, "OK" if ratio <= 1.03 else "ABOVE GOAL"))
    print("agent start-to-result wall time: median %.3f s (min %.3f, max %.3f); "
          "XNNPACK applied: %s"
          % (med(agent, "wall_s"), min(a["wall_s"] for a in agent),
             max(a["wall_s"] for a in agent), agent[0]["xnnpack"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
