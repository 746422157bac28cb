#!/usr/bin/env python
"""Does the device agent time any .tflite as litert-benchmark does? Its p50 next to litert-benchmark's, per file.

Run with the host venv:  .venv/bin/python benchmarks/any_tflite.py [FILE.tflite ...] [--rounds 30 --runs 1000
--threads 1 --input-shape NAME=D1,D2,...]

Files: the test zoo's multi_io, int8_input, uint8_input and dynamic (tests/support/tflite_zoo.py; dynamic gets
``frames=1,16,8,3``), the MobileNetV2 float32 model benchmarks/agent_overhead.py builds (cached under .cache/bench/),
and the files (or folders of them) on the command line (``--no-defaults``: only those). ``--input-shape``
applies to every file with an input of that name, as ``edgeprune bench --input-shape`` does.

Per file, before the rounds, one pre-flight run of each tool: a file either of them cannot run (an op, an input
dtype, an input shape litert-benchmark has no option for) is printed with the reason and skipped. Then, every
round, the files in a fresh order and each file's three measurements in a fresh order, both drawn from
``random.Random(seed + round)``, each a fresh process:
  A   the agent as a bench runs it: ``python -m device_agent plan PLAN.json --frame TOKEN``, one cell (runtime
      ai_edge_litert, the threads, warm-up and runs below), latency-only (no eval: generated inputs),
      rounds min = max = 1, read with edgeprune.results.plan_result.judge_plan (agent_overhead.Bench.agent);
  a   the same again: the agent's A/A twin, for the noise floor;
  L   litert-benchmark (ai-edge-litert's tool) with the same --num_threads, --warmup_runs, --num_runs. Its JSON
      rounds every figure to 2 decimals of a millisecond, so its median moves in 10 µs steps (0.00 ms for a model
      of a few µs). It is therefore run as its console script runs it (``benchmark_litert_model.main()``, same
      argv) with its module's ``round`` made the identity: the same code and timing loop, unrounded figures
      (agent_overhead.Bench.litert reads them). ``--as-is`` runs the installed script itself instead (its mean is
      then recovered from throughput_mb_s, its median stays in 10 µs steps).

Printed per file: the p50 and the mean of each (the median over rounds of each round's figure, 95% bootstrap
interval over rounds: report.stats.round_p50_interval), the ratios agent/litert-benchmark of the p50s and of the
means with their 95% intervals paired by round (report.stats.paired_ratio_interval), and the noise floor: the A/A
pair's paired interval (stats.noise_band), widened to at least ±2% (stats.floored_band with edgeprune's default
target_ci), as the report does. Goal (issue 13): each ratio's interval lies within that floor. Then, to say why
they differ where they do: per file, the two calls the tools time (Interpreter.invoke() and
CompiledModel.run_by_name(), the latter built with litert-benchmark's own helpers) in one process, with inputs
drawn as litert-benchmark draws them, in alternating blocks.

Expected failures (no litert-benchmark, no TensorFlow to build a model that is not cached, no file left to
compare) end with one line and exit status 1; bad options exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import _runfolder  # noqa: F401  (tests/ on sys.path, for support.tflite_zoo)
import agent_overhead
from agent_overhead import Bench, find_litert_benchmark, input_bytes

ZOO_FILES = ("multi_io", "int8_input", "uint8_input", "dynamic")
#: The dynamic zoo model's input is [None, None, 8, 3]: the agent runs it at this shape.
DEFAULT_SHAPES = {"frames": [1, 16, 8, 3]}
METHODS = ("agent", "agent@aa", "litert-benchmark")
LETTER = {"agent": "A", "agent@aa": "a", "litert-benchmark": "L"}

#: litert-benchmark as its console script runs it, with its figures unrounded (see the module docstring).
UNROUNDED_LB = """\
import sys
from ai_edge_litert.tools import benchmark_litert_model as tool
# The tool rounds every figure of its result JSON to 2 decimals (ms). A module-level name shadows the builtin for
# that module only: its figures come out exact; nothing else in it, and nothing of its timing loop, changes.
tool.round = lambda number, ndigits=None: number
sys.argv[0] = "litert-benchmark"
sys.exit(tool.main())
"""
#: The two calls the tools time, in one process on one file: blocks of Interpreter.invoke() (what the agent times)
#: and of CompiledModel.run_by_name() built as litert-benchmark builds it (its own helpers), alternating.
#: argv: model threads warmup runs blocks; prints one JSON line.
TWO_APIS = r"""
import json, statistics, sys, time
from types import SimpleNamespace as NS
import numpy as np
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.tools import benchmark_litert_model as tool
model, threads, warmup, runs, blocks = sys.argv[1], *map(int, sys.argv[2:6])
CM, HA, Env, EnvOptions, Options, CpuOptions = tool._import_litert()
env = tool.create_environment(NS(runtime_path="", compiler_plugin_path="", dispatch_library_path=""), Env, EnvOptions)
hw = tool.build_hardware_accelerators(NS(use_npu=False, use_gpu=False, no_cpu=False, require_full_delegation=False), HA)
cm = CM.from_file(model, environment=env, options=tool.create_model_options(NS(num_threads=threads), Options,
                                                                              CpuOptions, hw))
sig = list(cm.get_signature_list().keys() or ["serving_default"])[0]
in_details, out_details = cm.get_input_tensor_details(sig), cm.get_output_tensor_details(sig)
ins = {n: cm.create_input_buffer_by_name(sig, n) for n in in_details}
outs = {n: cm.create_output_buffer_by_name(sig, n) for n in out_details}
for n, buf in ins.items():
    tool.fill_random_input(buf, in_details[n])
interpreter = Interpreter(model_path=model, num_threads=threads)
interpreter.allocate_tensors()
for d in interpreter.get_input_details():
    x = np.random.uniform(-1, 1, d["shape"]) if np.issubdtype(d["dtype"], np.floating) else \
        np.random.randint(max(np.iinfo(d["dtype"]).min, -128), min(np.iinfo(d["dtype"]).max, 127) + 1, d["shape"])
    interpreter.set_tensor(d["index"], x.astype(d["dtype"]))
calls = {"invoke": interpreter.invoke, "run_by_name": lambda: cm.run_by_name(sig, ins, outs)}
p50 = {k: [] for k in calls}
for b in range(blocks):
    for k in (("invoke", "run_by_name") if b % 2 == 0 else ("run_by_name", "invoke")):
        call = calls[k]
        for _ in range(warmup):
            call()
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            call()
            samples.append(time.perf_counter_ns() - t0)
        p50[k].append(statistics.median(samples) / 1000.0)
print(json.dumps(p50))
"""
#: Lines of litert-benchmark's stderr that are never the reason it failed (LiteRT's own log, Python's logging).
_LOG_LINE = re.compile(r"^(INFO|WARNING|VERBOSE|DEBUG): \[|^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|DEBUG) ")


class Missing(SystemExit):
    """An expected failure: one line on stderr, exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__("any_tflite: " + message)


class Usage(SystemExit):
    """A bad option or file argument: one line on stderr, exit status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


class Skip(Exception):
    """A file one of the tools cannot run: its reason is printed and the file is left out."""


def _reason(exc: SystemExit) -> str:
    """agent_overhead's one-line failure, without its script's name."""
    return str(exc.code).replace("agent_overhead: ", "", 1)


def _target_ci() -> float:
    from edgeprune.devices.profiles import DeviceProfile

    return next(f.default for f in dataclasses.fields(DeviceProfile) if f.name == "target_ci")


# --- the files ---


@dataclasses.dataclass
class File:
    label: str
    path: Path
    info: Dict[str, Any]                      # the agent's flatbuffer reader's description
    shapes: Dict[str, List[int]]              # the agent's input_shapes for this file
    skip: Optional[str] = None
    bench: Optional["FileBench"] = None
    rows: Dict[str, List[Dict[str, Any]]] = dataclasses.field(default_factory=lambda: {m: [] for m in METHODS})
    stopped: Optional[str] = None             # why a file that passed its pre-flight left the rounds

    def inputs_text(self) -> str:
        parts = []
        for t in self.info["inputs"]:
            shape = self.shapes.get(t["name"], t["shape"])
            dynamic = " (signature %s)" % _dims(t["shape_signature"]) if -1 in t["shape_signature"] else ""
            parts.append("%s %s %s%s" % (t["name"], t["dtype"], _dims(shape), dynamic))
        return "; ".join(parts)


def _dims(dims: List[int]) -> str:
    return "[%s]" % ",".join(str(d) for d in dims)


def collect_files(args: argparse.Namespace, given_shapes: Dict[str, List[int]]) -> List[File]:
    """The default set (unless --no-defaults) and the files given, each once (by content), labelled by stem."""
    from device_agent import flatbuffer
    from device_agent.protocol import AgentError
    from edgeprune.errors import ConfigError
    from edgeprune.results.imported import expand

    try:
        given = expand(args.files)
    except ConfigError as exc:
        raise Usage(str(exc))
    shapes = dict(DEFAULT_SHAPES, **given_shapes)
    paths: List[Path] = []
    if not args.no_defaults:
        try:
            from support import tflite_zoo

            zoo = tflite_zoo.zoo_dir()
        except (ImportError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            raise Missing("cannot build the test zoo of .tflite files: %s" % agent_overhead._last_line(str(exc)))
        paths += [zoo / (name + ".tflite") for name in ZOO_FILES]
        try:
            paths.append(agent_overhead.ensure_model())
        except agent_overhead.Missing as exc:
            raise Missing(_reason(exc))
    paths += given
    if not paths:
        raise Usage("no files: name some, or leave out --no-defaults")
    files: List[File] = []
    seen: Dict[str, str] = {}
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise Usage("%s: cannot read: %s" % (path, exc.strerror or exc))
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            print("note: %s is the same file as %s: measured once" % (path, seen[digest]))
            continue
        seen[digest] = str(path)
        label = path.stem if not path.stem.startswith("mobilenetv2-32x32-f32") else "mobilenetv2"
        taken = {f.label for f in files}
        base, n = label, 2
        while label in taken:
            label, n = "%s-%d" % (base, n), n + 1
        try:
            info = flatbuffer.describe(flatbuffer.parse(data, str(path)))
        except AgentError as exc:
            files.append(File(label, path, {"inputs": [], "outputs": [], "ops": []}, {},
                              skip="not a readable .tflite: %s" % exc.message))
            continue
        names = {t["name"] for t in info["inputs"]}
        files.append(File(label, path, info, {k: v for k, v in shapes.items() if k in names}))
    names = {t["name"] for f in files for t in f.info["inputs"]}
    unknown = sorted(set(given_shapes) - names)
    if unknown:
        raise Usage("--input-shape %s: no file has an input of that name (inputs: %s)"
                    % (unknown[0], ", ".join(sorted(names))[:300]))
    return files


# --- measuring ---


class FileBench(Bench):
    """agent_overhead's two ways of measuring, for one file: its agent() with a latency-only one-cell plan (the
    file's input_shapes, no eval) and its litert() with the command chosen here."""

    def __init__(self, args: argparse.Namespace, file: File, litert_benchmark: Path, work: Path) -> None:
        self.args = args
        self.model = file.path.resolve()
        self.eval_path = None
        self.litert_benchmark = litert_benchmark
        self.work = work
        self.input_mib = 0.0  # set by check_litert(), from an interpreter, once the agent has loaded the file
        self.plan_path = work / "plan.json"
        self.plan_path.write_text(json.dumps({
            "plan_version": 1, "seed": 0, "rounds": {"min": 1, "max": 1},
            "cells": [{"id": "model", "model": str(self.model), "runtime": "ai_edge_litert",
                       "threads": args.threads, "warmup": args.warmup, "runs": args.runs,
                       "input_shapes": file.shapes}]}))

    def check_litert(self, file: File) -> None:
        """litert-benchmark's pre-flight; Skip with its own reason when it cannot run the file as the agent does."""
        resized = [(t["name"], t["shape"], file.shapes[t["name"]]) for t in file.info["inputs"]
                   if t["name"] in file.shapes and file.shapes[t["name"]] != t["shape"]]
        if resized:
            name, own, asked = resized[0]
            raise Skip("litert-benchmark has no option to set an input shape (ai-edge-litert's tool takes --model, "
                       "--signature, --num_threads, --num_runs, --warmup_runs and accelerator flags; no "
                       "--input_layer_shape): it would run %s at the file's own %s, not at %s as the agent does "
                       "(compare at its shape with --input-shape %s=%s)"
                       % (name, _dims(own), _dims(asked), name, ",".join(map(str, own))))
        try:
            self.input_mib = input_bytes(self.model) / 2 ** 20
        except (ValueError, RuntimeError, TypeError) as exc:
            raise Skip("its inputs cannot be counted for litert-benchmark's throughput: %s" % exc)
        result = self.work / "pre-flight.json"
        a = self.args
        proc, _ = agent_overhead._run([str(self.litert_benchmark), "--model", str(self.model),
                                       "--num_threads", str(a.threads), "--num_runs", "5", "--warmup_runs", "1",
                                       "--result_json", str(result)], "litert-benchmark")
        if proc.returncode != 0 or not result.exists():
            lines = [line.strip() for line in proc.stderr.decode("utf-8", "replace").splitlines()
                     if line.strip() and not _LOG_LINE.match(line.strip())]
            ended = "killed by signal %d" % -proc.returncode if proc.returncode < 0 else "exit %d" % proc.returncode
            raise Skip("litert-benchmark cannot run it (%s): %s" % (ended, lines[-1][:300] if lines else "no message"))


def measure(file: File, method: str) -> Dict[str, Any]:
    bench = file.bench
    assert bench is not None
    return bench.litert() if method == "litert-benchmark" else bench.agent()


def prepare(file: File, args: argparse.Namespace, litert_benchmark: Path, folder: Path) -> None:
    """The two pre-flights (the agent first: it refuses files it cannot load before anything loads them here)."""
    if file.skip:
        return
    folder.mkdir()
    bench = FileBench(args, file, litert_benchmark, folder)
    try:
        try:
            bench.agent()
        except SystemExit as exc:
            raise Skip("the agent cannot run it: " + _reason(exc))
        bench.check_litert(file)
    except Skip as exc:
        file.skip = str(exc)
        return
    file.bench = bench


# --- statistics and printing ---


def _series(file: File, method: str, key: str) -> List[float]:
    return [row.get(key, math.nan) for row in file.rows[method]]


def _interval_text(values: List[float]) -> Tuple[str, str]:
    from edgeprune.report import stats

    ci = stats.round_p50_interval(values)
    if ci is None:
        return "-", ""
    digits = 2 if ci.mid < 100 else 1
    return "%.*f" % (digits, ci.mid), "(%.*f-%.*f)" % (digits, ci.low, digits, ci.high)


def judge(ratio: Any, noise: float) -> str:
    """The ratio agent / litert-benchmark against the noise floor 1 ± noise."""
    if ratio is None:
        return "not enough rounds"
    if 1.0 - noise <= ratio.low and ratio.high <= 1.0 + noise:
        return "goal met: within the noise floor"
    if ratio.low > 1.0 + noise:
        return "GOAL NOT MET: the agent is slower by more than the noise (%.1f%%)" % (100 * (ratio.mid - 1))
    if ratio.high < 1.0 - noise:
        return "GOAL NOT MET: the agent is faster by more than the noise (%.1f%%)" % (100 * (1 - ratio.mid))
    return "GOAL NOT SHOWN: the interval reaches beyond the noise floor"


def report_file(file: File, floor: float, as_is: bool) -> Dict[str, Any]:
    from edgeprune.report import stats

    n = len(file.rows["agent"])
    print("\n%s  %s" % (file.label, file.path))
    print("  inputs: %s" % file.inputs_text())
    if file.stopped:
        print("  left the rounds: %s" % file.stopped)
    agent0 = next((r for r in file.rows["agent"] if "runtime" in r), {})
    lb0 = next((r for r in file.rows["litert-benchmark"] if "accelerated" in r), {})
    print("  agent: %s, XNNPACK applied: %s; litert-benchmark fully accelerated: %s; %d rounds"
          % (agent0.get("runtime"), agent0.get("xnnpack"), lb0.get("accelerated"), n))
    print("  %-26s %10s %-19s %10s %-19s" % ("", "p50 µs", "(95% interval)", "mean µs", "(95% interval)"))
    for method, label in zip(METHODS, ("agent (A)", "agent again (a, A/A twin)", "litert-benchmark (L)")):
        p50, p50_ci = _interval_text(_series(file, method, "p50_us"))
        mean, mean_ci = _interval_text(_series(file, method, "mean_us"))
        print("  %-26s %10s %-19s %10s %-19s" % (label, p50, p50_ci, mean, mean_ci))
    verdicts: Dict[str, Any] = {"label": file.label}
    for key, what in (("p50_us", "p50"), ("mean_us", "mean")):
        a, twin, lb = (_series(file, m, key) for m in METHODS)
        band = stats.noise_band(a, twin)
        measured = stats.noise_fraction(band)
        noise = stats.noise_fraction(stats.floored_band(band, floor)) if band is not None else floor
        ratio = stats.paired_ratio_interval(a, lb)
        floor_text = ("A/A %.3f (%s), %s%s" % (band.mid, stats.span_text(band.low, band.high),
                                               stats.percent(measured or 0.0),
                                               " -> floor %s" % stats.percent(floor) if floor > (measured or 0.0)
                                               else "") if band is not None
                      else "no A/A band, floor %s" % stats.percent(floor))
        ratio_text = ("%.3f (%s)" % (ratio.mid, stats.span_text(ratio.low, ratio.high)) if ratio is not None
                      else "-")
        verdict = judge(ratio, noise)
        diffs = [l_ - a_ for a_, l_ in zip(a, lb) if math.isfinite(a_) and math.isfinite(l_) and a_ > 0 and l_ > 0]
        diff = "%+.2f µs" % statistics.median(diffs) if diffs else "-"
        print("  %-5s agent/L %-22s noise %s: %s" % (what, ratio_text, stats.percent(noise), verdict))
        print("        %s; L - A per invoke: %s (median of the rounds)" % (floor_text, diff))
        verdicts[what] = (ratio, noise, verdict, diff)
    if as_is:
        lb_p50 = [v for v in _series(file, "litert-benchmark", "p50_us") if math.isfinite(v)]
        middle = statistics.median(lb_p50) if lb_p50 else 0.0
        if middle <= 0:
            print("  note: --as-is: litert-benchmark's JSON gives this file's median as 0.00 ms: no p50 to compare")
        elif middle < 1000:
            print("  note: --as-is: litert-benchmark's median moves in 10 µs steps, %.1f%% of it"
                  % (1000.0 / middle))
    return verdicts


def two_apis(file: File, args: argparse.Namespace, blocks: int) -> str:
    """One line: Interpreter.invoke() and CompiledModel.run_by_name() timed in one process (TWO_APIS)."""
    try:
        proc, _ = agent_overhead._run([sys.executable, "-c", TWO_APIS, str(file.path), str(args.threads),
                                       str(args.warmup), str(args.runs), str(blocks)], "the two-API loop")
    except SystemExit as exc:
        return "not measured: " + _reason(exc)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.decode("utf-8", "replace").splitlines()
                 if line.strip() and not _LOG_LINE.match(line.strip())]
        return "not measured (exit %d): %s" % (proc.returncode, lines[-1][:300] if lines else "no message")
    try:
        p50 = json.loads(agent_overhead._last_line(proc.stdout.decode("utf-8", "replace")))
        invoke, run = statistics.median(p50["invoke"]), statistics.median(p50["run_by_name"])
        diffs = statistics.median(r - i for i, r in zip(p50["invoke"], p50["run_by_name"]))
        ratios = [i / r for i, r in zip(p50["invoke"], p50["run_by_name"])]
    except (ValueError, KeyError, TypeError, ZeroDivisionError):
        return "not measured: the loop printed no result"
    return ("invoke() %.2f µs, run_by_name() %.2f µs: %+.2f µs per call; invoke/run_by_name %.3f (blocks %.3f-%.3f)"
            % (invoke, run, diffs, statistics.median(ratios), min(ratios), max(ratios)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help=".tflite files or folders of them, besides the default set")
    parser.add_argument("--no-defaults", action="store_true", help="only the files given")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,...",
                        help="the shape of every input of that name (repeatable); default frames=1,16,8,3")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds (default 30)")
    parser.add_argument("--runs", type=int, default=1000, help="timed invokes per measurement (default 1000)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed invokes before them (default 50)")
    parser.add_argument("--threads", type=int, default=1, help="threads, both tools (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="round r's order comes from random.Random(seed + r)")
    parser.add_argument("--as-is", action="store_true",
                        help="run the installed litert-benchmark script itself (figures rounded to 10 µs)")
    args = parser.parse_args()
    for name in ("rounds", "runs", "threads"):
        if getattr(args, name) < 1:
            parser.error("--%s must be at least 1" % name)
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    try:
        from edgeprune.errors import ConfigError
        from edgeprune.results.imported import parse_shapes
        from edgeprune.report import stats  # noqa: F401
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError as exc:
        raise Missing("%s; run with the project venv: .venv/bin/python benchmarks/any_tflite.py" % exc)
    try:
        shapes = parse_shapes(args.input_shape)
    except ConfigError as exc:
        parser.error(str(exc))

    try:
        installed = find_litert_benchmark()
    except agent_overhead.Missing as exc:
        raise Missing(_reason(exc))
    try:
        files = collect_files(args, shapes)
    except Usage as exc:
        parser.error(exc.message)
    floor = _target_ci()
    from importlib import metadata

    print("any_tflite: threads=%d warmup=%d runs=%d rounds=%d seed=%d; %d CPUs; ai-edge-litert %s; litert-benchmark "
          "%s" % (args.threads, args.warmup, args.runs, args.rounds, args.seed, os.cpu_count() or 0,
                  metadata.version("ai-edge-litert"),
                  "as installed (%s)" % installed if args.as_is else "unrounded (its main(), see --help)"))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="any-tflite-") as tmp:
        work = Path(tmp)
        litert_benchmark = installed
        if not args.as_is:
            first = installed.read_bytes()[:256].split(b"\n", 1)[0]
            python = first[2:].decode("utf-8", "replace").strip() if first.startswith(b"#!") else ""
            shim = work / "litert-benchmark-unrounded"
            shim.write_text("#!%s\n%s" % (python if python and Path(python).exists() else sys.executable,
                                           UNROUNDED_LB))
            shim.chmod(0o755)
            litert_benchmark = shim
        print("\npre-flight (one run of each tool per file):")
        for index, f in enumerate(files):
            prepare(f, args, litert_benchmark, work / ("file-%d" % index))
            print("  %-14s %s" % (f.label, "SKIPPED: " + f.skip if f.skip else "ok (%s)" % f.inputs_text()))
        live = [f for f in files if f.bench is not None]
        if not live:
            raise Missing("no file could be run by both the agent and litert-benchmark (reasons above)")

        print("\nper round: agent/litert-benchmark p50 ratio per file; order: file number and A = agent, "
              "a = its A/A twin, L = litert-benchmark")
        print("%-5s %7s  %s  %s" % ("round", "s", " ".join("%12s" % ("%d %s" % (i + 1, f.label))[:12]
                                                            for i, f in enumerate(live)), "order"))
        for r in range(args.rounds):
            t0 = time.perf_counter()
            rng = random.Random(args.seed + r)
            todo = list(range(len(live)))
            rng.shuffle(todo)
            order = []
            for i in todo:
                f = live[i]
                methods = list(METHODS)
                rng.shuffle(methods)
                order.append("%d%s" % (i + 1, "".join(LETTER[m] for m in methods)))
                got: Dict[str, Dict[str, Any]] = {}
                if f.stopped is None:
                    try:
                        for m in methods:
                            got[m] = measure(f, m)
                    except SystemExit as exc:
                        f.stopped = "round %d: %s" % (r + 1, _reason(exc))
                        got = {}
                for m in METHODS:
                    f.rows[m].append(got.get(m, {}))
            cells = []
            for f in live:
                a, lb = f.rows["agent"][-1].get("p50_us"), f.rows["litert-benchmark"][-1].get("p50_us")
                cells.append("%12s" % ("%.3f" % (a / lb) if a and lb else "-"))
            print("%-5d %7.1f  %s  %s" % (r + 1, time.perf_counter() - t0, " ".join(cells), " ".join(order)))
    rounds_s = time.perf_counter() - started

    print("\nper file: the median over rounds of each round's figure, 95%% bootstrap interval over rounds; "
          "ratios agent/litert-benchmark paired by round (median per-round ratio, 95%% interval); noise floor: "
          "the A/A pair's paired interval, at least %s (edgeprune's default target_ci)" % stats.percent(floor))
    summary = [report_file(f, floor, args.as_is) for f in live]

    print("\nsummary (goal: the ratio's 95% interval within the noise floor)")
    print("  %-14s %-36s %-36s" % ("file", "p50 agent/L (noise)", "mean agent/L (noise)"))
    for v in summary:
        cells = []
        for what in ("p50", "mean"):
            ratio, noise, verdict, _ = v[what]
            mark = "ok" if verdict.startswith("goal met") else "NOT MET" if "NOT MET" in verdict else "not shown"
            cells.append("%-36s" % ("%.3f (%s) %s %s" % (ratio.mid, stats.span_text(ratio.low, ratio.high),
                                                          stats.percent(noise), mark) if ratio else "-"))
        print("  %-14s %s %s" % (v["label"], cells[0], cells[1]))
    for f in files:
        if f.skip:
            print("  %-14s skipped: %s" % (f.label, f.skip))
    blocks = 8
    print("\nwhy they differ: the two calls the tools time, in one process per file (inputs drawn as litert-benchmark "
          "draws them), %d alternating blocks of %d+%d (median of the block p50s; compare with L - A above)"
          % (blocks, args.warmup, args.runs))
    for f in live:
        print("  %-14s %s" % (f.label, two_apis(f, args, blocks)))
    print("\nnotes:")
    print("  inputs: the agent generates them from each input's dtype (floats uniform in [0, 1), 8/16-bit ints over "
          "their whole range, wider ints in [0, 64)), 8 sets cycled, set before each invoke outside the timed "
          "region; litert-benchmark writes one random set once (floats uniform in [-1, 1), ints in "
          "[max(min, -128), min(max, 127)]) into its input buffers")
    print("  what is timed: the agent times Interpreter.invoke() (perf_counter_ns); litert-benchmark times "
          "CompiledModel.run_by_name(signature, input buffers, output buffers) (perf_counter): another API, with "
          "its own per-call cost, which \"why they differ\" measures")
    print("rounds took %.1f s; benchmark took %.1f s" % (rounds_s, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
