"""Size and accuracy of every variant on digits, measured in one run, next to the recipes it improves on.

Prints the default run's variant table (size, gzip, ratios, sparsity, accuracy), the gzip ratio of
pruned-int8 against baseline-float32 (goal >= 10x, aim 12x), and the same figures for unstructured pruning
and for the classic guide's recipe (pruning until the last fine-tune step), all from the same code.

    .venv/bin/python benchmarks/size_accuracy.py [--keep DIR]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import edgeprune  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeprune.optimize.config import OptimizeConfig, PruneConfig
from edgeprune.errors import EdgepruneError
from edgeprune.optimize.pipeline import optimize

RECIPES = {
    "edgeprune defaults (4x1 blocks)": PruneConfig(),
    "unstructured (1x1)": PruneConfig(block_size=(1, 1)),
    "classic guide, frequency=100": PruneConfig(epochs=2, batch_size=128, end_fraction=1.0, frequency=100,
                                                block_size=(1, 1)),
    "classic guide, frequency=10": PruneConfig(epochs=2, batch_size=128, end_fraction=1.0, frequency=10,
                                               block_size=(1, 1)),
}


def variant_table(manifest: dict) -> str:
    variants = {v["name"]: v for v in manifest["variants"] if v["status"] == "ok"}
    base = variants["baseline-float32"]
    lines = [f"{'variant':<18}{'size KB':>10}{'gzip KB':>10}{'size x':>9}{'gzip x':>9}{'sparsity':>10}"
             f"{'accuracy':>10}{'delta pts':>10}"]
    for name, v in variants.items():
        lines.append(
            f"{name:<18}{v['size_bytes'] / 1024:>10.1f}{v['gzip_bytes'] / 1024:>10.1f}"
            f"{base['size_bytes'] / v['size_bytes']:>9.2f}{base['gzip_bytes'] / v['gzip_bytes']:>9.2f}"
            f"{v['sparsity']:>10.3f}{v['accuracy'] * 100:>10.2f}{(v['accuracy'] - base['accuracy']) * 100:>+10.2f}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="write the run folders here instead of a temporary folder")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="edgeprune-bench-"))
    summary = []
    for index, (label, prune_config) in enumerate(RECIPES.items()):
        config = OptimizeConfig(out=str(root / f"recipe-{index}"), prune=prune_config)
        started = time.perf_counter()
        try:
            manifest = optimize(config).manifest
        except EdgepruneError as exc:
            summary.append(f"{label:<34} refused: {exc}")
            continue
        seconds = time.perf_counter() - started
        variants = {v["name"]: v for v in manifest["variants"] if v["status"] == "ok"}
        base, int8 = variants["baseline-float32"], variants["pruned-int8"]
        worst = min(v["accuracy"] - base["accuracy"] for v in variants.values()) * 100
        ratio = base["gzip_bytes"] / int8["gzip_bytes"]
        summary.append(
            f"{label:<34} sparsity {manifest['pruning']['sparsity']:.3f}  int8 gzip ratio {ratio:5.2f}x  "
            f"int8 delta {(int8['accuracy'] - base['accuracy']) * 100:+.2f} pts  worst delta {worst:+.2f} pts  "
            f"optimize {seconds:.1f} s"
        )
        if index == 0:
            print(f"== {label}: {manifest['dataset']['name']}, {manifest['baseline']['params']} parameters ==")
            print(variant_table(manifest))
            print(f"gzip ratio pruned-int8 vs baseline-float32: {ratio:.2f}x (goal >= 10x, aim 12x)")
            print(f"optimize wall time: {seconds:.1f} s (goal < 90 s on 2 cores)")
            print()
    print("== recipes side by side (same data, same baseline recipe, same seed) ==")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
