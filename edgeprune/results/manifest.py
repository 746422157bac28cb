"""The manifest: the versioned record of what ``optimize`` produced, read back by ``bench`` and ``report``.

One module owns it: the schema check (``validate``), the typed document (``Manifest`` and its parts, with
``from_dict``/``to_dict``) and the file (``write``/``read`` for the JSON as a dict, ``save``/``load`` for a
``Manifest``). ``Manifest.from_dict(doc).to_dict() == doc`` for every valid document: keys this edgeprune does
not know are kept in each part's ``extra`` and written back, and optional keys that are absent stay absent.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Type, TypeVar

from .. import resources
from ..errors import ManifestError

SCHEMA_VERSION = 1
FILENAME = "manifest.json"

R = TypeVar("R", bound="_Record")


def schema_path() -> Path:
    """The schema ships with the package (``schemas/`` in the repository), one per boundary."""
    return resources.schema_path("manifest")


def load_schema() -> Dict[str, Any]:
    return json.loads(schema_path().read_text())


def validate(manifest: Dict[str, Any]) -> None:
    import jsonschema

    from ..optimize import variants as variant_table

    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version != SCHEMA_VERSION:
        raise ManifestError(f"manifest schema version {version!r} is not one this edgeprune reads ({SCHEMA_VERSION})")
    validator = jsonschema.Draft202012Validator(load_schema(), format_checker=jsonschema.FormatChecker())
    error = jsonschema.exceptions.best_match(validator.iter_errors(manifest))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise ManifestError(f"manifest is invalid at {where}: {error.message}")
    # The schema says what a variant name looks like; which names exist is the variants table's business.
    for index, entry in enumerate(manifest["variants"]):
        if not variant_table.known(entry["name"]):
            raise ManifestError(f"manifest is invalid at variants/{index}/name: {entry['name']!r} is not one of "
                                f"{', '.join(variant_table.REGISTRY)}")


def _dump(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_dump(item) for item in value]
    if isinstance(value, dict):
        return {key: _dump(item) for key, item in value.items()}
    return value


@dataclass(kw_only=True)
class _Record:
    """A JSON object of the manifest: fields in the order they are written; a field that defaults to None is
    optional (absent when None); ``extra`` keeps the keys the class does not know."""

    extra: Dict[str, Any] = field(default_factory=dict, repr=False)
    #: Fields holding records: a class for an object, a one-class list for a list of objects.
    _PARTS: ClassVar[Dict[str, Any]] = {}

    def to_dict(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "extra" and not (value is None and f.default is None):
                data[f.name] = _dump(value)
        data.update(_dump(self.extra))
        return data

    @classmethod
    def from_dict(cls: Type[R], data: Dict[str, Any]) -> R:
        return cls._from_json(data)

    @classmethod
    def _from_json(cls: Type[R], data: Dict[str, Any]) -> R:
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs: Dict[str, Any] = {}
        for key, value in data.items():
            part = cls._PARTS.get(key)
            if key not in known:
                continue
            if value is None:
                kwargs[key] = None
            elif isinstance(part, list):
                kwargs[key] = [part[0].from_dict(item) for item in value]
            elif part is not None:
                kwargs[key] = part.from_dict(value)
            else:
                kwargs[key] = _dump(value)  # a copy: the record does not share lists or dicts with its source
        return cls(**kwargs, extra={key: _dump(value) for key, value in data.items() if key not in known})


@dataclass(kw_only=True)
class Producer(_Record):
    name: str = "edgeprune"
    version: str


@dataclass(kw_only=True)
class Dataset(_Record):
    """The data set the variants were evaluated on, and the eval file shipped to devices."""

    name: str
    train_samples: int
    test_samples: int
    input_shape: List[int]
    num_classes: int
    eval_file: str
    eval_sha256: str


@dataclass(kw_only=True)
class Baseline(_Record):
    source: str
    params: int
    keras_accuracy: Optional[float] = None


@dataclass(kw_only=True)
class Schedule(_Record):
    """The PolynomialDecay schedule as it ran."""

    initial_sparsity: float
    final_sparsity: float
    begin_step: int
    end_step: int
    frequency: int
    steps_per_epoch: Optional[int] = None
    total_steps: int
    pruning_steps: Optional[int] = None
    recovery_steps: int


@dataclass(kw_only=True)
class LayerSparsity(_Record):
    layer: str
    weights: int
    zeros: int
    sparsity: float


@dataclass(kw_only=True)
class LayerCoverage(_Record):
    """A layer with weights: ``pruned`` (some of them; ``reason`` says which stayed dense) or ``dense`` (why)."""

    layer: str
    type: str
    weights: int
    status: str
    reason: str = ""


@dataclass(kw_only=True)
class Pruning(_Record):
    schedule: Schedule
    sparsity: float  # zeros over the pruned kernels
    layers: List[LayerSparsity]
    notes: List[str]
    #: Every weight of the model, the share of them zero, and every layer with weights (issue 15); None (absent)
    #: in manifests written before coverage was recorded.
    total_weights: Optional[int] = None
    all_weights_sparsity: Optional[float] = None
    coverage: Optional[List[LayerCoverage]] = None
    #: The --structure it was pruned with (issue 16); absent in manifests written before: "block".
    structure: Optional[str] = None
    _PARTS: ClassVar[Dict[str, Any]] = {"schedule": Schedule, "layers": [LayerSparsity], "coverage": [LayerCoverage]}


@dataclass(kw_only=True)
class Tensor(_Record):
    """A model input or output as the interpreter reports it; scale 0 means not quantized."""

    dtype: str
    shape: List[int]
    scale: float = 0.0
    zero_point: int = 0


@dataclass(kw_only=True)
class VariantEntry(_Record):
    """One variant in the run folder: ``status`` "ok" with its file and measurements, or "error" with why."""

    name: str
    status: str
    description: str
    error: Optional[str] = None
    file: Optional[str] = None
    sha256: Optional[str] = None
    size_bytes: Optional[int] = None
    gzip_bytes: Optional[int] = None
    sparsity: Optional[float] = None
    accuracy: Optional[float] = None
    predictions_digest: Optional[str] = None
    input: Optional[Tensor] = None
    output: Optional[Tensor] = None
    #: Set when the variant lost more accuracy than ``--max-accuracy-drop`` allows: by how much, what to try.
    over_budget: Optional[str] = None
    #: Share of the test set on which it predicts what its Keras model predicts, and why that is too low.
    keras_agreement: Optional[float] = None
    mismatch: Optional[str] = None
    #: A pruned variant's --structure (issue 16); absent for unpruned ones and in older manifests.
    structure: Optional[str] = None
    #: What `edgeprune explain` found in the file (edgeprune.explain's Explanation.to_dict(), issue 16).
    explain: Optional[Dict[str, Any]] = None
    #: The variant of this run its sparsity is judged against on a device (optimize.variants.sparsity_control).
    sparsity_control: Optional[str] = None
    _PARTS: ClassVar[Dict[str, Any]] = {"input": Tensor, "output": Tensor}

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(kw_only=True)
class Manifest(_Record):
    """The whole document. ``config`` is ``OptimizeConfig.to_dict()`` as it was written (kept as a dict: a
    manifest is read back as recorded, not re-validated as a config)."""

    schema_version: int = SCHEMA_VERSION
    producer: Producer
    created: str
    config: Dict[str, Any]
    versions: Dict[str, str]
    dataset: Dataset
    baseline: Baseline
    pruning: Optional[Pruning]  # None only while incomplete (before pruning)
    variants: List[VariantEntry]
    predictions_file: Optional[str] = None
    timings: Optional[Dict[str, float]] = None
    #: False while optimize is still running (or after it crashed): only the variants marked ok were built.
    complete: Optional[bool] = None
    _PARTS: ClassVar[Dict[str, Any]] = {"producer": Producer, "dataset": Dataset, "baseline": Baseline,
                                        "pruning": Pruning, "variants": [VariantEntry]}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Manifest":
        """The typed manifest of a JSON document; ManifestError when it does not match the schema."""
        validate(data)
        return cls._from_json(data)

    def over_budget(self) -> List[str]:
        """The variants that lost more accuracy than the run's budget allowed."""
        return [v.name for v in self.variants if v.over_budget]

    def mismatched(self) -> List[str]:
        """The variants that do not compute what their Keras model computes."""
        return [v.name for v in self.variants if v.mismatch]

    def variant(self, name: str) -> VariantEntry:
        for entry in self.variants:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def ok_variants(self) -> List[VariantEntry]:
        return [entry for entry in self.variants if entry.ok]

    def failed_variants(self) -> List[str]:
        """The names of the variants that failed to convert or measure."""
        return [entry.name for entry in self.variants if not entry.ok]



def predictions_key(name: str) -> str:
    """A variant's array in the predictions file: its name with '_' for '-'."""
    return name.replace("-", "_")


def write(manifest: Dict[str, Any], folder: Path) -> Path:
    validate(manifest)
    path = folder / FILENAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def read(folder: Path) -> Dict[str, Any]:
    path = folder / FILENAME if folder.is_dir() else folder
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"no manifest at {path}: run `edgeprune optimize --out {folder}` first") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc})") from exc
    validate(manifest)
    return manifest


def save(manifest: Manifest, folder: Path) -> Path:
    """Validate and write ``manifest.json`` into ``folder`` (atomically)."""
    return write(manifest.to_dict(), folder)


def load(folder: Path) -> Manifest:
    """The typed manifest of a run folder (or of a manifest.json path); ManifestError when missing or invalid."""
    return Manifest._from_json(read(folder))  # read() has validated it
