"""Python environments the device-agent tests run the agent in.

The agent ships to Raspberry Pis running Python 3.9 with ``tflite-runtime``
and an old numpy, and never TensorFlow.  The cheapest faithful stand-in on a
developer machine or CI is a Python 3.9 venv with exactly those packages, so
the tests build one here (once, cached under ``.cache/``) instead of mocking
the runtime.

Test dependency note: the agent's Python-version check also needs ``vermin``
in the host venv (``.venv/bin/pip install vermin``).
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from support.paths import CACHE_DIR

PI_VENV_DIR = CACHE_DIR / "venv-pi39"

# What a Raspberry Pi OS Bullseye device typically has: the last
# tflite-runtime release and a numpy 1.x (tflite-runtime 2.14 is built
# against the numpy 1 ABI).
PI_REQUIREMENTS: List[str] = ["tflite-runtime==2.14.0", "numpy<2"]

_STAMP_NAME = ".edgeprune-pi-requirements"


def find_python39() -> Path:
    """Return a Python 3.9 interpreter, or raise: a silent skip would hide that
    the Pi-like tests never ran."""
    candidates: List[str] = []
    on_path = shutil.which("python3.9")
    if on_path:
        candidates.append(on_path)
    candidates.extend(sorted(glob.glob("/root/.pyenv/versions/3.9*/bin/python")))
    for cand in candidates:
        try:
            out = subprocess.run(
                [cand, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True, text=True, timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == "3.9":
            return Path(cand)
    raise RuntimeError(
        "Python 3.9 not found (looked for python3.9 on PATH and "
        "/root/.pyenv/versions/3.9*/bin/python); the Pi-like agent tests need it. "
        "Install it, e.g. `pyenv install 3.9`."
    )


def _stamp_text(base: Path) -> str:
    return "base=%s\n%s\n" % (base, "\n".join(PI_REQUIREMENTS))


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def pi_like_python(venv_dir: Optional[Path] = None) -> Path:
    """Create (or reuse) the Pi-like venv and return its python executable.

    Idempotent: a stamp file naming the requirements marks a finished build,
    so a half-built venv (interrupted pip) is rebuilt rather than trusted.  An
    fcntl lock serialises parallel test processes (pytest-xdist, two shells)
    so they never build into the same folder at once.
    """
    venv = Path(venv_dir) if venv_dir is not None else PI_VENV_DIR
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / (venv.name + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            base = find_python39()
            stamp = venv / _STAMP_NAME
            python = _venv_python(venv)
            wanted = _stamp_text(base)
            if stamp.is_file() and python.exists() and stamp.read_text() == wanted:
                return python
            if venv.exists():
                shutil.rmtree(venv)
            _run([str(base), "-m", "venv", str(venv)])
            _run([str(python), "-m", "pip", "install", "--quiet",
                  "--disable-pip-version-check", *PI_REQUIREMENTS])
            # Fail loudly now rather than in every test if the build is wrong.
            _run([str(python), "-c",
                  "import tflite_runtime.interpreter, numpy; "
                  "import importlib.util as u; "
                  "assert u.find_spec('tensorflow') is None, 'tensorflow must not be present'"])
            stamp.write_text(wanted)
            return python
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def host_python() -> Path:
    """The interpreter running the tests (the host venv, with ai-edge-litert)."""
    return Path(sys.executable)


def _run(cmd: List[str]) -> None:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(
            "command failed (%d): %s\nstdout:\n%s\nstderr:\n%s"
            % (proc.returncode, " ".join(cmd), proc.stdout[-4000:], proc.stderr[-4000:])
        )


if __name__ == "__main__":  # cd tests && python -m support.agent_envs: build it, print its python
    print(pi_like_python())
