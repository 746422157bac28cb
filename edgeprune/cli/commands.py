"""The ``edgeprune`` command line.

Only argument parsing and error translation live here (drawing is in display.py). TensorFlow is imported by the
commands that need it, inside them, so ``edgeprune --help`` stays instant.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, Callable, List, Optional, Tuple

import click

from .. import __version__
from ..optimize.config import OptimizeConfig, cli_options, config_from_options
from .display import FleetDisplay, RichProgress, stderr_console, stdout_console, variants_table
from .bench_inputs import lease_options
from .report_cmd import GATE_OPTIONS, compare_path
from ..errors import ConfigError, EdgepruneError

DEFAULT_DB = "runs/edgeprune.db"
#: The report's files (edgeprune.report.FORMATS, repeated here so --help does not import pandas).
FORMATS = ("csv", "md", "html", "png")


class _Group(click.Group):
    """Turns EdgepruneError into one ``Error:`` line and its exit code; --debug shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgepruneError as exc:
            if ctx.params.get("debug"):
                traceback.print_exc()
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted; results written so far are kept.", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeprune")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def main(debug: bool) -> None:
    """Prune and quantize a Keras model, then measure what it bought on the device itself."""


def _debug() -> bool:
    return bool(click.get_current_context().find_root().params.get("debug"))


def _options(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Several click options as one decorator, so ``run`` takes exactly the flags of the commands it chains."""
    def apply(fn: Any) -> Any:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn
    return apply


#: The optimize options, one per config field that has a flag (edgeprune.optimize.config): a new option is a field.
OPTIMIZE_OPTIONS = _options(*(
    click.option(*option.flag.names, option.dest, type=option.type, default=option.default,
                 show_default=option.flag.show_default, help=option.flag.help, is_flag=option.type is bool)
    for option in cli_options()
))


def _optimize_config(**options: Any) -> OptimizeConfig:
    from ..optimize.pipeline import default_out_dir

    return config_from_options({**options, "out": options["out"] or default_out_dir()})


def _run_optimize(config: OptimizeConfig, quiet: bool) -> Any:
    """The pipeline in a child process (a native crash there is one Error line here, optimize/child.py)."""
    from ..optimize.child import optimize_in_child
    from ..optimize.pipeline import prepare_output

    prepare_output(config.out_path)
    log = None if _debug() else config.out_path / "native.log"
    with RichProgress(quiet) as progress:
        return optimize_in_child(config, progress, log)


@main.command()
@OPTIMIZE_OPTIONS
@click.option("--json", "as_json", is_flag=True, help="Print the manifest instead of the table.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
def optimize(as_json: bool, quiet: bool, **options: Any) -> None:
    """Prune, strip and convert a model to TFLite variants, and measure each."""
    result = _run_optimize(_optimize_config(**options), quiet or as_json)
    if as_json:
        click.echo(json.dumps(result.manifest, indent=2))
    else:
        console = stdout_console()
        console.print(variants_table(result.manifest))
        console.print(f"Run folder: {result.folder}  (manifest.json, eval.npz, *.tflite)", highlight=False)
    failed, over, off = result.document.failed_variants(), result.document.over_budget(), result.document.mismatched()
    said = ([f"{len(failed)} variant(s) failed: {', '.join(failed)} (reasons in the manifest)"] if failed else []) + (
        [f"{len(over)} variant(s) lost more accuracy than --max-accuracy-drop allows: {', '.join(over)}"] if over else []
    ) + ([f"{len(off)} variant(s) do not compute what their Keras model does: {', '.join(off)}"] if off else [])
    if said:
        click.echo("Error: " + "; ".join(said), err=True)
        sys.exit(1)


def _devices(device: Optional[str], fleet: Optional[str], tags: Optional[str]) -> List[Any]:
    from ..devices.profiles import load_fleet, load_profile

    if device and fleet:
        raise ConfigError("give --device or --fleet, not both")
    if fleet:
        selected = load_fleet(fleet).select([t for t in (tags or "").split(",") if t]).devices
        if not selected:
            raise ConfigError(f"no device in {fleet} has tag(s) {tags}")
        return selected
    return [load_profile(device or "local")]


def _latest_run_folder(root: str = "runs") -> str:
    from pathlib import Path

    folders = sorted((p for p in Path(root).glob("*/manifest.json")), key=lambda p: p.stat().st_mtime)
    if not folders:
        raise ConfigError("no run folder given and none under runs/: run `edgeprune optimize` first")
    return str(folders[-1].parent)


DEVICE_OPTIONS = _options(
    click.option("--device", help="A profile name from profiles/ or a .toml path (default: local)."),
    click.option("--fleet", help="A fleet .toml file."),
    click.option("--tags", help="Only fleet devices with one of these comma-separated tags."),
    click.option("--db", default=DEFAULT_DB, show_default=True,
                 help="Store: a SQLite path or sqlite:///path, or postgresql://user@host/db."),
    click.option("--jobs", "-j", type=int, default=8, show_default=True, help="Devices measured at once."),
    click.option("--accept-new-host-keys", is_flag=True,
                 help="Trust hosts not yet in known_hosts (and add them), like ssh's accept-new. Changed keys are "
                      "always refused."),
)


def _store_exists(db: str) -> bool:
    """A SQLite file that exists, or any database on a server (opening it checks it)."""
    from ..results.store import backend_for
    from ..results.store_sqlite import SQLiteBackend

    backend = backend_for(db)
    return not isinstance(backend, SQLiteBackend) or backend.path.exists()


def _run_bench(folder: Any, devices: Optional[List[Any]], db: str, jobs: int, accept_new_host_keys: bool,
               quiet: bool, resume: Optional[int] = None, variants: Optional[List[str]] = None,
               matrix: Any = None, extras: Any = None, waiting: Any = None) -> Any:
    """Bench with a progress row per device, then one summary line; exits 130 when interrupted."""
    from pathlib import Path

    from ..devices.fleet import bench as run_bench
    from ..devices.ssh import HostKeyPolicy, route_library_logs
    from ..text import for_rich

    route_library_logs()
    names = [d.name for d in devices] if devices else []
    with FleetDisplay(names, quiet) as display:
        result = run_bench(folder, devices, db, jobs=jobs, host_keys=HostKeyPolicy.from_flag(accept_new_host_keys),
                           resume=resume, variants=variants, progress=display, matrix=matrix,
                           extras=extras, waiting=waiting)
    counts = result.counts
    shown = ", ".join(f"{n} {k}" for k, n in counts.items() if n or k in ("ok", "error", "failed"))
    twins = "; each device's cells include the baseline's A/A twin" if result.twins else ""
    click.echo(f"run {result.run_id}: {shown} (stored in {db}{twins})")
    console = stderr_console()
    for summary in result.devices:
        if summary.reason:
            console.print(f"  {for_rich(summary.device)}: {for_rich(summary.reason)}", highlight=False)
    if result.unsaved:
        click.echo(f"Error: the store refused some results; they are kept in {result.unsaved}", err=True)
    if result.interrupted:
        click.echo(f"Interrupted: measured results are stored; finish with --resume {result.run_id}", err=True)
        if result.stragglers:  # a worker did not stop in time: do not wait for it at exit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        sys.exit(130)
    return result


@main.command()
@click.argument("inputs", nargs=-1, metavar="[RUN_FOLDER | FILE.tflite | FOLDER | GLOB]...")
@DEVICE_OPTIONS
@click.option("--variants", type=str, help="Comma-separated subset of the run folder's variants.")
@click.option("--eval", "eval_file", type=str, default=None, metavar="DATA.npz",
              help="For .tflite files: an eval set (x/y, or one array per input name and y) for accuracy; "
                   "without it the bench is latency only.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=D1,D2,...",
              help="For .tflite files: the shape of a dynamic input (repeatable).")
@click.option("--runtimes", type=str, default=None, metavar="A,B",
              help="Measure every variant with each of these runtimes (a matrix; default: the profile's).")
@click.option("--threads", "thread_counts", type=str, default=None, metavar="1,2,4",
              help="Measure every variant at each of these thread counts (a matrix; default: the profile's).")
@click.option("--xnnpack", type=str, default=None, metavar="on,off",
              help="Measure every variant with XNNPACK on, off, or both (a matrix; default: the profile's).")
@click.option("--delegate", "delegates", type=str, default=None, metavar="none,LIB",
              help="Measure every variant with each of these delegates (library name or path; none: no delegate; "
                   "a matrix; default: the profile's).")
@click.option("--op-profile", is_flag=True,
              help="Also record each cell's op profile: which ops fell back from the delegate, and per-op times "
                   "where the device has a profiler (TFLite's benchmark_model).")
@click.option("--sustained", type=float, default=None, metavar="SECONDS",
              help="After the rounds, keep one cell running this long, sampling latency, temperature, frequency and "
                   "throttling every second.")
@click.option("--sustained-variant", type=str, default=None, metavar="NAME",
              help="The variant --sustained keeps running (default: the reference).")
@click.option("--resume", type=click.IntRange(min=1), metavar="RUN_ID",
              help="Measure only the pairs of RUN_ID not yet stored (default devices: the run's own).")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@lease_options
def bench(inputs: Tuple[str, ...], device: Optional[str], fleet: Optional[str], tags: Optional[str], db: str,
          jobs: int, variants: Optional[str], eval_file: Optional[str], input_shapes: Tuple[str, ...],
          runtimes: Optional[str], thread_counts: Optional[str], xnnpack: Optional[str], delegates: Optional[str],
          op_profile: bool, sustained: Optional[float], sustained_variant: Optional[str], resume: Optional[int],
          accept_new_host_keys: bool, quiet: bool, no_wait: bool, wait_timeout: float) -> None:
    """Benchmark an optimize output folder, or .tflite files you already have, on a device or a fleet; results go
    to SQLite as they arrive.

    Files (or folders of them, or globs) are measured as they are: each is a variant named by its stem, the first
    is the reference (measured twice: the noise floor), and without --eval the bench is latency only.

    Exit status: 0 when every device x variant pair was measured ok; 1 when any pair failed, errored, was invalid
    or was not built; 2 for a usage or configuration error; 130 when interrupted (finish with --resume).
    """
    from pathlib import Path

    if resume is not None and not (device or fleet):
        from ..devices.fleet import stored_devices
        from ..results.store import Store

        with Store.open(db, create=False) as store:  # the run's own devices, as they were stored
            devices = stored_devices(store, resume)
    else:
        devices = _devices(device, fleet, tags)
    from .bench_inputs import bench_source, extras_of, matrix_of, waiting_of

    matrix = matrix_of(runtimes, thread_counts, xnnpack, resume, delegates)  # checked before any file is read
    extras = extras_of(op_profile, sustained, sustained_variant, resume)
    waiting = waiting_of(no_wait, wait_timeout)
    if _store_exists(db):  # a store that cannot be used is said before any file is read
        from ..results.store import Store

        Store.open(db).close()
    folder = bench_source(inputs, eval_file, input_shapes, resume, _latest_run_folder)
    chosen = [v.strip() for v in variants.split(",")] if variants else None
    result = _run_bench(folder, devices, db, jobs, accept_new_host_keys, quiet, resume, chosen, matrix, extras,
                        waiting)
    if not result.all_ok:
        sys.exit(1)


REPORT_FORMAT = click.option("--format", "formats", default=",".join(FORMATS), show_default=True,
                             help="Comma-separated files to write: csv, md, html, png.")


def _print_report(db: str, run_id: Optional[int], out: Optional[str], formats: str) -> Any:
    """Print the comparison table and write the chosen files; returns the RunReport."""
    from pathlib import Path

    from .. import report as report_mod

    chosen = report_mod.parse_formats(formats)
    report = report_mod.load(db, run_id)
    report_mod.print_report(report, stdout_console())
    if chosen:
        folder = Path(out) if out else report_mod.default_out(report)
        written = report_mod.write(report, folder, chosen)
        click.echo(f"Report files in {folder}: {', '.join(p.name for p in written)}")
    return report


@main.command("run")
@OPTIMIZE_OPTIONS
@DEVICE_OPTIONS
@REPORT_FORMAT
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
def run_command(device: Optional[str], fleet: Optional[str], tags: Optional[str], db: str, jobs: int,
                accept_new_host_keys: bool, formats: str, quiet: bool, **options: Any) -> None:
    """The main job: optimize, then bench on the device(s), then report, in one command.

    With no arguments: the built-in digits data set on the `local` device. The report goes to <out>/report/.
    """
    import time

    started = time.perf_counter()
    devices = _devices(device, fleet, tags)  # a bad --device/--fleet fails before any training
    config = _optimize_config(**options)
    from ..report import parse_formats

    parse_formats(formats)
    result = _run_optimize(config, quiet)
    click.echo(f"optimize: {result.folder} ({len(result.manifest['variants'])} variants)", err=True)
    benched = _run_bench(result.folder, devices, db, jobs, accept_new_host_keys, quiet)
    _print_report(db, benched.run_id, str(result.folder / "report"), formats)
    click.echo(f"edgeprune run: done in {time.perf_counter() - started:.1f} s", err=True)
    document = result.document
    if document.failed_variants() or document.over_budget() or document.mismatched() or not benched.all_ok:
        sys.exit(1)


@main.command()
@click.argument("run_id", type=int, required=False)
@click.option("--db", default=DEFAULT_DB, show_default=True,
              help="Store: a SQLite path or sqlite:///path, or postgresql://user@host/db.")
@click.option("--out", help="Folder for the files (default: the run folder's report/).")
@REPORT_FORMAT
@click.option("--compare", nargs=2, type=int, metavar="BASE NEW",
              help="Show the change per device x variant from BASE to NEW instead (a CI gate: docs/ci-gate.md).")
@GATE_OPTIONS
def report(run_id: Optional[int], db: str, out: Optional[str], formats: str, compare: Optional[tuple],
           **gate: Any) -> None:
    """Print a run's comparison table (default: the latest run) and write CSV, Markdown, HTML and PNG plots."""
    if not compare_path(db, compare, **gate):
        _print_report(db, run_id, out, formats)


@main.command()
@click.option("--db", default=DEFAULT_DB, show_default=True,
              help="Store: a SQLite path or sqlite:///path, or postgresql://user@host/db.")
def runs(db: str) -> None:
    """List the stored runs: id, date, model, devices, variants and result counts."""
    from rich import box
    from rich.table import Table

    from ..report import list_runs
    from ..text import for_rich

    frame = list_runs(db)
    if frame.empty:
        click.echo(f"no runs stored in {db} yet: run `edgeprune run` or `edgeprune bench`")
        return
    table = Table(title=f"edgeprune runs ({db})", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("id", "created", "model / data", "devices", "variants", "results"):
        table.add_column(column, justify="right" if column in ("id", "variants") else "left",
                         no_wrap=column in ("id", "created", "results"))
    for run in frame.to_dict("records"):
        model = run["model"] if run["dataset"] in str(run["model"]) else f"{run['model']} / {run['dataset']}"
        results = ", ".join(f"{run[s]} {s}" for s in ("ok", "error", "failed", "invalid") if run[s]) or "none"
        table.add_row(str(run["id"]), for_rich(run["created"]), for_rich(model), for_rich(run["devices"]),
                      str(run["variants"]), results)
    stdout_console().print(table)


if __name__ == "__main__":  # pragma: no cover
    main()
