"""Per-op profiles (issue 13, ``--op-profile``): which ops a delegate took, and where a cell's time goes per op.

Both parts run after the rounds, so neither heats or loads the device while the cells are compared:

- ``delegation``: the interpreter the cell was measured with says which of the model's ops went into a delegate
  partition (XNNPACK or the cell's delegate) and which ran on the builtin CPU kernels. There is no public API
  for it: ``_get_ops_details()`` (ai-edge-litert 2.3 and tflite-runtime 2.14 alike) lists the model's nodes, then
  one node named DELEGATE per partition, whose inputs are the partition's input tensors and whose outputs are its
  outputs. Walking back from those outputs through the nodes that produce them, up to the inputs, finds the
  partition's nodes.
- ``profile_ops``: per-op times need TFLite's C++ ``benchmark_model`` with ``--enable_op_profiling=true``.
  ai-edge-litert's ``litert-benchmark`` has no op profiling (2.3, nor the 2.4 nightly) and the Python
  interpreters expose no profiler, so without that binary there are no times, and a note says why. The tool runs
  the cell's file with the cell's threads, XNNPACK and delegate in a session of its own, killed as a group at a
  deadline; what it prints is untrusted and parsed strictly (``parse_op_profile``).

Standard library only: this module runs on the device and its words end up in the host's report.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

TOOL_NAME = "benchmark_model"
#: Per kind of name (delegation's op names, the profile's node types) at most this many, of at most MAX_OP chars.
MAX_OPS = 64
MAX_OP = 64
#: The profile's slowest nodes kept, and their names' length.
MAX_NODES = 20
MAX_NODE_NAME = 256
MAX_NOTE = 300
MAX_PATH = 4096
#: Bytes of the tool's output kept: the last ones (the regular runs' tables come last).
MAX_OUTPUT = 1 << 20
#: An op or node taking longer than this per run (about 2.8 h) is not a measurement.
MAX_MS = 1e7
#: Percentages are rounded by the tool: a little over 100 is 100, more is not a percentage.
MAX_PERCENT = 100.5

NO_TOOL = ("no per-op profiler on this device: TFLite's benchmark_model is not on PATH nor next to %s "
           "(ai-edge-litert's litert-benchmark has no op profiling); put benchmark_model on PATH or set the "
           "profile's op_profiler")

# --- untrusted text ---

_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]?|\][^\x07\x1b]*(?:\x07|\x1b\\)?|.)?", re.DOTALL)


def clean(value: Any, limit: int) -> str:
    """``value`` as one line of printable ASCII of at most ``limit`` characters: escape sequences removed,
    whitespace folded, any other character a ``?``."""
    text = _ESCAPES.sub("", str(value))
    text = "".join(ch if " " <= ch <= "~" else (" " if ch.isspace() else "?") for ch in text)
    return " ".join(text.split())[:limit]


def _counts(names: List[str]) -> Dict[str, int]:
    """Op name -> how many, most first (then by name), at most MAX_OPS names."""
    counts: Dict[str, int] = {}
    for name in names:
        key = clean(name, MAX_OP) or "?"
        counts[key] = counts.get(key, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return dict(ordered[:MAX_OPS])


# --- which ops a delegate took ---


def _tensor_ids(values: Any) -> List[int]:
    return [int(v) for v in (values if values is not None else ()) if int(v) >= 0]


def delegation(interpreter: Any) -> Optional[Dict[str, Any]]:
    """Which of the model's ops ran inside delegate partitions, from the interpreter's node list.

    Returns ``{"applied", "partitions", "delegated", "fallback", "cpu"}``; the last three map op names to counts:

    - ``delegated``: ops inside a partition (XNNPACK's or the cell's delegate's: the list does not say whose);
    - ``fallback``: a delegate was applied and this op did not go into it: it ran on the builtin CPU kernels;
    - ``cpu``: no delegate was applied at all (``applied`` false: XNNPACK off, or it took nothing), so every op
      ran on the builtin kernels; ``fallback`` is then empty, as ``cpu`` is when a delegate was applied.

    None when the runtime has no ``_get_ops_details`` or it fails (it is private API).
    """
    getter = getattr(interpreter, "_get_ops_details", None)
    if getter is None:
        return None
    try:
        nodes = [(str(op.get("op_name")), _tensor_ids(op.get("inputs")), _tensor_ids(op.get("outputs")))
                 for op in getter()]
    except Exception:
        return None
    original = [i for i, (name, _, _) in enumerate(nodes) if name != "DELEGATE"]
    partitions = [node for node in nodes if node[0] == "DELEGATE"]
    producer: Dict[int, int] = {}
    for index in original:
        for tensor in nodes[index][2]:
            producer.setdefault(tensor, index)
    inside = set()
    for _, inputs, outputs in partitions:
        stop = set(inputs)
        todo = [t for t in outputs if t not in stop]
        seen = set(todo)
        while todo:
            index = producer.get(todo.pop())
            if index is None or index in inside:
                continue
            inside.add(index)
            for tensor in nodes[index][1]:
                if tensor not in stop and tensor not in seen:
                    seen.add(tensor)
                    todo.append(tensor)
    rest = _counts([nodes[i][0] for i in original if i not in inside])
    applied = bool(partitions)
    return {"applied": applied, "partitions": len(partitions),
            "delegated": _counts([nodes[i][0] for i in sorted(inside)]),
            "fallback": rest if applied else {}, "cpu": {} if applied else rest}


# --- finding and running the profiler ---


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_profiler(explicit: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """(path of TFLite's benchmark_model, None), or (None, a note saying what is missing).

    ``explicit`` (the profile's op_profiler) must be an executable file; without it, benchmark_model on PATH, then
    next to this Python (a venv's bin/). litert-benchmark never counts: it cannot profile ops.
    """
    if explicit is not None:
        path = os.path.expanduser(explicit)
        if _executable(path):
            return os.path.abspath(path), None
        return None, clean("the op_profiler %s is not an executable file on this device" % explicit, MAX_NOTE)
    found = shutil.which(TOOL_NAME)
    if found is not None:
        return os.path.abspath(found), None
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), TOOL_NAME)
    if _executable(beside):
        return beside, None
    return None, clean(NO_TOOL % os.path.dirname(os.path.abspath(sys.executable)), MAX_NOTE)


def profiler_argv(tool: str, model_path: str, threads: Optional[int], xnnpack: bool, delegate: Optional[str],
                  runs: int, warmup: int, max_secs: float, delegate_options: Optional[Dict[str, str]] = None
                  ) -> List[str]:
    """benchmark_model's command line for one cell (flags: tensorflow/lite/tools/benchmark/README.md, the delegate's
    options as tensorflow/lite/tools/delegates/README.md writes them: ``key1:value1;key2:value2``).

    ``--use_xnnpack=false`` switches off the default XNNPACK delegate as the agent's ``xnnpack: false`` does;
    ``--max_secs`` bounds the warm-up and the runs each, so a slow model still prints its tables in time.
    """
    argv = [tool, "--graph=%s" % model_path, "--use_xnnpack=%s" % ("true" if xnnpack else "false"),
            "--enable_op_profiling=true", "--num_runs=%d" % runs, "--warmup_runs=%d" % warmup,
            "--max_secs=%g" % max_secs]
    if threads is not None:
        argv.append("--num_threads=%d" % threads)
    if delegate:
        argv.append("--external_delegate_path=%s" % delegate)
        if delegate_options:
            argv.append("--external_delegate_options=%s" % ";".join("%s:%s" % kv for kv in delegate_options.items()))
    return argv


def _exited(proc: "subprocess.Popen[bytes]", end: float) -> bool:
    """Wait until the process exits or ``end`` passes, without reaping it where waitid can: its process group id
    then stays its own until the group is killed, so the kill cannot reach a stranger."""
    waitid = getattr(os, "waitid", None)
    if waitid is None:  # macOS: reaped here, the group is killed straight after
        try:
            proc.wait(timeout=max(0.0, end - time.monotonic()))
            return True
        except subprocess.TimeoutExpired:
            return False
    while True:
        try:
            if waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.02)


def _run(argv: List[str], deadline_s: float) -> Tuple[Optional[int], str]:
    """(exit status, or None when the deadline passed; the last MAX_OUTPUT bytes of stdout and stderr)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, close_fds=True)
    end = time.monotonic() + deadline_s
    kept = bytearray()
    finished = True
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    finished = False
                    break
                if not selector.select(left):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                kept += chunk
                if len(kept) > MAX_OUTPUT:
                    del kept[:len(kept) - MAX_OUTPUT]
        finished = finished and _exited(proc, end)
    finally:
        try:  # the whole session: the tool, and whatever it started that still holds on
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:  # no group of that id: the tool left it (setpgid), so at least the tool itself
            proc.kill()
        proc.wait()
        proc.stdout.close()
    return (proc.returncode if finished else None), kept.decode("utf-8", "replace")


def _last_line(text: str) -> str:
    lines = [line for line in (clean(raw, MAX_NOTE) for raw in text.splitlines()[-20:]) if line]
    return lines[-1] if lines else "it printed nothing"


def _failed(tool: Optional[Dict[str, str]], note: str) -> Dict[str, Any]:
    return {"tool": tool, "ops": [], "nodes": [], "note": clean(note, MAX_NOTE)}


def profile_ops(tool: str, model_path: str, threads: Optional[int], xnnpack: bool, delegate: Optional[str],
                deadline_s: float, runs: int = 50, warmup: int = 5,
                delegate_options: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Run benchmark_model (``tool``) on one cell's file and read its op profile.

    ``{"tool": {"name", "path"}, "ops": [{"type", "count", "avg_ms", "percent"}], "nodes": [{"name", "type",
    "avg_ms", "percent"}], "note": None}``, the tool's name being "benchmark_model" (the kind of tool, whose
    output is parsed) whatever its file is called; when the tool fails, times out or prints no profile, the lists
    are empty and ``note`` says what happened (one line of printable ASCII, naming the file that ran).
    """
    described = {"name": TOOL_NAME, "path": clean(tool, MAX_PATH)}
    said = clean(os.path.basename(tool), MAX_OP) or TOOL_NAME  # the notes name the file that ran
    unsaid = [key for key, value in (delegate_options or {}).items() if set(":;") & set(key + value)]
    if delegate and unsaid:
        return _failed(described, "the delegate option %s cannot be given to %s (it has a ':' or ';')"
                       % (unsaid[0], said))
    argv = profiler_argv(tool, model_path, threads, xnnpack, delegate, runs, warmup, max(1.0, deadline_s / 3.0),
                         delegate_options)
    try:
        status, text = _run(argv, deadline_s)
    except OSError as exc:
        return _failed(described, "cannot start %s: %s" % (tool, exc))
    if status is None:
        return _failed(described, "%s did not finish within %g s and was killed" % (said, deadline_s))
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = "signal %d" % -status
        return _failed(described, "%s was killed by %s: %s" % (said, name, _last_line(text)))
    if status != 0:
        return _failed(described, "%s exited with status %d: %s" % (said, status, _last_line(text)))
    parsed = parse_op_profile(text)
    if parsed["note"] is not None:
        parsed["note"] = clean("%s: %s" % (parsed["note"], _last_line(text)), MAX_NOTE)
    return dict({"tool": described}, **parsed)


# --- benchmark_model's op profile ---

#: The header ProfilingListener::OnBenchmarkEnd (tensorflow/lite/tools/benchmark/profiling_listener.cc) prints
#: before the regular runs' tables; the initialization's tables come before it and are not read.
MARKER = "Operator-wise Profiling Info for Regular Benchmark Runs"
TOP_TABLE = "Top by Computation Time"
TYPE_TABLE = "Summary by node type"
_NUMBER = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?\Z")
_COUNT = re.compile(r"[0-9]{1,9}\Z")
_SPACES = re.compile(r" {2,}")
_MAX_ROWS = 10000


def _fields(line: str) -> List[str]:
    """A row's fields: StatsCalculator's InitField starts each with a tab; text whose tabs became spaces (a log
    copied from a terminal) is split on runs of two or more spaces."""
    parts = line.split("\t") if "\t" in line else _SPACES.split(line)
    return [part.strip() for part in parts if part.strip()]


def _table(lines: List[str], title: str) -> List[Dict[str, str]]:
    """The rows of the first table titled ``title`` ("===== title =====", a header of [column] names, rows up to
    a blank line), each as column name -> text; the last column takes any extra fields (a name with tabs)."""
    at = next((i for i, line in enumerate(lines) if line.strip().startswith("=") and title in line), None)
    if at is None or at + 1 >= len(lines):
        return []
    header = [name.strip("[]").lower() for name in _fields(lines[at + 1])]
    rows = []
    for line in lines[at + 2:at + 2 + _MAX_ROWS]:
        if not line.strip() or line.strip().startswith("="):
            break
        fields = _fields(line)
        if len(fields) > len(header) and header[-1] == "name":
            fields = fields[:len(header) - 1] + [" ".join(fields[len(header) - 1:])]
        if len(fields) == len(header):
            rows.append(dict(zip(header, fields)))
    return rows


def _number(text: Optional[str], limit: float, percent: bool = False) -> Optional[float]:
    """A fixed-point number (the tool prints std::fixed, 3 decimals) within [0, limit], else None."""
    if text is None or (percent and not text.endswith("%")):
        return None
    text = text[:-1] if percent else text
    if not _NUMBER.match(text):
        return None
    value = float(text)
    return round(min(value, 100.0) if percent else value, 3) if value <= limit else None


def _op_rows(rows: List[Dict[str, str]]) -> List[Dict[str, Any]]:
    ops = []
    for row in rows:
        kind = clean(row.get("node type", ""), MAX_OP)
        count = row.get("count", "")
        avg_ms, percent = _number(row.get("avg ms"), MAX_MS), _number(row.get("avg %"), MAX_PERCENT, True)
        if kind and _COUNT.match(count) and avg_ms is not None and percent is not None:
            ops.append({"type": kind, "count": int(count), "avg_ms": avg_ms, "percent": percent})
    ops.sort(key=lambda op: (-op["avg_ms"], op["type"]))
    return ops[:MAX_OPS]


def _node_rows(rows: List[Dict[str, str]]) -> List[Dict[str, Any]]:
    nodes = []
    for row in rows:
        name, kind = clean(row.get("name", ""), MAX_NODE_NAME), clean(row.get("node type", ""), MAX_OP)
        avg_ms, percent = _number(row.get("avg ms"), MAX_MS), _number(row.get("%"), MAX_PERCENT, True)
        if name and kind and avg_ms is not None and percent is not None:
            nodes.append({"name": name, "type": kind, "avg_ms": avg_ms, "percent": percent})
    nodes.sort(key=lambda node: (-node["avg_ms"], node["name"]))
    return nodes[:MAX_NODES]


def parse_op_profile(text: str) -> Dict[str, Any]:
    """benchmark_model's op profile: ``{"ops": [...], "nodes": [...], "note": None or why there are none}``.

    The format is TFLite's StatsCalculator (tensorflow/core/util/stats_calculator.cc, now
    third_party/xla/xla/tsl/util/stats_calculator.cc) as the README's "Profiling model operators" shows it
    (tensorflow/lite/tools/benchmark/README.md): after the MARKER line, tables titled "Run Order", "Top by
    Computation Time" and "Summary by node type", tab-separated right-aligned fields with a header of [column]
    names. Older tools have a [start] column and a node type 24 wide, newer ones none and 40: columns are found by
    their header names. ``ops`` come from the primary graph's "Summary by node type" (its avg ms is per run),
    ``nodes`` from its "Top by Computation Time" (the tool keeps its 10 slowest). A row with a number that is not
    a plain non-negative fixed-point number in range (NaN, inf, exponents, escapes) is left out; names are cleaned.
    """
    lines = text[-MAX_OUTPUT:].splitlines()
    start = next((i for i, line in enumerate(lines) if MARKER in line), None)
    if start is None:
        return {"ops": [], "nodes": [], "note": "no op profile in %s's output (no '%s')" % (TOOL_NAME, MARKER)}
    # The primary graph's tables come first; other subgraphs' and a delegate's own follow (GenerateReport in
    # tensorflow/lite/profiling/profile_summary_formatter.cc): the first table of each title is the primary's.
    section = lines[start + 1:]
    ops, nodes = _op_rows(_table(section, TYPE_TABLE)), _node_rows(_table(section, TOP_TABLE))
    if not ops and not nodes:
        return {"ops": [], "nodes": [], "note": "%s's op profile has no readable '%s' or '%s' rows"
                                                % (TOOL_NAME, TYPE_TABLE, TOP_TABLE)}
    return {"ops": ops, "nodes": nodes, "note": None}


# --- the cell's op_profile ---


def op_profile(interpreter: Any, cell: Dict[str, Any], explicit_tool: Optional[str],
               deadline_s: float) -> Dict[str, Any]:
    """A measured cell's ``op_profile``: ``{"delegation", "tool", "ops", "nodes", "note"}``.

    ``cell`` is the plan's cell (model, threads, xnnpack, delegate, delegate_options); ``tool`` is None and
    ``note`` says why when there is no profiler; the delegation (from ``interpreter``) is there either way.
    """
    result: Dict[str, Any] = {"delegation": delegation(interpreter)}
    tool, note = find_profiler(explicit_tool)
    if tool is None:
        result.update(_failed(None, note or "no per-op profiler"))
    else:
        result.update(profile_ops(tool, cell["model"], cell.get("threads"), bool(cell.get("xnnpack", True)),
                                  cell.get("delegate"), deadline_s, delegate_options=cell.get("delegate_options")))
    return result
