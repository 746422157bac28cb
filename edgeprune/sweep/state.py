"""``sweep.json``: what a sweep folder holds, so an interrupted sweep resumes where it stopped.

One reader and writer (this module), versioned (``sweep_version``; a version this edgeprune does not know is
refused), written atomically. It records the grid, the shared optimize settings (the baseline's config: model or
built-in, data, training, the fine-tune's settings), the devices and store as last invoked, and every point with
its key, the run that builds it, that run's folder and config. The folder's layout::

    sweep.json
    baseline/baseline.keras, baseline/data.npz   trained (or loaded) once; every run prunes this model
    points/<run key>/                           one optimize run folder per run (manifest.json, *.tflite, ...)
    pareto.csv, pareto.md, pareto.png           the result

What finished is not kept here but in the run folders (a complete manifest) and the store (each point's optimize
outcome and bench runs): a crash between two writes cannot make this file claim work that was lost.
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from .._version import __version__
from ..errors import ConfigError
from ..optimize.config import OptimizeConfig
from .grid import Grid, Point, Run

SWEEP_VERSION = 1
FILENAME = "sweep.json"
BASELINE_DIR = "baseline"
POINTS_DIR = "points"
#: The files prepare_baseline writes (edgeprune.optimize.pipeline.BASELINE_MODEL / BASELINE_DATA).
BASELINE_MODEL = "baseline.keras"
BASELINE_DATA = "data.npz"
#: Config keys that are paths of this machine or the invocation, not what a point computes.
_NOT_IDENTITY = ("out", "max_accuracy_drop")


@dataclass
class SweepState:
    folder: Path
    grid: Grid
    #: The baseline's OptimizeConfig as a dict: the user's model or the built-in one, data, training, seed, and
    #: the fine-tune settings every run starts from (each run sets its own sparsity, structure and block).
    base: Dict[str, Any]
    max_accuracy_drop: float
    #: How the devices were chosen (device, fleet, tags), and the store, as last invoked.
    devices: Dict[str, Optional[str]] = field(default_factory=dict)
    db: str = ""
    created: str = ""

    # -- layout ---------------------------------------------------------------------------------------------
    @property
    def baseline_folder(self) -> Path:
        return self.folder / BASELINE_DIR

    def run_folder(self, run: str) -> Path:
        return self.folder / POINTS_DIR / run

    def baseline_config(self) -> OptimizeConfig:
        return OptimizeConfig.from_dict(dict(self.base, out=str(self.baseline_folder),
                                             max_accuracy_drop=self.max_accuracy_drop))

    def run_config(self, run: Run) -> OptimizeConfig:
        """The run's optimize config: the shared baseline model and arrays, the run's pruning, its quantized rows."""
        prune = dict(self.base.get("prune") or {}, **run.prune_settings())
        return OptimizeConfig.from_dict(dict(
            self.base, out=str(self.run_folder(run.key)), model=str(self.baseline_folder / BASELINE_MODEL),
            data=str(self.baseline_folder / BASELINE_DATA), builtin="cnn", prune=prune,
            variants=[point.row for point in self.points() if point.run == run.key],
            max_accuracy_drop=self.max_accuracy_drop))

    def runs(self) -> List[Run]:
        return self.grid.runs()

    def points(self) -> List[Point]:
        return self.grid.points()

    def check(self) -> None:
        """Every config this sweep will run, built now: a bad value fails before anything is trained."""
        self.baseline_config()
        for run in self.runs():
            self.run_config(run)

    # -- the file -------------------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        configs = {run.key: self.run_config(run).to_dict() for run in self.runs()}
        return {
            "sweep_version": SWEEP_VERSION, "producer": {"name": "edgeprune", "version": __version__},
            "created": self.created, "grid": self.grid.to_dict(), "base": self.base,
            "max_accuracy_drop": self.max_accuracy_drop, "devices": self.devices, "db": self.db,
            "points": [{"key": p.key, "run": p.run, "final_sparsity": p.final_sparsity, "structure": p.structure,
                        "block_size": p.block_size, "quant": p.quant, "run_folder": f"{POINTS_DIR}/{p.run}",
                        "config": configs[p.run]} for p in self.points()],
        }

    def save(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / FILENAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path

    def differs(self, other: "SweepState") -> Optional[str]:
        """What makes ``other`` (a new invocation) another sweep than this one (None: the same sweep)."""
        if self.grid != other.grid:
            return f"its grid is {_grid_text(self.grid)}, not {_grid_text(other.grid)}"
        mine, theirs = _identity(self.base), _identity(other.base)
        changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if changed:
            return f"its optimize settings differ ({', '.join(changed)})"
        return None


def _identity(base: Dict[str, Any]) -> Dict[str, Any]:
    flat = {k: v for k, v in base.items() if k not in _NOT_IDENTITY and not isinstance(v, dict)}
    for part in ("train", "prune"):
        flat.update({f"{part}.{k}": v for k, v in (base.get(part) or {}).items()})
    return flat


def _grid_text(grid: Grid) -> str:
    return "; ".join(f"{name} {','.join(str(v) for v in values)}" for name, values in grid.to_dict().items())


def new_state(folder: Path, grid: Grid, base: OptimizeConfig, max_accuracy_drop: float,
              devices: Dict[str, Optional[str]], db: str) -> SweepState:
    state = SweepState(folder, grid, base.to_dict(), max_accuracy_drop, devices, db,
                       _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    state.check()
    return state


def exists(folder: Path) -> bool:
    return (folder / FILENAME).is_file()


def load(folder: Path) -> SweepState:
    """The sweep in ``folder``; ConfigError when there is none or it cannot be read."""
    path = folder / FILENAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no sweep in {folder} (no {FILENAME}): start one with `edgeprune sweep --out "
                          f"{folder} ...`") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})") from exc
    version = data.get("sweep_version") if isinstance(data, dict) else None
    if version != SWEEP_VERSION:
        raise ConfigError(f"{path}: sweep_version {version!r} is not one this edgeprune reads ({SWEEP_VERSION})")
    try:
        state = SweepState(folder, Grid.from_dict(data["grid"]), dict(data["base"]),
                           float(data["max_accuracy_drop"]), dict(data.get("devices") or {}), str(data.get("db", "")),
                           str(data.get("created", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a sweep this edgeprune can read ({type(exc).__name__}: {exc})") from exc
    state.check()
    return state
