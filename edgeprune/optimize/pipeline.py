"""``optimize``: baseline -> export -> [fine-tune control] -> prune -> strip -> convert -> measure -> manifest.

The order matters: the baseline is converted before any fine-tuning or pruning code touches the model, and
each variant's failure is recorded in the manifest while the others still finish. The fine-tuned control (a
clone fine-tuned like the pruning fine-tune, without pruning) costs a second fine-tune, so it is trained only
when a selected variant is made from it.
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
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .._version import __version__
from ..results import manifest as manifest_io
from ..results.manifest import Manifest, VariantEntry
from . import structures
from . import variants as variant_table
from .config import OptimizeConfig
from .convert import convert_variant
from .data import Dataset, load_digits_dataset, load_digits_rgb, load_npz_dataset, write_eval_npz
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
    document: Manifest
    notes: List[str] = field(default_factory=list)

    @property
    def manifest(self) -> Dict[str, Any]:
        """The manifest as written to manifest.json."""
        return self.document.to_dict()


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
    if config.builtin == "mobilenet":
        return load_digits_rgb(seed=config.seed, test_fraction=config.test_fraction)
    return load_digits_dataset(seed=config.seed, test_fraction=config.test_fraction)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ok_entry(name: str, m: Measurement) -> VariantEntry:
    row = variant_table.get(name)
    return VariantEntry(
        name=name, status="ok", description=row.description, file=f"{name}.tflite", sha256=m.sha256,
        size_bytes=m.size_bytes, gzip_bytes=m.gzip_bytes, sparsity=m.sparsity, accuracy=m.accuracy,
        predictions_digest=m.predictions_digest, input=m.input, output=m.output,
    )


def _error_entry(name: str, error: str) -> VariantEntry:
    return VariantEntry(name=name, status="error", description=variant_table.get(name).description, error=error)


def _over_budget(entries: List[VariantEntry], budget: float) -> List[str]:
    """Mark each variant that lost more than ``budget`` accuracy points against the baseline (a compact model
    at 80% sparsity can lose tens of points and still convert fine); one note each."""
    base = next((e for e in entries if e.name == variant_table.BASELINE and e.ok), None)
    notes = []
    for entry in entries:
        if base is None or not entry.ok or entry is base or entry.accuracy is None or base.accuracy is None:
            continue
        drop = (base.accuracy - entry.accuracy) * 100
        if drop > budget:
            entry.over_budget = (f"lost {drop:.1f} accuracy points against the baseline (budget {budget:g}); try a "
                                 f"lower --final-sparsity or a longer fine-tune (--prune-epochs)")
            notes.append(f"{entry.name}: {entry.over_budget}")
    return notes


#: A converted variant that agrees with its own Keras model on fewer test samples than this computes something
#: else (an LSTM converted with a static batch gave 17% against Keras' 92%): it is marked, never reported fine.
KERAS_AGREEMENT_MIN = 0.9


def _keras_labels(model: Any, x: np.ndarray) -> np.ndarray:
    return np.argmax(model.predict(x, verbose=0, batch_size=256), axis=-1)


def _against_keras(entries: List[VariantEntry], predictions: Dict[str, np.ndarray],
                   keras_labels: Dict[str, np.ndarray], y: np.ndarray) -> List[str]:
    """Each measured variant's agreement with the Keras model it was converted from; a note for each below
    KERAS_AGREEMENT_MIN."""
    notes = []
    for entry in entries:
        labels = keras_labels.get(variant_table.get(entry.name).source)
        if not entry.ok or entry.name not in predictions or labels is None:
            continue
        entry.keras_agreement = float(np.mean(predictions[entry.name] == labels))
        if entry.keras_agreement < KERAS_AGREEMENT_MIN:
            entry.mismatch = (f"agrees with its Keras model on {entry.keras_agreement:.0%} of the test set (Keras "
                              f"{np.mean(labels == y):.1%} accurate, this file {entry.accuracy:.1%}): the converted "
                              f"model does not compute what Keras does")
            notes.append(f"{entry.name}: {entry.mismatch}")
    return notes


def _convert_all(names: List[str], model: Any, representative: np.ndarray, contents: Dict[str, bytes],
                 errors: Dict[str, str], progress: Progress) -> float:
    """Convert each variant from ``model``: its file content or its error; returns the seconds it took."""
    t0 = time.perf_counter()
    for name in names:
        try:
            contents[name] = convert_variant(name, model, representative)
        except EdgepruneError as exc:
            errors[name] = str(exc)
            progress.note(str(exc))
        progress.advance(name)
    return round(time.perf_counter() - t0, 3)


def optimize(config: OptimizeConfig, progress: Optional[Progress] = None) -> OptimizeResult:
    """Run the whole host pipeline and write the run folder; raises EdgepruneError on fatal problems."""
    from . import finetune as finetune_mod
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
        baseline = timed("load_model", lambda: model_mod.load_model(config.model, config.custom_objects,
                                                                    config.unsafe_deserialization))
        model_mod.check_fits(baseline, data)
        source = str(config.model)
    else:
        source = f"built-in {'CNN' if config.builtin == 'cnn' else config.builtin} trained on {data.name}"
        progress.stage("Training baseline", total=config.train.epochs)
        baseline = timed(
            "train",
            lambda: model_mod.train_baseline(
                data, config.train, config.seed,
                on_epoch=lambda e, logs: progress.advance(f"accuracy {logs.get('accuracy', 0):.3f}"),
                builtin=config.builtin,
            ),
        )
    write_eval_npz(data, folder / EVAL_FILE)

    # Export the baseline (every variant made from it) before any fine-tune: its weights are the reference for
    # every comparison, and neither the fine-tuned control nor pruning may touch it first.
    contents: Dict[str, bytes] = {}
    errors: Dict[str, str] = {}
    representative = data.x_train[: config.representative_samples]
    # The names as built: a pruned row carries its structure's tag (pruned-2by4-int8); the default keeps the plain one.
    names = [structures.tagged(name, config.prune.structure) for name in config.variants]
    by_source: Dict[str, List[str]] = {source: [] for source in variant_table.SOURCES}
    for name in names:
        by_source[variant_table.get(name).source].append(name)
    progress.stage("Converting baseline", total=len(by_source["baseline"]))
    timings["convert_baseline"] = _convert_all(by_source["baseline"], baseline, representative, contents, errors,
                                               progress)
    baseline_weights = [w.copy() for w in baseline.get_weights()]
    keras_labels = {"baseline": _keras_labels(baseline, data.x_test)}
    # What is built so far is measured and written at once, in a manifest marked incomplete: if TensorFlow
    # crashes later (the fine-tunes), the baseline variants stay measured and benchable.
    done: Dict[str, VariantEntry] = {}
    predictions: Dict[str, np.ndarray] = {}
    _measure_into(by_source["baseline"], contents, errors, data, folder, done, predictions, Progress())
    manifest_io.save(_document(config, data, folder, source, baseline, keras_labels, None,
                               [done.get(n) or _error_entry(n, NOT_BUILT) for n in names],
                               dict(timings), complete=False), folder)

    def on_epoch(epoch: int, logs: Dict[str, Any]) -> None:
        progress.advance(f"accuracy {logs.get('accuracy', 0):.3f}")

    if by_source["finetuned"]:
        progress.stage("Fine-tuning (control)", total=config.prune.epochs)
        finetuned = timed("finetune", lambda: finetune_mod.finetuned_clone(baseline, data, config.prune, config.seed,
                                                                           on_epoch=on_epoch))
        progress.stage("Converting fine-tuned", total=len(by_source["finetuned"]))
        timings["convert_finetuned"] = _convert_all(by_source["finetuned"], finetuned, representative, contents,
                                                    errors, progress)
        keras_labels["finetuned"] = _keras_labels(finetuned, data.x_test)
        del finetuned

    progress.stage("Pruning (fine-tune)", total=config.prune.epochs)
    pruned = timed("prune", lambda: prune_mod.prune(baseline, data, config.prune, config.seed, on_epoch=on_epoch))
    if any(not np.array_equal(a, b) for a, b in zip(baseline_weights, baseline.get_weights())):
        raise EdgepruneError("internal error: fine-tuning changed the baseline's weights")
    if model_mod.outputs_probabilities(baseline, data.x_train):
        pruned.notes.insert(0, "the model outputs probabilities (it ends in a softmax): fine-tuned with a "
                               "probability loss (from_logits=False)")
    for note in pruned.notes:
        progress.note(note)

    keras_labels["pruned"] = _keras_labels(pruned.model, data.x_test)
    progress.stage("Converting variants", total=len(by_source["pruned"]))
    timings["convert"] = _convert_all(by_source["pruned"], pruned.model, representative, contents, errors, progress)
    if by_source["pqat"]:
        from . import pqat as pqat_mod

        progress.stage("Quantization-aware fine-tune (keeps the zeros)", total=pqat_mod.epochs(config.prune))
        try:
            quantized = timed("pqat", lambda: pqat_mod.pqat_clone(pruned.model, data, config.prune, config.seed,
                                                                  on_epoch=on_epoch))
        except EdgepruneError as exc:  # the other variants stand; these say why they were not built
            errors.update({name: f"{name}: {exc}" for name in by_source["pqat"]})
            progress.note(str(exc))
        else:
            keras_labels["pqat"] = _keras_labels(quantized, data.x_test)
            timings["convert_pqat"] = _convert_all(by_source["pqat"], quantized, representative, contents, errors,
                                                   progress)
            del quantized

    progress.stage("Measuring variants", total=len([n for n in names if n not in done]))
    t0 = time.perf_counter()
    _measure_into([n for n in names if n not in done], contents, errors, data, folder, done, predictions, progress)
    entries = [done[name] for name in names]
    for entry in entries:
        if variant_table.get(entry.name).source in ("pruned", "pqat"):
            entry.structure = config.prune.structure
            entry.sparsity_control = variant_table.sparsity_control(entry.name, names)
    timings["measure"] = round(time.perf_counter() - t0, 3)
    for note in _over_budget(entries, config.max_accuracy_drop) + _against_keras(entries, predictions,
                                                                                  keras_labels, data.y_test):
        progress.note(note)
    np.savez(folder / PREDICTIONS_FILE, **{manifest_io.predictions_key(k): v for k, v in predictions.items()})

    timings["total"] = round(time.perf_counter() - started, 3)
    document = _document(config, data, folder, source, baseline, keras_labels, pruned.record(), entries, timings)
    manifest_io.save(document, folder)
    return OptimizeResult(folder=folder, document=document, notes=list(pruned.notes))


#: What an incomplete manifest says of a variant optimize had not built yet (the parent adds why it stopped).
NOT_BUILT = "not built: optimize stopped before it"


def _document(config: OptimizeConfig, data: Dataset, folder: Path, source: str, baseline: Any,
              keras_labels: Dict[str, np.ndarray], pruning: Optional[manifest_io.Pruning], entries: List[VariantEntry],
              timings: Dict[str, float], complete: bool = True) -> Manifest:
    return Manifest(
        schema_version=manifest_io.SCHEMA_VERSION,
        producer=manifest_io.Producer(name="edgeprune", version=__version__),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        config=config.to_dict(),
        versions=library_versions(),
        dataset=manifest_io.Dataset(**data.describe(), eval_file=EVAL_FILE, eval_sha256=_sha256(folder / EVAL_FILE)),
        baseline=manifest_io.Baseline(source=source, params=int(baseline.count_params()),
                                      keras_accuracy=float(np.mean(keras_labels["baseline"] == data.y_test))),
        pruning=pruning,
        variants=entries,
        predictions_file=PREDICTIONS_FILE,
        timings=timings,
        complete=None if complete else False,
    )


def _measure_into(names: List[str], contents: Dict[str, bytes], errors: Dict[str, str], data: Dataset, folder: Path,
                  done: Dict[str, VariantEntry], predictions: Dict[str, np.ndarray], progress: Progress) -> None:
    """Write and measure each of ``names`` (or record its conversion error) into ``done`` and ``predictions``,
    then the predictions file, so a manifest written now can be benched."""
    for name in names:
        if name in errors:
            done[name] = _error_entry(name, errors[name])
            continue
        content = contents[name]
        (folder / f"{name}.tflite").write_bytes(content)
        try:
            measured = measure(content, data.x_test, data.y_test)
        except EdgepruneError as exc:
            done[name] = _error_entry(name, str(exc))
            progress.note(f"{name}: {exc}")
        else:
            done[name] = _ok_entry(name, measured)
            done[name].explain = _explain(content, name, progress)
            predictions[name] = measured.predictions
        progress.advance(name)
    np.savez(folder / PREDICTIONS_FILE, **{manifest_io.predictions_key(k): v for k, v in predictions.items()})


BASELINE_MODEL = "baseline.keras"
BASELINE_DATA = "data.npz"


def prepare_baseline(config: OptimizeConfig, folder: Path, progress: Optional[Progress] = None) -> Tuple[Path, Path]:
    """Train the built-in baseline (or load the user's ``--model``) once and write it with its arrays:
    ``folder/baseline.keras`` and ``folder/data.npz`` (x_train, y_train, x_test, y_test). A sweep optimizes every
    point from these, so all points prune the same baseline and measure on the same split."""
    from . import model as model_mod

    progress = progress or Progress()
    prepare_output(folder)
    data = load_data(config)
    if config.model:
        progress.stage("Loading model")
        baseline = model_mod.load_model(config.model, config.custom_objects, config.unsafe_deserialization)
        model_mod.check_fits(baseline, data)
    else:
        progress.stage("Training baseline", total=config.train.epochs)
        baseline = model_mod.train_baseline(
            data, config.train, config.seed, builtin=config.builtin,
            on_epoch=lambda e, logs: progress.advance(f"accuracy {logs.get('accuracy', 0):.3f}"))
    model_path, data_path = folder / BASELINE_MODEL, folder / BASELINE_DATA
    baseline.save(str(model_path))
    np.savez(data_path, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test)
    return model_path, data_path


def _explain(content: bytes, name: str, progress: Progress) -> Optional[Dict[str, Any]]:
    """The why-not-faster check of one variant (edgeprune.explain), for the manifest; a pruned variant's verdict on
    XNNPACK's sparse path is also a note under --structure xnnpack-sparse, whose zeros are there to buy latency."""
    from ..explain import explain_bytes

    try:
        explained = explain_bytes(content, f"{name}.tflite")
    except EdgepruneError as exc:  # the file measured fine; the check could not read something in it
        progress.note(f"{name}: the why-not-faster check could not read it: {exc}")
        return None
    if structures.untagged(name)[1] == "xnnpack-sparse":  # pruned for that path: say whether it can take it
        progress.note(f"{name}: XNNPACK's sparse path: " + ("can apply" if explained.sparse_eligible
                                                          else f"no, {explained.sparse_reason}"))
    return explained.to_dict()


def default_out_dir(root: str = "runs") -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join(root, f"optimize-{stamp}")
