"""Run folders of a sweep: written whole or not at all, wherever they were computed.

A run is optimized into an attempt folder beside its final place (``points/<run>.attempt-<id>``) and renamed to
``points/<run>`` only when its manifest is complete, so "the folder exists" means "the run finished": a sweep
killed mid-run (even by SIGKILL, whose orphaned child may still write into its attempt folder for a while)
leaves nothing a resume could mistake for a result, and the next attempt clears the old ones. A run computed on
a Ray worker comes back as its files' bytes and is written the same way; its manifest then names the worker's
temporary paths, so ``finish`` puts this machine's paths (the config the driver built) in their place.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Dict, Optional

from ..errors import ManifestError
from ..results import manifest as manifest_io
from ..results.manifest import Manifest

ATTEMPT = ".attempt-"
#: The config keys that are paths of the machine that ran the optimize.
PATH_KEYS = ("out", "model", "data")


def new_attempt(final: Path) -> Path:
    """A fresh attempt folder for ``final``; earlier attempts (of a killed sweep) are removed first."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(final.name + ATTEMPT + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    return final.parent / f"{final.name}{ATTEMPT}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def complete(folder: Path) -> Optional[Manifest]:
    """The run folder's manifest when the run finished (complete and valid), else None."""
    if not (folder / manifest_io.FILENAME).is_file():
        return None
    try:
        document = manifest_io.load(folder)
    except ManifestError:
        return None
    return None if document.complete is False else document


def finish(attempt: Path, final: Path, config: Dict[str, object]) -> Manifest:
    """Give the attempt's manifest this machine's paths (``config``: the run's config as the driver built it) and
    move the attempt to its final place; ManifestError when the attempt holds no complete manifest."""
    document = manifest_io.load(attempt)
    if document.complete is False:
        raise ManifestError(f"{attempt}: the optimize run did not finish (its manifest is incomplete)")
    worker_model = document.config.get("model")
    for key in PATH_KEYS:
        if key in config:
            document.config[key] = config[key]
    if worker_model and document.baseline.source == worker_model and config.get("model"):
        document.baseline.source = str(config["model"])
    manifest_io.save(document, attempt)
    promote(attempt, final)
    return document


def promote(attempt: Path, final: Path) -> None:
    """The finished attempt becomes ``final`` (replacing what was there: an older, superseded result)."""
    if final.exists():
        shutil.rmtree(final)
    attempt.rename(final)


def read_files(folder: Path) -> Dict[str, bytes]:
    """Every file under ``folder`` by its relative path (a Ray task's result: no shared file system)."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def write_files(folder: Path, files: Dict[str, bytes]) -> None:
    """``files`` (relative path -> bytes) under ``folder``; a path that would leave the folder is refused."""
    root = folder.resolve()
    for name, content in files.items():
        target = (folder / name).resolve()
        if root not in target.parents:
            raise ManifestError(f"a run folder file escapes its folder: {name!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
