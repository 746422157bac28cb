"""The run folders benchmarks/latency_structures.py measures: the built-in mobilenet pruned with ``--structure
xnnpack-sparse`` at one final sparsity, built by ``edgeprune optimize`` and cached under
``.cache/bench/latency-structures/`` keyed by the settings (the command line, TensorFlow's and edgeprune's
versions). A folder is moved into the cache only once its optimize finished, so an interrupted build leaves
nothing half-made behind.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "bench" / "latency-structures"
STRUCTURE = "xnnpack-sparse"
#: What optimize builds (the baseline-float32 always): the names as built carry the structure's tag.
ASKED = ("baseline-int8", "pruned-float32", "pruned-dense-float32", "pruned-int8")
BASELINE = "baseline-float32"
SPARSE = "pruned-xnnpack-sparse-float32"
DENSE_STORED = "pruned-xnnpack-sparse-dense-float32"
VARIANTS = (BASELINE, SPARSE, DENSE_STORED, "baseline-int8", "pruned-xnnpack-sparse-int8")


class BuildFailed(Exception):
    """optimize did not produce a run folder: the message is one line."""


def _versions() -> str:
    from importlib import metadata

    parts = []
    for name in ("edgeprune", "tensorflow", "tf-keras", "tensorflow-model-optimization"):
        try:
            parts.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name}=none")
    return ",".join(parts)


def command(sparsity: float, seed: int, out: Path) -> List[str]:
    return [sys.executable, "-m", "edgeprune", "optimize", "--builtin", "mobilenet", "--structure", STRUCTURE,
            "--final-sparsity", f"{sparsity:g}", "--seed", str(seed), "--variants", ",".join(ASKED),
            "--out", str(out)]


def cache_dir(sparsity: float, seed: int) -> Path:
    settings = {"command": command(sparsity, seed, Path("OUT"))[3:], "versions": _versions()}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return CACHE / f"mobilenet-{STRUCTURE}-{sparsity:g}-seed{seed}-{key}"


def _complete(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("complete", True) is not False and all((folder / f"{v}.tflite").is_file() for v in VARIANTS)


def ensure_run(sparsity: float, seed: int, log=print) -> Tuple[Path, bool, float]:
    """(the run folder, whether it was cached, seconds spent building it now)."""
    folder = cache_dir(sparsity, seed)
    if _complete(folder):
        return folder, True, 0.0
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    started = time.monotonic()
    argv = command(sparsity, seed, partial)
    log("building: " + " ".join(argv[1:]))
    proc = subprocess.run(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    text = proc.stdout.decode("utf-8", "replace")
    (CACHE / f"{folder.name}.log").write_text(text)
    seconds = time.monotonic() - started
    # optimize exits 1 also when a variant is over the accuracy budget; the folder is still whole then.
    if not _complete(partial):
        lines = [line for line in text.splitlines() if line.strip()]
        raise BuildFailed(f"optimize at sparsity {sparsity:g} exited {proc.returncode} after {seconds:.0f} s: "
                          f"{lines[-1][:300] if lines else 'no output'} (log {CACHE / (folder.name + '.log')})")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder, False, seconds
