"""The per-op profile view (issue 13): the top op types by time and the delegate's line per cell, as the terminal,
Markdown and HTML show them, built from profiles as the host's reader gives them; device text stays data."""
from __future__ import annotations

import io
import re
from typing import Any, Dict, List, Optional

import pytest
from rich.console import Console

from edgeprune.report import opprofile
from edgeprune.report.opprofile import OpProfileView
from edgeprune.text import clean, for_html, for_markdown

HOSTILE = "\x1b[31m[bold]x[/bold] <script>alert(1)</script> | $x$"
SHOWN = clean(HOSTILE)  # what a reader sees: the escape sequence gone, the rest literal
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")

OPS = [  # as the reader gives them: sorted by time, most first
    {"type": "CONV_2D", "count": 30, "avg_ms": 1.234, "percent": 45.6},
    {"type": "DEPTHWISE_CONV_2D", "count": 13, "avg_ms": 0.61, "percent": 22.5},
    {"type": "FULLY_CONNECTED", "count": 2, "avg_ms": 0.3, "percent": 11.1},
    {"type": "ADD", "count": 10, "avg_ms": 0.2, "percent": 7.4},
    {"type": "MEAN", "count": 1, "avg_ms": 0.1, "percent": 3.7},
    {"type": "SOFTMAX", "count": 1, "avg_ms": 0.004, "percent": 0.1},
]


def profile(delegation: Optional[Dict[str, Any]] = None, ops: Optional[List[Dict[str, Any]]] = None,
            note: Optional[str] = None, tool: Optional[str] = "benchmark_model") -> Dict[str, Any]:
    return {"delegation": delegation, "tool": {"name": tool, "path": f"/usr/local/bin/{tool}"} if tool else None,
            "ops": OPS if ops is None else ops, "nodes": [{"name": "conv/1", "type": "CONV_2D", "avg_ms": 0.5,
                                                         "percent": 12.0}], "note": note}


ALL_IN = {"applied": True, "partitions": 1, "delegated": {"CONV_2D": 30, "DEPTHWISE_CONV_2D": 13, "ADD": 22},
          "fallback": {}}
FELL_BACK = {"applied": True, "partitions": 2, "delegated": {"CONV_2D": 60, "ADD": 3},
             "fallback": {"TOPK_V2": 2, "CUMSUM": 1}}
OFF = {"applied": False, "partitions": 0, "delegated": {}, "fallback": {}}
NO_PROFILER = "no per-op profiler on this device: tflite_runtime 2.14 has no op profiling"


def views() -> List[OpProfileView]:
    return [
        OpProfileView("pi4", "baseline-float32", "baseline-float32", "4 threads, xnnpack", profile(ALL_IN)),
        OpProfileView("pi4", "pruned-int8", "pruned-int8", "4 threads, xnnpack", profile(FELL_BACK)),
        OpProfileView("pi4", "pruned-float32", "pruned-float32", "1 thread", None),  # not profiled: skipped
        OpProfileView("pi3", "baseline-float32", "baseline-float32", "", profile(OFF, ops=[], note=NO_PROFILER,
                                                                                 tool=None)),
        OpProfileView("pi0", "baseline-float32", "baseline-float32", "", None),  # a device with no profile at all
    ]


def rendered(lines: List[str]) -> str:
    """What a terminal shows for the markup lines (no colour, wide: nothing wraps)."""
    console = Console(file=io.StringIO(), width=2000, color_system=None)
    for line in lines:
        console.print(line, highlight=False)
    return console.file.getvalue()


# -- the lines themselves ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("delegation, line", [
    (ALL_IN, "all 65 ops ran in the delegate (1 partition)"),
    (FELL_BACK, "fell back from the delegate: CUMSUM x1, TOPK_V2 x2 (63 of 66 ops delegated, 2 partitions)"),
    (OFF, "no delegate applied"),
    (None, ""),
    ({"applied": True, "partitions": 3, "delegated": {"CONV_2D": 4}, "fallback": {}},
     "all 4 ops ran in the delegate (3 partitions)"),
])
def test_the_delegation_line(delegation, line):
    assert opprofile.delegation_line(profile(delegation)) == line


def test_no_profile_knows_nothing_about_a_delegate_or_ops():
    assert opprofile.delegation_line(None) == "" and opprofile.top_ops(None) == []


def test_top_ops_are_the_slowest_types_first():
    shuffled = profile(ops=[OPS[3], OPS[0], OPS[5], OPS[1], OPS[4], OPS[2]])
    assert [op["type"] for op in opprofile.top_ops(shuffled)] == [op["type"] for op in OPS[:5]]
    assert [op["type"] for op in opprofile.top_ops(shuffled, 2)] == ["CONV_2D", "DEPTHWISE_CONV_2D"]


def test_a_cell_says_its_ops_with_ms_and_share_or_why_there_are_none():
    lines = opprofile.cell_lines(views()[0])
    assert lines.ops[:2] == ("CONV_2D x30: 1.23 ms (45.6%)", "DEPTHWISE_CONV_2D x13: 0.61 ms (22.5%)")
    assert len(lines.ops) == 5 and lines.note == "" and lines.tool == "benchmark_model"
    assert lines.title == "baseline-float32 (4 threads, xnnpack)"
    unprofiled = opprofile.cell_lines(views()[3])
    assert unprofiled.ops == () and unprofiled.note == NO_PROFILER and unprofiled.delegation == "no delegate applied"
    assert opprofile.cell_lines(OpProfileView("d", "c", "v", "", profile(ops=[]))).note == opprofile.NO_TIMES


def test_cells_are_grouped_by_device_and_unprofiled_ones_left_out():
    groups = opprofile.by_device(views())
    assert [(device, [c.variant for c in cells]) for device, cells in groups] == [
        ("pi4", ["baseline-float32", "pruned-int8"]), ("pi3", ["baseline-float32"])]


# -- the renderers -------------------------------------------------------------------------------------------------

def test_terminal_lines():
    text = rendered(opprofile.terminal_lines(views()))
    assert text.splitlines()[0].startswith("Per-op profile (top 5 op types by time per cell")
    assert ("    pruned-int8 (4 threads, xnnpack): fell back from the delegate: CUMSUM x1, TOPK_V2 x2 "
            "(63 of 66 ops delegated, 2 partitions)") in text
    assert ("benchmark_model: CONV_2D x30: 1.23 ms (45.6%); DEPTHWISE_CONV_2D x13: 0.61 ms (22.5%); "
            "FULLY_CONNECTED x2: 0.3 ms (11.1%); ADD x10: 0.2 ms (7.4%); MEAN x1: 0.1 ms (3.7%)") in text
    assert "SOFTMAX" not in text  # the sixth type
    # a note every cell of a device shares is said once, next to the device
    assert f"  pi3 ({NO_PROFILER})\n    baseline-float32: no delegate applied\n" in text
    assert "pi0" not in text and "pruned-float32" not in text


def test_markdown_has_a_table_per_device():
    markdown = opprofile.markdown(views())
    assert markdown.startswith("## Per-op profile\n")
    assert "### pi4\n\n| variant | configuration | delegate | top op types by time |\n|---|---|---|---|\n" in markdown
    assert ("| baseline-float32 | 4 threads, xnnpack | all 65 ops ran in the delegate (1 partition) | "
            r"benchmark\_model: CONV\_2D x30: 1.23 ms (45.6%); DEPTHWISE\_CONV\_2D x13") in markdown
    assert f"| baseline-float32 |  | no delegate applied | *{for_markdown(NO_PROFILER)}* |" in markdown
    assert "SOFTMAX" not in markdown and "pi0" not in markdown


def test_html_has_a_table_per_device():
    html = opprofile.html(views(), n=6)
    assert html.startswith('<section class="op-profile"><h2>Per-op profile</h2>') and html.endswith("</section>")
    assert html.count("<table>") == 2 and "<h3>pi4</h3>" in html and "<h3>pi3</h3>" in html
    assert "<li>CONV_2D x30: 1.23 ms (45.6%)</li>" in html and "<li>SOFTMAX x1: 0.004 ms (0.1%)</li>" in html
    assert f"<em>{NO_PROFILER}</em>" in html and "pi0" not in html


@pytest.mark.parametrize("cells", [[], [OpProfileView("pi4", "c", "v", "", None)]])
def test_no_profile_gives_empty_output(cells):
    assert opprofile.terminal_lines(cells) == [] and opprofile.markdown(cells) == "" and opprofile.html(cells) == ""


# -- device text is data -------------------------------------------------------------------------------------------

def hostile_views() -> List[OpProfileView]:
    hostile = profile({"applied": True, "partitions": 2, "delegated": {HOSTILE: 3}, "fallback": {HOSTILE: 1}},
                      ops=[{"type": HOSTILE, "count": 1, "avg_ms": 2.0, "percent": 50.0}], tool=HOSTILE)
    return [OpProfileView(HOSTILE, HOSTILE, HOSTILE, HOSTILE, hostile),
            OpProfileView(HOSTILE, "c", "v", "", profile(ops=[], note=HOSTILE))]


def test_terminal_shows_device_text_literally():
    text = rendered(opprofile.terminal_lines(hostile_views()))
    assert not CONTROL.search(text.replace("\n", ""))
    assert f"  {SHOWN}\n    {SHOWN} ({SHOWN}): fell back from the delegate: {SHOWN} x1" in text
    assert f"{SHOWN}: {SHOWN} x1: 2 ms (50.0%)" in text and f"      {SHOWN}\n" in text


def test_markdown_escapes_device_text_and_keeps_the_table_whole():
    markdown = opprofile.markdown(hostile_views())
    assert not CONTROL.search(markdown.replace("\n", ""))
    assert not re.search(r"(?<!\\)[<$]", markdown) and "[bold]" not in markdown
    assert f"### {for_markdown(HOSTILE)}" in markdown and f"*{for_markdown(HOSTILE)}*" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(rows) == 4 and {len(re.findall(r"(?<!\\)\|", row)) for row in rows} == {5}


def test_html_escapes_device_text():
    html = opprofile.html(hostile_views())
    assert not CONTROL.search(html.replace("\n", ""))
    assert "<script" not in html and f"<h3>{for_html(HOSTILE)}</h3>" in html
    assert f'<span class="tool">{for_html(HOSTILE)}</span>' in html and f"<em>{for_html(HOSTILE)}</em>" in html
