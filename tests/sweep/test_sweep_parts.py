"""The sweep's parts without TensorFlow: grid keys, sweep.json, the store's sweep tables (schema 4), and the
Pareto rules on rows as the table holds them."""
from __future__ import annotations

import json
import sqlite3

import pytest

from edgeprune.errors import ConfigError
from edgeprune.optimize.config import OptimizeConfig
from edgeprune.results.schema import MIGRATIONS
from edgeprune.results.store import SCHEMA_VERSION, Store
from edgeprune.sweep import pareto, state as state_mod
from edgeprune.sweep.grid import parse_grid
from support.manifests import MANIFEST


def test_keys_are_stable_and_the_grid_collapses_what_a_structure_ignores():
    grid = parse_grid("0.8, 0.50,0.8", "block,2:4,xnnpack-sparse,2by4", "4x1,1x1", "int8,float32")
    assert [run.key for run in grid.runs()] == [
        "s0.8-block-4x1", "s0.8-block-1x1", "s0.5-block-4x1", "s0.5-block-1x1",  # --block-size: block only
        "s0.5-2by4",  # 2:4 fixes its sparsity at 50%, once
        "s0.8-xnnpack-sparse", "s0.5-xnnpack-sparse"]
    points = [p.key for p in grid.points()]
    assert points[:2] == ["s0.8-block-4x1-int8", "s0.8-block-4x1-float32"] and len(points) == 14
    assert parse_grid("0.5", "block", "4x1", "int8").points()[0].key == grid.points()[4].key.replace("float32", "int8")


@pytest.mark.parametrize("field, value", [("final_sparsity", "0"), ("final_sparsity", ""), ("structure", "x"),
                                          ("block_size", "0x1"), ("quant", "int4")])
def test_a_bad_grid_value_is_a_config_error(field, value):
    values = dict(dict(final_sparsity="0.5", structure="block", block_size="4x1", quant="int8"), **{field: value})
    with pytest.raises(ConfigError):
        parse_grid(**values)


def test_sweep_json_round_trips_and_knows_its_own_grid(tmp_path):
    grid = parse_grid("0.5,0.8", "block", "4x1", "float32,int8")
    base = OptimizeConfig(train={"epochs": 3}, prune={"epochs": 2})
    made = state_mod.new_state(tmp_path, grid, base, 5.0, {"device": "local"}, "e.db")
    made.save()
    loaded = state_mod.load(tmp_path)
    assert loaded.to_dict() == made.to_dict() and loaded.differs(made) is None
    config = loaded.run_config(grid.runs()[1])
    assert (config.prune.final_sparsity, config.prune.epochs, config.train.epochs) == (0.8, 2, 3)
    assert config.variants == ("baseline-float32", "pruned-float32", "pruned-int8")
    assert config.model == str(tmp_path / "baseline" / "baseline.keras") and config.builtin == "cnn"
    other = state_mod.new_state(tmp_path, grid, OptimizeConfig(train={"epochs": 4}), 5.0, {}, "e.db")
    assert "train.epochs" in made.differs(other)
    written = json.loads((tmp_path / "sweep.json").read_text())
    assert [p["config"]["prune"]["final_sparsity"] for p in written["points"]] == [0.5, 0.5, 0.8, 0.8]


def test_a_schema_3_store_migrates_to_4_and_keeps_its_runs(tmp_path):
    conn = sqlite3.connect(tmp_path / "old.db")
    for index in range(3):
        conn.executescript(MIGRATIONS[index])
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO runs (created, run_folder, manifest_json) VALUES ('then', 'r', '{}')")
    conn.commit()
    conn.close()
    with Store.open(tmp_path / "old.db") as store:
        assert store.version == SCHEMA_VERSION == 4 and len(store.runs()) == 1
        sweep = store.open_sweep("/s", {"quant": ["int8"]}, {})
        assert store.open_sweep("/s", {"quant": ["int8"]}, {"db": "x"}) == sweep


def test_points_and_benches_are_upserts_and_done_means_measured(tmp_path):
    with Store.open(tmp_path / "s.db") as store:
        sweep = store.open_sweep("/s", {}, {})
        store.record_point(sweep, "s0.8-block-4x1-int8", "s0.8-block-4x1", "failed", None, None, "boom")
        store.record_point(sweep, "s0.8-block-4x1-int8", "s0.8-block-4x1", "optimized", "/s/p", "pruned-int8", None)
        (point,) = store.sweep_points(sweep)
        assert (point["status"], point["variant"], point["reason"]) == ("optimized", "pruned-int8", None)
        manifest = json.loads(json.dumps(MANIFEST))
        run = store.create_run("/s/p", manifest, {})
        store.record_point_bench(sweep, "s0.8-block-4x1-int8", "pi", run)
        store.record_point_bench(sweep, "s0.8-block-4x1-int8", "pi", run)
        (bench,) = store.sweep_benches(sweep)
        assert not bench["done"]  # linked to a bench, but nothing measured yet
        store.record(run, "pi", "pruned-int8", {"status": "failed", "error_message": "unreachable"})
        assert not store.sweep_benches(sweep)[0]["done"]  # a failed pair is retried
        store.record(run, "pi", "pruned-int8", {"status": "ok", "p50_us": 10.0})
        assert store.sweep_benches(sweep)[0]["done"]
        # optimized again later (--retry-failed): that bench measured the earlier files, so it no longer counts
        store.conn.execute("UPDATE sweep_benches SET created = '2000-01-01T00:00:00+00:00'")
        assert not store.sweep_benches(sweep)[0]["done"]


def _row(point, accuracy, gzip, speedup, noise=0.02):
    return {"point": point, "variant": "pruned-int8", "status": "ok", "accuracy": accuracy, "gzip_bytes": gzip,
            "speedup": speedup, "speedup_ci_low": speedup * 0.99, "speedup_ci_high": speedup * 1.01,
            "p50_us": 100 / speedup, "noise": noise, "verdict": "faster", "device": "pi"}


def test_ties_within_the_noise_go_to_the_smaller_file_and_the_budget_binds():
    rows = [_row(pareto.REFERENCE, 0.97, 1000, 1.0), _row("fast-big", 0.96, 300, 3.00),
            _row("fast-small", 0.95, 200, 2.95), _row("fastest-but-inaccurate", 0.80, 100, 4.0),
            _row("slow", 0.965, 1100, 1.0)]
    pareto._mark(rows, 5.0, 0.97)
    chosen = pareto._recommend("pi", rows, 5.0)
    assert chosen.point == "fast-small" and chosen.ties == ["fast-big"]  # 3.00 vs 2.95: within ±2%
    assert "within the noise (±2%) of the fastest: fast-big; chosen for the smallest gzip size" in chosen.text
    assert [r["point"] for r in rows if not pareto._dominated(r, rows)] == [
        pareto.REFERENCE, "fast-big", "fast-small", "fastest-but-inaccurate"]
    pareto._mark(rows, 0.1, 0.97)
    nothing = pareto._recommend("pi", rows, 0.1)
    assert nothing.point is None
    assert nothing.text == ("pi: no point is within --max-accuracy-drop 0.1 accuracy points of the baseline; the "
                            "smallest loss measured is slow's 0.5 points")
