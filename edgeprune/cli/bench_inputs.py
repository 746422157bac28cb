"""What `bench` measures, from its arguments: a run folder or .tflite files (issue 13), and the matrix of
runtimes, thread counts and XNNPACK on/off. Each is checked before any device is touched: one clear line."""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import click


def bench_source(inputs: Tuple[str, ...], eval_file: Optional[str], input_shapes: Tuple[str, ...],
                 resume: Optional[int], latest: Callable[[], str]) -> Any:
    """A run folder (one argument holding a manifest.json; none: the newest under runs/), else the files."""
    from pathlib import Path

    from ..errors import ConfigError
    from ..results.imported import import_files, is_run_folder, parse_shapes

    if not inputs:
        if eval_file or input_shapes:
            raise ConfigError("--eval and --input-shape are for .tflite files: name the files")
        return None if resume else Path(latest())
    if len(inputs) == 1 and is_run_folder(Path(inputs[0])) and not (eval_file or input_shapes):
        return Path(inputs[0])
    if resume is not None:
        raise ConfigError("--resume measures the stored run: name no files with it")
    imported = import_files(inputs, eval_file, parse_shapes(input_shapes))
    for note in imported.notes:
        click.echo(f"note: {note}", err=True)
    return imported


def matrix_of(runtimes: Optional[str], threads: Optional[str], xnnpack: Optional[str], resume: Optional[int],
              delegates: Optional[str] = None) -> Any:
    """``--runtimes``/``--threads``/``--xnnpack``/``--delegate`` as a cells.Matrix (None when none is given)."""
    from ..devices.cells import NO_DELEGATE, Matrix, delegate_label
    from ..devices.profiles import RUNTIMES
    from ..errors import ConfigError

    if not (runtimes or threads or xnnpack or delegates):
        return None
    if resume is not None:
        raise ConfigError("--resume measures the stored run's matrix: give no --runtimes/--threads/--xnnpack/"
                          "--delegate")

    def items(text: Optional[str]) -> List[str]:
        values = [v.strip() for v in (text or "").split(",") if v.strip()]
        return list(dict.fromkeys(values))

    names = items(runtimes)
    bad = [r for r in names if r not in RUNTIMES]
    if bad:
        raise ConfigError(f"--runtimes {bad[0]!r}: one of {', '.join(RUNTIMES)}")
    try:
        counts = [int(t) for t in items(threads)]
    except ValueError:
        counts = [0]
    if any(not 1 <= t <= 1024 for t in counts):
        raise ConfigError(f"--threads {threads!r}: comma-separated thread counts from 1 to 1024")
    switches = items(xnnpack)
    if any(x not in ("on", "off") for x in switches):
        raise ConfigError(f"--xnnpack {xnnpack!r}: on, off, or on,off")
    libraries = items(delegates)
    bad_lib = next((d for d in libraries if len(d) > 4096 or not d.isprintable()), None)
    if bad_lib is not None:
        raise ConfigError(f"--delegate {bad_lib[:80]!r}: a delegate library's name or path, or {NO_DELEGATE}")
    labels = [delegate_label(None if d == NO_DELEGATE else d) for d in libraries]
    clash = next((d for d, label in zip(libraries, labels) if labels.count(label) > 1), None)
    if clash is not None:
        raise ConfigError(f"--delegate: two delegates would both be labelled {delegate_label(clash)!r} in the report; "
                          f"give each once")
    matrix = Matrix(tuple(names), tuple(counts), tuple(x == "on" for x in switches), tuple(libraries))
    if matrix.size > 64:
        raise ConfigError(f"a matrix of {matrix.size} configurations: at most 64 per bench")
    return matrix


def extras_of(op_profile: bool, sustained: Optional[float], sustained_variant: Optional[str],
              resume: Optional[int]) -> Any:
    """``--op-profile`` and ``--sustained SECONDS [--sustained-variant NAME]`` as a cells.Extras (None: neither)."""
    import math

    from ..devices.cells import Extras
    from ..errors import ConfigError

    if sustained_variant and not sustained:
        raise ConfigError("--sustained-variant needs --sustained SECONDS")
    if sustained is not None and not (math.isfinite(sustained) and 1 <= sustained <= 86400):
        raise ConfigError(f"--sustained {sustained:g}: seconds from 1 to 86400")
    if not (op_profile or sustained):
        return None
    if resume is not None:
        raise ConfigError("--resume measures the stored run as it was asked for: give no --op-profile/--sustained")
    return Extras(op_profile, float(sustained or 0.0), sustained_variant)


#: ``bench`` (and ``run``): what to do when another controller's agent holds a device (issue 17).
LEASE_OPTIONS = [
    click.option("--no-wait", is_flag=True,
                 help="When another controller is measuring on a device, record that device's cells as busy at once "
                      "instead of waiting for it."),
    click.option("--wait-timeout", type=float, default=1800.0, show_default=True, metavar="SECONDS",
                 help="How long to wait in all for a device another controller holds (beyond the device's own "
                      "deadline)."),
]


def lease_options(fn: Any) -> Any:
    for option in reversed(LEASE_OPTIONS):
        fn = option(fn)
    return fn


def waiting_of(no_wait: bool, wait_timeout: float) -> Any:
    """The bench's Waiting from --no-wait and --wait-timeout (a bad value: one ConfigError line)."""
    from ..devices.fleet import Waiting

    return Waiting(wait=not no_wait, timeout=wait_timeout)
