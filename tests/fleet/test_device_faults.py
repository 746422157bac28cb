"""Issue 10: nothing a device does may hang, fool or crash edgeprune.

Each test puts one kind of hostile or broken device (real sshd on 127.0.0.1, the real agent behind a wrapper that
lies, a fake SSH server, a device killed mid-run) in front of ``edgeprune bench`` run as a subprocess, and checks
what the store keeps: the pair's status and error kind, a message that names the cause, and that the device's other
pairs, and the other devices, were still measured. Exit codes are asserted everywhere (0 only when every pair is
ok). The CLI runs from the test's tmp folder so that PYTHONPATH can point it at an older tree (see support.cli.run_cli).

Since issue 12 a bench sends each device one plan: the variants asked for plus the baseline and its A/A twin
(``plan_cells``), each stored as a row. A lie about one cell costs that cell; what breaks the document or the
connection costs the device's whole plan, every cell with the one reason.
"""
from __future__ import annotations

import collections
import contextlib
import json
import re
import signal
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

import pytest

from support.cli import DigitsRun, run_cli, start_cli
from support.hostile import (FAKE_SSH_MODES, FIRST, SECOND, TWO, agent_pids, agent_wrapper, client_env,
                             fake_ssh_server, kill_agents, wait_until, write_mixed_fleet)
from support.login_device import LoginDevice
from support.sshlab import SshdDevice
from support.store_rows import by_pair, outcome, plan_cells, rows

pytestmark = pytest.mark.slow
MakeDevice = Callable[..., SshdDevice]
MakeLogin = Callable[..., LoginDevice]
Reaper = Callable[[SshdDevice], None]
EVAL_SAMPLES = 450  # digits: the 25 % test split of load_digits
#: The cells of a bench of FIRST and of one of TWO, per device.
FIRST_CELLS, TWO_CELLS = plan_cells([FIRST]), plan_cells([FIRST, SECOND])


def sha_of(manifest: Dict, variant: str) -> str:
    return next(v["sha256"] for v in manifest["variants"] if v["name"] == variant)


# -- 1. impossible results ---------------------------------------------------------------------------------------

#: lie -> (what the wrapper does to FIRST's cell ``c`` of the real agent's plan document, words the stored reason
#: must contain)
LIES: Dict[str, Tuple[str, str]] = {
    "percentiles": ("t = c['timing']['pooled']\n"
                    "t['p50_us'], t['p90_us'], t['p99_us'] = t['max_us'], (t['min_us'] + t['max_us']) / 2, "
                    "t['min_us']", "p50_us"),
    "min-above-max": ("t = c['timing']['pooled']\nt['min_us'], t['max_us'] = t['max_us'], t['min_us']", "min_us"),
    "zero-latency": ("t = c['timing']['pooled']\n"
                     "for key in ('min_us', 'p50_us', 'p90_us', 'p99_us', 'max_us', 'mean_us', 'std_us'):\n"
                     "    t[key] = 0.0\n"
                     "for r in c['rounds']:\n"
                     "    r.update(min_us=0.0, p50_us=0.0, mean_us=0.0, max_us=0.0)\n"
                     "c['p50_interval'].update(p50_us=0.0, low_us=0.0, high_us=0.0)", "0 µs"),
    # the stored p50 is the median of the per-round p50s: a p50 interval that is not theirs is caught
    "round-median": ("c['p50_interval']['p50_us'] /= 2", "not the median of its rounds' p50s"),
    "accuracy": ("a = c['accuracy']\na['accuracy'] = 1.0 if a['correct'] != a['num_samples'] else 0.5",
                 "correct/num_samples"),
    "correct": ("a = c['accuracy']\na['correct'] -= 5\na['accuracy'] = a['correct'] / a['num_samples']",
                "eval labels"),
    # self-consistent (count, accuracy and digest agree): only the run's own eval set gives it away
    "three-predictions": ("a = c['accuracy']\np = a['predictions'][:3]\n"
                          "a.update(predictions=p, num_samples=3, correct=3, accuracy=1.0, "
                          "predictions_digest=digest(p))", f"the eval set has {EVAL_SAMPLES}"),
}


def test_impossible_results_are_invalid_with_the_reason(digits_run: DigitsRun, make_device: MakeDevice,
                                                        tmp_path: Path) -> None:
    """A document that is valid JSON and passes the schema but whose cell cannot be true makes that cell ``invalid /
    inconsistent`` with its reason, never a measurement; the plan's other cells and an honest device beside them are
    still ok, and bench exits 1."""
    folder, _ = digits_run
    liars = {lie: make_device(f"lie-{lie}", python=str(agent_wrapper(
        tmp_path / f"python-{lie}", f"doc = real()\nc = cell(doc, {FIRST!r})\n{edit}\nemit(doc)")))
             for lie, (edit, _) in LIES.items()}
    honest = make_device("honest")
    fleet = write_mixed_fleet(tmp_path / "fleet.toml", [(d, {}) for d in [*liars.values(), honest]])
    db = tmp_path / "store.db"
    proc = run_cli(tmp_path, "bench", str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", FIRST,
                   "-q")
    stored = by_pair(rows(db))
    assert {cell: outcome(stored[("honest", cell)]) for cell in FIRST_CELLS} == {
        cell: "ok / None: None" for cell in FIRST_CELLS}
    for lie, (_, cause) in LIES.items():
        row = stored[(f"lie-{lie}", FIRST)]
        assert (row["status"], row["error_kind"]) == ("invalid", "inconsistent"), (lie, outcome(row))
        assert row["error_message"].startswith("impossible result"), (lie, outcome(row))
        assert cause in row["error_message"], (lie, outcome(row))
        assert row["p50_us"] is None and row["accuracy"] is None, lie  # nothing of a lie is reported as measured
        assert row["rounds"] is None and row["round_p50s_json"] is None, lie
        for other in FIRST_CELLS[:2]:  # the lie costs its cell only: the baseline and its twin are measured
            assert outcome(stored[(f"lie-{lie}", other)]) == "ok / None: None", (lie, other)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_exit_status_is_1_when_a_pair_only_errored(digits_run: DigitsRun, make_device: MakeDevice,
                                                   tmp_path: Path) -> None:
    """bench exits 0 only when every pair is ok: a pair the agent reported as an error (no runtime) is not ok."""
    folder, _ = digits_run
    devices = [(make_device("fine"), {}), (make_device("lacks-runtime"), {"runtime": "tflite_runtime"})]
    fleet = write_mixed_fleet(tmp_path / "fleet.toml", devices)
    db = tmp_path / "store.db"
    proc = run_cli(tmp_path, "bench", str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", SECOND,
                   "-q")
    stored = by_pair(rows(db))
    cells = plan_cells([SECOND])
    assert [stored[("fine", c)]["status"] for c in cells] == ["ok"] * len(cells)
    assert [stored[("lacks-runtime", c)]["status"] for c in cells] == ["error"] * len(cells)
    assert f"{len(cells)} ok, {len(cells)} error, 0 failed" in proc.stdout
    assert proc.returncode == 1, proc.stdout + proc.stderr


# -- 2. one hostile value costs that device's plan only ----------------------------------------------------------

HOSTILE_VALUES: Dict[str, Tuple[str, str]] = {
    # SQLite holds 64-bit integers: a bigger one once broke the store write and failed the whole device
    "huge-int": (f"doc = real()\ncell(doc, {FIRST!r})['memory']['rss_peak_kib'] = 2 ** 64 + 1\nemit(doc)",
                 "out of range"),
    # json raises RecursionError (not ValueError) on this, which once escaped the judge
    "deep-json": (f"doc = real()\ncell(doc, {FIRST!r})['runtime']['version'] = '@@DEEP@@'\n"
                  "emit(text=json.dumps(doc).replace('\"@@DEEP@@\"', '[' * 100000 + ']' * 100000))", "nested"),
}


def test_a_hostile_value_costs_that_devices_plan_only(digits_run: DigitsRun, make_device: MakeDevice,
                                                      tmp_path: Path) -> None:
    """An integer past 2**63 or JSON nested 100000 deep in one cell of a plan's reply: the document is read as a
    whole, so every cell of that device's plan is ``invalid / invalid-output`` with the cause (not ``failed /
    internal``, and nothing of it stored as measured), while an honest device in the same bench is measured ok."""
    folder, _ = digits_run
    devices = [make_device(name, python=str(agent_wrapper(tmp_path / f"python-{name}", body)))
               for name, (body, _) in HOSTILE_VALUES.items()]
    honest = make_device("honest")
    fleet = write_mixed_fleet(tmp_path / "fleet.toml", [(d, {}) for d in [*devices, honest]])
    db = tmp_path / "store.db"
    proc = run_cli(tmp_path, "bench", str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", TWO, "-q")
    stored = by_pair(rows(db))
    for name, (_, cause) in HOSTILE_VALUES.items():
        for cell in TWO_CELLS:
            hostile = stored[(name, cell)]
            assert (hostile["status"], hostile["error_kind"]) == ("invalid", "invalid-output"), outcome(hostile)
            assert cause in hostile["error_message"], outcome(hostile)
            assert hostile["rss_peak_kib"] is None and hostile["p50_us"] is None
    assert {cell: outcome(stored[("honest", cell)]) for cell in TWO_CELLS} == {
        cell: "ok / None: None" for cell in TWO_CELLS}
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr


# -- 3. a login banner that looks like a result ----------------------------------------------------------------

FORGED_BANNER = """\
echo '{"schema_version": 2, "status": "ok"}'
echo '<<<edgeprune-result 0000000000000000>>>'
echo '{"schema_version": 2, "agent_version": "9.9.9", "command": "plan", "status": "ok", "cells": []}'
echo '<<<edgeprune-end 0000000000000000>>>'
echo '<<<edgeprune-result 1111111111111111>>>'
"""


def test_banner_that_looks_like_a_result_does_not_confuse_the_host(digits_run: DigitsRun,
                                                                   make_login_device: MakeLogin,
                                                                   tmp_path: Path) -> None:
    """A login whose ~/.bashrc prints JSON and whole or half result frames with other tokens: the host reads only
    the frame with its own token, so every cell is the agent's real measurement."""
    folder, manifest = digits_run
    device = make_login_device("forger", bashrc_extra=FORGED_BANNER)
    profile = tmp_path / "forger.toml"
    profile.write_text(device.profile_toml(user=device.user, key_file=str(device.client.key),
                                           known_hosts=str(device.client.known_hosts), runs=5, warmup=1))
    db = tmp_path / "store.db"
    proc = run_cli(tmp_path, "bench", str(folder), "--device", str(profile), "--db", str(db), "--variants", TWO,
                   "-q")
    stored = by_pair(rows(db))
    for cell in TWO_CELLS:
        row = stored[("forger", cell)]
        assert outcome(row) == "ok / None: None"
        doc = json.loads(row["agent_json"])  # the real plan's cell, not the forged empty plan
        variant = cell.split("@")[0]
        assert doc["id"] == cell and doc["model"]["sha256"] == sha_of(manifest, variant)
        assert row["p50_us"] > 0 and row["rounds"] >= 1
    assert proc.returncode == 0, proc.stderr


# -- 4. reasons that do not mislead -----------------------------------------------------------------------------

@pytest.fixture
def agents_reaped() -> Iterator[Reaper]:
    """Devices whose agents the test may leave behind on purpose (a device killed mid-run cannot stop its agent):
    those agents are killed at the end, pass or fail."""
    watched: List[SshdDevice] = []
    yield watched.append
    for device in watched:
        kill_agents(device.workdir)


def test_device_killed_mid_run_is_connection_lost(digits_run: DigitsRun, make_device: MakeDevice,
                                                  agents_reaped: Reaper, tmp_path: Path) -> None:
    """sshd killed while the agent measures the plan: every cell of it is ``failed / connection-lost`` (not
    ``invalid`` output), and bench exits 1 soon after."""
    folder, _ = digits_run
    victim = make_device("victim")
    agents_reaped(victim)
    profile = tmp_path / "victim.toml"
    profile.write_text(victim.profile_toml(runs=5, warmup=1, min_seconds=60, command_timeout=90,
                                           connect_timeout=3))
    db = tmp_path / "store.db"
    proc = start_cli(tmp_path, "bench", str(folder), "--device", str(profile), "--db", str(db), "--variants", TWO,
                     "-q")
    wait_until(lambda: bool(agent_pids(victim.workdir)), 120, "the agent to run on the victim", proc)
    victim.stop()
    _, err = proc.communicate(timeout=60)
    stored = by_pair(rows(db))
    assert sorted(c for _, c in stored) == sorted(TWO_CELLS)
    for cell in TWO_CELLS:
        lost = stored[("victim", cell)]
        assert (lost["status"], lost["error_kind"]) == ("failed", "connection-lost"), outcome(lost)
        assert "connection lost" in lost["error_message"], outcome(lost)
    assert proc.returncode == 1, err


def test_agent_flooding_stderr_is_still_measured(digits_run: DigitsRun, make_device: MakeDevice,
                                                 tmp_path: Path) -> None:
    """50 MB on stderr before a valid result (a chatty runtime, a warning loop) costs nothing: the pair is ok."""
    folder, _ = digits_run
    noisy = agent_wrapper(tmp_path / "python-noisy", """\
        chunk = b"runtime warning: something noisy happened\\n" * 24000  # ~1 MB
        for _ in range(50):
            sys.stderr.buffer.write(chunk)
        sys.stderr.flush()
        os.execv(REAL, [REAL] + sys.argv[1:])
        """)
    device = make_device("noisy", python=str(noisy))
    profile = tmp_path / "noisy.toml"
    profile.write_text(device.profile_toml(runs=5, warmup=1))
    db = tmp_path / "store.db"
    proc = run_cli(tmp_path, "bench", str(folder), "--device", str(profile), "--db", str(db), "--variants", SECOND,
                   "-q")
    assert [(r["variant"], outcome(r)) for r in rows(db)] == [
        (cell, "ok / None: None") for cell in sorted(plan_cells([SECOND]))]
    assert proc.returncode == 0, proc.stderr


#: A device that never had the files: uploads are hashed on it first, with the missing ``python``.


@pytest.mark.parametrize("cached", [
    pytest.param(False, id="fresh-device"),
    pytest.param(True, id="files-already-there"),
])
def test_missing_python_is_named(digits_run: DigitsRun, make_device: MakeDevice, tmp_path: Path,
                                 cached: bool) -> None:
    """A profile whose ``python`` does not exist on the device: ``failed / python-missing`` naming the interpreter,
    not an ``invalid`` reply nor an upload problem; whether or not the files still have to be sent (uploads are
    hashed on the device with that same ``python``)."""
    folder, _ = digits_run
    missing = "/nonexistent/python3"
    device = make_device("no-python")
    profile = tmp_path / "no-python.toml"
    db = tmp_path / "store.db"
    if cached:  # the same device and work dir once worked, with a Python that exists
        profile.write_text(device.profile_toml(runs=5, warmup=1))
        first = run_cli(tmp_path, "bench", str(folder), "--device", str(profile), "--db", str(db), "--variants",
                        TWO, "-q")
        assert first.returncode == 0, first.stderr
    profile.write_text(device.profile_toml(python=missing))
    proc = run_cli(tmp_path, "bench", str(folder), "--device", str(profile), "--db", str(db), "--variants", TWO,
                   "-q")
    latest = max(r["run_id"] for r in rows(db))
    stored = by_pair(rows(db, latest))
    assert sorted(c for _, c in stored) == sorted(TWO_CELLS)
    for cell in TWO_CELLS:
        row = stored[("no-python", cell)]
        assert (row["status"], row["error_kind"]) == ("failed", "python-missing"), outcome(row)
        assert missing in row["error_message"], outcome(row)
    assert proc.returncode == 1, proc.stderr


SUMMARY = re.compile(r"^run (\d+): (.*) \(stored in ", re.MULTILINE)


def summary_counts(stdout: str) -> Tuple[int, Dict[str, int]]:
    """``run N: 2 ok, 0 error, 2 failed (stored in ...)`` -> (N, counts without the zeros)."""
    match = SUMMARY.search(stdout)
    assert match, stdout
    counts = {}
    for part in match.group(2).split(", "):
        number, status = part.split(" ", 1)
        if int(number):
            counts[status] = int(number)
    return int(match.group(1)), counts


def test_ctrl_c_summary_matches_the_store_and_stops_the_agent(digits_run: DigitsRun, make_device: MakeDevice,
                                                              agents_reaped: Reaper, tmp_path: Path) -> None:
    """SIGINT while one device's agent measures its plan and another device is done: exit 130, the summary's counts
    are what the store holds for the run (pairs never stored count as not-measured), every cell of the interrupted
    plan is ``failed / interrupted``, and the agent is gone from the device."""
    folder, _ = digits_run
    quick, busy = make_device("quick"), make_device("busy")
    agents_reaped(busy)
    fleet = write_mixed_fleet(tmp_path / "fleet.toml", [(quick, {}), (busy, {"min_seconds": 60,
                                                                             "command_timeout": 90})])
    db = tmp_path / "store.db"
    proc = start_cli(tmp_path, "bench", str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", TWO,
                     "-q")
    wait_until(lambda: bool(agent_pids(busy.workdir)) and db.exists() and
               sum(r["device"] == "quick" and r["status"] == "ok" for r in rows(db)) == len(TWO_CELLS),
               180, "quick to finish while busy measures", proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    try:
        wait_until(lambda: not agent_pids(busy.workdir), 5, "the interrupted agent to be gone")
    except AssertionError:
        pytest.fail(f"bench exited but left its agent running on the device: pids {agent_pids(busy.workdir)}")
    run_id, shown = summary_counts(out)
    stored = rows(db, run_id)
    truth = collections.Counter(r["status"] for r in stored)
    pairs = 2 * len(TWO_CELLS)
    if len(stored) < pairs:
        truth["not-measured"] = pairs - len(stored)
    assert shown == dict(truth), (out, [outcome(r) for r in stored])
    assert truth["ok"] == len(TWO_CELLS)
    for cell in TWO_CELLS:
        interrupted = by_pair(stored).get(("busy", cell))
        assert interrupted is not None and (interrupted["status"], interrupted["error_kind"]) == (
            "failed", "interrupted"), [outcome(r) for r in stored]


# -- 5. paramiko's own reports stay off the terminal ------------------------------------------------------------

def test_ssh_library_tracebacks_stay_off_the_terminal(digits_run: DigitsRun, make_device: MakeDevice,
                                                      tmp_path: Path) -> None:
    """Servers that hang up, answer HTTP, or send a banner and then garbage: each pair is ``failed`` with a one-line
    reason, stderr has none of paramiko's tracebacks, and paramiko's log is in ~/.cache/edgeprune/ssh.log."""
    folder, _ = digits_run
    home = tmp_path / "home"
    with contextlib.ExitStack() as stack:
        entries = []
        for mode in FAKE_SSH_MODES:
            device = make_device(f"fake-{mode}", start=False, trust=False)
            device.port = stack.enter_context(fake_ssh_server(mode))
            entries.append((device, {"connect_timeout": 5}))
        fleet = write_mixed_fleet(tmp_path / "fleet.toml", entries)
        db = tmp_path / "store.db"
        proc = run_cli(tmp_path, "bench", str(folder), "--fleet", str(fleet), "--db", str(db), "--variants",
                       SECOND, "-q", env=client_env(home))
    stored = by_pair(rows(db))
    assert len(stored) == len(FAKE_SSH_MODES) * len(plan_cells([SECOND]))
    for mode in FAKE_SSH_MODES:
        for cell in plan_cells([SECOND]):
            row = stored[(f"fake-{mode}", cell)]
            assert row["status"] == "failed", outcome(row)
            assert row["error_message"] and "\n" not in row["error_message"], outcome(row)
            assert "127.0.0.1" in row["error_message"], outcome(row)
    for needle in ("Traceback", "Exception (client)", "paramiko"):
        assert needle.lower() not in proc.stderr.lower(), proc.stderr
    assert proc.returncode == 1, proc.stderr
    log = home / ".cache" / "edgeprune" / "ssh.log"
    assert log.is_file(), sorted(str(p) for p in home.rglob("*"))
    assert "banner" in log.read_text().lower(), log.read_text()[-2000:]

