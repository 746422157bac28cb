"""Getting the one JSON document to stdout, and nothing else.

Whatever happens (bad flags, missing runtime, a model the runtime rejects, a
bug), exactly one JSON document goes to stdout and the exit code says what
kind of failure it was.  To keep that promise even against native libraries
that print to stdout, file descriptor 1 is pointed at stderr while the agent
works (``JsonStdout``), and the document is written to the saved original at
the end.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any, Dict, Optional

from . import protocol
from .protocol import INTERNAL, AgentError

#: When the agent started: ``wall_s`` counts from here.
STARTED = time.perf_counter()


def set_wall_time(doc: Dict[str, Any]) -> None:
    doc["wall_s"] = time.perf_counter() - STARTED


def frame(document: str, token: Optional[str]) -> str:
    """The document between marker lines (see protocol.FRAME_BEGIN); unchanged without a token."""
    if not token:
        return document
    return "\n%s\n%s%s\n" % (protocol.FRAME_BEGIN % token, document, protocol.FRAME_END % token)


def render(doc: Dict[str, Any]) -> str:
    try:
        return protocol.dumps(doc)
    except Exception as exc:  # a measurement that cannot be serialised is a bug
        traceback.print_exc(file=sys.stderr)
        fallback = protocol.new_document(doc.get("command"))
        protocol.set_error(fallback, AgentError(
            INTERNAL, "cannot serialise result: %s: %s" % (type(exc).__name__, exc)))
        return protocol.dumps(fallback)


def print_error(command: Optional[str], error: AgentError, token: Optional[str]) -> int:
    """Print the document of a command line that could not be parsed; returns the exit code.

    Parsing loads no native code, so stdout is still clean then and needs no ``JsonStdout``.
    """
    doc = protocol.new_document(command)
    protocol.set_error(doc, error)
    set_wall_time(doc)
    sys.stdout.write(frame(render(doc), token))
    sys.stdout.flush()
    return error.exit_code


class JsonStdout:
    """Reserve the real stdout for the final document (see module docstring)."""

    def __init__(self) -> None:
        self._saved: Optional[int] = None

    def __enter__(self) -> "JsonStdout":
        try:
            sys.stdout.flush()
            self._saved = os.dup(1)
            os.dup2(2, 1)
        except (OSError, ValueError, AttributeError):
            self._saved = None
        return self

    def write_document(self, text: str) -> None:
        if self._saved is None:
            sys.__stdout__.write(text)
            sys.__stdout__.flush()
            return
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        protocol.write_all(self._saved, text.encode("utf-8"))

    def __exit__(self, *exc: Any) -> None:
        if self._saved is not None:
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
            os.dup2(self._saved, 1)
            os.close(self._saved)
            self._saved = None
