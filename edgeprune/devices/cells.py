"""The measurement plan the host sends one device (issue 12): which cells, with which files and settings.

Every variant of the bench is a cell, and the baseline is measured twice, as itself and as its A/A twin
(``baseline-float32@aa``): the same file, measured in the same rounds like any other cell, so the ratio of the
two is the noise floor of that device in that bench (docs/statistics.md). The agent measures the cells in rounds
(device_agent/plan.py); the profile's ``warmup``/``runs``/``min_seconds`` apply to every visit, its
``min_rounds``/``max_rounds``/``target_ci``/``budget_s`` are the stopping rule.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from .bundle import FileSpec, sha256_file

if TYPE_CHECKING:
    from .profiles import DeviceProfile

#: The A/A twin's cell id is the variant's name with this suffix (a variant name cannot contain '@').
AA_SUFFIX = "@aa"
#: The plan document's version (device_agent.PLAN_VERSION).
PLAN_VERSION = 1


def aa_cell(variant: str) -> str:
    return variant + AA_SUFFIX


def is_aa(cell: str) -> bool:
    return cell.endswith(AA_SUFFIX)


#: A matrix cell's id is ``<variant>#<configuration label>`` (a variant name cannot contain '#').
CONFIG_MARK = "#"
#: The matrix dimensions `bench` takes (``--runtimes``, ``--threads``, ``--xnnpack``, ``--delegate``), in label
#: order: the plan cell key each sets.
DIMENSIONS = ("runtime", "threads", "xnnpack", "delegate")
#: ``--delegate none``: the cell runs without a delegate (its plan cell's ``delegate`` is null).
NO_DELEGATE = "none"


@dataclass(frozen=True)
class Matrix:
    """The configurations to measure every variant in (issue 13): each dimension a list of values, or empty for
    the device profile's own value. Labels name only the dimensions given, so they are the same on every device.
    A delegate is a library name or path, or ``none``."""

    runtimes: Tuple[str, ...] = ()
    threads: Tuple[int, ...] = ()
    xnnpack: Tuple[bool, ...] = ()
    delegates: Tuple[str, ...] = ()

    def _axes(self) -> List[Tuple[Any, ...]]:
        return [self.runtimes, self.threads, self.xnnpack, self.delegates]

    @property
    def size(self) -> int:
        size = 1
        for axis in self._axes():
            size *= max(1, len(axis))
        return size

    def configurations(self) -> List[Dict[str, Any]]:
        """Each configuration as the plan cell keys it sets, in order (runtime slowest, delegate fastest)."""
        configs: List[Dict[str, Any]] = [{}]
        for key, axis in zip(DIMENSIONS, self._axes()):
            if axis:
                configs = [dict(c, **{key: _cell_value(key, v)}) for c in configs for v in axis]
        return configs

    def to_dict(self) -> Dict[str, Any]:
        return {"runtimes": list(self.runtimes), "threads": list(self.threads), "xnnpack": list(self.xnnpack),
                "delegates": list(self.delegates)}

    @classmethod
    def from_dict(cls, data: Optional[Dict[str, Any]]) -> "Matrix":
        data = data or {}
        return cls(tuple(data.get("runtimes") or ()), tuple(data.get("threads") or ()),
                   tuple(data.get("xnnpack") or ()), tuple(data.get("delegates") or ()))


def _cell_value(key: str, value: Any) -> Any:
    return None if key == "delegate" and value == NO_DELEGATE else value


def delegate_label(delegate: Optional[str]) -> str:
    """``libedgetpu.so.1`` -> ``edgetpu``; no delegate -> ``cpu``: short enough for a cell id and a column."""
    if not delegate:
        return "cpu"
    name = delegate.replace("\\", "/").rsplit("/", 1)[-1]
    name = name[3:] if name.startswith("lib") else name
    return name.split(".so", 1)[0] or name


def config_label(config: Dict[str, Any]) -> str:
    """``ai_edge_litert/4t/no-xnnpack/edgetpu``: the configuration's given dimensions, in a cell id and the
    report."""
    parts = []
    if "runtime" in config:
        parts.append(str(config["runtime"]))
    if "threads" in config:
        parts.append(f"{config['threads']}t")
    if "xnnpack" in config:
        parts.append("xnnpack" if config["xnnpack"] else "no-xnnpack")
    if "delegate" in config:
        parts.append(delegate_label(config["delegate"]))
    return "/".join(parts)


def split_cell(cell: str) -> Tuple[str, str]:
    """(variant, configuration label) of a cell id; the label is "" outside a matrix. The A/A twin's suffix is kept
    on the variant."""
    twin = is_aa(cell)
    core = cell[: -len(AA_SUFFIX)] if twin else cell
    variant, _, label = core.partition(CONFIG_MARK)
    return (aa_cell(variant) if twin else variant), label


def plan_cells(names: Sequence[str], baseline: Optional[str],
               matrix: Optional[Matrix] = None) -> Dict[str, Tuple[str, Dict[str, Any]]]:
    """Cell id -> (variant, configuration), in plan order: the reference and its A/A twin first (when it can be
    measured), then every variant in every configuration. The reference is in every plan, asked for or not (every
    ratio needs it); in a matrix, the reference cell is the reference variant in the first configuration, and only
    it has a twin."""
    configurations = (matrix or Matrix()).configurations()
    several = len(configurations) > 1

    def cell_id(name: str, config: Dict[str, Any]) -> str:
        return f"{name}{CONFIG_MARK}{config_label(config)}" if several else name

    cells: Dict[str, Tuple[str, Dict[str, Any]]] = {}
    if baseline is not None:
        first = cell_id(baseline, configurations[0])
        cells[first] = (baseline, configurations[0])
        cells[aa_cell(first)] = (baseline, configurations[0])
    for name in ([baseline] if baseline is not None else []) + list(names):
        for config in configurations:
            cells.setdefault(cell_id(name, config), (name, config))
    return cells


def reference_cell(baseline: Optional[str], matrix: Optional[Matrix] = None) -> Optional[str]:
    """The cell every ratio is taken against (see plan_cells)."""
    if baseline is None:
        return None
    configurations = (matrix or Matrix()).configurations()
    return f"{baseline}{CONFIG_MARK}{config_label(configurations[0])}" if len(configurations) > 1 else baseline


@dataclass(frozen=True)
class Extras:
    """What a plan does after its rounds (issue 13): every cell's op profile (``--op-profile``), and one cell
    kept running for ``sustained_s`` seconds (``--sustained``; 0: none), the variant ``sustained_variant``'s cell
    in the first configuration, or the reference cell."""

    op_profile: bool = False
    sustained_s: float = 0.0
    sustained_variant: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"op_profile": self.op_profile, "sustained_s": self.sustained_s,
                "sustained_variant": self.sustained_variant}

    @classmethod
    def from_dict(cls, data: Optional[Dict[str, Any]]) -> "Extras":
        data = data or {}
        return cls(bool(data.get("op_profile")), float(data.get("sustained_s") or 0.0),
                   data.get("sustained_variant"))


#: Seconds the agent gives one cell's per-op profiler run (device_agent.plan.OP_PROFILE_DEADLINE_S).
OP_PROFILE_S = 120.0


def sustained_cell(cells: "Dict[str, Tuple[str, Dict[str, Any]]]", extras: Extras,
                   reference: Optional[str]) -> Optional[str]:
    """The cell ``--sustained`` keeps running: the chosen variant's first cell, else the reference, else the
    first cell; None without ``--sustained``."""
    if not extras.sustained_s or not cells:
        return None
    if extras.sustained_variant:
        return next((c for c, (v, _) in cells.items() if v == extras.sustained_variant and not is_aa(c)), None)
    return reference if reference in cells else next(iter(cells))


def plan_limit(profile: "DeviceProfile", cells: int, extras: Optional[Extras] = None) -> float:
    """Seconds a whole plan may take on the device: the rounds' budget, plus ``command_timeout`` per cell for its
    own work outside the budget (load, init child, the visit that ends the budget, accuracy), plus the
    sustained run and the op profiles."""
    extras = extras or Extras()
    return (float(profile.budget_s) + cells * float(profile.command_timeout) + extras.sustained_s
            + (cells * OP_PROFILE_S if extras.op_profile else 0.0))


def new_seed() -> int:
    """A fresh seed per plan (stored with it), so the visit order differs from bench to bench."""
    return random.SystemRandom().randrange(0, 2 ** 31 - 1)


def plan_document(profile: "DeviceProfile", cells: "Dict[str, Tuple[str, Dict[str, Any]]]", models: Dict[str, str],
                  eval_file: Optional[str], seed: int,
                  input_shapes: Optional[Dict[str, Dict[str, List[int]]]] = None,
                  extras: Optional[Extras] = None, sustained: Optional[str] = None) -> Dict[str, Any]:
    """The plan (schemas/agent-plan.schema.json) for ``cells`` (cell id -> (variant, configuration: the cell keys
    that override the profile's runtime/threads/xnnpack)), ``models`` being each
    variant's path on the device; ``eval_file`` None makes it latency-only (the agent generates inputs),
    ``input_shapes`` gives a variant's dynamic inputs their shapes, ``extras`` and ``sustained`` (the cell to keep
    running, see sustained_cell) what the plan does after its rounds."""
    extras = extras or Extras()
    settings: Dict[str, Any] = {"runtime": profile.runtime, "threads": profile.threads,
                                "xnnpack": not profile.no_xnnpack, "warmup": profile.warmup, "runs": profile.runs,
                                "min_seconds": float(profile.min_seconds)}
    if profile.delegate:
        settings["delegate"] = profile.delegate
    return {
        "plan_version": PLAN_VERSION, "eval": eval_file, "seed": seed, "samples": False,
        "rounds": {"min": profile.min_rounds, "max": profile.max_rounds, "target_ci": float(profile.target_ci),
                   "budget_s": float(profile.budget_s)},
        "cells": [dict(settings, id=cell, model=models[variant], **config, **_shapes(input_shapes, variant))
                  for cell, (variant, config) in cells.items()],
        "op_profile": extras.op_profile, "op_profiler": profile.op_profiler,
        "sustained": {"cell": sustained, "seconds": float(extras.sustained_s)} if sustained else None,
    }


def write_plan(folder: Path, document: Dict[str, Any]) -> FileSpec:
    """The plan as a file to put on the device like any input (content-addressed, sha256-verified there)."""
    path = folder / "plan.json"
    path.write_text(json.dumps(document, indent=1))
    return FileSpec(path, sha256_file(path), ".plan.json")


def _shapes(input_shapes: Optional[Dict[str, Dict[str, List[int]]]], variant: str) -> Dict[str, Any]:
    shapes = (input_shapes or {}).get(variant)
    return {"input_shapes": shapes} if shapes else {}
