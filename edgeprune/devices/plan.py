"""What a bench measures, settled on the host before any device is touched: the run folder's files checked once
against their manifest, what each result will be checked against, and for ``--resume`` the run as it was (its
folder unchanged, its devices, its variants)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError
from ..results import manifest as manifest_io
from ..results.manifest import Manifest, predictions_key
from ..results.agent_result import Expected
from ..results.imported import Imported, from_manifest, is_imported
from ..results.store import Store
from .bundle import FileSpec, sha256_file
from .profiles import DeviceProfile


@dataclass
class RunInputs:
    """What every worker needs from the run folder, read and checked once on the host."""

    folder: Optional[Path]
    manifest: Optional[Manifest]
    eval_spec: Optional[FileSpec]  # None: latency only (the agent generates inputs)
    specs: Dict[str, FileSpec]
    expected: Dict[str, Expected]
    host_predictions: Dict[str, np.ndarray]
    input_shapes: Dict[str, Dict[str, List[int]]] = field(default_factory=dict)  # per variant


@dataclass
class Source:
    """What a bench measures, before the variants are chosen: stored as the run's folder and manifest; ``inputs``
    makes the RunInputs of the chosen variants; ``reference`` is the variant every ratio is taken against."""

    run_folder: str
    manifest: Dict[str, Any]
    names: List[str]
    reference: Optional[str]
    inputs: Callable[[List[str]], RunInputs]


def imported_inputs(imported: Imported, names: Sequence[str]) -> RunInputs:
    """RunInputs for files benchmarked as they are (results.imported)."""
    evaluation = None
    labels = None
    if imported.eval_file is not None:
        evaluation = FileSpec(imported.eval_file, str(imported.eval_sha256), ".npz")
        labels = _eval_labels(imported.eval_file)
    files = {n: imported.file(n) for n in names}
    specs = {n: FileSpec(f.path, f.sha256, ".tflite") for n, f in files.items()}
    expected = {n: Expected(f.sha256, f.size_bytes, labels, None) for n, f in files.items()}
    shapes = {n: imported.shapes_for(n) for n in names}
    return RunInputs(None, None, evaluation, specs, expected, {}, {n: s for n, s in shapes.items() if s})


def open_source(store: Store, given: "Union[Path, Imported, None]", resume: Optional[int]) -> Source:
    """The run folder or the imported files to bench; with ``resume``, the run as it was stored."""
    from ..optimize.variants import BASELINE

    if resume is not None:
        row = store.run(resume)
        stored = json.loads(row["manifest_json"])
        if is_imported(stored):
            imported = from_manifest(stored)
            return Source(row["run_folder"], stored, [f.name for f in imported.files], imported.reference,
                          lambda names: imported_inputs(imported, names))
        folder, manifest = check_resume(store, resume, given if isinstance(given, Path) else None)
    elif isinstance(given, Imported):
        return Source("(files)", given.to_manifest(), [f.name for f in given.files], given.reference,
                      lambda names: imported_inputs(given, names))
    elif given is None:
        raise ConfigError("bench needs a run folder or .tflite files")
    else:
        folder, manifest = given, manifest_io.load(given)
    names = [v.name for v in manifest.ok_variants()]
    return Source(str(folder.resolve()), manifest.to_dict(), names, BASELINE if BASELINE in names else None,
                  lambda chosen: run_inputs(folder, manifest, chosen))


def _load_host_predictions(folder: Path, manifest: Manifest, names: Sequence[str]) -> Dict[str, np.ndarray]:
    path = folder / (manifest.predictions_file or "predictions.npz")
    if not path.is_file():
        return {}
    with np.load(path) as npz:
        return {name: npz[predictions_key(name)] for name in names if predictions_key(name) in npz.files}


def _eval_labels(path: Path) -> Optional[np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return np.asarray(data["y"]).astype(np.int64) if "y" in data.files else None
    except (OSError, ValueError):
        return None


def run_inputs(folder: Path, manifest: Manifest, names: Sequence[str]) -> RunInputs:
    dataset = manifest.dataset
    eval_spec = FileSpec(folder / dataset.eval_file, dataset.eval_sha256, ".npz")
    labels = _eval_labels(eval_spec.local)
    entries = {n: manifest.variant(n) for n in names}
    specs = {n: FileSpec(folder / str(v.file), str(v.sha256), ".tflite") for n, v in entries.items()}
    expected = {n: Expected(v.sha256, v.size_bytes, labels, dataset.num_classes) for n, v in entries.items()}
    return RunInputs(folder, manifest, eval_spec, specs, expected, _load_host_predictions(folder, manifest, names))


def local_mismatches(inputs: RunInputs) -> Dict[str, str]:
    """Variants whose file in the run folder no longer is the one the manifest describes: checked once here,
    not discovered as an "upload mismatch" on every device. A changed eval file stops the bench."""
    if inputs.eval_spec is not None:
        try:
            eval_hash = sha256_file(inputs.eval_spec.local)
        except OSError as exc:
            raise ConfigError(f"cannot read {inputs.eval_spec.local}: {exc.strerror or exc}") from exc
        if eval_hash != inputs.eval_spec.sha256:
            raise ConfigError(f"{inputs.eval_spec.local} no longer matches its manifest (sha256 {eval_hash[:12]}, "
                              f"manifest {inputs.eval_spec.sha256[:12]}): re-run `edgeprune optimize`")
    bad = {}
    for name, spec in inputs.specs.items():
        try:
            actual = sha256_file(spec.local)
        except OSError as exc:
            bad[name] = f"{spec.local.name} cannot be read in the run folder: {exc.strerror or exc}"
            continue
        if actual != spec.sha256:
            if inputs.manifest is not None:
                bad[name] = (f"{spec.local.name} in the run folder no longer matches the manifest (sha256 "
                             f"{actual[:12]}, manifest {spec.sha256[:12]}): re-run `edgeprune optimize`")
            else:
                bad[name] = (f"{spec.local} changed since it was imported (sha256 {actual[:12]}, then "
                             f"{spec.sha256[:12]}): bench the files again")
    return bad


def check_resume(store: Store, run_id: int, folder: Optional[Path]) -> Tuple[Path, Manifest]:
    """The run folder of a resumed run, refused when its files are no longer the ones that run measured."""
    row = store.run(run_id)
    folder = folder or Path(row["run_folder"])
    try:
        manifest = manifest_io.load(folder)
    except Exception as exc:
        raise ConfigError(f"cannot resume run {run_id}: {exc}") from exc
    now = {v.name: v.sha256 for v in manifest.ok_variants()}
    for variant in store.variants(run_id):
        if variant["status"] != "ok":
            continue
        if variant["name"] not in now:
            raise ConfigError(f"cannot resume run {run_id}: {folder} has no variant {variant['name']} any more")
        if now[variant["name"]] != variant["sha256"]:
            raise ConfigError(
                f"cannot resume run {run_id}: {folder} no longer holds the models it measured ({variant['name']} "
                f"is sha256 {str(now[variant['name']])[:12]} now, {str(variant['sha256'])[:12]} then; "
                f"re-optimized into the same folder?): start a new bench instead")
    return folder, manifest


def stored_devices(store: Store, run_id: int) -> List[DeviceProfile]:
    """The devices a run was measured on, rebuilt from their stored profiles (for ``--resume`` without
    ``--device``/``--fleet``)."""
    store.run(run_id)  # an unknown run id is one clear line
    profiles = []
    for row in store.devices(run_id):
        try:
            values = json.loads(row["profile_json"])
            values["tags"] = tuple(values.get("tags") or ())
            profiles.append(DeviceProfile(**values))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"run {run_id}: the stored profile of {row['name']} is unusable ({exc}); "
                              f"name the devices with --device/--fleet") from exc
    if not profiles:
        raise ConfigError(f"run {run_id} has no devices stored: name them with --device/--fleet")
    return profiles


def status_counts(store: Store, run_id: int, devices: Sequence[str], names: Sequence[str]) -> Dict[str, int]:
    counts = {"ok": 0, "error": 0, "failed": 0, "invalid": 0, "not-measured": 0}
    stored = {(r["device"], r["variant"]): r["status"] for r in store.results(run_id)}
    for device in devices:
        for name in names:
            status = stored.get((device, name), "not-measured")
            counts[status] = counts.get(status, 0) + 1
    return counts
