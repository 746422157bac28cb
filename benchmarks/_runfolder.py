"""Shared by the benchmarks: tests/ on sys.path (for the ``support`` package the tests use), and the run folder to
benchmark, made by a default optimize when none is given.

The benchmarks are scripts (``.venv/bin/python benchmarks/x.py``): Python puts benchmarks/ first on sys.path, so
this module is found, but not tests/, where the helpers that start real devices live (tests/support: sshd devices,
the device lab). pytest gets tests/ from its ``pythonpath`` setting; this is the one place the benchmarks add it.
Import this module before ``support``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

TESTS_DIR = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(1, str(TESTS_DIR))  # after benchmarks/ (sys.path[0]), before site-packages


def run_folder(given: Optional[str], work: Path) -> Path:
    if given:
        return Path(given)
    from edgeprune.optimize.config import OptimizeConfig
    from edgeprune.optimize.pipeline import optimize

    folder = work / "run"
    optimize(OptimizeConfig(out=str(folder)))
    return folder
