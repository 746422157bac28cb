"""``--op-profile`` on the device (issue 13): device_agent/opprofile.py.

Delegation is read from real interpreters (ai-edge-litert here, tflite-runtime 2.14 in the Pi-like Python 3.9
venv) on tests/support/tflite_zoo.py's models. No benchmark_model binary exists on this machine (TFLite ships it
as a C++ tool; it is not on PyPI), so its output is parsed from the format TFLite's own source and README give:
tensorflow/lite/tools/benchmark/README.md ("Profiling model operators", the table quoted below verbatim), the
marker line from tensorflow/lite/tools/benchmark/profiling_listener.cc (OnBenchmarkEnd) and the column widths
of the newer StatsCalculator (third_party/xla/xla/tsl/util/stats_calculator.cc: InitField, kNodeTypeWidth 40, no
[start] column). The process handling is tested on real programs: shell scripts that never end or flood their
output (``yes``), ``false`` and ai-edge-litert's ``litert-benchmark`` (which has no op profiling).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from device_agent import model, opprofile, runtime
from support.agent_harness import REPO_ROOT, agent_env

#: What tests/support/tflite_zoo.py builds (both runtimes agree on these).
MULTI_IO_OPS = {"FULLY_CONNECTED": 3, "CONCATENATION": 1, "CONV_2D": 1, "RESHAPE": 1}
CUMSUM_DELEGATED = {"CONV_2D": 1, "FULLY_CONNECTED": 1, "MEAN": 1}


def _load(path: Path, xnnpack: bool) -> Any:
    """The interpreter the way a plan cell loads it (device_agent.model), in this process."""
    rt = runtime.select_runtime("ai_edge_litert")
    interpreter, _ = model.load_interpreter(rt, str(path), None, not xnnpack, [])
    return interpreter


# --- delegation: which ops went into a delegate ---


def test_a_float_model_with_xnnpack_is_delegated_whole(zoo):
    found = opprofile.delegation(_load(zoo / "multi_io.tflite", xnnpack=True))
    assert found == {"applied": True, "partitions": 1, "delegated": MULTI_IO_OPS, "fallback": {}, "cpu": {}}
    assert list(found["delegated"]) == ["FULLY_CONNECTED", "CONCATENATION", "CONV_2D", "RESHAPE"]  # most first


def test_without_xnnpack_every_op_is_on_the_cpu_kernels_and_none_fell_back(zoo):
    found = opprofile.delegation(_load(zoo / "multi_io.tflite", xnnpack=False))
    assert found == {"applied": False, "partitions": 0, "delegated": {}, "fallback": {}, "cpu": MULTI_IO_OPS}


def test_the_op_xnnpack_rejects_falls_back_between_two_partitions(zoo):
    found = opprofile.delegation(_load(zoo / "cumsum_fallback.tflite", xnnpack=True))
    assert found == {"applied": True, "partitions": 2, "delegated": CUMSUM_DELEGATED, "fallback": {"CUMSUM": 1},
                     "cpu": {}}
    # The interpreter itself: the model's four nodes, then one DELEGATE node per partition.
    names = [op["op_name"] for op in _load(zoo / "cumsum_fallback.tflite", True)._get_ops_details()]
    assert names == ["CONV_2D", "MEAN", "CUMSUM", "FULLY_CONNECTED", "DELEGATE", "DELEGATE"]


def test_a_partial_delegation_stops_at_the_partitions_inputs(zoo):
    # mixed_dtypes: GATHER x2 -> ADD -> SUM, CAST, SELECT; ai-edge-litert 2.3's XNNPACK takes ADD and SUM only.
    found = opprofile.delegation(_load(zoo / "mixed_dtypes.tflite", xnnpack=True))
    assert found["delegated"] == {"ADD": 1, "SUM": 1}
    assert found["fallback"] == {"GATHER": 2, "CAST": 1, "SELECT": 1}


class _Raising:
    def _get_ops_details(self) -> List[Dict[str, Any]]:
        raise RuntimeError("private API changed")


def test_delegation_is_null_where_the_private_api_is_missing_or_fails():
    assert opprofile.delegation(object()) is None
    assert opprofile.delegation(_Raising()) is None


PI_DELEGATION = """
import json, sys
from device_agent import model, opprofile, runtime
rt = runtime.select_runtime("auto")
out = {"runtime": rt.name, "version": rt.version}
for path in sys.argv[1:]:
    for xnnpack in (True, False):
        interpreter, _ = model.load_interpreter(rt, path, None, not xnnpack, [])
        out["%s %s" % (path.rsplit("/", 1)[-1], xnnpack)] = opprofile.delegation(interpreter)
cell = {"model": sys.argv[-1], "threads": None, "xnnpack": True, "delegate": None}
out["op_profile"] = opprofile.op_profile(interpreter, cell, None, 10.0)
print(json.dumps(out, allow_nan=False))
"""


@pytest.mark.pi
def test_delegation_on_tflite_runtime_2_14_under_python_3_9(pi_env, zoo, tmp_path):
    env = dict(agent_env(), PATH=str(tmp_path))  # nothing called benchmark_model on PATH
    proc = subprocess.run([str(pi_env.python), "-c", PI_DELEGATION, str(zoo / "multi_io.tflite"),
                           str(zoo / "cumsum_fallback.tflite")], cwd=str(REPO_ROOT), capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (found["runtime"], found["version"]) == ("tflite_runtime", "2.14.0")
    assert found["multi_io.tflite True"] == {"applied": True, "partitions": 1, "delegated": MULTI_IO_OPS,
                                             "fallback": {}, "cpu": {}}
    assert found["multi_io.tflite False"]["cpu"] == MULTI_IO_OPS
    assert found["cumsum_fallback.tflite True"] == {"applied": True, "partitions": 2, "delegated": CUMSUM_DELEGATED,
                                                    "fallback": {"CUMSUM": 1}, "cpu": {}}
    assert found["cumsum_fallback.tflite False"]["applied"] is False
    profile = found["op_profile"]
    assert profile["delegation"] == found["cumsum_fallback.tflite False"]  # the last interpreter loaded
    assert (profile["tool"], profile["ops"], profile["nodes"]) == (None, [], [])
    assert profile["note"].startswith("no per-op profiler on this device: TFLite's benchmark_model is not on PATH")


# --- finding the profiler ---


def _executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_with_no_profiler_on_path_the_note_says_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert opprofile.find_profiler(None) == (None, opprofile.clean(
        opprofile.NO_TOOL % os.path.dirname(os.path.abspath(sys.executable)), opprofile.MAX_NOTE))
    note = opprofile.find_profiler(None)[1]
    assert "benchmark_model is not on PATH" in note and "litert-benchmark has no op profiling" in note
    assert note.endswith("put benchmark_model on PATH or set the profile's op_profiler")
    assert (Path(sys.executable).parent / "litert-benchmark").exists()  # it is there, and does not count


def test_benchmark_model_is_found_on_path_and_an_explicit_one_must_be_executable(monkeypatch, tmp_path):
    tool = _executable(tmp_path / "benchmark_model")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert opprofile.find_profiler(None) == (str(tool), None)
    other = _executable(tmp_path / "linux_aarch64_benchmark_model")
    assert opprofile.find_profiler(str(other)) == (str(other), None)
    plain = tmp_path / "not-executable"
    plain.write_text("")
    for wrong in (plain, tmp_path, tmp_path / "missing"):
        path, note = opprofile.find_profiler(str(wrong))
        assert path is None and note == "the op_profiler %s is not an executable file on this device" % wrong


# --- running it ---


def test_the_command_line_is_benchmark_models_documented_flags():
    argv = opprofile.profiler_argv("/opt/bm", "/m/a.tflite", 4, False, "/usr/lib/libedgetpu.so.1", 50, 5, 40.0)
    assert argv == ["/opt/bm", "--graph=/m/a.tflite", "--use_xnnpack=false", "--enable_op_profiling=true",
                    "--num_runs=50", "--warmup_runs=5", "--max_secs=40", "--num_threads=4",
                    "--external_delegate_path=/usr/lib/libedgetpu.so.1"]
    assert opprofile.profiler_argv("bm", "m.tflite", None, True, None, 3, 1, 2.5) == [
        "bm", "--graph=m.tflite", "--use_xnnpack=true", "--enable_op_profiling=true", "--num_runs=3",
        "--warmup_runs=1", "--max_secs=2.5"]
    # tensorflow/lite/tools/delegates/README.md: "option1:value1;option2:value2;optionN:valueN"
    with_options = opprofile.profiler_argv("bm", "m.tflite", None, True, "libarmnnDelegate.so", 3, 1, 2.5,
                                           {"backends": "CpuAcc", "number-of-threads": "4"})
    assert with_options[-2:] == ["--external_delegate_path=libarmnnDelegate.so",
                                 "--external_delegate_options=backends:CpuAcc;number-of-threads:4"]


def test_delegate_options_the_flag_cannot_carry_are_said_not_run(zoo):
    false = shutil.which("false")
    found = opprofile.profile_ops(false, str(zoo / "multi_io.tflite"), None, True, "libx.so", 10.0,
                                  delegate_options={"ok": "1", "path": "/a;b"})
    assert found == {"tool": {"name": "benchmark_model", "path": false}, "ops": [], "nodes": [],
                     "note": "the delegate option path cannot be given to false (it has a ':' or ';')"}
    ran = opprofile.profile_ops(false, str(zoo / "multi_io.tflite"), None, True, "libx.so", 10.0,
                                delegate_options={"ok": "1"})
    assert ran["note"] == "false exited with status 1: it printed nothing"


def _alive(pid: int) -> bool:
    try:
        state = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_a_profiler_that_never_ends_is_killed_with_what_it_started_at_the_deadline(zoo, tmp_path):
    pid_file = tmp_path / "child.pid"
    tool = _executable(tmp_path / "benchmark_model",
                       "#!/bin/sh\nsleep 600 &\necho $! > %s\necho 'INFO: STARTING!'\nwait\n" % pid_file)
    start = time.monotonic()
    found = opprofile.profile_ops(str(tool), str(zoo / "multi_io.tflite"), 2, True, None, deadline_s=1.5)
    took = time.monotonic() - start
    assert 1.5 <= took < 5, took
    assert found == {"tool": {"name": "benchmark_model", "path": str(tool)}, "ops": [], "nodes": [],
                     "note": "benchmark_model did not finish within 1.5 s and was killed"}
    child = int(pid_file.read_text())
    for _ in range(100):  # its sleep was in the tool's session: killed with it
        if not _alive(child):
            break
        time.sleep(0.05)
    assert not _alive(child)


def test_a_profiler_that_closes_its_output_but_runs_on_is_still_killed_at_the_deadline(zoo, tmp_path):
    tool = _executable(tmp_path / "benchmark_model", "#!/bin/sh\nexec >&- 2>&-\nexec sleep 600\n")
    start = time.monotonic()
    found = opprofile.profile_ops(str(tool), str(zoo / "multi_io.tflite"), None, True, None, deadline_s=1.0)
    assert 1.0 <= time.monotonic() - start < 5
    assert found["note"] == "benchmark_model did not finish within 1 s and was killed"


def test_a_flood_of_output_is_read_to_the_deadline_and_cut(zoo, tmp_path):
    tool = _executable(tmp_path / "flood", "#!/bin/sh\nexec yes 'INFO: flood'\n")
    start = time.monotonic()
    found = opprofile.profile_ops(str(tool), str(zoo / "multi_io.tflite"), None, True, None, 1.0)
    assert time.monotonic() - start < 5
    assert found["note"] == "flood did not finish within 1 s and was killed" and found["ops"] == []


def test_a_failing_profiler_and_litert_benchmark_give_their_own_words(zoo):
    false = opprofile.profile_ops(shutil.which("false"), str(zoo / "multi_io.tflite"), None, True, None, 10.0)
    assert false["note"] == "false exited with status 1: it printed nothing"
    litert = str(Path(sys.executable).parent / "litert-benchmark")
    found = opprofile.profile_ops(litert, str(zoo / "multi_io.tflite"), None, True, None, 30.0)
    assert found["tool"] == {"name": "benchmark_model", "path": litert} and found["ops"] == found["nodes"] == []
    assert found["note"] == ("litert-benchmark exited with status 2: litert-benchmark: error: the following "
                             "arguments are required: --model")


def test_a_cells_op_profile_has_its_delegation_whatever_the_tool_did(monkeypatch, zoo, tmp_path):
    false = shutil.which("false")
    monkeypatch.setenv("PATH", str(tmp_path))
    interpreter = _load(zoo / "cumsum_fallback.tflite", xnnpack=True)
    cell = {"model": str(zoo / "cumsum_fallback.tflite"), "threads": 1, "xnnpack": True, "delegate": None}
    missing = opprofile.op_profile(interpreter, cell, None, 10.0)
    assert list(missing) == ["delegation", "tool", "ops", "nodes", "note"]
    assert missing["delegation"]["fallback"] == {"CUMSUM": 1} and missing["tool"] is None
    assert missing["note"] == opprofile.find_profiler(None)[1]
    failed = opprofile.op_profile(interpreter, cell, false, 10.0)
    assert failed["delegation"] == missing["delegation"] and failed["tool"]["path"] == false
    assert failed["note"].startswith("false exited with status 1")
    json.dumps([missing, failed], allow_nan=False)


# --- benchmark_model's output ---

#: tensorflow/lite/tools/benchmark/README.md, "Profiling model operators" (tensorflow/tensorflow 00ad268), rows
#: left out where marked; preceded by the line ProfilingListener::OnBenchmarkEnd prints before the tables.
README_HEADER = ("\t             [node type]\t  [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]"
                 "\t[times called]\t[Name]")
README_PROFILE = "\n".join([
    "Operator-wise Profiling Info for Regular Benchmark Runs:",
    "============================== Run Order ==============================",
    README_HEADER,
    "\t                 CONV_2D\t    0.000\t    4.269\t    4.269\t  0.107%\t  0.107%\t     0.000\t        0\t"
    "[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]",
    # ... 30 rows
    "",
    "============================== Top by Computation Time ==============================",
    README_HEADER,
    "\t                 CONV_2D\t   19.352\t    6.652\t    6.652\t  0.167%\t  0.167%\t     0.000\t        0\t"
    "[MobilenetV1/MobilenetV1/Conv2d_3_pointwise/Relu6]",
    "\t                 CONV_2D\t    6.421\t    6.107\t    6.107\t  0.153%\t  0.320%\t     0.000\t        0\t"
    "[MobilenetV1/MobilenetV1/Conv2d_1_pointwise/Relu6]",
    "\t                 CONV_2D\t   72.069\t    5.888\t    5.888\t  0.148%\t  0.468%\t     0.000\t        0\t"
    "[MobilenetV1/MobilenetV1/Conv2d_13_pointwise/Relu6]",
    # ... 7 rows
    "",
    "Number of nodes executed: 31",
    "============================== Summary by node type ==============================",
    "\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]",
    "\t                 CONV_2D\t       15\t     1.406\t    89.270%\t    89.270%\t     0.000\t        0",
    "\t       DEPTHWISE_CONV_2D\t       13\t     0.169\t    10.730%\t   100.000%\t     0.000\t        0",
    "\t                 SOFTMAX\t        1\t     0.000\t     0.000%\t   100.000%\t     0.000\t        0",
    "\t                 RESHAPE\t        1\t     0.000\t     0.000%\t   100.000%\t     0.000\t        0",
    "\t         AVERAGE_POOL_2D\t        1\t     0.000\t     0.000%\t   100.000%\t     0.000\t        0",
    "",
    "Timings (microseconds): count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929",
    "Memory (bytes): count=0",
    "31 nodes observed",
    "",
    "",
    "Average inference timings in us: Warmup: 83235, Init: 38467, Inference: 79760.9",
])


def test_the_readmes_profile_is_read():
    found = opprofile.parse_op_profile(README_PROFILE)
    assert found == {"note": None, "ops": [
        {"type": "CONV_2D", "count": 15, "avg_ms": 1.406, "percent": 89.27},
        {"type": "DEPTHWISE_CONV_2D", "count": 13, "avg_ms": 0.169, "percent": 10.73},
        {"type": "AVERAGE_POOL_2D", "count": 1, "avg_ms": 0.0, "percent": 0.0},
        {"type": "RESHAPE", "count": 1, "avg_ms": 0.0, "percent": 0.0},
        {"type": "SOFTMAX", "count": 1, "avg_ms": 0.0, "percent": 0.0}], "nodes": [
        {"name": "[MobilenetV1/MobilenetV1/Conv2d_3_pointwise/Relu6]", "type": "CONV_2D", "avg_ms": 6.652,
         "percent": 0.167},
        {"name": "[MobilenetV1/MobilenetV1/Conv2d_1_pointwise/Relu6]", "type": "CONV_2D", "avg_ms": 6.107,
         "percent": 0.153},
        {"name": "[MobilenetV1/MobilenetV1/Conv2d_13_pointwise/Relu6]", "type": "CONV_2D", "avg_ms": 5.888,
         "percent": 0.148}]}


def _field(value: Any, width: int) -> str:
    """StatsCalculator's InitField: a tab, then the value right-aligned in ``width`` (numbers with 3 decimals)."""
    return "\t" + (("%.3f" % value) if isinstance(value, float) else str(value)).rjust(width)


def _title(title: str) -> str:
    return "============================== %s ==============================" % title


def _node_table(title: str, rows: List[tuple]) -> List[str]:
    """HeaderString and ColumnString of the tsl StatsCalculator: (type, first, avg, %, cdf%, mem KB, times, name)."""
    header = "".join(_field(n, w) for n, w in (("[node type]", 40), ("[first]", 9), ("[avg ms]", 9), ("[%]", 8),
                                               ("[cdf%]", 8), ("[mem KB]", 10), ("[times called]", 9)))
    lines = [_title(title), header + "\t[Name]"]
    for kind, first, avg, pct, cdf, name in rows:
        lines.append(_field(kind, 40) + _field(first, 9) + _field(avg, 9) + _field(pct, 7) + "%" + _field(cdf, 7)
                     + "%" + _field(0.0, 10) + _field(1, 9) + "\t" + name)
    return lines + [""]


def _type_table(rows: List[tuple]) -> List[str]:
    """GetStatsByNodeType: (type, count, avg ms, avg %, cdf %)."""
    header = "".join(_field(n, w) for n, w in (("[Node type]", 40), ("[count]", 9), ("[avg ms]", 10),
                                               ("[avg %]", 11), ("[cdf %]", 11), ("[mem KB]", 10),
                                               ("[times called]", 10)))
    lines = ["Number of nodes executed: %d" % len(rows), _title("Summary by node type"), header]
    for kind, count, avg, pct, cdf in rows:
        lines.append(_field(kind, 40) + _field(count, 9) + _field(avg, 10) + _field(pct, 10) + "%"
                     + _field(cdf, 10) + "%" + _field(0.0, 10) + _field(count, 9))
    return lines + [""]


def _newer_output(top: List[tuple], types: List[tuple]) -> str:
    """A newer benchmark_model's whole output: the initialization's tables (not read), then the regular runs' for
    the primary graph, then a subgraph's (not read either)."""
    init = _node_table("Top by Computation Time", [("ModifyGraphWithDelegate", 6.348, 6.348, 55.64, 55.64,
                                                    "ModifyGraphWithDelegate/0")])
    other = [("WHILE", 9.0, 9.0, 90.0, 90.0, "[loop]:0")]
    return "\n".join(
        ["INFO: STARTING!", "INFO: Enable op profiling: [1]", "INFO: Profiling Info for Benchmark Initialization:"]
        + init + _type_table([("AllocateTensors", 1, 5.061, 44.36, 100.0)])
        + ["INFO: Operator-wise Profiling Info for Regular Benchmark Runs:", "Primary graph profile:"]
        + _node_table("Run Order", top) + _node_table("Top by Computation Time", top) + _type_table(types)
        + ["Timings (microseconds): count=64 first=15808 curr=14892 min=14470 max=17363 avg=15309.2 std=542", "",
           "Subgraph (index: 1) profile:"] + _node_table("Top by Computation Time", other)
        + _type_table([("WHILE", 1, 9.0, 90.0, 90.0)]))


NEWER_TOP = [("Convolution (NHWC, F32) IGEMM", 0.398, 0.407, 2.658, 2.658, "Delegate/Convolution (NHWC, F32) IGEMM:0"),
             ("TFLite_Detection_PostProcess", 3.894, 3.653, 23.862, 26.52,
              "[StatefulPartitionedCall:1, StatefulPartitionedCall:0]:266"),
             ("CUMSUM", 0.011, 0.012, 0.1, 26.62, "[model/cumsum]:2")]
NEWER_TYPES = [("TFLite_Detection_PostProcess", 1, 3.653, 23.973, 23.973), ("CUMSUM", 1, 0.012, 0.1, 24.073),
               ("Convolution (NHWC, F32) IGEMM", 1, 0.406, 2.664, 26.737)]


def test_a_newer_tools_profile_is_read_from_the_primary_graphs_regular_runs_only():
    text = _newer_output(NEWER_TOP, NEWER_TYPES)
    found = opprofile.parse_op_profile(text)
    assert found["note"] is None
    assert found["ops"] == [
        {"type": "TFLite_Detection_PostProcess", "count": 1, "avg_ms": 3.653, "percent": 23.973},
        {"type": "Convolution (NHWC, F32) IGEMM", "count": 1, "avg_ms": 0.406, "percent": 2.664},
        {"type": "CUMSUM", "count": 1, "avg_ms": 0.012, "percent": 0.1}]
    assert found["nodes"] == [
        {"name": "[StatefulPartitionedCall:1, StatefulPartitionedCall:0]:266", "type": "TFLite_Detection_PostProcess",
         "avg_ms": 3.653, "percent": 23.862},
        {"name": "Delegate/Convolution (NHWC, F32) IGEMM:0", "type": "Convolution (NHWC, F32) IGEMM",
         "avg_ms": 0.407, "percent": 2.658},
        {"name": "[model/cumsum]:2", "type": "CUMSUM", "avg_ms": 0.012, "percent": 0.1}]
    # A log whose tabs became spaces (copied from a terminal) reads the same.
    assert opprofile.parse_op_profile(text.expandtabs(8)) == found


def test_the_lists_are_capped_and_sorted_by_time():
    top = [("OP_%03d" % i, 0.1, i / 100.0, 0.5, 50.0, "[t%03d]:%d" % (i, i)) for i in range(100)]
    types = [("OP_%03d" % i, 1, i / 100.0, 0.5, 50.0) for i in range(100)]
    found = opprofile.parse_op_profile(_newer_output(top, types))
    assert [op["type"] for op in found["ops"]] == ["OP_%03d" % i for i in range(99, 35, -1)]
    assert [node["name"] for node in found["nodes"]] == ["[t%03d]:%d" % (i, i) for i in range(99, 79, -1)]


HOSTILE = [  # (type, avg ms as printed, percent as printed, name): kept only where every number is plain
    ("\x1b[31mCONV_2D\x1b[0m", "1.500", "10.000%", "\x1b]0;pwned\x07[conv]:0\x1b[2J"),
    ("MUL", "nan", "1.000%", "[nan]:1"),
    ("ADD", "inf", "1.000%", "[inf]:2"),
    ("SUB", "1e400", "1.000%", "[exp]:3"),
    ("DIV", "9" * 400, "1.000%", "[huge]:4"),
    ("RELU", "-1.000", "1.000%", "[negative]:5"),
    ("TANH", "1.000", "250.000%", "[percent]:6"),
    ("EXP", "\x1b[1m2.000", "1.000%", "[escaped number]:7"),
    ("LOG", "99999999.000", "1.000%", "[over MAX_MS]:8"),
    ("\x1b[0m", "1.000", "1.000%", "[type is only an escape]:9"),
    ("GATHER", "0.250", "100.400%", "caf\u00e9 \u202e" + "x" * 5000),
]


def _hostile_output() -> str:
    def row(kind: str, avg: str, pct: str, tail: str) -> str:
        return "\t%40s\t%9s\t%9s\t%8s\t%8s\t%10s\t%9s\t%s" % (kind, "0.100", avg, pct, "50.000%", "0.000", "1", tail)
    top = [_title("Top by Computation Time"), "\t[node type]\t[first]\t[avg ms]\t[%]\t[cdf%]\t[mem KB]\t"
           "[times called]\t[Name]"] + [row(*entry) for entry in HOSTILE] + [""]
    types = [_title("Summary by node type"), "\t[Node type]\t[count]\t[avg ms]\t[avg %]\t[cdf %]\t[mem KB]\t"
             "[times called]"] + ["\t%s\t%s\t%s\t%s\t50.000%%\t0.000\t1" % (kind, count, avg, pct)
                                  for kind, avg, pct, _ in HOSTILE for count in ("1", "99999999999")] + [""]
    return "\n".join([opprofile.MARKER + ":"] + top + types)


def test_hostile_output_is_cleaned_or_left_out():
    found = opprofile.parse_op_profile(_hostile_output())
    assert found["note"] is None
    assert found["nodes"] == [
        {"name": "[conv]:0", "type": "CONV_2D", "avg_ms": 1.5, "percent": 10.0},
        {"name": "caf? ?" + "x" * 250, "type": "GATHER", "avg_ms": 0.25, "percent": 100.0}]
    assert found["ops"] == [{"type": "CONV_2D", "count": 1, "avg_ms": 1.5, "percent": 10.0},
                            {"type": "GATHER", "count": 1, "avg_ms": 0.25, "percent": 100.0}]
    for entry in found["ops"] + found["nodes"]:
        for value in entry.values():
            if isinstance(value, str):
                assert all(" " <= ch <= "~" for ch in value)
            else:
                assert math.isfinite(value) and value >= 0
    json.dumps(found, allow_nan=False)


def test_output_without_a_profile_gives_a_note():
    for text in ("", "INFO: STARTING!\nERROR: Failed to load model\n", README_PROFILE.split("\n", 1)[1],
                 "\x00\xff" * (3 << 20)):
        start = time.monotonic()
        found = opprofile.parse_op_profile(text)
        assert time.monotonic() - start < 5
        assert found == {"ops": [], "nodes": [], "note": "no op profile in benchmark_model's output (no "
                                                         "'Operator-wise Profiling Info for Regular Benchmark Runs')"}
    empty = opprofile.parse_op_profile(opprofile.MARKER + ":\n" + _title("Summary by node type") + "\n\n")
    assert empty["ops"] == empty["nodes"] == [] and "no readable" in empty["note"]


def test_every_shape_of_op_profile_is_the_plan_results_schemas(monkeypatch, zoo, tmp_path):
    """What the host validates the agent's document against: schemas/agent-plan-result.schema.json's op_profile."""
    import jsonschema

    schema = json.loads((REPO_ROOT / "schemas" / "agent-plan-result.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(dict(schema["$defs"]["op_profile"], **{"$defs": schema["$defs"]}))
    false = shutil.which("false")
    monkeypatch.setenv("PATH", str(tmp_path))
    cell = {"model": str(zoo / "cumsum_fallback.tflite"), "threads": None, "xnnpack": True, "delegate": None,
            "delegate_options": {}}
    tool = {"name": "benchmark_model", "path": "/opt/benchmark_model"}
    shapes = [opprofile.op_profile(_load(zoo / "cumsum_fallback.tflite", xnnpack), cell, explicit, 10.0)
              for xnnpack in (True, False) for explicit in (None, false)]
    shapes += [dict({"delegation": None, "tool": tool}, **opprofile.parse_op_profile(text))
               for text in (README_PROFILE, _hostile_output(), _newer_output(NEWER_TOP, NEWER_TYPES), "")]
    for shape in shapes:
        errors = [error.message for error in validator.iter_errors(shape)]
        assert errors == [], (errors, shape)
