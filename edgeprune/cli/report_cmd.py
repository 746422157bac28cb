"""``edgeprune report --compare BASE NEW`` and its regression gate for CI (issue 17).

The ``report`` command itself stays in commands.py; its compare path lives here, so the gate's options and exit
codes are in one place: 0 when the gate passed (or no gate was asked for), 1 when a device x variant regressed
(the summary line says so), 2 for bad input (an unknown run id, a negative threshold, a --junit path that cannot be
written, gate options without --compare), always one ``Error:`` line and never a traceback. Exit 1 must mean
"regressed" and nothing else, which is why a store error here exits 2 rather than the store's usual 1. pandas is
imported only when the path runs, so ``edgeprune --help`` stays instant.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Optional, Tuple

import click

from ..errors import ConfigError, StoreError
from .display import stdout_console


def GATE_OPTIONS(fn: Callable[..., Any]) -> Callable[..., Any]:  # noqa: N802 (used like the other OPTIONS)
    """The gate's options on the ``report`` command."""
    for option in reversed((
        click.option("--fail-if-slower", type=float, metavar="PCT",
                     help="With --compare: exit 1 when a device x variant is slower in NEW by more than PCT percent "
                          "(the low end of its change's 95% interval) and outside both runs' A/A noise, or ok in "
                          "BASE and not in NEW."),
        click.option("--fail-if-less-accurate", type=float, metavar="POINTS",
                     help="With --compare: exit 1 when a device x variant's accuracy dropped by more than POINTS "
                          "accuracy points (device accuracy; the host's where a run has none)."),
        click.option("--junit", metavar="PATH",
                     help="With a gate: write a JUnit XML file for CI (a testsuite per device, a testcase per "
                          "device x variant)."),
    )):
        fn = option(fn)
    return fn


def compare_path(db: str, compare: Optional[Tuple[int, int]], fail_if_slower: Optional[float] = None,
                 fail_if_less_accurate: Optional[float] = None, junit: Optional[str] = None) -> bool:
    """Run ``report --compare`` (and the gate, when asked) and return True; False when the report command should
    print a single run instead. Exits 1 when the gate failed."""
    gated = fail_if_slower is not None or fail_if_less_accurate is not None
    if not compare:
        if gated or junit:
            raise ConfigError("--fail-if-slower, --fail-if-less-accurate and --junit need --compare BASE NEW")
        return False
    from ..report.diff import print_comparison

    if not gated:
        if junit:
            raise ConfigError("--junit needs a gate: --fail-if-slower PCT and/or --fail-if-less-accurate POINTS")
        print_comparison(db, compare[0], compare[1], stdout_console())
        return True
    from ..report import gate, junit as junit_file

    thresholds = gate.Thresholds(fail_if_slower, fail_if_less_accurate)
    gate.check_thresholds(thresholds)
    if junit:
        junit_file.check_writable(junit)
    console = stdout_console()
    try:
        frame = print_comparison(db, compare[0], compare[1], console)
        result = gate.judge(frame, thresholds, gate.read_facts(db, compare[0], compare[1]))
    except StoreError as exc:  # exit 1 is the gate's "regressed": bad input is 2
        raise ConfigError(str(exc)) from exc
    gate.print_gate(result, console)
    if junit:
        click.echo(f"JUnit file: {junit_file.write(result, junit)}")
    if not result.passed:
        sys.exit(result.exit_code)
    return True
