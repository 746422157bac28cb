"""Plain, validated configuration for the host pipeline.

Each dataclass validates itself in ``__post_init__`` (like tfmot's PolynomialDecay does), so a bad value fails
before TensorFlow is even imported, and round-trips through ``to_dict``/``from_dict`` for the manifest.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..errors import ConfigError

#: The TFLite variants ``optimize`` can produce, in the order they are reported.
VARIANTS: Tuple[str, ...] = (
    "baseline-float32",
    "pruned-float32",
    "pruned-dynamic",
    "pruned-int8",
    "pruned-float16",
)


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
    """'baseline-float32,pruned-int8' -> a validated tuple in canonical order."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    _check(bool(names), "no variants selected")
    return tuple(name for name in VARIANTS if name in names)


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

    epochs: int = 30
    batch_size: int = 32
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

    initial_sparsity: float = 0.50
    final_sparsity: float = 0.80
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 5e-4
    frequency: Optional[int] = None
    begin_step: int = 0
    end_fraction: float = 0.6
    block_size: Tuple[int, int] = (4, 1)

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


@dataclass
class OptimizeConfig(_Serializable):
    """Everything ``edgeprune optimize`` needs; stored whole in the manifest."""

    out: str = ""
    model: Optional[str] = None
    data: Optional[str] = None
    seed: int = 0
    test_fraction: float = 0.25
    representative_samples: int = 200
    variants: Tuple[str, ...] = VARIANTS
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)

    def __post_init__(self) -> None:
        _check(self.model is None or self.data is not None,
               "--model needs --data PATH.npz (the arrays to fine-tune and evaluate it on)")
        _check(0.0 < self.test_fraction < 1.0, f"test fraction must be in (0, 1), got {self.test_fraction}")
        _check(self.representative_samples >= 1, "representative samples must be >= 1")
        # The baseline is always converted: every ratio and delta is measured against it.
        self.variants = parse_variants(",".join(("baseline-float32",) + tuple(self.variants)))
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

