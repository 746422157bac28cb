"""The agent must run from a bare copy of its folder on Python 3.9+.

Test dependency: vermin in the host venv (`.venv/bin/pip install vermin`).
"""

from __future__ import annotations

import ast
import glob
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import agent_envs
from support.agent_harness import AGENT_DIR, agent_env, run_agent, validate

ALLOWED_THIRD_PARTY = {"numpy", "ai_edge_litert", "tflite_runtime", "tensorflow"}


def _agent_files():
    files = sorted(AGENT_DIR.glob("*.py"))
    assert files and (AGENT_DIR / "__main__.py") in files
    return files


@pytest.fixture(scope="module")
def copied_agent(tmp_path_factory) -> Path:
    """device_agent/ alone in an empty folder, as scp'd to a device."""
    root = tmp_path_factory.mktemp("device")
    shutil.copytree(AGENT_DIR, root / "device_agent",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


def test_copied_folder_runs(env, copied_agent, variants_dir):
    # The copy in cwd must be what gets imported (the host venv also has the
    # repo installed in editable mode).
    where = subprocess.run([str(env.python), "-c",
                            "import device_agent; print(device_agent.__file__)"],
                           cwd=str(copied_agent), capture_output=True, text=True,
                           env=agent_env(), check=True).stdout.strip()
    assert Path(where).resolve().parent == (copied_agent / "device_agent").resolve()

    probe = run_agent(env.python, ["probe"], cwd=copied_agent)
    assert probe.returncode == 0, probe.describe()
    validate(probe.doc)
    res = run_agent(env.python, ["run", variants_dir / "int8.tflite", "--eval",
                                 variants_dir / "eval.npz", "--runs", "5"], cwd=copied_agent)
    assert res.returncode == 0, res.describe()
    assert res.doc["runtime"]["module"] == env.runtime


def test_imports_are_stdlib_numpy_runtime_or_relative():
    stdlib = set(sys.stdlib_module_names)
    for path in _agent_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in stdlib or top in ALLOWED_THIRD_PARTY or top == "__future__", (
                    "%s imports %s: the agent may only use the standard library, numpy, "
                    "a TFLite runtime and relative imports" % (path.name, name))


def _vermin() -> str:
    exe = Path(sys.executable).parent / "vermin"
    if not exe.exists():
        found = shutil.which("vermin")
        if found is None:
            pytest.fail("vermin is not installed in the test venv: "
                        "`.venv/bin/pip install vermin`")
        return found
    return str(exe)


def _vermin_check(target: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_vermin(), "--target=3.9-", "--no-tips", "--violations",
                           str(target)], capture_output=True, text=True, timeout=120)


def test_vermin_target_39(tmp_path):
    # First prove the check bites: a 3.10-only call must be reported.
    (tmp_path / "newer.py").write_text("pairs = list(zip([1], [2], strict=True))\n")
    assert _vermin_check(tmp_path).returncode != 0
    proc = _vermin_check(AGENT_DIR)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _compile_all(python: Path, out_dir: Path) -> None:
    for path in _agent_files():
        proc = subprocess.run(
            [str(python), "-c",
             "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], "
             "doraise=True)", str(path), str(out_dir / (path.stem + ".pyc"))],
            capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, "%s does not compile with %s:\n%s" % (
            path.name, python, proc.stderr)


def test_py_compile_with_python39(tmp_path):
    _compile_all(agent_envs.find_python39(), tmp_path)


def test_py_compile_with_newer_pythons(tmp_path):
    """3.10-3.13 where pyenv has them (3.11 is also exercised by the host runs)."""
    found = sorted(glob.glob("/root/.pyenv/versions/3.1[0-3]*/bin/python"))
    if not found:
        pytest.skip("no pyenv Python 3.10-3.13 on this machine")
    for python in found:
        _compile_all(Path(python), tmp_path)
