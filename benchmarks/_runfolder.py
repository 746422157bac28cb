"""Shared by the fleet benchmarks: the run folder to benchmark, made by a default optimize when none is given."""
from __future__ import annotations

from pathlib import Path
from typing import Optional


def run_folder(given: Optional[str], work: Path) -> Path:
    if given:
        return Path(given)
    from edgeprune.optimize.config import OptimizeConfig
    from edgeprune.optimize.pipeline import optimize

    folder = work / "run"
    optimize(OptimizeConfig(out=str(folder)))
    return folder
