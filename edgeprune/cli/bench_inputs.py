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


def matrix_of(runtimes: Optional[str], threads: Optional[str], xnnpack: Optional[str], resume: Optional[int]) -> Any:
    """``--runtimes``/``--threads``/``--xnnpack`` as a cells.Matrix (None when none is given)."""
    from ..devices.cells import Matrix
    from ..devices.profiles import RUNTIMES
    from ..errors import ConfigError

    if not (runtimes or threads or xnnpack):
        return None
    if resume is not None:
        raise ConfigError("--resume measures the stored run's matrix: give no --runtimes/--threads/--xnnpack")

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
    matrix = Matrix(tuple(names), tuple(counts), tuple(x == "on" for x in switches))
    if matrix.size > 64:
        raise ConfigError(f"a matrix of {matrix.size} configurations: at most 64 per bench")
    return matrix
