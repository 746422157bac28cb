"""``edgeprune sweep``: a grid of pruning settings, every point optimized and benched, a Pareto table (issue 16).

Parsing and the one call only; the work is ``edgeprune.sweep``. Every value is checked before anything is trained:
the grid (each run's whole optimize config is built), the devices, the store, the sweep folder (another sweep's
folder is refused; the same sweep's is resumed).
"""
from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import click
from click.core import ParameterSource

from ..errors import ConfigError
from ..optimize.config import cli_options, config_from_options
from ..optimize.variants import BASELINE
from ..sweep.grid import quantizations
from .commands import DEFAULT_DB, _debug, _devices, _options, main

#: The optimize options a sweep sets itself (the grid, its folder, its budget) rather than passing on.
OWN = ("out", "variants", "final_sparsity", "structure", "block_size", "max_accuracy_drop")
GRID_DEFAULTS = {"final_sparsity": "0.5,0.7,0.8,0.9", "structure": "block", "block_size": "4x1",
                 "quant": "float32,int8"}
#: The optimize options passed on to every run (training, fine-tune, model and data, seed).
PASSED = [option for option in cli_options() if option.dest not in OWN]
PASSED_OPTIONS = _options(*(
    click.option(*option.flag.names, option.dest, type=option.type, default=option.default,
                 show_default=option.flag.show_default, help=option.flag.help, is_flag=option.type is bool)
    for option in PASSED
))


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def _new_state(folder: Path, grid_values: Dict[str, Optional[str]], options: Dict[str, Any], budget: float,
               devices: Dict[str, Optional[str]], db: str) -> Any:
    from ..sweep.grid import parse_grid
    from ..sweep.state import new_state

    values = {k: v or GRID_DEFAULTS[k] for k, v in grid_values.items()}
    grid = parse_grid(values["final_sparsity"], values["structure"], values["block_size"], values["quant"])
    base = config_from_options(dict(options, out=str(folder / "baseline"), variants=BASELINE,
                                    final_sparsity=max(grid.final_sparsity), structure=grid.structure[0],
                                    block_size=grid.block_size[0], max_accuracy_drop=budget))
    return new_state(folder, grid, base, budget, devices, db)


def _state(ctx: click.Context, out: Optional[str], resume: Optional[str], grid: Dict[str, Optional[str]],
           options: Dict[str, Any], budget: float, devices: Dict[str, Optional[str]], db: str) -> Any:
    """The sweep to run: a new one, the same one again (same --out and grid), or --resume's."""
    from ..sweep import state as state_mod

    if resume:
        clash = [f"--{name.replace('_', '-')}" for name in list(grid) + [o.dest for o in PASSED] if _given(ctx, name)]
        if clash:
            raise ConfigError(f"--resume takes the grid and the optimize settings from {resume}/sweep.json; leave "
                              f"out {', '.join(clash)}")
        if out and Path(out) != Path(resume):
            raise ConfigError("give --out or --resume, not both")
        return state_mod.load(Path(resume))
    folder = Path(out or Path("sweeps") / f"sweep-{_dt.datetime.now():%Y%m%d-%H%M%S}")
    new = _new_state(folder, grid, options, budget, devices, db)
    if not state_mod.exists(folder):
        return new
    old = state_mod.load(folder)
    why = old.differs(new)
    if why:
        raise ConfigError(f"{folder} holds another sweep: {why}; choose another --out, or finish that one with "
                          f"`edgeprune sweep --resume {folder}`")
    return old


def _summary(state: Any, result: Any, devices: List[Any]) -> str:
    points = len(state.points())
    done = points - len(result.missing) - len(result.failed)
    said = [f"{done} of {points} points done"]
    if result.failed:
        said.append(f"{len(result.failed)} failed ({', '.join(result.failed)})")
    if result.missing:
        said.append(f"{len(result.missing)} not finished ({', '.join(result.missing)})")
    said.append(f"this time: {len(result.optimized)} run(s) optimized"
                + (f" ({', '.join(result.optimized)})" if result.optimized else "")
                + f", {len(result.benched)} bench(es)" + (f" ({', '.join(result.benched)})" if result.benched else ""))
    return "sweep: " + "; ".join(said)


@main.command("sweep")
@click.option("--final-sparsity", "final_sparsity", default=None, metavar="S1,S2,...",
              help=f"Final sparsities of the grid [default: {GRID_DEFAULTS['final_sparsity']}].")
@click.option("--structure", default=None, metavar="A,B",
              help="Pruning structures of the grid: unstructured, block, 2:4, xnnpack-sparse [default: block].")
@click.option("--block-size", "block_size", default=None, metavar="4x1,2x2",
              help="Block sizes of the grid (the block structure only) [default: 4x1].")
@click.option("--quant", default=None, metavar="float32,int8",
              help="Quantizations of the grid, each a variant of one pruned model: "
                   f"{', '.join(quantizations())} [default: {GRID_DEFAULTS['quant']}].")
@click.option("--out", default=None, help="Sweep folder (default: sweeps/sweep-<time>); the same command with the "
                                          "same --out resumes it.")
@click.option("--resume", metavar="SWEEP_DIR", help="Finish the sweep in SWEEP_DIR (its grid and settings).")
@click.option("--max-accuracy-drop", type=float, default=5.0, show_default=True,
              help="Accuracy points a recommended point may lose against the baseline.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs optimized at once on this machine (separate processes).")
@click.option("--ray", "ray_address", metavar="ADDRESS", help="Optimize on the Ray cluster at ADDRESS instead.")
@click.option("--ray-cpus", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="CPUs each run asks Ray for (and its TensorFlow threads).")
@click.option("--retry-failed", is_flag=True, help="Optimize the failed points of a resumed sweep again.")
@click.option("--device", help="A profile name from profiles/ or a .toml path (default: local).")
@click.option("--fleet", help="A fleet .toml file.")
@click.option("--tags", help="Only fleet devices with one of these comma-separated tags.")
@click.option("--db", default=None, help=f"Store: a SQLite path or sqlite:///path, or postgresql://user@host/db [default: {DEFAULT_DB}].")
@click.option("--bench-jobs", type=click.IntRange(min=1), default=8, show_default=True,
              help="Devices measured at once.")
@click.option("--accept-new-host-keys", is_flag=True, help="Trust hosts not yet in known_hosts (and add them).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@PASSED_OPTIONS
def sweep(final_sparsity: Optional[str], structure: Optional[str], block_size: Optional[str], quant: Optional[str],
          out: Optional[str], resume: Optional[str], max_accuracy_drop: float, jobs: int, ray_address: Optional[str],
          ray_cpus: float, retry_failed: bool, device: Optional[str], fleet: Optional[str], tags: Optional[str],
          db: Optional[str], bench_jobs: int, accept_new_host_keys: bool, quiet: bool, **options: Any) -> None:
    """Optimize a grid of pruning settings from one baseline, bench every point on the device(s), and show the
    Pareto table (accuracy, gzip size, p50) with the fastest point within --max-accuracy-drop.

    Interrupted (Ctrl-C, a crash), the same command or --resume SWEEP_DIR finishes only the missing points.
    Exit status: 0 when every point was optimized and measured; 1 when any failed or is missing; 2 for a usage
    or configuration error; 130 when interrupted.
    """
    from ..devices.ssh import HostKeyPolicy, route_library_logs
    from ..results.store import Store
    from ..sweep.display import SweepDisplay
    from ..sweep.pareto import build
    from ..sweep.runner import Sweep
    from ..sweep.views import print_pareto, write
    from .display import stdout_console

    ctx = click.get_current_context()
    if not 0.0 <= max_accuracy_drop <= 100.0:
        raise ConfigError(f"--max-accuracy-drop is in accuracy points, 0 to 100, got {max_accuracy_drop}")
    grid = {"final_sparsity": final_sparsity, "structure": structure, "block_size": block_size, "quant": quant}
    chosen = {"device": device, "fleet": fleet, "tags": tags}
    state = _state(ctx, out, resume, grid, options, max_accuracy_drop, chosen, db or DEFAULT_DB)
    if not (device or fleet) and resume and state.devices:  # a resume measures where the sweep measured
        chosen = dict(state.devices)
    db = db or (state.db if resume and state.db else DEFAULT_DB)
    profiles = _devices(chosen.get("device"), chosen.get("fleet"), chosen.get("tags"))
    if ray_address:  # a cluster that does not answer is said before anything is written
        from ..sweep.ray_runner import RayRunner, reachable

        reachable(ray_address)
    Store.open(db).close()  # a store that cannot be used is said before anything is trained
    state.devices, state.db, state.max_accuracy_drop = chosen, db, max_accuracy_drop
    state.save()
    if ray_address:
        runner: Any = RayRunner(ray_address, ray_cpus)
    else:
        from ..sweep.local import LocalRunner

        runner = LocalRunner(jobs, native_log=not _debug())
    route_library_logs()
    with SweepDisplay(quiet) as display:
        display.say(f"sweep {state.folder}: {len(state.points())} points in {len(state.runs())} optimize runs, "
                    f"benched on {', '.join(p.name for p in profiles)}; results in {db}")
        work = Sweep(state, profiles, db, runner, display, HostKeyPolicy.from_flag(accept_new_host_keys),
                     bench_jobs, retry_failed)
        try:
            result = work.run()
        finally:
            work.close()
            runner.close()
    click.echo(_summary(state, result, profiles), err=True)
    if result.interrupted:
        click.echo(f"Interrupted: finished points are stored; run the same command again, or `edgeprune sweep "
                   f"--resume {state.folder}`, to finish the rest", err=True)
        sys.exit(130)
    title = f"edgeprune sweep {state.folder}"
    pareto = build(state, db, result.sweep_id, [p.name for p in profiles], max_accuracy_drop)
    print_pareto(pareto, stdout_console(), title)
    written = write(pareto, state.folder, title)
    click.echo(f"Pareto files in {state.folder}: {', '.join(p.name for p in written)}")
    if result.failed or result.missing:
        sys.exit(1)
