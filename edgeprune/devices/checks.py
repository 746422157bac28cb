"""``edgeprune devices check``: is this device ready to be benchmarked? Answered by doing it, on a tiny model.

A probe alone ("Python 3.11, ai-edge-litert 2.3") said ok while every real benchmark failed (a workdir the agent
could not see). So the check takes the bench's own path: upload a bundled 1 KB model and its eval set (sha256
verified), start the agent in its folder on the device, load the model with the profile's runtime and delegate,
time it and check its accuracy. Only a measured model is "ok". Since issue 12 the bench measures with a plan, so
the check sends a one-cell, one-round plan.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, List

from ..results.agent_result import Expected, ProbeFacts
from .bundle import FileSpec, sha256_file
from .cells import new_seed, plan_document, write_plan
from .kinds import open_device
from .ssh import HostKeyPolicy
from .profiles import DeviceProfile
from ..errors import EdgepruneError

ASSETS = Path(__file__).resolve().parent / "assets"
CHECK_MODEL = ASSETS / "check.tflite"
CHECK_EVAL = ASSETS / "check-eval.npz"
#: The tiny model is timed briefly: the check is about the path, not the figure.
CHECK_RUNS, CHECK_WARMUP = 20, 2


def _check_profile(profile: DeviceProfile) -> DeviceProfile:
    from dataclasses import replace

    return replace(profile, runs=CHECK_RUNS, warmup=CHECK_WARMUP, min_seconds=0.0, min_rounds=1, max_rounds=1,
                   budget_s=min(profile.budget_s, 30.0))


def check_device(profile: DeviceProfile, host_keys: HostKeyPolicy = HostKeyPolicy.REJECT) -> Dict[str, Any]:
    """Probe the device and measure the bundled model on it; a dict for the table and ``--json``."""
    import numpy as np

    report: Dict[str, Any] = {"device": profile.name, "name": profile.name, "status": "failed", "ok": False,
                              "reason": None, "route": [profile.name], "host_key": None}
    model = FileSpec(CHECK_MODEL, sha256_file(CHECK_MODEL), ".tflite")
    evaluation = FileSpec(CHECK_EVAL, sha256_file(CHECK_EVAL), ".npz")
    with np.load(CHECK_EVAL) as data:
        labels = np.asarray(data["y"], dtype=np.int64)
    expected = Expected(model.sha256, CHECK_MODEL.stat().st_size, labels, None)
    checked = _check_profile(profile)
    try:
        with open_device(checked, host_keys) as device, tempfile.TemporaryDirectory(prefix="edgeprune-check-") as tmp:
            connection = getattr(device, "connection", None)
            if connection is not None:  # an ssh device: its route is known before anything connects
                report["route"] = connection.target.route
            probe = device.probe()
            if connection is not None:
                report["host_key"] = connection.host_key()
            if probe.status != "ok":
                report.update(status=probe.status, reason=f"probe: {probe.error_kind}: {probe.message}")
                return report
            report["probe"] = probe.document
            paths = device.prepare([model, evaluation])
            document = plan_document(checked, {"check": ("check", {})}, {"check": paths[model.sha256]},
                                     paths[evaluation.sha256], new_seed())
            spec = write_plan(Path(tmp), document)
            plan_file = device.prepare([spec])[spec.sha256]
            plan = device.run_plan(plan_file, 1, expected={"check": expected})
            device.discard(plan_file)
    except EdgepruneError as exc:
        report["reason"] = str(exc)
        return report
    cell = plan.cells.get("check")
    if cell is None:
        report.update(status=plan.status, reason=f"tiny model: {plan.error_kind}: {plan.message}")
        return report
    report["check"] = cell.document
    if cell.status != "ok":
        report.update(status=cell.status, reason=f"tiny model: {cell.error_kind}: {cell.message}")
        return report
    report.update(status="ok", ok=True)
    return report


def check_table(reports: List[Dict[str, Any]]) -> Any:
    """One row per device: what it has, and what the tiny model measured or why it could not."""
    from rich.table import Table

    from ..text import for_rich

    table = Table(title="edgeprune devices check")
    routed = any(len(r.get("route") or ()) > 1 for r in reports)
    for column in ("device",) + (("route",) if routed else ()) + ("status", "python", "numpy", "runtimes",
                                                                  "machine / model", "tiny model", "missing"):
        table.add_column(column)
    for report in reports:
        probe = report.get("probe")
        facts = ProbeFacts.from_document(probe or {})
        check = report.get("check") or {}
        if report["status"] == "ok":
            measured = (f"ok, p50 {(check.get('p50_interval') or {}).get('p50_us', 0):.1f} µs with "
                        f"{(check.get('runtime') or {}).get('module')}")
            status = "ok"
        else:
            measured = "see below"  # said in full under the table: a fingerprint must never be cut
            status = f"[red]{for_rich(report['status'])}[/]"
        missing = "" if facts.runtimes or not probe else \
            "a TFLite runtime: pip install ai-edge-litert (Python 3.10+) or tflite-runtime"
        route = (for_rich(" -> ".join(report.get("route") or ())),) if routed else ()
        table.add_row(for_rich(report["device"]), *route, status, for_rich(facts.python), for_rich(facts.numpy),
                      for_rich(", ".join(facts.runtimes) or ("none" if probe else "")),
                      for_rich(" / ".join(x for x in (facts.machine, facts.pi_model) if x)),
                      for_rich(measured, 400), missing)
    return table


def check_notes(reports: List[Dict[str, Any]]) -> List[str]:
    """Under the table, whole: each failure's reason, and each device's host key fingerprint with its route (what
    a user compares with the device's own ``ssh-keygen -lf``)."""
    from ..text import for_rich

    lines = []
    for report in reports:
        route = " -> ".join(report.get("route") or ())
        if report["status"] != "ok":
            lines.append(f"[red]{for_rich(report['device'])}[/]: {for_rich(report.get('reason') or '', 2000)}")
        if report.get("host_key"):
            lines.append(f"{for_rich(report['device'])}: host key {for_rich(report['host_key'])}"
                         + (f" (route {for_rich(route)})" if len(report.get("route") or ()) > 1 else ""))
    return lines
