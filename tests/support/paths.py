"""Where things are: the repository, the tests folder, and an environment for subprocesses that import support."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

SUPPORT_DIR = Path(__file__).resolve().parent
TESTS_DIR = SUPPORT_DIR.parent
REPO_ROOT = TESTS_DIR.parent
PROFILES_DIR = REPO_ROOT / "profiles"
CACHE_DIR = REPO_ROOT / ".cache"


def support_env(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """``base`` (default: this process's environment) with tests/ first on PYTHONPATH, for a child Python that
    imports ``support`` (what pytest's ``pythonpath`` setting does for the test process itself). Whatever
    PYTHONPATH already held stays behind it."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)
    return env

#: support/raw_outputs.py as a module of the repository root: ``[python, "-m", RAW_OUTPUTS, ...]`` with
#: ``cwd=REPO_ROOT`` (it runs under the Pi-like Pythons; the emulated Pi's wrapper unsets PYTHONPATH).
RAW_OUTPUTS = "tests.support.raw_outputs"
