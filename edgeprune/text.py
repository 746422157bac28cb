"""The one place where untrusted text is made safe to show or export.

Error messages, runtime and Python versions, machine names, remote stderr, device names and addresses, model
and data set sources all come from a device or a user's file: they are data, never markup or terminal control.
``clean`` strips terminal escape sequences, control and bidi-override characters, folds whitespace and caps the
length (a device can send megabytes); the ``for_*`` functions then escape the cleaned text for one output (Rich
markup, Markdown, HTML, matplotlib labels, CSV). Escape at the point of output, never when storing or in the
DataFrames the API returns, so the data stays what the device sent.
"""
from __future__ import annotations

import html
import re
from typing import Any, Match

#: Escape sequences: string commands (OSC, DCS, SOS, PM, APC) up to their BEL or ST, CSI, then any other ESC
#: sequence, with 7-bit (ESC x) and 8-bit (C1) introducers. A string command's body stops at the next introducer,
#: so the scan stays linear on a hostile megabyte; one never terminated loses only its introducer.
_ESCAPES = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x90\x98\x9c-\x9f]*(?:\x07|\x1b\\|\x9c)"
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|\x1b[ -/]{0,3}[0-~]?"
)
#: Control characters (C0, DEL, C1) and the bidi embedding/override/isolate characters (Trojan Source).
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_WHITESPACE = re.compile(r"\s+")


def clean(value: Any, limit: int = 300) -> str:
    """``value`` as one line of plain text: no escape sequences or control characters, at most ``limit`` chars.

    Line breaks and tabs become spaces (a table cell or a log line must stay one line); a longer text is cut and
    says how much was left out, so a reader knows the text was cut.
    """
    text = "" if value is None else str(value)
    text = _ESCAPES.sub("", text)
    text = _CONTROLS.sub("", text)
    text = _WHITESPACE.sub(" ", text).strip()
    if len(text) > limit:
        return f"{text[:limit]}… (+{len(text) - limit} chars)"
    return text


#: An empty span. Rich draws nothing for it, but it ends a run of plain text: an emoji code cannot reach across it
#: and backslashes before it cannot escape the markup that follows.
_BREAK = "[i][/i]"
#: A ``[`` with the backslashes before it, and the rest of a tag when Rich would read one (``rich.markup.RE_TAGS``).
_BRACKET = re.compile(r"(\\*)(\[(?:[a-z#/@][^[]*?])?)")
_TRAILING_BACKSLASHES = re.compile(r"(\\+)$")
#: Right after a colon that could open an emoji code (``:ok:``), as Rich's ``_emoji_replace`` finds them.
_EMOJI_START = re.compile(r"(?<=:)(?=\S*?:)")


def _escape_bracket(match: Match[str]) -> str:
    backslashes, bracket = match.groups()
    if len(bracket) > 1:  # a tag: 2n backslashes print n, one more makes the tag literal text
        return f"{backslashes}{backslashes}\\{bracket}"
    # a lone "[": Rich turns "\\[" outside a tag into "[", so one more backslash keeps the n there were
    return f"{backslashes}\\{bracket}" if backslashes else bracket


def _escape_piece(text: str) -> str:
    """Escape the brackets of a piece that ends the value or is followed by ``_BREAK`` (a tag)."""
    return _TRAILING_BACKSLASHES.sub(r"\1\1", _BRACKET.sub(_escape_bracket, text))


def for_rich(value: Any, limit: int = 300) -> str:
    """Cleaned text that a Rich markup string shows literally, wherever in the markup it is put.

    ``rich.markup.escape`` alone is not enough: it leaves ``\\[`` before a bracket that opens no tag (Rich prints
    ``[``), doubles a trailing backslash (printed twice unless a tag follows) and leaves emoji codes (``:ok:``).
    The value is split after every colon that could open an emoji code, each piece escaped, and the pieces joined
    with an empty span. Use it only inside markup; give a ``rich.text.Text`` the ``clean`` text.
    """
    markup = _BREAK.join(_escape_piece(piece) for piece in _EMOJI_START.split(clean(value, limit)))
    return markup + _BREAK if markup.endswith("\\") else markup


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#&$])")


def for_markdown(value: Any, limit: int = 300) -> str:
    """Cleaned text for a Markdown paragraph or table cell: no links, HTML, entities, emphasis, headings, cell
    breaks or (GitHub) math."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", clean(value, limit))


def for_markdown_code(value: Any, limit: int = 300) -> str:
    """Cleaned text as a Markdown code span, with a fence longer than any backtick run inside it."""
    text = clean(value, limit)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def for_html(value: Any, limit: int = 300) -> str:
    """Cleaned text for HTML element content or a quoted attribute."""
    return html.escape(clean(value, limit), quote=True)


def for_matplotlib(value: Any, limit: int = 80) -> str:
    """Cleaned text for a plot label: ``$`` escaped, so matplotlib never parses it as mathtext."""
    return clean(value, limit).replace("$", r"\$")


def for_csv(value: Any, limit: int = 2000) -> str:
    """Cleaned text for a CSV cell: still the value as data (no escaping), but one line and capped."""
    return clean(value, limit)
