"""The regression gate (issue 17): ``report --compare BASE NEW --fail-if-slower PCT [--fail-if-less-accurate POINTS]
[--junit PATH]``.

Every store here is a real SQLite file written through the Store API (``support.store_rows``), with per-round p50s
built so that each verdict is known in advance; the CLI runs as a user (or a CI job) runs it, and every JUnit file
it writes is validated against Jenkins' junit-10.xsd and the Apache Ant schema (tests/support/junit-xsd/).

Runs: 1 is the baseline; 2 measures the same numbers again (fresh noise; plus a device only in run 2 and one
without rounds); 3 makes pi's pruned-int8 1.5x slower (fails), pi's pruned-float32 5% slower (outside the ±2% noise
but under 10%: passes) and noisy's pruned-int8 13% slower inside its ±15% A/A band (passes); 4 has the same speeds
but baseline-int8 3 points less accurate on pi (device accuracy) and on a latency-only device (host accuracy); 5
loses pairs: the hostile device's pruned-int8 errors, and the noisy device was not benched at all.
"""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, NamedTuple

import numpy as np
import pytest

from edgeprune.report import gate, junit
from edgeprune.results.store import Store
from support.cli import bench, edgeprune
from support.slow_variant import slower_copy
from support.store_rows import manifest_for, round_cell, store_plan

ROUNDS = 12
BASE = "baseline-float32"
VARIANTS = {BASE: (1_000_000, 0.98), "baseline-int8": (270_000, 0.978), "pruned-float32": (270_000, 0.975),
            "pruned-int8": (80_000, 0.972)}
#: A device name with everything a terminal, Rich or XML could act on: OSC title, CSI, Rich markup, XML markup
#: and entities, a CDATA end, a bidi override, XML-1.0-illegal characters (U+0001, U+000B, U+FFFE).
EVIL = ("evil\x1b]0;pwned\x07\x1b[31m[bold red]x[/] <testcase name=\"y\"/>&amp; ]]> \u202edcba\x01\x0b\ufffe"
        " [link=http://evil]z[/link]")
EVIL_ERROR = "\x1b[2J<failure message='forged'/> [red]boom[/] \x07 & ]]>" + "A" * 5000
XSD = Path(__file__).resolve().parents[1] / "support" / "junit-xsd"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def jitter(seed: int, spread: float = 0.002) -> np.ndarray:
    return 1 + np.random.default_rng(seed).normal(0, spread, ROUNDS)


def swing(noise: float) -> np.ndarray:
    """The A/A twin lands ``noise`` above and below the baseline in alternate rounds: a band of about ±noise."""
    return np.where(np.arange(ROUNDS) % 2 == 0, 1 + noise, 1 / (1 + noise))


def cells(seed: int, noise: float, speeds: Dict[str, float], accuracy: Dict[str, float] = {},
          device_accuracy: bool = True) -> Dict[str, Dict[str, object]]:
    """A steady device: the baseline at 1000 µs, its twin swinging ±noise, each variant ``speeds[name]`` times the
    baseline's p50; accuracies from VARIANTS unless given (None for a latency-only bench)."""
    base = 1000.0 * jitter(seed)
    out = {BASE: base, f"{BASE}@aa": base * swing(noise)}
    out.update({name: 1000.0 * factor * jitter(seed + i + 1) for i, (name, factor) in enumerate(speeds.items())})
    return {name: round_cell(list(p50s), (accuracy.get(name.split("@")[0], VARIANTS[name.split("@")[0]][1])
                                         if device_accuracy else None))
            for name, p50s in out.items()}


PI = {"baseline-int8": 0.42, "pruned-float32": 0.7, "pruned-int8": 0.4}
NOISY = {"pruned-int8": 0.4}


def old_row(p50: float) -> Dict[str, object]:
    """A result stored before rounds (schema 1): the gate cannot judge its latency."""
    return {"status": "ok", "runtime": "ai_edge_litert", "runtime_version": "2.14.0", "threads": 1, "p50_us": p50,
            "p90_us": p50, "p99_us": p50, "mean_us": p50, "runs": 200, "accuracy": 0.98, "agent_json": "{}"}


class GateDb(NamedTuple):
    db: Path
    runs: List[int]


@pytest.fixture(scope="module")
def gate_db(tmp_path_factory: pytest.TempPathFactory) -> GateDb:
    db = tmp_path_factory.mktemp("gate") / "store.db"
    runs: List[int] = []
    with Store.open(db) as store:
        def new_run(variants: Dict = VARIANTS) -> int:
            """A run with the device measured before rounds (in every run: its pairs are never lost)."""
            runs.append(store.create_run("/nonexistent/run", manifest_for(variants), {}))
            for name in (BASE, "pruned-int8"):
                store.record(runs[-1], "old", name, old_row(900.0))
            return runs[-1]

        for seed in (0, 100):  # runs 1 and 2: the same numbers
            run = new_run()
            store_plan(store, run, "pi", cells(seed, 0.01, PI))
            store_plan(store, run, "noisy", cells(seed + 10, 0.15, NOISY))
            store_plan(store, run, "latency-only", cells(seed + 20, 0.01, {"baseline-int8": 0.42},
                                                         device_accuracy=False))
            store_plan(store, run, EVIL, cells(seed + 30, 0.01, {"pruned-int8": 0.4}))
        store_plan(store, run, "fresh", cells(40, 0.01, {"pruned-int8": 0.4}))  # only in run 2

        run = new_run()  # 3: slower
        store_plan(store, run, "pi", cells(200, 0.01, dict(PI, **{"pruned-int8": 0.6, "pruned-float32": 0.735})))
        store_plan(store, run, "noisy", cells(210, 0.15, {"pruned-int8": 0.4 * 1.13}))
        store_plan(store, run, "latency-only", cells(220, 0.01, {"baseline-int8": 0.42}, device_accuracy=False))
        store_plan(store, run, EVIL, cells(230, 0.01, {"pruned-int8": 0.4}))

        run = new_run(dict(VARIANTS, **{"baseline-int8": (270_000, 0.94)}))  # 4: less accurate
        store_plan(store, run, "pi", cells(300, 0.01, PI, {"baseline-int8": 0.95}))
        store_plan(store, run, "noisy", cells(310, 0.15, NOISY))
        store_plan(store, run, "latency-only", cells(320, 0.01, {"baseline-int8": 0.42}, device_accuracy=False))
        store_plan(store, run, EVIL, cells(330, 0.01, {"pruned-int8": 0.4}))

        run = new_run()  # 5: pairs lost
        store_plan(store, run, "pi", cells(400, 0.01, PI))
        store_plan(store, run, "latency-only", cells(420, 0.01, {"baseline-int8": 0.42}, device_accuracy=False))
        evil = cells(430, 0.01, {})
        evil["pruned-int8"] = {"status": "error", "error_kind": "model-load", "error_message": EVIL_ERROR}
        store_plan(store, run, EVIL, evil)
    return GateDb(db, runs)


def gate_cli(db: "GateDb | Path", base: int, new: int, *args: str, junit_path: "Path | None" = None):
    extra = ["--junit", str(junit_path)] if junit_path else []
    proc = edgeprune("report", "--db", str(getattr(db, "db", db)), "--compare", str(base), str(new), *args, *extra,
                     env={**os.environ, "COLUMNS": "4000", "NO_COLOR": "1"}, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def validate(path: Path) -> ET.Element:
    """The file parses and is valid against both schemas; returns its root."""
    import xmlschema

    for name in ("jenkins-junit-10.xsd", "windyroad-JUnit.xsd"):
        xmlschema.XMLSchema(str(XSD / name)).validate(str(path))
    return ET.parse(str(path)).getroot()


def cases(root: ET.Element) -> Dict[str, ET.Element]:
    return {case.get("name"): case for case in root.iter("testcase")}


def outcome(case: ET.Element) -> str:
    return "failed" if case.find("failure") is not None else "skipped" if case.find("skipped") is not None else "passed"


def judged(gate_db: GateDb, new: int, **thresholds: float) -> Dict[tuple, gate.Pair]:
    _, result = gate.gate_runs(gate_db.db, gate_db.runs[0], new, gate.Thresholds(**thresholds))
    return {(p.device, p.variant): p for p in result.pairs}


def test_two_runs_of_the_same_numbers_pass(gate_db, tmp_path):
    path = tmp_path / "j.xml"
    proc = gate_cli(gate_db, gate_db.runs[0], gate_db.runs[1], "--fail-if-slower", "10", junit_path=path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "Gate passed (run 1 -> run 2)" in proc.stdout and "FAIL" not in proc.stdout
    # never measured in BASE (a device new in run 2), no rounds (a schema-1 row): listed, not failing
    assert re.search(r"SKIP fresh / pruned-int8: not judged: absent in run 1", proc.stdout), proc.stdout
    assert re.search(r"SKIP old / pruned-int8: latency not judged: no rounds", proc.stdout), proc.stdout
    root = validate(path)
    outcomes = {name: outcome(case) for name, case in cases(root).items()}
    assert outcomes["pi/pruned-int8"] == outcomes["noisy/pruned-int8"] == "passed"
    assert outcomes["fresh/pruned-int8"] == outcomes["old/pruned-int8"] == "skipped"
    assert "failed" not in outcomes.values()
    suite = next(s for s in root.iter("testsuite") if s.get("name") == "pi")
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["base.run"] == "1" and properties["new.run"] == "2"
    assert properties["fail-if-slower.percent"] == "10" and "fail-if-less-accurate.points" not in properties
    assert properties["noise"].startswith("Noise (A/A): run 1 ±")
    assert suite.get("hostname") == "pi" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", suite.get("timestamp"))
    assert float(cases(root)["pi/pruned-int8"].get("time")) > 0  # the seconds run 2 spent timing it


def test_a_variant_slower_beyond_threshold_and_noise_fails_with_the_pair_listed(gate_db, tmp_path):
    path = tmp_path / "j.xml"
    proc = gate_cli(gate_db, gate_db.runs[0], gate_db.runs[2], "--fail-if-slower", "10", junit_path=path)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
    fails = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("FAIL ")]
    assert len(fails) == 1 and re.match(r"FAIL pi / pruned-int8: p50 \+(49|50)\.\d% \(95% CI \+", fails[0]), fails
    assert "outside the noise" in fails[0]
    assert re.search(r"Gate FAILED \(run 1 -> run 3, exit 1\): 1 of \d+ device x variant pairs regressed "
                     r"\(1 slower;", proc.stdout), proc.stdout[-2000:]
    failure = cases(validate(path))["pi/pruned-int8"].find("failure")
    assert failure is not None and failure.get("type") == "slower" and "p50 +" in failure.get("message")


def test_the_rules_behind_the_verdicts(gate_db):
    pairs = judged(gate_db, gate_db.runs[2], slower_pct=10)
    slow = pairs[("pi", "pruned-int8")]
    assert slow.outcome == gate.FAILED and slow.p50_change_low > 0.10 and slow.verdict == "slower"
    assert slow.p50_change == pytest.approx(0.5, abs=0.02)
    # 5% slower and outside the ±2% noise, but under 10%: passes
    small = pairs[("pi", "pruned-float32")]
    assert small.outcome == gate.PASSED and small.verdict == "slower" and 0.02 < small.p50_change_low < 0.10
    assert "within 10%" in small.detail
    # 13% slower, its whole interval beyond 10%, but inside a ±15% A/A band: the noise saves it
    noisy = pairs[("noisy", "pruned-int8")]
    assert noisy.outcome == gate.PASSED and noisy.verdict == "no measurable change"
    assert noisy.p50_change_low > 0.10, noisy
    # the same 1.5x at a 60% threshold passes; at 0% every change called slower fails
    assert judged(gate_db, gate_db.runs[2], slower_pct=60)[("pi", "pruned-int8")].outcome == gate.PASSED
    assert judged(gate_db, gate_db.runs[2], slower_pct=0)[("pi", "pruned-float32")].outcome == gate.FAILED


def test_an_accuracy_drop_fails_only_with_fail_if_less_accurate(gate_db, tmp_path):
    assert gate_cli(gate_db, 1, gate_db.runs[3], "--fail-if-slower", "10").returncode == 0
    assert gate_cli(gate_db, 1, gate_db.runs[3], "--fail-if-slower", "10",
                    "--fail-if-less-accurate", "5").returncode == 0
    path = tmp_path / "j.xml"
    proc = gate_cli(gate_db, 1, gate_db.runs[3], "--fail-if-slower", "10", "--fail-if-less-accurate", "1",
                    junit_path=path)
    assert proc.returncode == 1, proc.stdout[-3000:]
    fails = sorted(line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("FAIL "))
    assert len(fails) == 2, fails
    assert fails[0].startswith("FAIL latency-only / baseline-int8: host accuracy 97.80% -> 94.00% (-3.80 pts) "
                               "(host accuracy: the device measured none in run 1 and run 4)"), fails[0]
    assert fails[1].startswith("FAIL pi / baseline-int8: device accuracy 97.80% -> 95.00% (-2.80 pts)"), fails[1]
    assert "(2 less accurate;" in proc.stdout
    found = cases(validate(path))
    assert found["pi/baseline-int8"].find("failure").get("type") == "less-accurate"
    assert outcome(found["pi/pruned-int8"]) == "passed"
    # accuracy only: the latency check is not made at all
    only = judged(gate_db, gate_db.runs[3], accuracy_points=1)
    assert only[("pi", "baseline-int8")].outcome == gate.FAILED
    assert only[("pi", "baseline-int8")].accuracy_source == "device"
    assert only[("latency-only", "baseline-int8")].accuracy_source == "host"


def test_pairs_ok_in_base_and_failed_or_absent_in_new_fail(gate_db, tmp_path):
    path = tmp_path / "j.xml"
    proc = gate_cli(gate_db, 1, gate_db.runs[4], "--fail-if-slower", "10", junit_path=path)
    assert proc.returncode == 1, proc.stdout[-3000:]
    pairs = judged(gate_db, gate_db.runs[4], slower_pct=10)
    lost = {key for key, pair in pairs.items() if pair.outcome == gate.FAILED}
    assert lost == {(EVIL, "pruned-int8"), ("noisy", BASE), ("noisy", "pruned-int8")}, lost
    assert all(pairs[key].kinds == (gate.LOST,) for key in lost)
    assert "ok in run 1, absent in run 5" in pairs[("noisy", "pruned-int8")].message
    assert "ok in run 1, error in run 5: model-load: " in pairs[(EVIL, "pruned-int8")].message
    assert "FAIL noisy / pruned-int8: ok in run 1, absent in run 5" in proc.stdout
    assert "(3 ok before, not now;" in proc.stdout
    found = cases(validate(path))
    assert found["noisy/pruned-int8"].find("failure").get("type") == "lost"


def test_hostile_names_and_errors_are_inert_in_the_terminal_and_the_xml(gate_db, tmp_path):
    path = tmp_path / "j.xml"
    proc = gate_cli(gate_db, 1, gate_db.runs[4], "--fail-if-slower", "10", junit_path=path)
    assert proc.returncode == 1
    for stream in (proc.stdout, proc.stderr):
        assert not CONTROL.search(stream), CONTROL.search(stream)
    line = next(line for line in proc.stdout.splitlines() if "FAIL evil" in line)
    # Rich printed the markup literally (not as bold red or a link), the escapes went, the long error was cut
    assert "[bold red]x[/]" in line and "[link=http://evil]z[/link]" in line and "[red]boom[/]" in line
    assert "pwned" not in line and "\u202e" not in line and "chars)" in line and len(line) < 2000
    raw = path.read_bytes()
    text = raw.decode("utf-8")
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", text)
    assert "<testcase name=\"y\"" not in text and "&lt;testcase name=&quot;y&quot;/&gt;&amp;amp;" in text
    root = validate(path)
    evil_suite = next(s for s in root.iter("testsuite") if s.get("name", "").startswith("evil"))
    name = evil_suite.get("name")
    assert name.startswith("evil[bold red]x[/] <testcase name=\"y\"/>&amp; ]]>") and "dcba" in name
    assert "\ufffe" not in name and "\x1b" not in name and "pwned" not in name
    failure = cases(root)[f"{name}/pruned-int8"].find("failure")
    assert "<failure message='forged'/>" in failure.get("message") and len(failure.get("message")) < 1100


@pytest.mark.parametrize("args, message", [
    (["--compare", "1", "99", "--fail-if-slower", "10"], "no run 99 in"),
    (["--compare", "1", "2", "--fail-if-slower", "-1"], "--fail-if-slower takes a number >= 0"),
    (["--compare", "1", "2", "--fail-if-slower", "nan"], "--fail-if-slower takes a number >= 0"),
    (["--compare", "1", "2", "--fail-if-slower", "5", "--fail-if-less-accurate", "-0.5"],
     "--fail-if-less-accurate takes a number >= 0"),
    (["--compare", "1", "2", "--fail-if-slower", "10", "--junit", "/nonexistent-folder/j.xml"],
     "the folder /nonexistent-folder does not exist"),
    (["--compare", "1", "2", "--fail-if-slower", "10", "--junit", "{tmp}"], "is a folder"),
    (["--fail-if-slower", "10"], "need --compare BASE NEW"),
    (["--compare", "1", "2", "--junit", "{tmp}/j.xml"], "--junit needs a gate"),
])
def test_bad_input_is_one_line_and_exit_2(gate_db, tmp_path, args, message):
    proc = edgeprune("report", "--db", str(gate_db.db), *[a.replace("{tmp}", str(tmp_path)) for a in args],
                     timeout=300)
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: ") and message in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_junit_folder_is_exit_2(gate_db, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):  # root writes anywhere: make the target unwritable another way
        locked = tmp_path / "file-not-folder"
        locked.write_text("x")
    proc = edgeprune("report", "--db", str(gate_db.db), "--compare", "1", "2", "--fail-if-slower", "10",
                     "--junit", str(locked / "j.xml"), timeout=300)
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.startswith("Error: --junit "), proc.stderr


def test_the_file_is_replaced_atomically_and_holds_only_legal_xml(gate_db, tmp_path):
    path = tmp_path / "j.xml"
    path.write_text("old contents")
    _, result = gate.gate_runs(gate_db.db, 1, 2, gate.Thresholds(slower_pct=10))
    junit.write(result, path)
    assert [p.name for p in tmp_path.iterdir()] == ["j.xml"]  # no temporary file left beside it
    validate(path)
    assert junit.xml_text("a\ud800b\ufffec\x00d\x1b[31me\u202ef") == "abcdef"
    assert junit.xml_text("x" * 50, 10) == "x" * 10 + "… (+40 chars)"


@pytest.mark.slow
def test_end_to_end_two_benches_pass_and_a_slower_variant_fails(digits_run, tmp_path):
    """The issue's check on the real ``local`` device: the same run folder benched twice passes at 10%; the folder
    with pruned-float32 swapped for a model doing ~15x the work under the same name fails, listing that pair."""
    folder, _ = digits_run
    db = tmp_path / "store.db"
    profile = tmp_path / "local.toml"
    profile.write_text('name = "local"\nkind = "local"\npython = ""\nruntime = "auto"\nthreads = 1\nwarmup = 10\n'
                       'runs = 50\nbudget_s = 90\ncommand_timeout = 600\n')
    args = ("--device", str(profile), "--db", str(db), "--variants", "baseline-int8,pruned-float32")
    slower = slower_copy(folder, tmp_path / "slower", "pruned-float32")
    for run_folder in (folder, folder, slower):
        proc = bench(str(run_folder), *args)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    same = gate_cli(db, 1, 2, "--fail-if-slower", "10", junit_path=tmp_path / "same.xml")
    assert same.returncode == 0, same.stdout[-4000:]
    assert "Gate passed (run 1 -> run 2)" in same.stdout
    assert {outcome(case) for name, case in cases(validate(tmp_path / "same.xml")).items()
            if name in ("local/baseline-float32", "local/baseline-int8", "local/pruned-float32")} == {"passed"}
    worse = gate_cli(db, 1, 3, "--fail-if-slower", "10", junit_path=tmp_path / "worse.xml")
    assert worse.returncode == 1, worse.stdout[-4000:]
    fails = [line.strip() for line in worse.stdout.splitlines() if line.strip().startswith("FAIL ")]
    assert len(fails) == 1 and fails[0].startswith("FAIL local / pruned-float32: p50 +"), fails
    assert "Gate FAILED (run 1 -> run 3, exit 1): 1 of" in worse.stdout
    failure = cases(validate(tmp_path / "worse.xml"))["local/pruned-float32"].find("failure")
    assert failure is not None and failure.get("type") == "slower"
