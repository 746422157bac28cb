"""Faults and hostile parts on loopback devices: a hostile agent, a host killed with SIGKILL, two writers on one
store, a device whose disk is full, and random inputs to the parsers (hypothesis)."""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.cli import bench, start_bench
from support.hostile import agent_wrapper, write_mixed_fleet
from support.sshlab import write_fleet
from support.store_rows import by_pair, plan_cells, rows, variant_names, wait_for_rows

#: The variant a hostile agent's plan lies about (its plan also measures the baseline and its A/A twin).
VARIANT = "pruned-int8"
#: mode -> (what the fake agent does instead of (or to) the real agent's plan document, in the frame the host asked
#: for (support.hostile's prelude), and words the stored reason must contain)
HOSTILE = {
    "huge": ("sys.stdout.write('A' * (20 * 1024 * 1024)); sys.exit(0)", "exceeded"),
    "not-json": ("emit(text='{\"schema_version\": 2, \"status\": ok'); sys.exit(0)", "not JSON"),
    "wrong-types": (f"doc = real(); c = cell(doc, {VARIANT!r}); c['timing']['pooled']['p50_us'] = 'fast'; "
                    "c['accuracy']['accuracy'] = [1]; emit(doc)", "schema"),
    "nan": (f"doc = real(); cell(doc, {VARIANT!r})['timing']['pooled']['p50_us'] = float('nan'); emit(doc)",
            "not JSON"),
    "negative": (f"doc = real(); t = cell(doc, {VARIANT!r})['timing']['pooled']; t['p50_us'] = -12.5; "
                 "t['min_us'] = -1; emit(doc)", "schema"),
    "extra-fields": (f"doc = real(); cell(doc, {VARIANT!r})['timing']['injected'] = \"'; DROP TABLE results; --\"; "
                     "emit(doc)", "schema"),
}


@pytest.mark.slow
def test_hostile_agents_are_recorded_invalid_and_the_store_stays_sound(digits_run, make_device, tmp_path):
    """Output that breaks the plan's document (too big, not JSON, NaN, against the schema) makes every cell of that
    device's plan ``invalid / invalid-output`` with the cause, keeps only an excerpt, and leaves the store sound."""
    folder, _ = digits_run
    devices = [make_device(f"hostile-{mode}", python=str(agent_wrapper(tmp_path / f"python-{mode}", body)))
               for mode, (body, _) in HOSTILE.items()]
    honest = make_device("honest")
    fleet = write_fleet(tmp_path / "fleet.toml", devices + [honest])
    db = tmp_path / "store.db"
    proc = bench(str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", VARIANT)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    stored = by_pair(rows(db))
    cells = plan_cells([VARIANT])
    assert [stored[("honest", c)]["status"] for c in cells] == ["ok"] * len(cells)
    for mode, (_, cause) in HOSTILE.items():
        for cell in cells:
            row = stored[(f"hostile-{mode}", cell)]
            assert row["status"] == "invalid", (mode, cell, row["error_message"])
            assert row["error_kind"] == "invalid-output"
            assert cause in row["error_message"], (mode, cell, row["error_message"])
            assert row["p50_us"] is None and row["accuracy"] is None and row["round_p50s_json"] is None
            assert len(row["agent_json"] or "") <= 4000  # only an excerpt of untrusted output is kept
    conn = sqlite3.connect(str(db))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == (len(HOSTILE) + 1) * len(cells)
    conn.close()


@pytest.mark.slow
def test_host_killed_with_sigkill_then_resume_stores_every_pair_once(digits_run, make_device, tmp_path):
    """The host SIGKILLed once k0's plan is stored and while k1's is measured: --resume measures k1 (stopping the
    killed bench's orphaned agent first) and leaves k0's results as they were; every pair is stored once."""
    folder, manifest = digits_run
    cells = plan_cells(variant_names(manifest))
    devices = [make_device(f"k{i}") for i in range(2)]
    # k1: visits of >= 0.3 s for 10 s of rounds, so it is measuring when k0's plan is stored
    fleet = write_mixed_fleet(tmp_path / "fleet.toml", [(devices[0], {}),
                                                       (devices[1], {"min_seconds": 0.3, "budget_s": 10})])
    db = tmp_path / "store.db"
    proc = start_bench(folder, fleet, db)
    wait_for_rows(db, proc, lambda stored: len(stored) >= len(cells))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = {(r["device"], r["variant"]): r["p50_us"] for r in rows(db)}
    assert sorted(before) == sorted(("k0", c) for c in cells)  # k1 was still measuring
    run_id = rows(db)[0]["run_id"]
    resumed = bench("--resume", str(run_id), "--fleet", str(fleet), "--db", str(db))
    assert resumed.returncode == 0, resumed.stderr
    final = rows(db, run_id)
    assert sorted((r["device"], r["variant"]) for r in final) == sorted(
        (d.name, c) for d in devices for c in cells)
    assert all(r["status"] == "ok" and r["attempts"] == 1 for r in final)
    for pair, p50 in before.items():
        assert by_pair(final)[pair]["p50_us"] == p50


@pytest.mark.slow
def test_two_benches_share_one_store(digits_run, make_device, tmp_path):
    folder, manifest = digits_run
    names = variant_names(manifest)
    fleets = []
    for group in range(2):
        devices = [make_device(f"g{group}-{i}") for i in range(2)]
        fleets.append(write_fleet(tmp_path / f"fleet{group}.toml", devices))
    db = tmp_path / "shared.db"
    procs = [start_bench(folder, f, db) for f in fleets]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    stored = rows(db)
    assert len({r["run_id"] for r in stored}) == 2
    assert len(stored) == 4 * len(plan_cells(names)) and all(r["status"] == "ok" for r in stored)


@pytest.mark.slow
def test_full_disk_on_the_device_is_a_clear_recorded_error(digits_run, make_device, tmp_path):
    folder, _ = digits_run
    device = make_device("tiny-disk")
    device.workdir.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(device.workdir)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"tests run as root and need tmpfs mounts: {mounted.stderr}"
    try:
        fleet = write_fleet(tmp_path / "fleet.toml", [device])
        db = tmp_path / "store.db"
        proc = bench(str(folder), "--fleet", str(fleet), "--db", str(db), "--variants", "baseline-float32")
        assert proc.returncode == 1
        stored = rows(db)
        assert [r["variant"] for r in stored] == plan_cells(["baseline-float32"])  # the baseline and its twin
        for row in stored:
            assert row["status"] == "failed"
            assert "disk full" in row["error_message"]
        leftovers = [p.name for p in device.workdir.rglob("*.part-*")]
        assert leftovers == []
    finally:
        subprocess.run(["umount", "-l", str(device.workdir)], check=False)


# -- parsers under random input --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=json_values, exit_status=st.integers(-1, 255))
def test_random_agent_output_never_crashes_the_judge(doc, exit_status):
    from edgeprune.results.agent_result import judge
    from edgeprune.devices.command import CommandResult

    text = json.dumps(doc, allow_nan=True).encode()
    outcome = judge(CommandResult(exit_status, text, b""))
    assert outcome.status in ("ok", "error", "invalid", "failed")
    values = outcome.columns(None)
    assert values["status"] == outcome.status
    if outcome.status == "invalid":
        assert values["p50_us"] is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=json_values, exit_status=st.integers(-1, 255), framed=st.booleans())
def test_random_plan_output_never_crashes_the_plan_judge(doc, exit_status, framed):
    """What a bench reads since issue 12: any plan reply is judged and turned into store columns without raising."""
    from edgeprune.devices.command import CommandResult
    from edgeprune.results.agent_result import new_token
    from edgeprune.results.plan_columns import cell_columns, plan_columns
    from edgeprune.results.plan_result import judge_plan

    token = new_token() if framed else None
    body = json.dumps(doc, allow_nan=True)
    text = f"\n<<<edgeprune-result {token}>>>\n{body}\n<<<edgeprune-end {token}>>>\n" if framed else body
    outcome = judge_plan(CommandResult(exit_status, text.encode(), b""), token)
    assert outcome.status in ("ok", "error", "invalid", "failed")
    assert plan_columns(outcome)["status"] == outcome.status
    values = cell_columns(outcome, outcome.cells.get("x"), None, "x")
    assert values["status"] in ("ok", "error", "invalid", "failed")
    if outcome.status in ("invalid", "failed"):
        assert values["status"] == outcome.status and values.get("p50_us") is None


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300))
def test_random_bytes_from_an_agent_are_invalid(raw):
    from edgeprune.results.agent_result import judge
    from edgeprune.devices.command import CommandResult

    assert judge(CommandResult(0, raw, b"")).status in ("invalid", "ok", "error")


toml_scalars = st.one_of(st.integers(-5, 70000), st.booleans(), st.text(max_size=30), st.floats(allow_nan=False))
profile_dicts = st.dictionaries(
    st.sampled_from(["name", "kind", "host", "port", "user", "workdir", "python", "runtime", "threads", "runs",
                     "warmup", "tags", "min_seconds", "bogus", "connect_timeout"]),
    toml_scalars, max_size=10)


def _toml(values: dict) -> str:
    lines = []
    for key, value in values.items():
        lines.append(f"{key} = {json.dumps(value) if not isinstance(value, bool) else str(value).lower()}")
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(profile_dicts, min_size=0, max_size=4))
def test_random_fleet_files_load_or_fail_with_config_error(entries, tmp_path):
    from edgeprune.devices.profiles import NAME_RE, load_fleet
    from edgeprune.errors import ConfigError

    fleet = tmp_path / "fleet.toml"
    fleet.write_text("".join("[[device]]\n" + _toml(e) for e in entries))
    try:
        loaded = load_fleet(str(fleet))
    except ConfigError:
        return
    for device in loaded.devices:
        assert NAME_RE.match(device.name) and ".." not in device.name and "/" not in device.name
        assert ".." not in Path(device.workdir).parts
