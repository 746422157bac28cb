"""The JSON document the agent prints, and the errors it can report.

The host parses the agent's stdout, so the document must always be a single,
strictly valid JSON object (no NaN/Infinity, which Python's json would
otherwise emit and most parsers reject), even when the agent fails half way.
Errors are therefore exceptions carrying a *kind* that maps to a documented
exit code, and partial measurements stay in the document.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from typing import Any, Dict, Optional

from . import SCHEMA_VERSION, __version__

# With --frame TOKEN the document stands between these two lines, so whatever a login shell prints to stdout
# first (conda, pyenv, a MOTD script) cannot be taken for it, nor hide it.
FRAME_BEGIN = "<<<edgeprune-result %s>>>"
FRAME_END = "<<<edgeprune-end %s>>>"

# Error kinds and their exit codes.  Kept stable: the host (and humans reading
# CI logs) branch on them.
RUNTIME_MISSING = "runtime-missing"
MODEL_LOAD = "model-load"
DATA_MISMATCH = "data-mismatch"
DELEGATE = "delegate"
BAD_ARGUMENTS = "bad-arguments"
INTERNAL = "internal"
BUSY = "busy"
UNSUPPORTED_OP = "unsupported-op"
UNSUPPORTED_INPUT = "unsupported-input"

EXIT_CODES: Dict[str, int] = {
    INTERNAL: 1,
    BAD_ARGUMENTS: 2,
    RUNTIME_MISSING: 3,
    MODEL_LOAD: 4,
    DATA_MISMATCH: 5,
    DELEGATE: 6,
    BUSY: 7,
    UNSUPPORTED_OP: 8,
    UNSUPPORTED_INPUT: 9,
}


class AgentError(Exception):
    """An anticipated failure, reported as ``error`` in the document.

    ``hint`` tells a person what to do about it (install a runtime, re-export
    the eval set, ...); ``message`` keeps the runtime's own wording where there
    is one, because that is what people search for.
    """

    def __init__(self, kind: str, message: str, hint: Optional[str] = None) -> None:
        if kind not in EXIT_CODES:
            raise ValueError("unknown error kind %r" % (kind,))
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.kind]

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


def new_document(command: Optional[str]) -> Dict[str, Any]:
    """Start a document; sections are added as they are measured, so that an
    error later on still reports everything gathered before it."""
    return {
        "schema_version": SCHEMA_VERSION,
        "agent_version": __version__,
        "command": command,
        "status": "ok",
        "started_at": datetime.datetime.now(datetime.timezone.utc)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z"),
    }


def set_error(doc: Dict[str, Any], error: AgentError) -> None:
    doc["status"] = "error"
    doc["error"] = error.to_json()


def sanitize(value: Any) -> Any:
    """Turn a measurement tree into plain JSON values.

    numpy scalars/arrays become Python numbers/lists (duck-typed so this module
    needs no numpy), and non-finite floats become null: a NaN latency means
    "not measured", and JSON has no spelling for it.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return sanitize(tolist())
    return str(value)


def dumps(doc: Dict[str, Any]) -> str:
    """Serialise strictly: allow_nan=False turns any leftover NaN into a loud
    error here instead of an unparsable document on the host."""
    return json.dumps(sanitize(doc), allow_nan=False, sort_keys=False) + "\n"


def write_all(fd: int, data: bytes) -> None:
    """Write every byte to a file descriptor (a pipe or stdout may take less than all in one write)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
