"""``optimize``: baseline -> export -> prune -> strip -> convert -> measure -> manifest.

The order matters: the baseline is converted and measured before any pruning code touches the model, and
each variant's failure is recorded in the manifest while the others still finish.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .. import __version__
from ..results import manifest as manifest_io
from .config import OptimizeConfig
from .convert import DESCRIPTIONS, convert_variant
from .data import Dataset, load_digits_dataset, load_npz_dataset, write_eval_npz
from ..errors import ConfigError, EdgepruneError
from .evaluate import Measurement, measure

EVAL_FILE = "eval.npz"
PREDICTIONS_FILE = "predictions.npz"


class Progress:
    """What the pipeline tells its caller while it works; the CLI draws it, tests can record it."""

    def stage(self, name: str, total: Optional[int] = None) -> None:
        """A new stage begins (``total`` steps, when known)."""

    def advance(self, detail: str = "") -> None:
        """One step of the current stage is done."""

    def note(self, message: str) -> None:
        """Something the user should read, e.g. a layer left unpruned or a failed variant."""


@dataclass
class OptimizeResult:
    folder: Path
    manifest: Dict[str, Any]
    notes: List[str] = field(default_factory=list)


def library_versions() -> Dict[str, str]:
    versions = {"python": platform.python_version()}
    for key, dist in (
        ("tensorflow", "tensorflow"),
        ("tf_keras", "tf-keras"),
        ("tensorflow_model_optimization", "tensorflow-model-optimization"),
        ("ai_edge_litert", "ai-edge-litert"),
        ("numpy", "numpy"),
        ("scikit_learn", "scikit-learn"),
    ):
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = "missing"
    return versions


def prepare_output(folder: Path) -> None:
    """Create the output folder and prove it is writable before minutes of training."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".edgeprune-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to output folder {folder}: {exc.strerror or exc}") from exc


def load_data(config: OptimizeConfig) -> Dataset:
    if config.data:
        return load_npz_dataset(config.data)
    return load_digits_dataset(seed=config.seed, test_fraction=config.test_fraction)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _variant_entry(name: str, file: str, m: Measurement) -> Dict[str, Any]:
    return {
        "name": name,
        "status": "ok",
        "description": DESCRIPTIONS[name],
        "file": file,
        "sha256": m.sha256,
        "size_bytes": m.size_bytes,
        "gzip_bytes": m.gzip_bytes,
        "sparsity": m.sparsity,
        "accuracy": m.accuracy,
        "predictions_digest": m.predictions_digest,
        "input": m.input.to_dict(),
        "output": m.output.to_dict(),
    }


def optimize(config: OptimizeConfig, progress: Optional[Progress] = None) -> OptimizeResult:
    """Run the whole host pipeline and write the run folder; raises EdgepruneError on fatal problems."""
    from . import model as model_mod
    from . import prune as prune_mod

    progress = progress or Progress()
    started = time.perf_counter()
    timings: Dict[str, float] = {}
    folder = config.out_path
    prepare_output(folder)

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            timings[stage] = round(time.perf_counter() - t0, 3)

    data = timed("load_data", lambda: load_data(config))
    # A schedule that cannot prune depends only on the data size: refuse it before any training or conversion.
    prune_mod.derive_schedule(len(data.x_train), config.prune)
    if config.model:
        progress.stage("Loading model")
        baseline = timed("load_model", lambda: model_mod.load_model(config.model))
        model_mod.check_fits(baseline, data)
        source = str(config.model)
    else:
        source = "built-in CNN trained on " + data.name
        progress.stage("Training baseline", total=config.train.epochs)
        baseline = timed(
            "train",
            lambda: model_mod.train_baseline(
                data, config.train, config.seed,
                on_epoch=lambda e, logs: progress.advance(f"accuracy {logs.get('accuracy', 0):.3f}"),
            ),
        )
    write_eval_npz(data, folder / EVAL_FILE)

    # Export the baseline before pruning: its weights are the reference for every comparison.
    contents: Dict[str, bytes] = {}
    errors: Dict[str, str] = {}
    representative = data.x_train[: config.representative_samples]
    progress.stage("Converting baseline", total=1)
    try:
        contents["baseline-float32"] = timed(
            "convert_baseline", lambda: convert_variant("baseline-float32", baseline, None, representative)
        )
    except EdgepruneError as exc:
        errors["baseline-float32"] = str(exc)
        progress.note(str(exc))
    baseline_weights = [w.copy() for w in baseline.get_weights()]
    progress.advance()

    progress.stage("Pruning (fine-tune)", total=config.prune.epochs)
    pruned = timed(
        "prune",
        lambda: prune_mod.prune(
            baseline, data, config.prune, config.seed,
            on_epoch=lambda e, logs: progress.advance(f"accuracy {logs.get('accuracy', 0):.3f}"),
        ),
    )
    if any(not np.array_equal(a, b) for a, b in zip(baseline_weights, baseline.get_weights())):
        raise EdgepruneError("internal error: fine-tuning changed the baseline's weights")
    for note in pruned.notes:
        progress.note(note)

    pruned_variants = [name for name in config.variants if name != "baseline-float32"]
    progress.stage("Converting variants", total=len(pruned_variants))
    t0 = time.perf_counter()
    for name in pruned_variants:
        try:
            contents[name] = convert_variant(name, baseline, pruned.model, representative)
        except EdgepruneError as exc:
            errors[name] = str(exc)
            progress.note(str(exc))
        progress.advance(name)
    timings["convert"] = round(time.perf_counter() - t0, 3)

    progress.stage("Measuring variants", total=len(contents))
    t0 = time.perf_counter()
    entries: List[Dict[str, Any]] = []
    predictions: Dict[str, np.ndarray] = {}
    for name in config.variants:
        if name in errors:
            entries.append({"name": name, "status": "error", "description": DESCRIPTIONS[name], "error": errors[name]})
            continue
        content = contents[name]
        file = f"{name}.tflite"
        (folder / file).write_bytes(content)
        try:
            measured = measure(content, data.x_test, data.y_test)
        except EdgepruneError as exc:
            entries.append({"name": name, "status": "error", "description": DESCRIPTIONS[name], "error": str(exc)})
            progress.note(f"{name}: {exc}")
        else:
            entries.append(_variant_entry(name, file, measured))
            predictions[name] = measured.predictions
        progress.advance(name)
    timings["measure"] = round(time.perf_counter() - t0, 3)
    np.savez(folder / PREDICTIONS_FILE, **{k.replace("-", "_"): v for k, v in predictions.items()})

    scores = np.argmax(baseline.predict(data.x_test, verbose=0, batch_size=256), axis=-1)
    keras_accuracy = float(np.mean(scores == data.y_test))
    timings["total"] = round(time.perf_counter() - started, 3)
    document = {
        "schema_version": manifest_io.SCHEMA_VERSION,
        "producer": {"name": "edgeprune", "version": __version__},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "versions": library_versions(),
        "dataset": {**data.describe(), "eval_file": EVAL_FILE, "eval_sha256": _sha256(folder / EVAL_FILE)},
        "baseline": {"source": source, "params": int(baseline.count_params()), "keras_accuracy": keras_accuracy},
        "pruning": pruned.to_dict(),
        "variants": entries,
        "predictions_file": PREDICTIONS_FILE,
        "timings": timings,
    }
    manifest_io.write(document, folder)
    return OptimizeResult(folder=folder, manifest=document, notes=list(pruned.notes))


def default_out_dir(root: str = "runs") -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join(root, f"optimize-{stamp}")
