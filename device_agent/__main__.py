"""Command line: ``python3 -m device_agent {run,probe} ...``.

Whatever happens (bad flags, missing runtime, a model the runtime rejects, a
bug), exactly one JSON document goes to stdout and the exit code says what
kind of failure it was.  To keep that promise even against native libraries
that print to stdout, file descriptor 1 is pointed at stderr while the agent
works, and the document is written to the saved original at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple

from . import __version__
from . import protocol
from . import runtime as runtime_mod
from . import sysinfo
from .protocol import BAD_ARGUMENTS, INTERNAL, RUNTIME_MISSING, AgentError

#: Raw latency samples sent back with --samples, at most (evenly strided over the run).
MAX_SAMPLES = 5000

_STARTED = time.perf_counter()
COMMANDS = ("run", "probe")


class AgentArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting 2, so even
    a mistyped flag produces the JSON document the host is waiting for."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise AgentError(BAD_ARGUMENTS, "%s: %s" % (self.prog, message),
                         hint="see `python3 -m device_agent run --help`")


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not an integer" % text)
        if value < minimum:
            raise argparse.ArgumentTypeError("must be >= %d, got %d" % (minimum, value))
        return value
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text)
    if not (0.0 <= value <= 86400.0):  # also rejects nan and inf
        raise argparse.ArgumentTypeError("must be between 0 and 86400, got %s" % text)
    return value


def _key_value(text: str) -> Tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError("expected KEY=VALUE, got %r" % text)
    key, value = text.split("=", 1)
    return key, value


def build_parser() -> AgentArgumentParser:
    parser = AgentArgumentParser(
        prog="python3 -m device_agent",
        description="edgeprune device agent %s: measure .tflite models on this device "
                    "and print one JSON document." % __version__)
    sub = parser.add_subparsers(dest="command", metavar="{run,probe}")
    sub.required = True

    run = sub.add_parser("run", help="time a model and measure its accuracy",
                         description="Time MODEL and measure its accuracy on EVAL.")
    run.add_argument("model", help="path to the .tflite file")
    run.add_argument("--eval", required=True, metavar="EVAL.npz",
                     help="npz with x (float32 [N, ...input shape]) and y (int labels [N])")
    run.add_argument("--runtime", default="auto",
                     choices=("auto",) + runtime_mod.RUNTIME_NAMES,
                     help="interpreter to use (auto: ai_edge_litert > tflite_runtime > "
                          "tensorflow)")
    run.add_argument("--threads", type=_int_at_least(1), default=None,
                     help="interpreter threads (default: the runtime's choice)")
    run.add_argument("--warmup", type=_int_at_least(0), default=20,
                     help="untimed invokes before timing (default 20)")
    run.add_argument("--runs", type=_int_at_least(1), default=100,
                     help="timed invokes (default 100)")
    run.add_argument("--min-seconds", type=_seconds, default=0.0,
                     help="keep invoking until this many seconds have passed too "
                          "(default 0; capped at %d invokes)"
                          % 1000000)
    run.add_argument("--batch", type=_int_at_least(1), default=1,
                     help="batch size for the accuracy pass (default 1; timing is "
                          "always batch 1)")
    run.add_argument("--no-xnnpack", action="store_true",
                     help="disable the XNNPACK default delegate where the runtime allows")
    run.add_argument("--delegate", default=None, metavar="PATH",
                     help="external delegate library, e.g. libedgetpu.so.1")
    run.add_argument("--delegate-option", type=_key_value, action="append", default=[],
                     metavar="KEY=VALUE", help="option passed to the delegate (repeatable)")
    run.add_argument("--max-eval", type=_int_at_least(1), default=None, metavar="N",
                     help="use only the first N eval samples")
    run.add_argument("--samples", action="store_true",
                     help="include every latency sample (µs) in the output")

    probe = sub.add_parser("probe", help="list usable runtimes and device facts",
                           description="List the TFLite runtimes usable here and device facts.")
    for command in (run, probe):
        command.add_argument("--frame", default=None, metavar="TOKEN", type=_token,
                             help="print the document between marker lines that carry TOKEN, so "
                                  "text a login shell prints to stdout (a banner) cannot be "
                                  "mistaken for it")
        command.add_argument("--deadline", type=_seconds, default=0.0, metavar="SECONDS",
                             help="stop this agent and its children after SECONDS (0: never); the "
                                  "host's safety net for when it lost the connection")
    return parser


def _token(text: str) -> str:
    if not (8 <= len(text) <= 64) or not all(c.isalnum() or c == "-" for c in text):
        raise argparse.ArgumentTypeError("a frame token is 8-64 letters, digits or '-'")
    return text


def frame(document: str, token: Optional[str]) -> str:
    """The document between marker lines (see protocol.FRAME_BEGIN); unchanged without a token."""
    if not token:
        return document
    return "\n%s\n%s%s\n" % (protocol.FRAME_BEGIN % token, document, protocol.FRAME_END % token)


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
        import signal
        if os.getpgrp() == os.getpid():  # a group of its own (ssh session, or started so): take the children too
            os.killpg(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    import threading
    threading.Thread(target=expire, name="agent-deadline", daemon=True).start()


class _JsonStdout:
    """Reserve the real stdout for the final document (see module docstring)."""

    def __init__(self) -> None:
        self._saved: Optional[int] = None

    def __enter__(self) -> "_JsonStdout":
        try:
            sys.stdout.flush()
            self._saved = os.dup(1)
            os.dup2(2, 1)
        except (OSError, ValueError, AttributeError):
            self._saved = None
        return self

    def write_document(self, text: str) -> None:
        if self._saved is None:
            sys.__stdout__.write(text)
            sys.__stdout__.flush()
            return
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        view = memoryview(text.encode("utf-8"))
        while view:
            view = view[os.write(self._saved, view):]

    def __exit__(self, *exc: Any) -> None:
        if self._saved is not None:
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
            os.dup2(self._saved, 1)
            os.close(self._saved)
            self._saved = None


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


def cmd_run(args: argparse.Namespace, doc: Dict[str, Any]) -> None:
    doc["options"] = _options(args)
    doc["device"] = sysinfo.collect_device()
    _require_numpy()
    rt = runtime_mod.select_runtime(args.runtime)
    from . import bench  # numpy-dependent; imported once numpy is known to work

    doc["runtime"] = {
        "module": rt.name, "version": rt.version, "threads": args.threads,
        "xnnpack": None, "xnnpack_disable_requested": args.no_xnnpack,
        "xnnpack_disable_honoured": rt.can_disable_default_delegates if args.no_xnnpack
        else None,
        "delegate": None,
    }
    model_path = os.path.abspath(args.model)
    sha, size = bench.check_model_file(model_path)
    doc["model"] = {"path": model_path, "sha256": sha, "size_bytes": size}
    bench.preflight_load(rt, model_path)

    memory: Dict[str, Any] = {"rss_before_load_kib": bench.rss_peak_kib()}
    doc["memory"] = memory
    delegates = bench.load_delegates(rt, args.delegate, dict(args.delegate_option))
    if delegates:
        doc["runtime"]["delegate"] = {"path": args.delegate,
                                      "options": dict(args.delegate_option)}
    interpreter, init_ms = bench.load_interpreter(
        rt, model_path, args.threads, args.no_xnnpack, delegates)
    memory["rss_after_load_kib"] = bench.rss_peak_kib()
    doc["runtime"]["xnnpack"] = bench.xnnpack_applied(interpreter, bool(delegates))
    doc["timing"] = {"init_ms": init_ms}

    in_details = interpreter.get_input_details()
    out_details = interpreter.get_output_details()
    doc["model"]["num_inputs"] = len(in_details)
    doc["model"]["num_outputs"] = len(out_details)
    if in_details:
        doc["model"]["input"] = bench.tensor_info(in_details[0])
    if out_details:
        doc["model"]["output"] = bench.tensor_info(out_details[0])
    if len(in_details) != 1 or not out_details:
        raise AgentError(protocol.DATA_MISMATCH,
                         "the agent measures single-input classifiers; this model has "
                         "%d inputs and %d outputs" % (len(in_details), len(out_details)))

    x, y = bench.load_eval(args.eval, args.max_eval)
    prepared = bench.prepare_inputs(x, in_details[0])
    del x
    inputs = [prepared[i:i + 1] for i in range(prepared.shape[0])]
    timing = bench.time_invokes(interpreter, in_details[0]["index"], inputs,
                                args.warmup, args.runs, args.min_seconds)
    samples_ns: List[int] = timing.pop("_samples_ns")
    doc["timing"].update(timing)
    if args.samples:
        # Evenly strided, in time order, so a long --min-seconds run stays a few tens of KB of JSON.
        stride = max(1, -(-len(samples_ns) // MAX_SAMPLES))
        doc["timing"]["samples_us"] = [s / 1000.0 for s in samples_ns[::stride]]
        doc["timing"]["samples_stride"] = stride
    doc["accuracy"] = bench.evaluate(interpreter, in_details[0], out_details[0],
                                     prepared, y, args.batch)


def _finish_run(doc: Dict[str, Any]) -> None:
    """Measurements taken whether or not the run succeeded."""
    if "memory" in doc:
        try:
            from .bench import rss_peak_kib
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
    code = 0
    try:
        if args.command == "run":
            try:
                cmd_run(args, doc)
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
    doc["wall_s"] = time.perf_counter() - _STARTED
    return doc, code


def _render(doc: Dict[str, Any]) -> str:
    try:
        return protocol.dumps(doc)
    except Exception as exc:  # a measurement that cannot be serialised is a bug
        traceback.print_exc(file=sys.stderr)
        fallback = protocol.new_document(doc.get("command"))
        protocol.set_error(fallback, AgentError(
            INTERNAL, "cannot serialise result: %s: %s" % (type(exc).__name__, exc)))
        return protocol.dumps(fallback)


def _frame_token(argv: List[str]) -> Optional[str]:
    """The --frame token of a command line argparse refused, when it is itself well-formed."""
    for index, arg in enumerate(argv):
        value = argv[index + 1] if arg == "--frame" and index + 1 < len(argv) else (
            arg[len("--frame="):] if arg.startswith("--frame=") else None)
        if value is not None:
            try:
                return _token(value)
            except argparse.ArgumentTypeError:
                return None
    return None


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    guess = argv[0] if argv and argv[0] in COMMANDS else None
    try:
        # Parsing loads no native code, so stdout is still clean here and
        # --help reaches the terminal normally.
        args = build_parser().parse_args(argv)
    except AgentError as exc:
        doc = protocol.new_document(guess)
        protocol.set_error(doc, exc)
        doc["wall_s"] = time.perf_counter() - _STARTED
        sys.stdout.write(frame(_render(doc), _frame_token(argv)))
        sys.stdout.flush()
        return exc.exit_code
    _start_deadline(args.deadline)
    with _JsonStdout() as out:
        doc, code = _execute(args)
        out.write_document(frame(_render(doc), args.frame))
    return code


if __name__ == "__main__":
    sys.exit(main())
