"""Command line: ``python3 -m device_agent {run,plan,probe} ...``.

This module only parses the command line and hands it to ``commands``; even a
command line that cannot be parsed gets its JSON document (``output``), so the
host always has one to read.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Tuple

from . import PLAN_SCHEMA_VERSION, __version__, commands, output, protocol
from . import runtime as runtime_mod
from .protocol import BAD_ARGUMENTS, AgentError

COMMANDS = ("run", "plan", "probe")


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
    sub = parser.add_subparsers(dest="command", metavar="{run,plan,probe}")
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
    plan = sub.add_parser("plan", help="measure the cells of a plan in interleaved rounds",
                          description="Measure every cell of PLAN.json (models x runtimes x threads x "
                                      "XNNPACK) in interleaved rounds, then their accuracy.")
    plan.add_argument("plan", metavar="PLAN.json", help="the plan (schemas/agent-plan.schema.json)")
    for command in (run, plan):
        command.add_argument("--lock", default=None, metavar="PATH",
                             help="hold an exclusive lock on PATH while measuring; if another agent holds "
                                  "it, report `busy` with who holds it and measure nothing")
        command.add_argument("--controller", default=None, metavar="HOST:PID",
                             help="who started this agent, written into the lock (for the host to tell an "
                                  "orphan from a live bench)")
        command.add_argument("--run-id", type=_int_at_least(1), default=None, metavar="N",
                             help="the controller's run, written into the lock (what other controllers see)")
        command.add_argument("--watch-stdin", action="store_true",
                             help="stop at once when stdin reaches end-of-file: the controller keeps it open "
                                  "while it lives, so its death (or its connection's) frees the device")

    probe = sub.add_parser("probe", help="list usable runtimes and device facts",
                           description="List the TFLite runtimes usable here and device facts.")
    for command in (run, plan, probe):
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
    try:
        # Parsing loads no native code, so stdout is still clean here and
        # --help reaches the terminal normally.
        args = build_parser().parse_args(argv)
    except AgentError as exc:
        guess = argv[0] if argv and argv[0] in COMMANDS else None
        if guess == "plan":  # a plan's document, with the plan protocol's schema_version
            doc = protocol.new_document(guess)
            doc["schema_version"] = PLAN_SCHEMA_VERSION
            protocol.set_error(doc, exc)
            output.set_wall_time(doc)
            sys.stdout.write(output.frame(output.render(doc), _frame_token(argv)))
            sys.stdout.flush()
            return exc.exit_code
        return output.print_error(guess, exc, _frame_token(argv))
    return commands.run_command(args)


if __name__ == "__main__":
    sys.exit(main())
