#!/usr/bin/env python
"""Does XNNPACK's sparse path make a pruned model faster? The built-in mobilenet, dense vs sparse-stored float vs int8.

Run with the host venv:  .venv/bin/python benchmarks/latency_structures.py [--sparsity 0.75,0.9] [--rounds N]
[--arm64-rounds 10 --arm64-runs 10] [--skip-arm64] [--db DB]

Per sparsity: ``edgeprune optimize --builtin mobilenet --structure xnnpack-sparse --final-sparsity S`` (cached
under .cache/bench/latency-structures/, keyed by the settings; benchmarks/_structures_build.py) builds five files:
  baseline-float32                      dense float (the reference)
  pruned-xnnpack-sparse-float32         pruned, weights stored sparse (EXPERIMENTAL_SPARSITY: DENSIFY ops)
  pruned-xnnpack-sparse-dense-float32   the SAME zeros stored dense: the control that isolates the sparse path
  baseline-int8, pruned-xnnpack-sparse-int8   full int8 (XNNPACK's sparse path is float-only)
Each is measured by ``edgeprune bench`` as shipped (one plan: every variant plus the baseline's A/A twin, in
interleaved rounds) on ``local`` (the shipped stopping rule, or --rounds fixed), and, unless --skip-arm64, on the
lab's emulated aarch64 Pi (tests/support/lab, kind arm64: tflite-runtime 2.14 under qemu-aarch64-static;
latency-only, --arm64-rounds rounds of --arm64-runs invokes per visit). Everything is read back with the report's
own code (report.frame.load: p50 intervals, paired speed-ups, the A/A band floored at target_ci, verdicts).

Printed: this host's CPU flags (AVX?); per sparsity the check (edgeprune.explain) per variant, one line each;
per device and sparsity a table (p50 with its 95% interval; baseline-float32 / variant paired by round with its
95% interval and the report's verdict), then the key comparison: pruned-xnnpack-sparse-dense-float32 /
pruned-xnnpack-sparse-float32 (same zeros, only the storage differs: if the sparse path runs, the sparse-stored
file is faster) judged against the device's A/A band (report.verdict.speedup_verdict); at the end one conclusion
per device, computed from those figures.

What it means: on x86-64 with AVX, XNNPACK never rewrites a graph for sparse inference
(xnn_is_chw_compatible_config, docs/explain.md), so the sparse-stored file should run exactly as the dense-stored
one even when the check says the graph is eligible. Emulated (qemu) figures say which code path runs on Arm (the
SpMM kernels or the dense ones), not how fast a Pi is: every one of them is labelled so.

Measured here (2-core Xeon with AVX-512, tflite via ai-edge-litert on local; builds cached, 211 s in all):
dense-stored / sparse-stored on local 1.00x (0.99-1.02) at 75% and 1.00x (1.00-1.01) at 90%, no measurable
difference (noise ±3.1%, ±2%), while int8 was 1.51x faster than dense float; on the emulated arm64 device 2.45x
(2.16-2.83) at 75% and 3.13x (2.91-3.83) at 90%, faster beyond its A/A noise (±26%, ±11%): the check's "eligible"
is right, and only an Arm CPU takes the path. Building the two run folders took 276 s and 242 s.

A failure (a build, the emulated Pi, a device) is one line and the rest still prints; exit 1 only if nothing
could be measured.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import _runfolder  # noqa: F401  (tests/ on sys.path, for support.lab)
import _structures_build as build
from _structures_build import BASELINE, DENSE_STORED, SPARSE, VARIANTS

EMULATED = "emulated (qemu): which code path runs, not Pi speed"
FLAGS = ("sse", "sse2", "sse4_1", "avx", "avx2", "fma", "avx512f")


@dataclasses.dataclass
class Section:
    """One device x sparsity: its table rows, its noise floor and the key comparison."""

    device: str           # as printed: "local" or "arm64-emulated"
    sparsity: float
    rows: List[Dict[str, Any]]
    floor: str
    noise: Optional[float]
    key: Any              # stats.Verdict of dense-stored / sparse-stored, or None
    key_note: str = ""


def cpu_facts() -> Tuple[str, Dict[str, bool]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            if key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model, {flag: flag in flags for flag in FLAGS}


def explain_lines(folder: Path) -> Tuple[List[str], Dict[str, Any]]:
    from edgeprune.errors import EdgepruneError
    from edgeprune.explain import explain_file

    lines, found = [], {}
    for name in VARIANTS:
        try:
            found[name] = e = explain_file(folder / f"{name}.tflite")
            lines.append(f"  {name:<37} {e.summary()}")
        except (EdgepruneError, OSError) as exc:
            lines.append(f"  {name:<37} check failed: {exc}")
    return lines, found


def _ms(us: float) -> str:
    ms = us / 1000
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def read_section(db: Path, run_id: int, device: str, shown: str, sparsity: float) -> Section:
    """The run's rows on ``device`` as the report computes them, and the key comparison judged against its band."""
    from edgeprune.report import stats
    from edgeprune.report.frame import load
    from edgeprune.report.verdict import speedup_verdict
    from edgeprune.results.store import Store

    report = load(db, run_id)
    facts = report.devices[device]
    rows = [dict(r) for _, r in report.frame.iterrows() if r["device"] == device]
    with Store.open(db, create=False) as store:
        stored = {r["variant"]: dict(r) for r in store.results(run_id) if r["device"] == device}
    key, note = None, ""
    dense, sparse = stored.get(DENSE_STORED), stored.get(SPARSE)
    if dense is None or sparse is None:
        note = "not measured: " + ", ".join(n for n, r in ((DENSE_STORED, dense), (SPARSE, sparse)) if r is None)
    elif dense["status"] != "ok" or sparse["status"] != "ok":
        note = "not measured: " + "; ".join(f"{r['variant']} {r['status']}: {r.get('error_message') or ''}"[:200]
                                            for r in (dense, sparse) if r["status"] != "ok")
    else:
        key = speedup_verdict(dense, sparse, facts.band, facts.why)
    return Section(shown, sparsity, rows, facts.floor, stats.noise_fraction(facts.band), key, note)


def print_section(section: Section, emulated: bool) -> None:
    from edgeprune.report import stats

    label = f"  [{EMULATED}]" if emulated else ""
    print(f"\n{section.device}, sparsity {section.sparsity:g}{label}")
    print(f"  {section.floor}")
    print(f"  {'variant':<37} {'p50 ms (95%)':<26} {'baseline/variant (paired 95%)':<31} verdict")
    for row in section.rows:
        name = row["variant"]
        if row["status"] != "ok":
            print(f"  {name:<37} {row['status']}: {str(row.get('error') or '')[:160]}")
            continue
        p50, low, high = row["p50_us"], row["p50_ci_low_us"], row["p50_ci_high_us"]
        p50_text = f"{_ms(p50)} ({_ms(low)}-{_ms(high)})" if low == low and high == high else f"{_ms(p50)} (no CI)"
        if name == BASELINE:
            ratio_text, verdict = "1 (the reference)", ""
        else:
            s, lo, hi = row["speedup"], row["speedup_ci_low"], row["speedup_ci_high"]
            ratio_text = stats.ratio_text(s, lo, hi) if lo == lo and hi == hi else f"{s:.2f}x (no CI)"
            verdict = str(row.get("verdict") or "")
        print(f"  {name:<37} {p50_text:<26} {ratio_text:<31} {verdict}{' (emulated)' if emulated else ''}")
    print(f"  key: {DENSE_STORED} / {SPARSE} (same zeros, only the storage differs; >1: sparse-stored faster): "
          f"{key_text(section)}{'  [' + EMULATED + ']' if emulated else ''}")


def key_text(section: Section) -> str:
    from edgeprune.report import stats

    v = section.key
    if v is None:
        return section.key_note
    if v.ratio is None:
        return v.phrase
    ratio = stats.ratio_text(v.ratio.mid, v.ratio.low, v.ratio.high)
    noise = f"noise {stats.percent(section.noise)}" if section.noise is not None else "no noise floor"
    if v.kind == stats.FASTER:
        return f"{ratio}: sparse-stored faster ({noise})"
    if v.kind == stats.SLOWER:
        return f"{ratio}: sparse-stored slower ({noise})"
    if v.kind == stats.NO_CHANGE:
        return f"{ratio}: no measurable difference ({noise})"
    return f"{ratio}: {v.phrase}"


def conclusion(device: str, sections: List[Section], cpu: str, avx: Optional[bool],
               checks: Dict[float, Dict[str, Any]]) -> str:
    """One plain sentence per device, from its key comparisons (and the check, and the CPU)."""
    from edgeprune.report import stats

    judged = [s for s in sections if s.key is not None and s.key.ratio is not None]
    if not judged:
        notes = "; ".join(s.key_note for s in sections) or "no runs"
        return f"{device}: nothing to conclude: the key pair was not measured ({notes})."
    parts, kinds = [], set()
    for s in judged:
        r = s.key.ratio
        noise = f"noise {stats.percent(s.noise)}" if s.noise is not None else "no noise floor"
        word = {stats.FASTER: "faster", stats.SLOWER: "slower"}.get(s.key.kind, "no measurable difference")
        parts.append(f"{s.sparsity:.0%}: {stats.ratio_text(r.mid, r.low, r.high)}, {word}, {noise}")
        kinds.add(s.key.kind)
    eligible = [s.sparsity for s in judged if getattr(checks.get(s.sparsity, {}).get(SPARSE), "sparse_eligible", False)]
    figures = "; ".join(parts)
    int8 = int8_clause(sections)
    if kinds == {stats.FASTER}:
        return (f"{device}: sparse-stored faster than the same zeros stored dense ({figures}): XNNPACK's sparse "
                f"path runs here.{int8}")
    if stats.FASTER in kinds:
        return (f"{device}: sparse storage helped at some sparsities only ({figures}): the sparse path runs here, "
                f"and pays only with enough zeros.{int8}")
    hidden = [s for s in judged if s.key.kind == stats.NO_CHANGE and (s.key.ratio.low > 1 or s.key.ratio.high < 1)]
    if not eligible:
        reasons = {getattr(checks.get(s.sparsity, {}).get(SPARSE), "sparse_reason", "") for s in judged} - {""}
        why = f"; the check says the graph is not eligible: {'; '.join(sorted(reasons)) or 'unknown'}"
    elif avx:
        why = (f"; the check says the graph is eligible, but XNNPACK's sparse path is disabled on x86 CPUs with AVX "
               f"(xnn_is_chw_compatible_config; this CPU: {cpu}, avx present)")
    elif hidden:
        why = (f"; the check says the graph is eligible, and at {', '.join(f'{s.sparsity:.0%}' for s in hidden)} the "
               f"interval excludes 1 but not this device's A/A noise: no verdict at this precision (more rounds or "
               f"invokes per visit)")
    else:
        why = "; the check says the graph is eligible, yet the sparse path did not pay (or did not run) here"
    if stats.SLOWER in kinds:
        return f"{device}: sparse storage cost time ({figures}){why}.{int8}"
    return f"{device}: sparse storage bought nothing measurable ({figures}){why}.{int8}"


def int8_clause(sections: List[Section]) -> str:
    """What int8 did against dense float, per sparsity, as the report judged it."""
    from edgeprune.report import stats

    parts = []
    for s in sections:
        row = next((r for r in s.rows if r["variant"] == "pruned-xnnpack-sparse-int8" and r["status"] == "ok"), None)
        if row is None or row["speedup_ci_low"] != row["speedup_ci_low"]:
            continue
        verdict = row.get("verdict") or ""
        parts.append(f"{stats.ratio_text(row['speedup'], row['speedup_ci_low'], row['speedup_ci_high'])} "
                     f"{verdict} at {s.sparsity:.0%}")
    return f" Int8 (pruned-xnnpack-sparse-int8 vs dense float): {'; '.join(parts)}." if parts else ""


def bench_one(source: Any, profile: Any, db: Path) -> int:
    """One ``edgeprune bench`` (the Python function the command calls); the run id."""
    from edgeprune.devices.fleet import bench

    result = bench(source, [profile], db, stop=threading.Event())
    if not result.all_ok:
        print(f"  note: not every cell measured ok on {profile.name}: {result.counts}")
    return result.run_id


def measure_local(runs: Dict[float, Path], db: Path, rounds: Optional[int], failures: List[str]) -> List[Section]:
    from edgeprune.devices.profiles import load_profile

    profile = load_profile("local")
    if rounds:
        profile = dataclasses.replace(profile, min_rounds=rounds, max_rounds=rounds)
    sections = []
    for sparsity, folder in runs.items():
        started = time.monotonic()
        try:
            run_id = bench_one(folder, profile, db)
            sections.append(read_section(db, run_id, profile.name, "local", sparsity))
        except Exception as exc:  # one line, and the rest still runs
            failures.append(f"local, sparsity {sparsity:g}: {type(exc).__name__}: {exc}"[:400])
            continue
        print_section(sections[-1], emulated=False)
        print(f"  (bench took {time.monotonic() - started:.0f} s)", flush=True)
    return sections


def measure_arm64(runs: Dict[float, Path], db: Path, rounds: int, runs_per_visit: int,
                  failures: List[str]) -> List[Section]:
    """The same files, latency only (imported, so the emulated Pi skips the accuracy pass), on the lab's arm64."""
    from edgeprune.devices.profiles import load_fleet
    from edgeprune.results.imported import import_files
    from support.lab import lab

    sections: List[Section] = []
    work = Path(tempfile.mkdtemp(prefix="latency-structures-lab-"))
    started = time.monotonic()
    try:
        with lab(["arm64"], work, log=lambda line: print(f"  lab: {line}", flush=True)) as running:
            print(f"  lab: emulated Pi up in {time.monotonic() - started:.0f} s "
                  f"({'cached' if running.pi_arm64.build['cached'] else 'built'})", flush=True)
            profile = load_fleet(str(running.fleet_path)).devices[0]
            profile = dataclasses.replace(profile, min_rounds=rounds, max_rounds=rounds, runs=runs_per_visit,
                                          warmup=1, budget_s=3600.0, command_timeout=3600.0, device_timeout=0.0)
            for sparsity, folder in runs.items():
                t0 = time.monotonic()
                try:
                    files = import_files([str(folder / f"{name}.tflite") for name in VARIANTS])
                    run_id = bench_one(files, profile, db)
                    sections.append(read_section(db, run_id, profile.name, "arm64-emulated", sparsity))
                except Exception as exc:
                    failures.append(f"arm64-emulated, sparsity {sparsity:g}: {type(exc).__name__}: {exc}"[:400])
                    continue
                print_section(sections[-1], emulated=True)
                print(f"  (bench took {time.monotonic() - t0:.0f} s)", flush=True)
    except Exception as exc:
        failures.append(f"arm64-emulated: the lab device could not start: {type(exc).__name__}: {exc}"[:400])
    return sections


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", default="0.75,0.9", help="final sparsities, one run folder each")
    parser.add_argument("--rounds", type=int, default=0,
                        help="rounds on local (default 0: the shipped stopping rule, 5-50 until settled)")
    parser.add_argument("--arm64-rounds", type=int, default=10, help="rounds on the emulated Pi (default 10)")
    parser.add_argument("--arm64-runs", type=int, default=10, help="timed invokes per visit there (default 10)")
    parser.add_argument("--skip-arm64", action="store_true", help="measure on local only")
    parser.add_argument("--seed", type=int, default=0, help="optimize's seed")
    parser.add_argument("--db", help="store (default: a new one in a temp dir)")
    args = parser.parse_args()
    try:
        sparsities = [float(s) for s in args.sparsity.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sparsity takes fractions like 0.75,0.9, got {args.sparsity!r}")
    if not sparsities or not all(0 < s < 1 for s in sparsities):
        parser.error("--sparsity takes fractions in (0, 1)")
    if args.rounds < 0 or args.arm64_rounds < 3 or args.arm64_runs < 1:
        parser.error("--rounds >= 0, --arm64-rounds >= 3 (fewer give no interval), --arm64-runs >= 1")
    from edgeprune.explain.render import has_avx

    started = time.monotonic()
    db = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="latency-structures-")) / "bench.db"
    cpu, flags = cpu_facts()
    avx = has_avx()
    print(f"latency_structures: host {platform.machine()}, {os.cpu_count()} CPUs, {cpu}; load average "
          f"{os.getloadavg()[0]:.2f}; store {db}")
    print("CPU flags (/proc/cpuinfo): " + ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in flags.items()))
    if avx:
        print("  => AVX present: XNNPACK's xnn_is_chw_compatible_config returns false on x86 with AVX, so "
              "xnn_subgraph_optimize never calls xnn_subgraph_rewrite_for_nchw: no sparse path here "
              "(docs/explain.md#x86)")

    failures: List[str] = []
    runs: Dict[float, Path] = {}
    checks: Dict[float, Dict[str, Any]] = {}
    for sparsity in sparsities:
        try:
            folder, cached, seconds = build.ensure_run(sparsity, args.seed, log=lambda line: print(line, flush=True))
        except build.BuildFailed as exc:
            failures.append(str(exc))
            print(f"build failed: {exc}")
            continue
        runs[sparsity] = folder
        print(f"\nrun folder, sparsity {sparsity:g}: {folder} ({'cached' if cached else f'built in {seconds:.0f} s'})")
        print("check (edgeprune explain), per variant:")
        lines, checks[sparsity] = explain_lines(folder)
        print("\n".join(lines), flush=True)

    local = measure_local(runs, db, args.rounds or None, failures) if runs else []
    arm64: List[Section] = []
    if runs and not args.skip_arm64:
        print(f"\narm64-emulated: the lab's emulated Raspberry Pi (qemu-aarch64-static, tflite-runtime 2.14), "
              f"latency only, {args.arm64_rounds} rounds of {args.arm64_runs} invokes per visit  [{EMULATED}]",
              flush=True)
        arm64 = measure_arm64(runs, db, args.arm64_rounds, args.arm64_runs, failures)

    print("\nconclusion:")
    label = f"local ({platform.machine()}{', AVX' if avx else ', no AVX' if avx is False else ''})"
    if local:
        print("  " + conclusion(label, local, cpu, avx, checks))
    if arm64:
        print("  " + conclusion(f"arm64 ({EMULATED})", arm64, "qemu aarch64", False, checks))
    for failure in failures:
        print(f"failed: {failure}")
    print(f"took {time.monotonic() - started:.0f} s")
    return 0 if (local or arm64) else 1


if __name__ == "__main__":
    sys.exit(main())
