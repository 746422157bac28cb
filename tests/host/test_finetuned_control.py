"""The opt-in finetuned-float32 control and the order in which the pipeline builds each source's variants.

Real runs on a small user model and a slice of digits (400 training samples, 2 fine-tune epochs of 13 steps), so
each takes seconds: the control is fine-tuned only when asked for, is not pruned, and says what it is; baseline
rows are converted before any fine-tune starts.
"""
from __future__ import annotations

import json
from typing import List, Optional, Tuple

import pytest

from edgeprune.optimize import variants
from edgeprune.optimize.config import VARIANTS, OptimizeConfig, PruneConfig
from edgeprune.optimize.pipeline import Progress
from edgeprune.optimize.variants import BASELINE
from edgeprune.results.manifest import validate

pytestmark = pytest.mark.slow

CONTROL = "finetuned-float32"


class Recorder(Progress):
    """Every stage the pipeline announces, with the details of its steps, in order."""

    def __init__(self) -> None:
        self.stages: List[Tuple[str, Optional[int], List[str]]] = []

    def stage(self, name: str, total: Optional[int] = None) -> None:
        self.stages.append((name, total, []))

    def advance(self, detail: str = "") -> None:
        self.stages[-1][2].append(detail)


def test_the_control_is_built_when_asked_for(cli, user_models, small_digits_npz, tmp_path):
    out = tmp_path / "out"
    proc = cli("optimize", "--model", str(user_models["keras"]), "--data", str(small_digits_npz), "--out", str(out),
               "--variants", f"pruned-float32,{CONTROL}", "--prune-epochs", "2", "--max-accuracy-drop", "100", "--json",
               "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads(proc.stdout)
    validate(manifest)
    entries = {v["name"]: v for v in manifest["variants"]}
    assert list(entries) == [BASELINE, CONTROL, "pruned-float32"]
    control, base, pruned = entries[CONTROL], entries[BASELINE], entries["pruned-float32"]
    assert control["status"] == "ok" and control["description"] == variants.get(CONTROL).description
    assert "fine-tuned" in control["description"] and "not pruned" in control["description"]
    assert (out / control["file"]).stat().st_size == control["size_bytes"]
    # Fine-tuned: the same graph as the baseline with other weights; not pruned, unlike the pruned model.
    assert control["size_bytes"] == base["size_bytes"] and control["sha256"] != base["sha256"]
    assert control["sparsity"] < 0.01 and pruned["sparsity"] >= 0.75
    assert control["accuracy"] > 0.5
    assert manifest["timings"]["finetune"] > 0 and "convert_finetuned" in manifest["timings"]
    assert manifest["config"]["variants"] == [BASELINE, CONTROL, "pruned-float32"]


def test_each_source_is_converted_in_order(user_models, small_digits_npz, tmp_path):
    """The baseline rows are converted before the control's fine-tune and the pruning start; the control is
    fine-tuned for as many epochs as the pruning; every variant is measured and recorded in table order."""
    from edgeprune.optimize.pipeline import optimize

    chosen = VARIANTS + (CONTROL,)
    config = OptimizeConfig(out=str(tmp_path / "run"), model=str(user_models["keras"]), data=str(small_digits_npz),
                            variants=chosen, prune=PruneConfig(epochs=2))
    progress = Recorder()
    result = optimize(config, progress)
    names = [name for name in variants.names() if name in chosen]
    by_source = {source: [n for n in names if variants.get(n).source == source] for source in variants.SOURCES}
    assert by_source["baseline"] == [BASELINE, "baseline-dynamic", "baseline-int8"]
    stages = [(name, total, details if name.startswith("Converting") else len(details))
              for name, total, details in progress.stages if name != "Measuring variants"]
    assert stages == [
        ("Loading model", None, 0),
        ("Converting baseline", 3, by_source["baseline"]),
        ("Fine-tuning (control)", 2, 2),
        ("Converting fine-tuned", 1, [CONTROL]),
        ("Pruning (fine-tune)", 2, 2),
        ("Converting variants", 4, by_source["pruned"]),
    ]
    assert [v.name for v in result.document.variants] == names
    assert result.document.failed_variants() == []
