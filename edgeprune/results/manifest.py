"""The manifest: the versioned record of what ``optimize`` produced, read back by ``bench`` and ``report``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

from .. import resources
from ..errors import ManifestError

SCHEMA_VERSION = 1
FILENAME = "manifest.json"


def schema_path() -> Path:
    """The schema ships with the package (``schemas/`` in the repository), one per boundary."""
    return resources.schema_path("manifest")


def load_schema() -> Dict[str, Any]:
    return json.loads(schema_path().read_text())


def validate(manifest: Dict[str, Any]) -> None:
    import jsonschema

    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version != SCHEMA_VERSION:
        raise ManifestError(f"manifest schema version {version!r} is not one this edgeprune reads ({SCHEMA_VERSION})")
    validator = jsonschema.Draft202012Validator(load_schema(), format_checker=jsonschema.FormatChecker())
    error = jsonschema.exceptions.best_match(validator.iter_errors(manifest))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise ManifestError(f"manifest is invalid at {where}: {error.message}")


def write(manifest: Dict[str, Any], folder: Path) -> Path:
    validate(manifest)
    path = folder / FILENAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def read(folder: Path) -> Dict[str, Any]:
    path = folder / FILENAME if folder.is_dir() else folder
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"no manifest at {path}: run `edgeprune optimize --out {folder}` first") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc})") from exc
    validate(manifest)
    return manifest
