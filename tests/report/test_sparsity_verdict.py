"""Issue 16: per device, what sparsity bought, or "no measurable gain (noise ±y%)" with the check's reason.

Runs are written through the Store API with per-round p50s (support.store_rows) and read back by the real report;
the manifests carry what optimize records (``explain``, ``sparsity_control``), so the report joins them as it does
for a real run. Rounds are drawn with a fixed seed: a 2x gain on an Arm board, an identical graph on an x86 host.
"""
from __future__ import annotations

import numpy as np
import pytest

import edgeprune as edgeprune_api
from edgeprune.report.frame import load
from edgeprune.results.store import Store
from support.store_rows import manifest_for, round_cell, store_plan

SPARSE, DENSE = "pruned-xnnpack-sparse-float32", "pruned-xnnpack-sparse-dense-float32"
INT8 = "pruned-xnnpack-sparse-int8"


def _check(eligible: bool, reason: str = "", stored_sparse: bool = True, zeros: float = 0.85) -> dict:
    return {"check_version": 1, "sparse_eligible": eligible, "sparse_reason": reason, "stored_sparse": stored_sparse,
            "one_by_one_zero_fraction": zeros, "float_model": True, "xnnpack_ops": {}, "fallback": [], "rules": []}


def _manifest() -> dict:
    manifest = manifest_for({"baseline-float32": (500, 0.99), "baseline-int8": (150, 0.99), SPARSE: (120, 0.98),
                             DENSE: (130, 0.98), INT8: (60, 0.98)})
    extra = {SPARSE: {"explain": _check(True), "sparsity_control": DENSE},
             DENSE: {"explain": _check(False, "weights stored dense: convert with EXPERIMENTAL_SPARSITY", False),
                     "sparsity_control": "baseline-float32"},
             INT8: {"explain": _check(False, "int8 model: the sparse path is float-only"),
                    "sparsity_control": "baseline-int8"}}
    for entry in manifest["variants"]:
        entry.update(extra.get(entry["name"], {}))
    return manifest


def _rounds(rng, p50: float, n: int = 12, spread: float = 0.004) -> list:
    return list(p50 * (1 + rng.normal(0, spread, n)))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    db = tmp_path_factory.mktemp("sparsity") / "results.db"
    rng = np.random.default_rng(16)
    with Store.open(db) as store:
        run = store.create_run("/nonexistent/run", _manifest(), {})
        # an Arm board where the sparse path runs: sparse-stored 2x faster than the same zeros stored dense
        arm = {"baseline-float32": 4000, "baseline-float32@aa": 4000, "baseline-int8": 2500, SPARSE: 2000,
               DENSE: 4000, INT8: 2500}
        store_plan(store, run, "pi", {cell: round_cell(_rounds(rng, p50), machine="aarch64")
                                      for cell, p50 in arm.items()})
        # an x86 host: nothing changes
        x86 = dict.fromkeys(arm, 300.0)
        store_plan(store, run, "laptop", {cell: round_cell(_rounds(rng, p50), machine="x86_64")
                                          for cell, p50 in x86.items()})
    return edgeprune_api.compare(str(db)), load(db)


def _lines(loaded, device: str) -> list:
    return [line for line in loaded.devices[device].verdicts if line.startswith("Sparsity")]


def test_a_real_gain_is_what_sparsity_bought(report):
    _, loaded = report
    lines = _lines(loaded, "pi")
    sparse = next(line for line in lines if line.startswith(f"Sparsity ({SPARSE} vs {DENSE})"))
    assert "sparsity bought 50% of p50" in sparse and "faster" in sparse
    # the dense-stored control against the baseline: the same p50, and the check's reason why
    dense = next(line for line in lines if line.startswith(f"Sparsity ({DENSE} vs baseline-float32)"))
    assert "no measurable gain (noise ±" in dense and "weights stored dense: convert with EXPERIMENTAL_SPARSITY" \
        in dense
    int8 = next(line for line in lines if line.startswith(f"Sparsity ({INT8} vs baseline-int8)"))
    assert "no measurable gain" in int8 and "int8 model: the sparse path is float-only" in int8


def test_on_x86_an_eligible_file_gains_nothing_and_the_device_is_why(report):
    _, loaded = report
    sparse = next(line for line in _lines(loaded, "laptop") if line.startswith(f"Sparsity ({SPARSE}"))
    assert "no measurable gain (noise ±" in sparse
    assert "x86-64, where XNNPACK never takes it on CPUs with AVX" in sparse


def test_unpruned_variants_get_no_sparsity_line(report):
    _, loaded = report
    for device in ("pi", "laptop"):
        assert not any(line.startswith("Sparsity (baseline") for line in _lines(loaded, device))
        assert len(_lines(loaded, device)) == 3


def test_the_lines_reach_the_table(report):
    frame, _ = report
    verdicts = set(frame[frame["device"] == "pi"]["device_verdict"])
    assert len(verdicts) == 1 and "sparsity bought 50% of p50" in verdicts.pop()
