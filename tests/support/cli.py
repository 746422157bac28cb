"""The edgeprune CLI run as a subprocess, as a user runs it, and what its ``optimize`` produced.

``edgeprune(...)`` and ``bench(...)`` run from the caller's working folder; ``run_cli(cwd, ...)`` runs from ``cwd``,
outside the repository: ``python -m`` puts its working folder first on sys.path, so from the repository root the
repository's package would shadow a PYTHONPATH (the suite is checked against an older tree by setting PYTHONPATH
to it).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional

EDGEPRUNE = [sys.executable, "-m", "edgeprune"]


class DigitsRun(NamedTuple):
    """What the default ``edgeprune optimize`` produced (the ``digits_run`` fixture of tests/conftest.py): unpacks
    as ``folder, manifest = digits_run``."""

    folder: Path
    manifest: Dict[str, Any]


def edgeprune(*args: str, timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess:
    """``python -m edgeprune ARGS``, output captured as text; ``kwargs`` go to subprocess.run (cwd, env)."""
    return subprocess.run([*EDGEPRUNE, *args], capture_output=True, text=True, timeout=timeout, **kwargs)


def bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``edgeprune bench ARGS -q``."""
    return edgeprune("bench", *args, "-q", timeout=timeout)


def run_cli(cwd: Path, *args: str, env: Optional[Dict[str, str]] = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m edgeprune ARGS`` from ``cwd`` (see the module docstring)."""
    return edgeprune(*args, timeout=timeout, cwd=str(cwd), env=env)


def start_cli(cwd: Optional[Path], *args: str, env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """``run_cli`` in the background, for tests that strike while it runs (``cwd`` None: the caller's folder)."""
    return subprocess.Popen([*EDGEPRUNE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=None if cwd is None else str(cwd), env=env)


def start_bench(folder: Path, fleet: Path, db: Path) -> subprocess.Popen:
    """``edgeprune bench`` in the background, for tests that strike while it runs."""
    return start_cli(None, "bench", str(folder), "--fleet", str(fleet), "--db", str(db), "-q")
