"""``edgeprune devices check`` and ``devices setup``: what each device has and lacks, and a runtime for it."""
from __future__ import annotations

import json
import sys
from typing import Optional

import click

from .commands import _devices, main
from .display import stdout_console


@main.group()
def devices() -> None:
    """Check and set up devices."""


@devices.command("check")
@click.argument("name", required=False)
@click.option("--fleet", help="A fleet .toml file.")
@click.option("--tags", help="Only fleet devices with one of these comma-separated tags.")
@click.option("--accept-new-host-keys", is_flag=True, help="Trust hosts not yet in known_hosts (and add them).")
@click.option("--json", "as_json", is_flag=True, help="Print the probes as JSON.")
def devices_check(name: Optional[str], fleet: Optional[str], tags: Optional[str], accept_new_host_keys: bool,
                  as_json: bool) -> None:
    """Connect, run the agent's probe and a tiny bundled model end to end, and say what each device has and lacks.

    Exit status 0 only when every device measured the tiny model: the same path a bench takes (upload, sha256,
    the agent in its folder, the runtime), so a device that passes here can be benchmarked.
    """
    from concurrent.futures import ThreadPoolExecutor

    from ..devices.checks import check_device
    from ..devices.ssh import HostKeyPolicy, route_library_logs

    profiles = _devices(name, fleet, tags)
    route_library_logs()
    with ThreadPoolExecutor(max_workers=8) as pool:
        policy = HostKeyPolicy.from_flag(accept_new_host_keys)
        reports = list(pool.map(lambda p: check_device(p, policy), profiles))
    if as_json:
        click.echo(json.dumps(reports, indent=2))
    else:
        from ..devices.checks import check_notes, check_table

        console = stdout_console()
        console.print(check_table(reports))
        for line in check_notes(reports):
            console.print(line, highlight=False, soft_wrap=True)
    if any(r["status"] != "ok" for r in reports):
        sys.exit(1)


@devices.command("setup")
@click.argument("name")
@click.option("--python", "base_python", help="The device's Python to build the venv from (default: the profile's).")
@click.option("--index-url", help="Package index the device should use (default: its pip configuration).")
@click.option("--accept-new-host-keys", is_flag=True, help="Trust the host if not yet in known_hosts (and add it).")
def devices_setup(name: str, base_python: Optional[str], index_url: Optional[str], accept_new_host_keys: bool) -> None:
    """Create a venv on the device and install a TFLite runtime that fits its Python."""
    from ..devices.profiles import load_profile
    from ..devices.provision import setup
    from ..devices.ssh import HostKeyPolicy

    result = setup(load_profile(name), HostKeyPolicy.from_flag(accept_new_host_keys), base_python, index_url)
    click.echo(f"{result.device}: Python {result.python_version}, installed {', '.join(result.packages)}")
    click.echo(f'set python = "{result.python}" in its profile (or fleet entry) to use it')
