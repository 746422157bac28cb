"""The TFLite variants ``optimize`` can build: one table, looked up by name.

Adding a variant is adding a row to ``TABLE``: ``convert`` builds the converter from the row's settings,
``pipeline`` converts it from the model its ``source`` names (baseline rows before any fine-tune starts; the
fine-tuned clone only when a selected row needs it), and ``--variants``, ``config.VARIANTS`` (the rows marked
``default``), the manifest's descriptions and the names a manifest may hold all come from here.

The ``baseline-*`` and ``finetuned-*`` rows are controls (issue 12): with the same converter settings as a
``pruned-*`` row, they separate what quantization alone, fine-tuning alone and pruning each bought. Nothing here imports TensorFlow: the converter settings name TF attributes as strings, which
``convert`` resolves (``"DEFAULT"`` is ``tf.lite.Optimize.DEFAULT``, ``"int8"`` is ``tf.int8``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from ..errors import ConfigError

#: The reference variant: always built, and every ratio and delta is measured against it.
BASELINE = "baseline-float32"

#: The models a variant can be converted from: the trained (or user's) model; a clone of it fine-tuned exactly as
#: the pruning fine-tune but without pruning (built only when a selected row needs it); its pruned, stripped clone.
#: ``pqat``: the pruned model after a quantization-aware fine-tune that keeps its zeros (tfmot's prune-preserving
#: QAT scheme), built only when a selected row needs it.
SOURCES = ("baseline", "finetuned", "pruned", "pqat")

#: A variant name is also its file name (``<name>.tflite``) and, with ``_`` for ``-``, a key in predictions.npz.
NAME_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"


@dataclass(frozen=True)
class ConverterSettings:
    """What is set on ``tf.lite.TFLiteConverter`` beyond ``from_keras_model``; empty means "leave as is"."""

    #: ``converter.optimizations``: members of ``tf.lite.Optimize``.
    optimizations: Tuple[str, ...] = ()
    #: ``converter.target_spec.supported_types``: TF dtype names.
    supported_types: Tuple[str, ...] = ()
    #: ``converter.target_spec.supported_ops``: members of ``tf.lite.OpsSet``.
    supported_ops: Tuple[str, ...] = ()
    #: Calibrate on the representative samples (``config.representative_samples`` of ``x_train``).
    representative_dataset: bool = False
    #: ``converter.inference_input_type`` / ``inference_output_type``: TF dtype names.
    input_type: Optional[str] = None
    output_type: Optional[str] = None


@dataclass(frozen=True)
class Variant:
    """One row of the table."""

    name: str
    description: str
    source: str
    converter: ConverterSettings = field(default_factory=ConverterSettings)
    #: Built when ``--variants`` is not given; an opt-in row (False) is built only when asked for by name.
    default: bool = True
    #: Stored sparse when the structure stores its float weights sparse (``structures``); False for the control
    #: that keeps the same zeros stored dense.
    sparse_storage: bool = True

    def __post_init__(self) -> None:
        if not re.match(NAME_PATTERN, self.name):
            raise ConfigError(f"variant name {self.name!r} must be lower-case words joined by '-'")
        if self.source not in SOURCES:
            raise ConfigError(f"variant {self.name!r}: source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if not self.description:
            raise ConfigError(f"variant {self.name!r} has no description")

    @property
    def file(self) -> str:
        return f"{self.name}.tflite"


_DEFAULT = ("DEFAULT",)
#: One set of settings per kind of quantization, shared by the baseline and pruned rows: a control differs from
#: its pruned row in the source model only.
_DYNAMIC = ConverterSettings(optimizations=_DEFAULT)
_FULL_INT8 = ConverterSettings(optimizations=_DEFAULT, supported_ops=("TFLITE_BUILTINS_INT8",),
                               representative_dataset=True, input_type="int8", output_type="int8")
_FLOAT16 = ConverterSettings(optimizations=_DEFAULT, supported_types=("float16",))

#: Every variant, in the order they are built and reported.
TABLE: Tuple[Variant, ...] = (
    Variant(BASELINE, "baseline model, float32", "baseline"),
    Variant("baseline-dynamic", "baseline model (not pruned), dynamic-range quantization (int8 weights, float "
                                "activations)", "baseline", _DYNAMIC),
    Variant("baseline-int8", "baseline model (not pruned), full integer quantization (int8 weights, activations, "
                             "input and output)", "baseline", _FULL_INT8),
    Variant("finetuned-float32", "baseline fine-tuned like the pruning fine-tune (same epochs, steps, optimizer, "
                                 "data) but not pruned, float32", "finetuned", default=False),
    Variant("pruned-float32", "pruned + stripped, float32", "pruned"),
    Variant("pruned-dense-float32", "pruned, float32, weights stored dense even when the structure stores them "
                                    "sparse: the control that shows what sparse storage (XNNPACK's sparse path) "
                                    "bought", "pruned", default=False, sparse_storage=False),
    Variant("pruned-dynamic", "pruned, dynamic-range quantization (int8 weights, float activations)", "pruned",
            _DYNAMIC),
    Variant("pruned-int8", "pruned, full integer quantization (int8 weights, activations, input and output)",
            "pruned", _FULL_INT8),
    Variant("pruned-float16", "pruned, float16 weights", "pruned", _FLOAT16),
    Variant("pruned-pqat-int8", "pruned, then a quantization-aware fine-tune that keeps the zeros (tfmot's "
                                "prune-preserving QAT), full integer quantization: compare with pruned-int8's "
                                "post-training int8", "pqat", _FULL_INT8, default=False),
)

#: The table by name (insertion order is the table's order). Tests may add a row here for their duration.
REGISTRY: Dict[str, Variant] = {row.name: row for row in TABLE}


def names() -> Tuple[str, ...]:
    """Every variant's name, in table order."""
    return tuple(REGISTRY)


def defaults() -> Tuple[str, ...]:
    """The names built when ``--variants`` is not given, in table order (opt-in rows left out)."""
    return tuple(name for name, row in REGISTRY.items() if row.default)


def get(name: str) -> Variant:
    """The row named ``name``; a pruned variant's built name (``pruned-2by4-int8``) finds its row
    (``pruned-int8``): the structure's tag is part of the name, not of the table."""
    from .structures import untagged

    try:
        return REGISTRY[name]
    except KeyError:
        row, structure = untagged(name)
        if structure is not None and row in REGISTRY:
            return REGISTRY[row]
        raise ConfigError(f"unknown variant {name!r}; choose from {', '.join(REGISTRY)}") from None


def known(name: str) -> bool:
    """A name a manifest may hold: a row's, or a pruned row's under a structure's tag."""
    try:
        get(name)
    except ConfigError:
        return False
    return True


#: A pruned row -> the unpruned row with the same converter settings (what its zeros are judged against).
_UNPRUNED = {"pruned-float32": "baseline-float32", "pruned-dense-float32": "baseline-float32",
             "pruned-dynamic": "baseline-dynamic", "pruned-int8": "baseline-int8", "pruned-pqat-int8": "baseline-int8"}


def sparsity_control(name: str, built: "Tuple[str, ...] | list") -> Optional[str]:
    """The variant among ``built`` that ``name``'s sparsity is judged against on a device (the report's "sparsity
    bought" line): for a sparse-stored float32 row its dense-stored control when built (the same zeros: the ratio
    is the storage, XNNPACK's sparse path, alone), else the unpruned row with the same converter settings."""
    from .structures import tagged, untagged

    row, structure = untagged(name)
    if not name.startswith("pruned-") or row not in REGISTRY:
        return None
    if row == "pruned-float32":
        dense = tagged("pruned-dense-float32", structure or "block")
        if dense in built:
            return dense
    control = _UNPRUNED.get(row)
    return control if control in built else None


def help_text() -> str:
    """The table as the ``--variants`` help lists it; opt-in rows say so, since the default does not show them."""
    return "; ".join(f"{row.name}: {row.description}" + ("" if row.default else " (opt-in)")
                     for row in REGISTRY.values())
