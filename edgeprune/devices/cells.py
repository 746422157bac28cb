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
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

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


def plan_cells(names: Sequence[str], baseline: Optional[str]) -> Dict[str, str]:
    """Cell id -> variant, in plan order: the baseline and its A/A twin first (when the baseline can be measured),
    then the other variants. The baseline is in every plan, asked for or not: every ratio needs it."""
    cells: Dict[str, str] = {}
    if baseline is not None:
        cells[baseline] = baseline
        cells[aa_cell(baseline)] = baseline
    for name in names:
        cells.setdefault(name, name)
    return cells


def plan_limit(profile: "DeviceProfile", cells: int) -> float:
    """Seconds a whole plan may take on the device: the rounds' budget, plus ``command_timeout`` per cell for its
    own work outside the budget (load, init child, the visit that ends the budget, accuracy)."""
    return float(profile.budget_s) + cells * float(profile.command_timeout)


def new_seed() -> int:
    """A fresh seed per plan (stored with it), so the visit order differs from bench to bench."""
    return random.SystemRandom().randrange(0, 2 ** 31 - 1)


def plan_document(profile: "DeviceProfile", cells: Dict[str, str], models: Dict[str, str],
                  eval_file: Optional[str], seed: int,
                  input_shapes: Optional[Dict[str, Dict[str, List[int]]]] = None) -> Dict[str, Any]:
    """The plan (schemas/agent-plan.schema.json) for ``cells`` (cell id -> variant), ``models`` being each
    variant's path on the device; ``eval_file`` None makes it latency-only (the agent generates inputs), and
    ``input_shapes`` gives a variant's dynamic inputs their shapes."""
    settings: Dict[str, Any] = {"runtime": profile.runtime, "threads": profile.threads,
                                "xnnpack": not profile.no_xnnpack, "warmup": profile.warmup, "runs": profile.runs,
                                "min_seconds": float(profile.min_seconds)}
    if profile.delegate:
        settings["delegate"] = profile.delegate
    return {
        "plan_version": PLAN_VERSION, "eval": eval_file, "seed": seed, "samples": False,
        "rounds": {"min": profile.min_rounds, "max": profile.max_rounds, "target_ci": float(profile.target_ci),
                   "budget_s": float(profile.budget_s)},
        "cells": [dict(settings, id=cell, model=models[variant], **_shapes(input_shapes, variant))
                  for cell, variant in cells.items()],
    }


def write_plan(folder: Path, document: Dict[str, Any]) -> FileSpec:
    """The plan as a file to put on the device like any input (content-addressed, sha256-verified there)."""
    path = folder / "plan.json"
    path.write_text(json.dumps(document, indent=1))
    return FileSpec(path, sha256_file(path), ".plan.json")


def _shapes(input_shapes: Optional[Dict[str, Dict[str, List[int]]]], variant: str) -> Dict[str, Any]:
    shapes = (input_shapes or {}).get(variant)
    return {"input_shapes": shapes} if shapes else {}
