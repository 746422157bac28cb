"""Files benchmarked as they are (issue 13): ``.tflite`` files, folders of them and globs, as an imported run.

Most people who bench on a Pi already have ``.tflite`` files. ``edgeprune bench FILE...`` turns them into a run the
rest of edgeprune treats like an ``optimize`` output: each file is a variant named by its stem (made unique), with
its sha256, size, gzip size, op list (builtin and custom, with versions) and input/output signature, read from the
flatbuffer by the agent's own reader (``device_agent.flatbuffer``: no interpreter touches a file before it is
known to be sound). The first file is the reference every ratio is taken against, and is measured twice (the A/A
noise floor). Without ``--eval`` the bench is latency-only: the agent generates inputs per input tensor, and the
report leaves accuracy empty and says why.

The store keeps the import as the run's manifest (``kind: "imported"``, ``import_version`` 1), read back here for
``--resume`` (the files must still be the ones measured: their sha256 is checked again).
"""
from __future__ import annotations

import glob
import gzip
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import ConfigError

IMPORT_VERSION = 1
KIND = "imported"
#: A variant name made from a file's stem: a safe alphabet, at most 64 characters ('@' never: cells use it).
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_FILES = 256
MAX_DIM = 2 ** 31 - 1


@dataclass
class ImportedFile:
    name: str
    path: Path
    sha256: str
    size_bytes: int
    gzip_bytes: int
    info: Dict[str, Any]  # device_agent.flatbuffer.describe(): schema_version, subgraphs, ops, inputs, outputs
    #: What the why-not-faster check found (edgeprune.explain's Explanation.to_dict()); None when it could not read
    #: the file (the bench goes on: the agent's reader accepted it).
    explain: Optional[Dict[str, Any]] = None

    def to_variant(self) -> Dict[str, Any]:
        variant = {"name": self.name, "status": "ok", "file": str(self.path), "sha256": self.sha256,
                   "size_bytes": self.size_bytes, "gzip_bytes": self.gzip_bytes, "ops": self.info.get("ops", []),
                   "inputs": self.info.get("inputs", []), "outputs": self.info.get("outputs", []),
                   "description": f"imported from {self.path}"}
        if self.explain is not None:
            variant["explain"] = self.explain
        return variant


@dataclass
class Imported:
    """What a bench of files measures: the files (the first is the reference), an optional eval set, and the
    shapes given for dynamic inputs (input name -> dims)."""

    files: List[ImportedFile]
    eval_file: Optional[Path] = None
    eval_sha256: Optional[str] = None
    input_shapes: Dict[str, List[int]] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    @property
    def reference(self) -> str:
        return self.files[0].name

    def file(self, name: str) -> ImportedFile:
        return next(f for f in self.files if f.name == name)

    def shapes_for(self, name: str) -> Dict[str, List[int]]:
        """The given input shapes that apply to this file (an input of that name)."""
        inputs = {t["name"] for t in self.file(name).info.get("inputs", [])}
        return {k: v for k, v in self.input_shapes.items() if k in inputs}

    def to_manifest(self) -> Dict[str, Any]:
        """The run's manifest as the store keeps it (``runs.manifest_json``)."""
        dataset = (self.eval_file.name if self.eval_file else "generated inputs (latency only)")
        return {"kind": KIND, "import_version": IMPORT_VERSION, "baseline": {"source": "files"},
                "reference": self.reference, "dataset": {"name": dataset,
                                                         "eval_file": str(self.eval_file) if self.eval_file else None,
                                                         "eval_sha256": self.eval_sha256},
                "input_shapes": self.input_shapes, "notes": self.notes,
                "variants": [f.to_variant() for f in self.files]}


def is_imported(manifest: Dict[str, Any]) -> bool:
    return isinstance(manifest, dict) and manifest.get("kind") == KIND


def from_manifest(manifest: Dict[str, Any]) -> Imported:
    """The import a stored run was made from (for ``--resume``); its files are checked again by the bench."""
    if manifest.get("import_version") != IMPORT_VERSION:
        raise ConfigError(f"the stored import has version {manifest.get('import_version')!r}; this edgeprune reads "
                          f"{IMPORT_VERSION}")
    try:
        files = [ImportedFile(v["name"], Path(v["file"]), v["sha256"], int(v["size_bytes"]), int(v["gzip_bytes"]),
                              {"ops": v.get("ops", []), "inputs": v.get("inputs", []),
                               "outputs": v.get("outputs", [])}, v.get("explain"))
                 for v in manifest["variants"]]
        dataset = manifest.get("dataset") or {}
        eval_file = Path(dataset["eval_file"]) if dataset.get("eval_file") else None
        return Imported(files, eval_file, dataset.get("eval_sha256"), dict(manifest.get("input_shapes") or {}),
                        list(manifest.get("notes") or []))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"the stored import is unusable ({type(exc).__name__}: {exc})") from exc


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and (path / "manifest.json").is_file()


def expand(arguments: Sequence[str]) -> List[Path]:
    """Files from the arguments, in order: a ``.tflite`` file, a folder (its ``*.tflite``, sorted; a run folder's
    variants too), or a glob. Anything else is one clear ConfigError."""
    found: List[Path] = []
    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir():
            inside = sorted(path.glob("*.tflite"))
            if not inside:
                raise ConfigError(f"{argument}: a folder without .tflite files (and not a run folder)")
            found += inside
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(argument):
            matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(argument)) if Path(p).is_file())
            if not matches:
                raise ConfigError(f"{argument}: no file matches")
            found += matches
        else:
            raise ConfigError(f"{argument}: no such file or folder")
    if len(found) > MAX_FILES:
        raise ConfigError(f"{len(found)} files: at most {MAX_FILES} per bench")
    return found


def _name(stem: str, taken: Dict[str, Any]) -> str:
    base = _UNSAFE.sub("-", stem).strip("-.")[:56] or "model"
    name, index = base, 2
    while name in taken:
        name, index = f"{base}-{index}", index + 1
    return name


def _describe(path: Path) -> Tuple[Dict[str, Any], int, int, str, Optional[Dict[str, Any]]]:
    """The file's flatbuffer description, size, gzip size, sha256 and why-not-faster check; a file that is not a
    sound .tflite is one ConfigError naming it (the agent's reader: bounds-checked, never an interpreter)."""
    import hashlib

    from device_agent import flatbuffer
    from device_agent.protocol import AgentError

    from ..errors import EdgepruneError
    from ..explain import explain_bytes

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        info = flatbuffer.describe(flatbuffer.parse(data, str(path)))
    except AgentError as exc:
        raise ConfigError(str(exc.message if hasattr(exc, "message") else exc)) from exc
    strings = [t for t in info["inputs"] if t["dtype"] == "string"]
    if strings:
        raise ConfigError(f"{path}: input {strings[0]['name']!r} is a string tensor; edgeprune generates and "
                          f"times numeric inputs only")
    try:
        explained: Optional[Dict[str, Any]] = explain_bytes(data, str(path)).to_dict()
    except EdgepruneError:  # the check reads deeper than the agent's reader; the bench does not need it
        explained = None
    return info, len(data), len(gzip.compress(data, 6)), hashlib.sha256(data).hexdigest(), explained


def parse_shapes(values: Sequence[str]) -> Dict[str, List[int]]:
    """``--input-shape NAME=1,224,224,3`` (repeatable) as {name: dims}."""
    shapes: Dict[str, List[int]] = {}
    for value in values:
        name, sep, dims = value.rpartition("=")
        try:
            parsed = [int(d) for d in dims.split(",")]
        except ValueError:
            parsed = []
        if not sep or not name or not parsed or not all(1 <= d <= MAX_DIM for d in parsed):
            raise ConfigError(f"--input-shape {value!r}: expected NAME=D1,D2,... with positive integers, "
                              f"e.g. serving_default_x:0=1,224,224,3")
        shapes[name] = parsed
    return shapes


def import_files(arguments: Sequence[str], eval_file: Optional[str] = None,
                 input_shapes: Optional[Dict[str, List[int]]] = None) -> Imported:
    """Read every file named by ``arguments`` (see ``expand``) into an :class:`Imported`."""
    from ..devices.bundle import sha256_file

    files: Dict[str, ImportedFile] = {}
    by_hash: Dict[str, str] = {}
    notes: List[str] = []
    for path in expand(arguments):
        info, size, packed, digest, explained = _describe(path)
        if digest in by_hash:
            notes.append(f"{path} is the same file as {by_hash[digest]} (sha256 {digest[:12]}): measured once")
            continue
        name = _name(path.stem, files)
        if name != _UNSAFE.sub("-", path.stem).strip("-.")[:56]:
            notes.append(f"{path} is measured as {name} (its name was taken or unsafe)")
        files[name] = ImportedFile(name, path.resolve(), digest, size, packed, info, explained)
        by_hash[digest] = str(path)
    shapes = dict(input_shapes or {})
    names = {t["name"] for f in files.values() for t in f.info.get("inputs", [])}
    unknown = sorted(set(shapes) - names)
    if unknown:
        raise ConfigError(f"--input-shape {unknown[0]!r}: no file has an input of that name "
                          f"(inputs: {', '.join(sorted(names))[:300]})")
    evaluation = None
    digest = None
    if eval_file:
        evaluation = Path(eval_file).expanduser().resolve()
        if not evaluation.is_file():
            raise ConfigError(f"--eval {eval_file}: no such file")
        digest = sha256_file(evaluation)
    return Imported(list(files.values()), evaluation, digest, shapes, notes)
