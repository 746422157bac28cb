"""Helpers of the sweep tests (imported by name: tests/sweep is on the path of its test modules): the tiny grid,
the CLI as a user runs it, the store read-only, a network namespace for Ray.

Every sweep here uses tiny settings (3 training epochs, 2 pruning epochs, 2 sparsities x float32/int8 = 4 points
in 2 optimize runs) and TensorFlow on one thread: with the same seed and the same thread counts, training on this
machine and in a Ray worker is bit-for-bit the same, so the Ray test can demand equal accuracies, not a tolerance.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from support.cli import run_cli

SWEEP = ["--final-sparsity", "0.5,0.8", "--quant", "float32,int8", "--train-epochs", "3", "--prune-epochs", "2"]
RUNS = ["s0.5-block-4x1", "s0.8-block-4x1"]
POINTS = [f"{run}-{quant}" for run in RUNS for quant in ("float32", "int8")]
#: One TensorFlow thread everywhere (this machine's children, Ray's workers): the same arithmetic order.
THREADS = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}
#: Ray on Linux replaces a loopback --node-ip-address by the machine's address unless told it is a one-machine
#: cluster (ray._private.services.get_node_ip_address); with this it advertises and binds 127.0.0.1.
RAY_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
SWEEP_TIMEOUT = 900


def sweep_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}  # the package sets it itself
    env.update(THREADS, COLUMNS="160")
    return env


class SweepRun(NamedTuple):
    folder: Path
    db: Path
    proc: subprocess.CompletedProcess


def run_sweep(cwd: Path, folder: Path, db: Path, *extra: str, prefix: Sequence[str] = (),
              env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """``edgeprune sweep`` with the tiny grid, as a user runs it (``prefix``: e.g. ``ip netns exec NS``)."""
    command = [*prefix, sys.executable, "-m", "edgeprune", "sweep", *SWEEP, "--out", str(folder), "--db", str(db),
               *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=SWEEP_TIMEOUT, cwd=str(cwd),
                          env=env or sweep_env())


def rows(db: Path, sql: str, *parameters: Any) -> List[Dict[str, Any]]:
    """A query on the store, read-only (a sweep may be writing it)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    except sqlite3.OperationalError:  # the sweep has not created its store yet
        return []
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, parameters)]
    except sqlite3.OperationalError:  # nor its tables
        return []
    finally:
        conn.close()


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(cwd, *args, env=sweep_env(), timeout=SWEEP_TIMEOUT)


def namespace() -> List[str]:
    """``ip netns exec NS`` for a fresh network namespace that has only loopback, or [] where that cannot be made
    (not root): then Ray still advertises and binds only 127.0.0.1 (RAY_LOOPBACK)."""
    name = f"epray-{os.getpid()}"
    for leftover in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split():
        if leftover.startswith("epray-") and leftover != name:
            owner = leftover.rsplit("-", 1)[-1]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                subprocess.run(["ip", "netns", "delete", leftover], capture_output=True)
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True)
    if made.returncode != 0:
        return []
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    return ["ip", "netns", "exec", name]


class RayHead(NamedTuple):
    address: str
    prefix: List[str]  # what the driver must run under to reach it (the namespace)
