"""Plain, validated configuration for the host pipeline.

Each dataclass validates itself in ``__post_init__`` (like tfmot's PolynomialDecay does), so a bad value fails
before TensorFlow is even imported, and round-trips through ``to_dict``/``from_dict`` for the manifest.

A field that is a command-line option says so in its metadata (``flag(...)``): ``cli_options()`` lists the
options of ``edgeprune optimize`` (and ``run``) from those fields and ``config_from_options()`` builds the config
from their values, so a new option is one field.
"""
from __future__ import annotations

from dataclasses import MISSING, Field, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from . import structures
from . import variants as variant_table
from ..errors import ConfigError

#: The TFLite variants ``optimize`` builds by default, in the order they are reported (the rows of
#: ``variants.TABLE`` marked ``default``; opt-in rows such as finetuned-float32 are built when named in --variants).
VARIANTS: Tuple[str, ...] = variant_table.defaults()
#: The built-in models (``--builtin``), trained on the digits when the user brings no model (``optimize.model``).
BUILTINS: Tuple[str, ...] = ("cnn", "mobilenet")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def parse_block_size(text: str) -> Tuple[int, int]:
    """'4x1' -> (4, 1)."""
    try:
        rows, cols = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"block size must look like 4x1, got {text!r}") from None
    _check(rows >= 1 and cols >= 1, f"block size must be positive, got {text!r}")
    return rows, cols


def parse_variants(text: str) -> Tuple[str, ...]:
    """'pruned-int8, pruned-float32' -> ('pruned-float32', 'pruned-int8'): validated, in table order."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    for name in names:
        variant_table.get(name)  # ConfigError naming the unknown variant and the known ones
    _check(bool(names), "no variants selected")
    return tuple(name for name in variant_table.names() if name in names)


def parse_custom_objects(text: str) -> Tuple[str, ...]:
    """'layers:Gate, mypkg.blocks:Swish' -> ('layers:Gate', 'mypkg.blocks:Swish'): module:name, validated."""
    import re

    names = tuple(part.strip() for part in text.split(",") if part.strip())
    for name in names:
        _check(re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", name) is not None,
               f"--custom-objects takes module:name pairs (e.g. mylayers:Gate), got {name!r}")
    return names


def format_block_size(block: Tuple[int, int]) -> str:
    """(4, 1) -> '4x1'."""
    return f"{block[0]}x{block[1]}"


@dataclass(frozen=True)
class Flag:
    """How a config field is set on the command line."""

    names: Tuple[str, ...]
    help: Optional[str] = None
    #: The command line's type; default: the field default's type, or ``str`` when ``parse`` is given.
    type: Optional[type] = None
    #: Command-line text -> the field's value (raises ConfigError).
    parse: Optional[Callable[[str], Any]] = None
    #: The field's default -> the command line's default.
    show: Optional[Callable[[Any], Any]] = None
    show_default: bool = True


def flag(*names: str, **settings: Any) -> Dict[str, Flag]:
    """``field(default=..., metadata=flag("--train-epochs", help=...))``: the field is that option."""
    return {"flag": Flag(names, **settings)}


class _Serializable:
    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]):  # type: ignore[no-untyped-def]
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        kwargs = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items() if key in known}
        return cls(**kwargs)


@dataclass
class TrainConfig(_Serializable):
    """How the built-in baseline is trained (ignored when the user brings a model)."""

    epochs: int = field(default=30, metadata=flag("--train-epochs", help="Epochs to train the built-in baseline."))
    batch_size: int = field(default=32, metadata=flag("--batch-size", help="Batch size of the training and of the "
                                                                           "pruning fine-tune."))
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, f"--train-epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        _check(self.learning_rate > 0, f"learning rate must be > 0, got {self.learning_rate}")


@dataclass
class PruneConfig(_Serializable):
    """The fine-tune that prunes.

    ``end_fraction`` is why our defaults beat the classic guide: pruning stops at that fraction of the fine-tune
    and the remaining steps let accuracy recover at the final sparsity. ``frequency=None`` derives it from the
    data size so the schedule always fires (the guide's fixed 100 never fires on a small data set).
    ``block_size`` applies to 2-D kernels (Dense) only: a 4x1 block keeps zeros contiguous in the TFLite
    weight buffer (stored [out, in]), which is what makes gzip shrink it.
    """

    initial_sparsity: float = field(default=0.50, metadata=flag("--initial-sparsity"))
    final_sparsity: float = field(default=0.80, metadata=flag("--final-sparsity"))
    epochs: int = field(default=10, metadata=flag("--prune-epochs", "--epochs", help="Epochs of the pruning fine-tune."))
    batch_size: int = field(default=32, metadata=flag("--batch-size"))  # the same option as the training's
    learning_rate: float = 5e-4
    frequency: Optional[int] = field(default=None, metadata=flag(
        "--frequency", type=int, help="Prune every N steps (default: derived from the data size)."))
    begin_step: int = 0
    end_fraction: float = field(default=0.6, metadata=flag(
        "--end-fraction", help="Fraction of the fine-tune after which pruning stops and accuracy recovers."))
    block_size: Tuple[int, int] = field(default=(4, 1), metadata=flag(
        "--block-size", parse=parse_block_size, show=format_block_size,
        help="Block of zeros in 2-D (Dense) kernels under --structure block; 1x1 is unstructured."))
    structure: str = field(default=structures.DEFAULT, metadata=flag(
        "--structure", parse=structures.parse,
        help="Where the zeros go: " + structures.help_text() + "."))

    def __post_init__(self) -> None:
        _check(0.0 <= self.initial_sparsity < 1.0, f"initial sparsity must be in [0, 1), got {self.initial_sparsity}")
        _check(0.0 < self.final_sparsity < 1.0, f"final sparsity must be in (0, 1), got {self.final_sparsity}")
        _check(
            self.initial_sparsity <= self.final_sparsity,
            f"initial sparsity {self.initial_sparsity} is above final sparsity {self.final_sparsity}",
        )
        _check(self.epochs >= 1, f"--prune-epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        _check(self.learning_rate > 0, f"learning rate must be > 0, got {self.learning_rate}")
        _check(self.frequency is None or self.frequency >= 1, f"--frequency must be >= 1, got {self.frequency}")
        _check(self.begin_step >= 0, f"begin step must be >= 0, got {self.begin_step}")
        _check(0.0 < self.end_fraction <= 1.0, f"--end-fraction must be in (0, 1], got {self.end_fraction}")
        self.block_size = tuple(self.block_size)  # type: ignore[assignment]
        _check(len(self.block_size) == 2 and min(self.block_size) >= 1, f"bad block size {self.block_size}")
        self.structure = structures.parse(self.structure)

    @property
    def target_sparsity(self) -> float:
        """The sparsity the pruned kernels must reach: --final-sparsity, or what the structure fixes (2:4: 50%)."""
        fixed = structures.get(self.structure).fixed_sparsity
        return fixed if fixed is not None else self.final_sparsity

    @property
    def block(self) -> Tuple[int, int]:
        """The block of zeros in 2-D kernels: --block-size under the block structure, single weights otherwise."""
        return self.block_size if structures.get(self.structure).uses_block else (1, 1)


@dataclass
class OptimizeConfig(_Serializable):
    """Everything ``edgeprune optimize`` needs; stored whole in the manifest."""

    out: str = field(default="", metadata=flag("--out", help="Output folder (default: runs/optimize-<time>).",
                                                show_default=False))
    model: Optional[str] = field(default=None, metadata=flag(
        "--model", help="Your Keras model: .keras, .h5 or a SavedModel folder."))
    data: Optional[str] = field(default=None, metadata=flag(
        "--data", help=".npz with x_train, y_train, x_test, y_test (default: digits)."))
    builtin: str = field(default="cnn", metadata=flag(
        "--builtin", help="The built-in model trained when --model is not given: cnn (a small CNN on the 8x8 digits) "
                          "or mobilenet (a MobileNet-like network on the digits upscaled to 64x64 RGB, which "
                          "XNNPACK's sparse path can take)."))
    seed: int = field(default=0, metadata=flag("--seed"))
    test_fraction: float = 0.25
    representative_samples: int = 200
    custom_objects: Tuple[str, ...] = field(default=(), metadata=flag(
        "--custom-objects", parse=parse_custom_objects, show=",".join, show_default=False,
        help="Your model's custom layers, losses or functions, as module:name[,module:name] (imported from the "
             "current folder or the Python path)."))
    unsafe_deserialization: bool = field(default=False, metadata=flag(
        "--unsafe-deserialization", type=bool,
        help="Load Lambda layers (their code runs when the model is loaded): only for files you trust."))
    max_accuracy_drop: float = field(default=5.0, metadata=flag(
        "--max-accuracy-drop", help="Accuracy points a variant may lose against the baseline (on the test set); a "
                                    "variant that loses more is marked and optimize exits 1."))
    variants: Tuple[str, ...] = field(default=VARIANTS, metadata=flag(
        "--variants", parse=parse_variants, show=",".join,
        help="Comma-separated variants to build; the baseline is always built, opt-in ones only when named. "
             + variant_table.help_text() + "."))
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)

    def __post_init__(self) -> None:
        _check(self.model is None or self.data is not None,
               "--model needs --data PATH.npz (the arrays to fine-tune and evaluate it on)")
        _check(self.builtin in BUILTINS, f"--builtin must be one of {', '.join(BUILTINS)}, got {self.builtin!r}")
        _check(self.model is None or self.builtin == "cnn", "--builtin chooses the built-in model; with --model "
                                                           "your model is used (leave --builtin out)")
        _check(0.0 < self.test_fraction < 1.0, f"test fraction must be in (0, 1), got {self.test_fraction}")
        _check(self.representative_samples >= 1, "representative samples must be >= 1")
        _check(0.0 <= self.max_accuracy_drop <= 100.0,
               f"--max-accuracy-drop is in accuracy points, 0 to 100, got {self.max_accuracy_drop}")
        # The baseline is always converted: every ratio and delta is measured against it.
        self.variants = parse_variants(",".join((variant_table.BASELINE,) + tuple(self.variants)))
        if isinstance(self.train, dict):
            self.train = TrainConfig.from_dict(self.train)
        if isinstance(self.prune, dict):
            self.prune = PruneConfig.from_dict(self.prune)

    @property
    def out_path(self) -> Path:
        return Path(self.out)

    def to_dict(self) -> Dict[str, Any]:
        data = super().to_dict()
        data["train"] = self.train.to_dict()
        data["prune"] = self.prune.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "OptimizeConfig":
        return super().from_dict(data)  # type: ignore[no-any-return]



@dataclass(frozen=True)
class CliOption:
    """One command-line option, derived from the config field(s) it sets."""

    dest: str
    flag: Flag
    type: type
    default: Any
    #: The fields it sets, as paths from OptimizeConfig, e.g. ("prune", "epochs"); ``--batch-size`` sets two.
    targets: Tuple[Tuple[str, ...], ...]


def _nested(f: Field) -> Optional[type]:
    factory = f.default_factory
    return factory if factory is not MISSING and is_dataclass(factory) else None  # type: ignore[return-value]


def _walk(cls: type, prefix: Tuple[str, ...] = ()) -> Iterator[Tuple[Tuple[str, ...], Field]]:
    for f in fields(cls):  # type: ignore[arg-type]
        nested = _nested(f)
        if nested is not None:
            yield from _walk(nested, prefix + (f.name,))
        else:
            yield prefix + (f.name,), f


def cli_options() -> List[CliOption]:
    """The options of ``edgeprune optimize``, in field order; one flag on several fields is one option."""
    found: Dict[str, CliOption] = {}
    for path, f in _walk(OptimizeConfig):
        spec: Optional[Flag] = f.metadata.get("flag")
        if spec is None:
            continue
        dest = spec.names[0].lstrip("-").replace("-", "_")
        default = spec.show(f.default) if spec.show and f.default is not None else f.default
        if dest in found:
            if found[dest].default != default:
                raise ConfigError(f"{spec.names[0]} sets fields with different defaults")
            found[dest] = CliOption(dest, found[dest].flag, found[dest].type, default, found[dest].targets + (path,))
            continue
        kind = spec.type or (str if spec.parse or default is None else type(default))
        found[dest] = CliOption(dest, spec, kind, default, (path,))
    return list(found.values())


def config_from_options(values: Mapping[str, Any]) -> OptimizeConfig:
    """The config from the options' values (by ``CliOption.dest``); fields without an option keep their default.

    Values are parsed and each config validated in field order, so the first bad option is the one reported.
    """
    chosen = {path: (option, values[option.dest]) for option in cli_options() for path in option.targets}

    def build(cls: type, prefix: Tuple[str, ...]) -> Any:
        kwargs: Dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            path = prefix + (f.name,)
            nested = _nested(f)
            if nested is not None:
                kwargs[f.name] = build(nested, path)
            elif path in chosen:
                option, value = chosen[path]
                kwargs[f.name] = option.flag.parse(value) if option.flag.parse and value is not None else value
        return cls(**kwargs)

    return build(OptimizeConfig, ())  # type: ignore[no-any-return]
