"""Pruning with tfmot: schedule derivation, wrapping, fine-tuning, stripping and measured sparsity.

Two traps from the classic guide are handled here. ``prune_low_magnitude`` wraps the layer objects it is given,
so fine-tuning would change the baseline: we wrap a weight-for-weight clone (``finetune``, which also holds the
fine-tune itself, shared with the finetuned-float32 control). And PolynomialDecay only prunes on
steps where ``(step - begin_step) % frequency == 0``, counting from step 1, so a fine-tune shorter than
``frequency`` prunes nothing, without error: the schedule is checked before training and sparsity is measured
after stripping.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from . import _tf
from . import structures
from .config import PruneConfig
from .data import Dataset
from ..errors import PruningError
from ..results import manifest
from .finetune import clone_with_weights, fine_tune
from .model import EpochCallback

#: Measured sparsity may fall this far below the target before the pruned model is refused.
SPARSITY_TOLERANCE = 0.05


@dataclass
class Schedule:
    """The concrete PolynomialDecay parameters for one fine-tune."""

    initial_sparsity: float
    final_sparsity: float
    begin_step: int
    end_step: int
    frequency: int
    steps_per_epoch: int
    total_steps: int
    pruning_steps: int

    @property
    def recovery_steps(self) -> int:
        return self.total_steps - self.end_step

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["recovery_steps"] = self.recovery_steps
        return data


def derive_schedule(num_train: int, config: PruneConfig) -> Schedule:
    """Fit the schedule to the data size, leaving the last steps for recovery; refuse one that cannot prune."""
    steps_per_epoch = math.ceil(num_train / config.batch_size)
    total = steps_per_epoch * config.epochs
    target_end = max(1, int(total * config.end_fraction))
    span = target_end - config.begin_step
    if span < 1:
        raise PruningError(
            f"pruning would begin at step {config.begin_step} but the fine-tune has only {total} steps "
            f"({config.epochs} epochs x {steps_per_epoch} steps); raise --prune-epochs"
        )
    frequency = config.frequency or max(1, min(100, span // 10))
    if frequency > span:
        raise PruningError(
            f"the schedule can never prune: pruning runs every {frequency} steps but only {span} fine-tune "
            f"steps fall between begin and end ({config.epochs} epochs x {steps_per_epoch} steps, end fraction "
            f"{config.end_fraction}); lower --frequency or raise --prune-epochs"
        )
    # End on a pruning turn, so the final sparsity is actually applied.
    end_step = config.begin_step + (span // frequency) * frequency
    turns = sum(1 for step in range(max(config.begin_step, 1), end_step + 1) if (step - config.begin_step) % frequency == 0)
    return Schedule(
        initial_sparsity=config.initial_sparsity,
        final_sparsity=config.final_sparsity,
        begin_step=config.begin_step,
        end_step=end_step,
        frequency=frequency,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        pruning_steps=turns,
    )


@dataclass
class LayerSparsity:
    layer: str
    weights: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.weights if self.weights else 0.0


@dataclass
class LayerCoverage:
    """One layer with weights, and whether its weights were pruned or left dense (and why)."""

    layer: str
    type: str
    weights: int  # all its weights (kernels, biases, normalization statistics)
    status: str  # "pruned" (some of its weights) or "dense"
    reason: str = ""  # why dense, or which of its weights stayed dense


#: Why tfmot leaves a layer it knows about dense (its registry lists no prunable weight for it).
_DENSE_WHY = {
    "DepthwiseConv2D": "tfmot does not prune depthwise kernels",
    "BatchNormalization": "normalization statistics: nothing to prune",
    "LayerNormalization": "normalization parameters: nothing to prune",
    "Embedding": "tfmot's registry prunes no Embedding weight",
}


@dataclass
class PruneResult:
    """The stripped model plus what was measured on it."""

    model: Any
    schedule: Schedule
    layers: List[LayerSparsity]
    notes: List[str] = field(default_factory=list)
    coverage: List[LayerCoverage] = field(default_factory=list)
    structure: str = structures.DEFAULT

    @property
    def sparsity(self) -> float:
        weights = sum(layer.weights for layer in self.layers)
        return sum(layer.zeros for layer in self.layers) / weights if weights else 0.0

    def record(self) -> manifest.Pruning:
        """What the manifest records of this pruning."""
        total = sum(c.weights for c in self.coverage)
        zeros = sum(layer.zeros for layer in self.layers)
        return manifest.Pruning(
            schedule=manifest.Schedule(**self.schedule.to_dict()),
            sparsity=self.sparsity,
            total_weights=total, all_weights_sparsity=zeros / total if total else 0.0,
            coverage=[manifest.LayerCoverage(layer=c.layer, type=c.type, weights=c.weights, status=c.status,
                                             reason=c.reason) for c in self.coverage],
            layers=[
                manifest.LayerSparsity(layer=l.layer, weights=l.weights, zeros=l.zeros, sparsity=l.sparsity)
                for l in self.layers
            ],
            notes=list(self.notes),
            structure=self.structure,
        )

    def to_dict(self) -> Dict[str, Any]:
        return self.record().to_dict()


def coverage_notes(coverage: List[LayerCoverage]) -> List[str]:
    """What was left dense, grouped by layer type and reason, with its share of all weights: one note each."""
    total = sum(c.weights for c in coverage) or 1
    groups: Dict[tuple, List[LayerCoverage]] = {}
    for c in coverage:
        if c.status == "dense" or c.reason:
            groups.setdefault((c.type, c.status, c.reason), []).append(c)
    notes = []
    for (kind, status, reason), layers in groups.items():
        weights = sum(c.weights for c in layers)
        names = ", ".join(c.layer for c in layers[:4]) + (", ..." if len(layers) > 4 else "")
        what = "left dense" if status == "dense" else "pruned in part"
        notes.append(f"{len(layers)} {kind} layer{'s' if len(layers) != 1 else ''} {what} ({names}): {reason}; "
                     f"{weights / total:.1%} of all weights")
    return notes


def _wrap(model: Any, schedule: Schedule, config: PruneConfig, notes: List[str],
          coverage: Optional[List[LayerCoverage]] = None) -> tuple:
    """Wrap each prunable layer; leave the others as they are, with a note for those that hold weights."""
    tfmot = _tf.load_tfmot()
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    polynomial = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=schedule.initial_sparsity,
        final_sparsity=schedule.final_sparsity,
        begin_step=schedule.begin_step,
        end_step=schedule.end_step,
        frequency=schedule.frequency,
    )
    prunable_weights: Dict[str, List[str]] = {}
    structure = structures.get(config.structure)
    policy = tfmot.sparsity.keras.PruneForLatencyOnXNNPack() if structure.xnnpack_policy else None
    if policy is not None:
        try:
            policy.ensure_model_supports_pruning(model)
        except ValueError as exc:  # tfmot says which layer or why, in one sentence
            raise PruningError(
                f"--structure xnnpack-sparse: tfmot's PruneForLatencyOnXNNPack refuses this model ({str(exc)[:300]}); "
                f"XNNPACK's sparse path needs a subgraph that starts with ZeroPadding2D(1) + a 3x3 stride-2 valid "
                f"Conv2D on 3 channels, holds only 1x1 Conv2D, DepthwiseConv2D, element-wise and activation layers, "
                f"and ends in GlobalAveragePooling2D(keepdims=True) (e.g. --builtin mobilenet)") from exc

    found = coverage if coverage is not None else []

    def wrap(layer: Any) -> Any:
        if not layer.weights:
            return layer
        kind = type(layer).__name__
        size = int(sum(int(np.prod(w.shape)) for w in layer.weights))
        if not prune_registry.PruneRegistry.supports(layer):
            found.append(LayerCoverage(layer.name, kind, size, "dense", f"tfmot cannot prune a {kind}"))
            return layer
        if policy is not None and not policy.allow_pruning(layer):
            found.append(LayerCoverage(layer.name, kind, size, "dense", "the xnnpack-sparse structure prunes only "
                                                                        "1x1 Conv2D kernels (XNNPACK's sparse path)"))
            return layer
        kernels = _prunable_weights(layer)
        if kernels and structure.m_by_n and any(len(k.shape) not in (2, 4) for k in kernels):
            found.append(LayerCoverage(layer.name, kind, size, "dense", "tfmot's 2:4 pruning takes 2-D and 4-D "
                                                                        "kernels only"))
            return layer
        if not kernels:
            found.append(LayerCoverage(layer.name, kind, size, "dense",
                                       _DENSE_WHY.get(kind, f"tfmot prunes no weight of a {kind}")))
            return layer  # normalization layers, depthwise convolutions and the like
        recurrent = prune_registry.PruneRegistry._is_rnn_layer(layer)
        block = config.block if all(len(w.shape) == 2 for w in kernels) and not recurrent else (1, 1)
        kept = [_short_name(w.name) for w in layer.weights if len(w.shape) > 1 and all(w is not k for k in kernels)]
        found.append(LayerCoverage(layer.name, kind, size, "pruned",
                                   f"its {', '.join(kept)} stays dense (tfmot prunes only its "
                                   f"{', '.join(_short_name(k.name) for k in kernels)})" if kept else ""))
        prunable_weights[layer.name] = [_short_name(w.name) for w in kernels]
        return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=polynomial, block_size=block,
                                                        sparsity_m_by_n=structure.m_by_n)

    _, keras = _tf.load()
    wrapped = keras.models.clone_model(model, clone_function=wrap)
    if not prunable_weights:
        raise PruningError("the model has no layer tfmot can prune (Dense, Conv, ... layers)")
    return wrapped, prunable_weights


def _prunable_weights(layer: Any) -> list:
    """The weights tfmot prunes in a layer (kernels, not biases); the layer must be built."""
    from tensorflow_model_optimization.python.core.sparsity.keras import prunable_layer, prune_registry

    if isinstance(layer, prunable_layer.PrunableLayer):
        return list(layer.get_prunable_weights())
    registry = prune_registry.PruneRegistry
    if registry._is_rnn_layer(layer):  # LSTM, GRU, SimpleRNN: their cells' kernels (tfmot prunes those)
        cells = registry._get_rnn_cells(layer)
        return [getattr(cell, name) for cell in cells
                for name in registry._RNN_CELLS_WEIGHTS_MAP.get(cell.__class__, [])]
    if layer.__class__ in registry._LAYERS_WEIGHTS_MAP:
        return [getattr(layer, name) for name in registry._weight_names(layer)]
    return []


def _short_name(name: str) -> str:
    return name.split("/")[-1].split(":")[0]


def measure_sparsity(model: Any, prunable_weights: Dict[str, List[str]]) -> List[LayerSparsity]:
    """Zeros over the kernels that were pruned, per layer, on the stripped model."""
    result = []
    for layer_name, weight_names in prunable_weights.items():
        layer = model.get_layer(layer_name)
        values = [w.numpy() for w in layer.weights if _short_name(w.name) in weight_names]
        result.append(
            LayerSparsity(
                layer=layer_name,
                weights=int(sum(v.size for v in values)),
                zeros=int(sum(np.count_nonzero(v == 0) for v in values)),
            )
        )
    return result


def prune(model: Any, data: Dataset, config: PruneConfig, seed: int, on_epoch: Optional[EpochCallback] = None) -> PruneResult:
    """Fine-tune a clone of ``model`` under PolynomialDecay, strip the wrappers and check the sparsity reached."""
    tfmot = _tf.load_tfmot()
    schedule = derive_schedule(len(data.x_train), config)
    notes: List[str] = []
    coverage: List[LayerCoverage] = []
    wrapped, prunable_weights = _wrap(clone_with_weights(model), schedule, config, notes, coverage)
    notes.append(f"structure {config.structure}: {structures.get(config.structure).note}")
    notes.extend(coverage_notes(coverage))
    fine_tune(wrapped, data, config, seed, on_epoch, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    layers = measure_sparsity(stripped, prunable_weights)
    result = PruneResult(stripped, schedule, layers, notes, coverage, config.structure)
    if result.sparsity < config.target_sparsity - SPARSITY_TOLERANCE:
        raise PruningError(
            f"pruning reached only {result.sparsity:.1%} sparsity against a target of {config.target_sparsity:.0%} "
            f"(schedule: end step {schedule.end_step}, frequency {schedule.frequency}, "
            f"{schedule.total_steps} steps); refusing to ship a model that is not pruned"
        )
    return result
