"""A wheel install works like the README's editable one: ``pip install .`` into a fresh venv, then ``edgeprune run``
from an unrelated folder. The shipped profiles, the JSON Schemas, the bundled check model and the device agent must
all come from the installed package, never from this checkout.

The wheel is built from the checkout and installed with ``--no-deps`` into a new venv; its dependencies (TensorFlow
and the rest, 1.5 GB) are borrowed from the test venv through a ``.pth`` path line rather than downloaded again. A
path line does not run the test venv's own ``.pth`` files, so the editable install of this checkout stays out.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _site_packages(env: Path) -> Path:
    return env / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = dist.glob("edgeprune-*.whl")
    env = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    (_site_packages(env) / "edgeprune-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index",
                              "--quiet", str(wheel)], capture_output=True, text=True, timeout=600, cwd=str(root),
                             env=_clean_env())
    assert install.returncode == 0, install.stdout + install.stderr
    return env


def _clean_env() -> dict:
    """The environment without anything that would point Python back at this checkout."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_installed_package_data_comes_from_the_wheel(wheel_env: Path, tmp_path: Path) -> None:
    code = ("import edgeprune, device_agent\n"
            "from edgeprune.devices.profiles import PROFILES_DIR, load_profile\n"
            "from edgeprune.results import manifest\n"
            "from edgeprune.devices.checks import CHECK_MODEL\n"
            "from edgeprune.devices.bundle import AGENT_DIR\n"
            "print(edgeprune.__file__); print(device_agent.__file__); print(PROFILES_DIR); print(manifest.schema_path())\n"
            "print(CHECK_MODEL); print(AGENT_DIR); print(load_profile('raspberry-pi-4').workdir)\n")
    proc = subprocess.run([str(wheel_env / "bin" / "python"), "-c", code], capture_output=True, text=True,
                          cwd=str(tmp_path), env=_clean_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    *paths, workdir = proc.stdout.splitlines()
    site = str(_site_packages(wheel_env))
    for path in paths:
        assert path.startswith(site), f"{path} is not from the installed wheel"
        assert Path(path).exists(), path
    assert workdir == ".edgeprune"


def test_edgeprune_run_from_an_unrelated_folder(wheel_env: Path, tmp_path: Path) -> None:
    """The README's main job, with the wheel's console script, from an empty folder: same outcome (exit 0, every
    variant measured on `local`, the report written)."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    proc = subprocess.run([str(wheel_env / "bin" / "edgeprune"), "run", "--quiet"], capture_output=True, text=True,
                          cwd=str(folder), env=_clean_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = list((folder / "runs").glob("optimize-*"))
    built = [v for v in json.loads((run / "manifest.json").read_text())["variants"] if v["status"] == "ok"]
    assert f"{len(built) + 1} ok, 0 error, 0 failed" in proc.stdout  # + the baseline's A/A twin, proc.stdout
    for name in ("report.csv", "report.md", "report.html", "latency.png", "size_latency.png"):
        assert (run / "report" / name).is_file(), name
    assert (folder / "runs" / "edgeprune.db").is_file()
