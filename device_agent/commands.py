"""The commands ``run``, ``plan`` and ``probe``: filling the JSON document step by step.

Sections are added to the document as they are measured, so a failure half way still reports everything
gathered before it; any exception becomes the document's ``error`` and the exit code of its kind.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from typing import Any, Dict, List, Tuple

from . import PLAN_SCHEMA_VERSION, lock, output, protocol
from . import runtime as runtime_mod
from . import sysinfo
from .protocol import INTERNAL, MODEL_LOAD, RUNTIME_MISSING, UNSUPPORTED_OP, AgentError

#: Raw latency samples sent back with --samples, at most (evenly strided over the run).
MAX_SAMPLES = 5000


def _options(args: argparse.Namespace) -> Dict[str, Any]:
    return {
        "model": args.model, "eval": args.eval, "runtime": args.runtime,
        "threads": args.threads, "warmup": args.warmup, "runs": args.runs,
        "min_seconds": args.min_seconds, "batch": args.batch,
        "no_xnnpack": args.no_xnnpack, "delegate": args.delegate,
        "delegate_options": dict(args.delegate_option), "max_eval": args.max_eval,
        "samples": args.samples,
    }


def _require_numpy() -> None:
    try:
        import numpy  # noqa: F401
    except Exception as exc:
        raise AgentError(RUNTIME_MISSING, "numpy is not importable: %s" % exc,
                         hint="pip install numpy (numpy<2 for tflite-runtime)")


def _take_lock(args: argparse.Namespace, doc: Dict[str, Any]) -> None:
    """--lock: before anything is loaded, as a second agent must not disturb the one measuring."""
    if getattr(args, "watch_stdin", False):
        try:
            lock.watch_controller(sys.stdin.fileno())
        except (AttributeError, OSError, ValueError):  # no stdin at all: nothing to watch
            pass
    if args.lock:
        try:
            doc["lock"] = {"path": args.lock, "holder": lock.hold(args.lock, args.controller, args.run_id,
                                                                  args.deadline)}
        except lock.Busy as busy:
            doc["lock"] = {"path": busy.path, "holder": busy.holder}
            raise


def cmd_plan(args: argparse.Namespace, doc: Dict[str, Any]) -> None:
    """Many cells in interleaved rounds (``plan``); the lock is held until the agent exits."""
    from . import plan

    checked = plan.read_plan(args.plan)  # a bad plan is refused before the lock is taken
    doc["plan"] = checked
    _take_lock(args, doc)
    _require_numpy()
    plan.cmd_plan(checked, doc)


def cmd_run(args: argparse.Namespace, doc: Dict[str, Any]) -> None:
    doc["options"] = _options(args)
    _take_lock(args, doc)
    doc["device"] = sysinfo.collect_device()
    _require_numpy()
    rt = runtime_mod.select_runtime(args.runtime)
    # numpy-dependent; imported once numpy is known to work
    from . import evaldata, measure, model

    doc["runtime"] = {
        "module": rt.name, "version": rt.version, "threads": args.threads,
        "xnnpack": None, "xnnpack_disable_requested": args.no_xnnpack,
        "xnnpack_disable_honoured": rt.can_disable_default_delegates if args.no_xnnpack
        else None,
        "delegate": None,
    }
    model_path = os.path.abspath(args.model)
    sha, size = model.check_model_file(model_path)
    doc["model"] = {"path": model_path, "sha256": sha, "size_bytes": size}
    memory: Dict[str, Any] = {}
    try:  # run's documents (schema_version 1) say model-load for an op the runtime lacks, custom or not
        model.preflight_load(rt, model_path)
        memory["rss_before_load_kib"] = measure.rss_peak_kib()
        doc["memory"] = memory
        delegates = model.load_delegates(rt, args.delegate, dict(args.delegate_option))
        if delegates:
            doc["runtime"]["delegate"] = {"path": args.delegate,
                                          "options": dict(args.delegate_option)}
        interpreter, init_ms = model.load_interpreter(
            rt, model_path, args.threads, args.no_xnnpack, delegates)
    except AgentError as exc:
        if exc.kind != UNSUPPORTED_OP:
            raise
        raise AgentError(MODEL_LOAD, exc.message, hint=exc.hint)
    memory["rss_after_load_kib"] = measure.rss_peak_kib()
    doc["runtime"]["xnnpack"] = model.xnnpack_applied(interpreter, bool(delegates))
    doc["timing"] = {"init_ms": init_ms}

    in_detail, out_detail = model.describe_io(interpreter, doc["model"])

    x, y = evaldata.load_eval(args.eval, args.max_eval)
    prepared = evaldata.prepare_inputs(x, in_detail)
    del x
    feeds = [((in_detail["index"], prepared[i:i + 1]),) for i in range(prepared.shape[0])]
    timing = measure.time_invokes(interpreter, feeds, args.warmup, args.runs, args.min_seconds)
    samples_ns: List[int] = timing.pop("_samples_ns")
    doc["timing"].update(timing)
    if args.samples:
        # Evenly strided, in time order, so a long --min-seconds run stays a few tens of KB of JSON.
        stride = max(1, -(-len(samples_ns) // MAX_SAMPLES))
        doc["timing"]["samples_us"] = [s / 1000.0 for s in samples_ns[::stride]]
        doc["timing"]["samples_stride"] = stride
    doc["accuracy"] = measure.evaluate(interpreter, in_detail, out_detail,
                                       prepared, y, args.batch)


def _finish_run(doc: Dict[str, Any]) -> None:
    """Measurements taken whether or not the run succeeded."""
    if "memory" in doc:
        try:
            from .measure import rss_peak_kib
            doc["memory"]["rss_peak_kib"] = rss_peak_kib()
        except Exception:
            pass
    doc["device_after"] = sysinfo.volatile_state()


def cmd_probe(args: argparse.Namespace, doc: Dict[str, Any]) -> None:
    found = runtime_mod.probe_runtimes()
    doc["runtimes"] = found["runtimes"]
    doc["runtime_auto"] = found["auto"]
    doc["numpy"] = sysinfo.numpy_version()
    doc["python"] = {"version": sys.version.split()[0], "executable": sys.executable}
    doc["device"] = sysinfo.collect_device()


def _execute(args: argparse.Namespace) -> Tuple[Dict[str, Any], int]:
    doc = protocol.new_document(args.command)
    if args.command == "plan":
        doc["schema_version"] = PLAN_SCHEMA_VERSION
    code = 0
    try:
        if args.command in ("run", "plan"):
            try:
                (cmd_run if args.command == "run" else cmd_plan)(args, doc)
            finally:
                _finish_run(doc)
        else:
            cmd_probe(args, doc)
    except AgentError as exc:
        protocol.set_error(doc, exc)
        code = exc.exit_code
    except (Exception, KeyboardInterrupt) as exc:
        traceback.print_exc(file=sys.stderr)
        err = AgentError(INTERNAL, "%s: %s" % (type(exc).__name__, exc),
                         hint="this is a bug in the agent; the traceback is on stderr")
        protocol.set_error(doc, err)
        code = err.exit_code
    lock.finishing()
    if lock.holding() and isinstance(doc.get("lock"), dict):
        doc["lock"]["released"] = lock.released()
        lock.log_release()
    output.set_wall_time(doc)
    return doc, code


def _start_deadline(seconds: float) -> None:
    """A daemon thread that kills this agent (and what it forked) once ``seconds`` have passed.

    The host stops a timed-out agent itself, but it cannot when the connection to the device is gone: then
    this is what keeps a forgotten agent from measuring beside the next one.
    """
    if not seconds:
        return

    def expire() -> None:
        time.sleep(seconds)
        try:
            sys.stderr.write("edgeprune agent: deadline of %g s passed; stopping\n" % seconds)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        lock.log_release("deadline")
        import signal
        if os.getpgrp() == os.getpid():  # a group of its own (ssh session, or started so): take the children too
            os.killpg(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    import threading
    threading.Thread(target=expire, name="agent-deadline", daemon=True).start()


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command under its --deadline and print its document (--frame); returns the exit code."""
    _start_deadline(args.deadline)
    with output.JsonStdout() as out:
        doc, code = _execute(args)
        out.write_document(output.frame(output.render(doc), args.frame))
    return code
