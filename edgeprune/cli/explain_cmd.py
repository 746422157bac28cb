"""``edgeprune explain FILE.tflite...``: the "why not faster" check as a command (issue 16).

A flatbuffer read per file, no TensorFlow: the command answers in well under a second. Each file that cannot be
read is one ``Error:`` line on stderr and the others are still explained; the exit code is 1 when any file
failed. ``--json`` prints a list of the explanations' ``to_dict`` (``check_version`` 1) and nothing else on
stdout.
"""
from __future__ import annotations

import json
import sys
from typing import Any, List, Tuple

import click

from ..errors import EdgepruneError
from .commands import main
from .display import stdout_console


@main.command("explain")
@click.argument("files", nargs=-1, required=True, metavar="FILE.tflite [FILE...]")
@click.option("--json", "as_json", is_flag=True, help="Print the explanations as JSON (a list, one per file).")
def explain_command(files: Tuple[str, ...], as_json: bool) -> None:
    """Say which ops XNNPACK takes, and whether its sparse path can apply (if not, the first rule broken)."""
    from ..explain import explain_file
    from ..explain.render import host_note, lines
    from ..text import clean

    explained: List[Any] = []
    failed = 0
    for path in files:
        try:
            explained.append(explain_file(path))
        except EdgepruneError as exc:
            failed += 1
            click.echo(f"Error: {clean(exc, 600)}", err=True)
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in explained], indent=2))
    elif explained:
        console = stdout_console()
        for e in explained:
            for line in lines(e):
                console.print(line, highlight=False, soft_wrap=True)
        note = host_note()
        if note:
            console.print(note, highlight=False, soft_wrap=True)
    if failed:
        sys.exit(1)
