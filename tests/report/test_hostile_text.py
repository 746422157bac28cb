"""Text from a device or a user's file is data: it never becomes Rich markup, terminal control, a Markdown link,
HTML or mathtext, and a huge message is capped in every output.

The hostile strings go through the real store API into a real SQLite file; the CLI runs as a user runs it.
"""
from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Dict, NamedTuple

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.text import Text

import edgeprune as edgeprune_api
from edgeprune.report import plots
from edgeprune.cli.display import FleetDisplay, RichProgress, variants_table
from edgeprune.results.store import Store
from edgeprune.text import clean, for_csv, for_html, for_markdown, for_matplotlib, for_rich
from support.cli import edgeprune
from support.store_rows import round_cell, store_plan

MARKUP = "[/] [link=http://evil]x[/link] [bold red]boom[/]"
ESCAPES = "\x1b]0;pwned\x07 \x1b[2J \r\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\ \x9b31m \u202etxt.exe"
INJECTION = "<script>alert(1)</script> [y](http://evil.example) | # *b* `c` $\\frac{$"
HOSTILE = f"{MARKUP} {ESCAPES} {INJECTION}"
HUGE = HOSTILE + " " + "A" * (6 * 1024 * 1024)
CAP = "… (+"
#: Control characters that may not reach a terminal or a file (a newline between lines is fine).
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

DEVICE_OK = "pi $\\frac{$ [/] | `x`"
DEVICE_DOWN = "down \x1b]0;pwned\x07 [bold red]x[/]"
EVIL_VARIANT = "evil $\\frac{$ [/] | variant"


def _variant(name: str, size: int, accuracy: float) -> Dict[str, object]:
    return {"name": name, "status": "ok", "file": f"{name}.tflite", "sha256": "0" * 64, "size_bytes": size,
            "gzip_bytes": size // 2, "sparsity": 0.5, "accuracy": accuracy, "predictions_digest": "0" * 16}


MANIFEST = {
    "baseline": {"source": f"model {MARKUP} {ESCAPES} <script>alert(1)</script>"},
    "dataset": {"name": f"data {MARKUP} `y` \x1b[2J"},
    "variants": [
        _variant("baseline-float32", 40_000, 0.97), _variant("pruned-int8", 12_000, 0.96),
        _variant(EVIL_VARIANT, 20_000, 0.95),
        {"name": "pruned-float16", "status": "error", "description": "float16", "error": HUGE},
    ],
    "pruning": {"sparsity": 0.8, "schedule": {"initial_sparsity": 0.5, "final_sparsity": 0.8, "begin_step": 0,
                                              "end_step": 60, "frequency": 6, "recovery_steps": 40}},
    "timings": {"total": 1.0},
}


def _ok(p50: float, version: str) -> Dict[str, object]:
    samples = [p50 + (i % 7) - 3 for i in range(210)]  # median p50, as an agent sends them
    return {"status": "ok", "runtime": f"ai_edge_litert {MARKUP}", "runtime_version": version, "threads": 1,
            "python_version": f"3.11 {HOSTILE}", "machine": f"aarch64 {ESCAPES}", "init_ms": 3.0,
            "p50_us": p50, "p90_us": p50 + 5, "p99_us": p50 + 6, "mean_us": p50 + 1, "runs": 200,
            "accuracy": 0.95, "agreement": 1.0, "agent_json": json.dumps({"timing": {"samples_us": samples}})}


def _fill_run(store: Store, version: str) -> int:
    run_id = store.create_run(f"/nonexistent/run `{MARKUP}`", MANIFEST, {})
    store.add_device(run_id, DEVICE_OK, "ssh", f"192.0.2.1 {HOSTILE}", ["lab"], {})
    store.add_device(run_id, DEVICE_DOWN, "ssh", f"192.0.2.2 {ESCAPES}", [], {})
    for variant, p50 in (("baseline-float32", 900.0), ("pruned-int8", 400.0), (EVIL_VARIANT, 600.0)):
        store.record(run_id, DEVICE_OK, variant, _ok(p50, version))
        store.record(run_id, DEVICE_DOWN, variant, {"status": "failed", "error_kind": f"deploy {MARKUP}",
                                                    "error_message": HUGE})
    return run_id


class HostileDb(NamedTuple):
    db: Path
    runs: tuple


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory: pytest.TempPathFactory) -> HostileDb:
    db = tmp_path_factory.mktemp("hostile") / "store.db"
    with Store.open(db) as store:
        runs = (_fill_run(store, f"2.14 {HOSTILE}"), _fill_run(store, f"2.15 {MARKUP}"))
    return HostileDb(db, runs)


def run_cli(*args: str) -> "subprocess.CompletedProcess[str]":
    """The CLI with a wide, colourless stdout: any escape sequence or wrapped literal in it came from the data."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    proc = edgeprune(*args, env={**env, "COLUMNS": "4000", "NO_COLOR": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return proc


def assert_inert(text: str, where: str) -> None:
    """No control character (so no OSC 8 link or title), no bidi override, and far from the 6 MB sent."""
    assert not CONTROL.search(text), (where, CONTROL.search(text))
    assert len(text) < 200_000, (where, len(text))


# -- the CLI on a store full of hostile text ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def report_out(hostile_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile-report") / "report"
    proc = run_cli("report", str(hostile_db.runs[0]), "--db", str(hostile_db.db), "--out", str(out))
    return proc, out


def test_report_prints_device_text_literally(report_out):
    proc, _ = report_out
    assert_inert(proc.stdout, "stdout")
    assert_inert(proc.stderr, "stderr")
    for literal in ("[/]", "[link=http://evil]x[/link]", "[bold red]boom[/]", "deploy [/]", CAP):
        assert literal in proc.stdout, literal
    assert "2.14 [/]" in proc.stdout  # the heading: the runtime version
    assert "aarch64 click txt.exe" in proc.stdout  # the OSC sequences went (title and link), the link text stayed


def test_report_writes_every_file_with_inert_text(report_out):
    _, out = report_out
    for name in ("report.csv", "report.md", "report.html", *plots.FILES.values()):
        assert (out / name).stat().st_size > 0, name
    for name in ("report.csv", "report.md"):
        text = (out / name).read_text(encoding="utf-8")
        assert_inert(text, name)
        assert CAP in text, name
    html = (out / "report.html").read_text(encoding="utf-8")
    assert_inert(re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,", html), "report.html")
    assert CAP in html


def test_markdown_cannot_link_tag_or_break_a_table(report_out):
    markdown = (report_out[1] / "report.md").read_text(encoding="utf-8")
    assert "[y](http://evil" not in markdown and r"\[y\](http://evil.example)" in markdown
    assert not re.search(r"(?<!\\)<script", markdown) and r"\<script\>" in markdown
    assert r"\[link=http://evil\]x\[/link\]" in markdown
    for table in re.findall(r"(?:^\|.*\|$\n?)+", markdown, flags=re.M):
        widths = {len(re.findall(r"(?<!\\)\|", row)) for row in table.splitlines()}
        assert len(widths) == 1, table  # an injected "|" would add a cell to its row


def test_html_shows_markup_as_text(report_out):
    html = (report_out[1] / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "[link=http://evil]x[/link]" in html and "href=" not in html


def test_csv_cells_are_clean_and_capped(report_out, hostile_db):
    csv = pd.read_csv(report_out[1] / "report.csv")
    errors = csv["error"].dropna()
    assert len(errors) and errors.map(len).max() <= 2000 + 30
    assert errors.str.contains(CAP, regex=False).all()
    assert (csv["machine"].dropna() == "aarch64 click txt.exe").all()


def test_the_api_frame_keeps_the_stored_text(hostile_db):
    """Cleaning is for display and export: ``compare()`` returns what the store holds."""
    frame = edgeprune_api.compare(hostile_db.db, hostile_db.runs[0])
    conn = sqlite3.connect(str(hostile_db.db))
    stored = conn.execute("SELECT error_kind, error_message FROM results WHERE run_id = ? AND status = 'failed'",
                          (hostile_db.runs[0],)).fetchone()
    conn.close()
    down = frame[(frame["device"] == DEVICE_DOWN) & (frame["status"] == "failed")]["error"]
    assert len(down) == 3
    assert (down == f"{stored[0]}: {stored[1]}").all()


def test_compare_prints_device_text_literally(hostile_db):
    proc = run_cli("report", "--db", str(hostile_db.db), "--compare", *map(str, hostile_db.runs))
    assert_inert(proc.stdout, "compare")
    assert "down [bold red]x[/]" in proc.stdout and "evil $\\frac{$ [/] | variant" in proc.stdout
    assert "ai_edge_litert [/] [link=http://evil]x[/link]" in proc.stdout


def test_runs_prints_device_text_literally(hostile_db):
    proc = run_cli("runs", "--db", str(hostile_db.db))
    assert_inert(proc.stdout, "runs")
    assert "model [/] [link=http://evil]x[/link]" in proc.stdout and "down [bold red]x[/]" in proc.stdout


# -- the same on runs measured in rounds: the noise floor, the verdicts and the unsettled cells --------------------

def _round_cells(seed: int) -> Dict[str, Dict[str, object]]:
    """The good device's plan: hostile runtime text, a hostile variant that did not settle."""
    rng = np.random.default_rng(seed)
    base = 900.0 * (1 + rng.normal(0, 0.01, 12))
    hostile = {"runtime": f"ai_edge_litert {MARKUP}", "machine": f"aarch64 {ESCAPES}", "python_version": HOSTILE}
    return {"baseline-float32": round_cell(list(base), 0.95, **hostile),
            "baseline-float32@aa": round_cell(list(base * (1 + rng.normal(0, 0.01, 12))), 0.95, **hostile),
            "pruned-int8": round_cell(list(base / 2.2), 0.94, **hostile),
            EVIL_VARIANT: round_cell(list(base / 1.5), 0.93, settled=False, half_width=0.047, **hostile)}


def _down_cells() -> Dict[str, Dict[str, object]]:
    """The other device: its A/A twin failed with a hostile, huge message (so it has no noise floor)."""
    base = list(900.0 * (1 + np.random.default_rng(3).normal(0, 0.01, 12)))
    return {"baseline-float32": round_cell(base, 0.95),
            "baseline-float32@aa": {"status": "error", "error_kind": f"twin {MARKUP}", "error_message": HUGE},
            "pruned-int8": round_cell([v / 2 for v in base], 0.94)}


@pytest.fixture(scope="module")
def hostile_rounds(tmp_path_factory: pytest.TempPathFactory):
    db = tmp_path_factory.mktemp("hostile-rounds") / "store.db"
    runs = []
    with Store.open(db) as store:
        for seed in (1, 2):
            run_id = store.create_run("/nonexistent/run", MANIFEST, {})
            store_plan(store, run_id, DEVICE_OK, _round_cells(seed), stopped_by="budget")
            store_plan(store, run_id, DEVICE_DOWN, _down_cells())
            runs.append(run_id)
    out = tmp_path_factory.mktemp("hostile-rounds-report") / "report"
    proc = run_cli("report", str(runs[0]), "--db", str(db), "--out", str(out), "--format", "csv,md,html")
    return HostileDb(db, tuple(runs)), proc.stdout, out


TWIN_REASON = f"its A/A twin (baseline-float32@aa) error: twin {MARKUP}: {MARKUP}"
UNSETTLED = f"{EVIL_VARIANT}: ±4.7% after 12 rounds"


def test_rounds_report_shows_the_noise_floor_and_unsettled_cells_literally(hostile_rounds):
    _, stdout, _ = hostile_rounds
    assert_inert(stdout, "stdout")
    assert f"No noise floor: {TWIN_REASON}" in stdout and UNSETTLED in stdout
    assert "Both bought (pruned-int8 vs baseline-float32)" in stdout
    assert "A" * 300 not in stdout  # the twin's huge message is cut in the sentence that quotes it


def test_rounds_report_files_escape_the_new_sections(hostile_rounds):
    _, _, out = hostile_rounds
    markdown = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    for name, text in (("md", markdown), ("html", re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,", html))):
        assert_inert(text, name)
    assert for_markdown(UNSETTLED) in markdown and for_markdown(TWIN_REASON) in markdown
    assert not re.search(r"(?<!\\)<script", markdown) and "[y](http://evil" not in markdown
    assert for_html(UNSETTLED) in html and for_html(TWIN_REASON) in html
    assert "<script" not in html and "href=" not in html
    csv = pd.read_csv(out / "report.csv")
    for column in ("verdict_text", "device_verdict"):
        cells = csv[column].dropna().astype(str)
        assert len(cells) and not cells.map(lambda v: bool(CONTROL.search(v))).any(), column
        assert cells.map(len).max() < 2000 + 30, column
    down = csv[(csv["device"] == for_csv(DEVICE_DOWN)) & (csv["variant"] == "pruned-int8")]
    assert "no noise floor (its A/A twin" in down["verdict_text"].item()


def test_rounds_compare_shows_the_noise_line_literally(hostile_rounds):
    store, _, _ = hostile_rounds
    proc = run_cli("report", "--db", str(store.db), "--compare", *map(str, store.runs))
    assert_inert(proc.stdout, "compare")
    assert f"nothing is called (run {store.runs[0]}: {TWIN_REASON}" in proc.stdout
    assert "Noise (A/A): run" in proc.stdout and "A" * 300 not in proc.stdout


# -- the progress displays and the optimize table ----------------------------------------------------------------

def _render(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=300, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_fleet_display_shows_a_device_state_as_text():
    display = FleetDisplay(["d [/]"], quiet=False)
    with display:
        display.device_state("d [/]", "failed: [/] [bold]x[/bold] \x1b[2J\x1b]0;t\x07", 1, 3)
    text = _render(display.bar.make_tasks_table(display.bar.tasks))
    assert "d [/]" in text and "failed: [/] [bold]x[/bold]" in text
    assert not CONTROL.search(text)


def test_progress_note_shows_text_literally(capsys):
    progress = RichProgress(quiet=True)
    progress.note("converter: [/] [link=http://evil]x[/link] \x1b[2J")
    err = capsys.readouterr().err
    assert "converter: [/] [link=http://evil]x[/link]" in err and not CONTROL.search(err)


def test_optimize_table_shows_manifest_text_literally():
    text = _render(variants_table(MANIFEST))
    assert "[/]" in text and "failed: [/] [link=http://evil]x[/link]" in text and EVIL_VARIANT[:12] in text
    assert CAP in text and not CONTROL.search(text) and len(text) < 20_000


# -- edgeprune.text ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, cleaned", [
    (None, ""),
    ("a\x1b[31mred\x1b[0m b", "ared b"),
    ("title\x1b]0;pwned\x07 x", "title x"),
    ("link \x1b]8;;http://e\x1b\\t\x1b]8;;\x1b\\ x", "link t x"),
    ("clear\x1b[2J\x1b[H!", "clear!"),
    ("c1\x9b31mx\x9d0;t\x9cy", "c1xy"),
    ("reset\x1bc ok \x1b(B", "reset ok"),
    ("cut \x1b]0;never ends", "cut 0;never ends"),
    ("a\r\nb\tc\x0bd  \n e", "a b c d e"),
    ("bell\x07nul\x00del\x7f", "bellnuldel"),
    ("bidi \u202egnp.exe\u2066x\u2069", "bidi gnp.exex"),
    (42, "42"),
])
def test_clean(raw, cleaned):
    assert clean(raw) == cleaned


def test_clean_caps_and_says_how_much_was_cut():
    assert clean("x" * 10, limit=4) == "xxxx… (+6 chars)"
    assert clean("x" * 4, limit=4) == "xxxx"
    assert len(clean(HUGE)) < 330 and len(for_csv(HUGE)) < 2030


@pytest.mark.parametrize("pattern", ["\x1b]", "\x9d", "\x1b]0;x\x9d", "\x1b[1;", ": [a]\\"])
def test_clean_is_linear_in_escape_starts(pattern):
    """A string command's body that ran on to the next terminator from every introducer is quadratic: 64 KB of
    introducers then take most of a minute instead of milliseconds."""
    value = pattern * (64 * 1024 // len(pattern))
    started = time.perf_counter()
    for_rich(value)
    assert time.perf_counter() - started < 3


TRICKY = st.text(alphabet=st.sampled_from(list("\\[]/:ab ok#@=$`|<>&*_\x1b\x07\r\n\x9b\u202e")), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), TRICKY))
def test_clean_leaves_no_control_characters(value):
    cleaned = clean(value, limit=20)
    assert not CONTROL.search(cleaned) and "\n" not in cleaned
    assert len(cleaned) <= 20 or re.fullmatch(r".{20}… \(\+\d+ chars\)", cleaned, flags=re.S)
    assert clean(cleaned, limit=10**6) == cleaned


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), TRICKY))
def test_rich_prints_the_cleaned_text_literally(value):
    console = Console(file=io.StringIO())
    console.print(for_rich(value), soft_wrap=True)
    assert console.file.getvalue() == clean(value) + "\n"


@pytest.mark.parametrize("value", ["[/]", "\\[/]", "a\\", "\\[", "x \\[bold]y\\", ":ok: :x:", "[a:b:c]"])
def test_rich_text_inside_markup_leaves_the_markup_around_it_alone(value):
    """A trailing backslash must not escape the closing tag after the value, nor the value end the red early."""
    text = Text.from_markup(f"[red]{for_rich(value)}[/] after")
    assert text.plain == f"{value} after"
    red = [i for i in range(len(text.plain)) if "red" in str(text.get_style_at_offset(Console(), i))]
    assert red == list(range(len(value)))


def test_markdown_html_and_matplotlib_escapes():
    assert for_markdown("[x](http://e) <b>|#*_`\\&$") == r"\[x\](http://e) \<b\>\|\#\*\_\`\\\&\$"
    assert for_html('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"
    assert for_matplotlib("a $x$ \\$") == r"a \$x\$ \\$"


def test_matplotlib_draws_escaped_labels():
    """``$\\frac{$`` is broken mathtext: unescaped, matplotlib raises while drawing."""
    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot().set_title(for_matplotlib("bad $\\frac{$ label"))
    fig.savefig(io.BytesIO(), format="png")
