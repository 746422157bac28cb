"""Where the installed package's data lives: the shipped profiles, the JSON Schemas, the device agent's sources.

Looked up through the import system (importlib.resources), never relative to the source tree, so a wheel installed
with ``pip install .`` finds them as an editable install does. Both put them on disk, which is all edgeprune needs
(the agent's files are uploaded as files).
"""
from __future__ import annotations

import functools
import importlib.resources
import json
from pathlib import Path
from typing import Any


#: Data packages that live outside the package folder in the repository (pyproject's package-dir maps them).
_SOURCE_LAYOUT = {"edgeprune.profiles": "profiles", "edgeprune.schemas": "schemas"}


def package_dir(package: str) -> Path:
    """The folder of an installed package, e.g. ``package_dir("edgeprune.profiles")``.

    Code run straight from a checkout that was never installed has no mapping for the data packages; there they
    are the repository's own folders.
    """
    try:
        return Path(str(importlib.resources.files(package)))
    except ModuleNotFoundError:
        if package not in _SOURCE_LAYOUT:
            raise
        return Path(__file__).resolve().parents[1] / _SOURCE_LAYOUT[package]


def profiles_dir() -> Path:
    return package_dir("edgeprune.profiles")


def schema_path(name: str) -> Path:
    """``schema_path("manifest")`` is the manifest's JSON Schema (``schemas/manifest.schema.json``)."""
    return package_dir("edgeprune.schemas") / f"{name}.schema.json"


def agent_dir() -> Path:
    """The ``device_agent`` package's folder: what is uploaded to a device, and what runs on ``local``."""
    return package_dir("device_agent")


@functools.lru_cache(maxsize=None)
def schema_validator(name: str) -> Any:
    """The JSON Schema validator (draft 2020-12) of a boundary document, built once per process."""
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(schema_path(name).read_text()))
