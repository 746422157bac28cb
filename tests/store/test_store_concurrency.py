"""Several processes writing one store at once, on both backends, through the Store API as bench workers do:
every device x variant pair is stored exactly once, however the writes interleave, and a writer killed mid-run
loses nothing it committed (``done_pairs`` tells a resumed run what is left)."""
from __future__ import annotations

import multiprocessing
import os
import signal
from typing import Any, List, Tuple

from edgeprune.results.store import Store
from support.manifests import MANIFEST

DEVICES = [f"dev{i}" for i in range(8)]
VARIANTS = [f"v{i}" for i in range(10)]


def _writer(db: str, run_id: int, worker: int, start: Any) -> int:
    """Store every pair (first as failed, then measured), in an order of this worker's own."""
    start.wait(60)
    pairs = [(d, v) for d in DEVICES for v in VARIANTS]
    if worker % 2:
        pairs.reverse()
    with Store.open(db, busy_timeout=5.0) as store:
        plan = store.record_plan(run_id, f"controller{worker}", {"status": "ok"})
        for device, variant in pairs:
            store.record(run_id, device, variant, {"status": "failed", "error_message": f"w{worker}"})
            store.record(run_id, device, variant, {"status": "ok", "p50_us": float(worker), "plan_id": plan})
    return len(pairs)


def test_two_processes_writing_the_same_pairs_store_each_pair_once(db):
    with Store.open(db) as store:
        run_id = store.create_run("/runs/shared", MANIFEST, {})
    context = multiprocessing.get_context("spawn")
    start = context.Manager().Event()
    with context.Pool(2) as pool:
        pending = [pool.apply_async(_writer, (db, run_id, worker, start)) for worker in (0, 1)]
        start.set()
        written = [p.get(timeout=300) for p in pending]
    assert written == [80, 80]
    with Store.open(db, create=False) as store:
        rows = store.results(run_id)
        plans = store.plans(run_id)
        done = store.done_pairs(run_id)
    pairs = [(r["device"], r["variant"]) for r in rows]
    assert len(pairs) == len(set(pairs)) == len(DEVICES) * len(VARIANTS)
    assert {r["attempts"] for r in rows} == {4} and {r["status"] for r in rows} == {"ok"}
    assert {r["plan_id"] for r in rows} <= {p["id"] for p in plans} and len(plans) == 2
    assert sorted(done) == sorted(pairs)


def _killed_writer(db: str, run_id: int, stop_after: int) -> None:
    """Store pairs one by one and die by SIGKILL after ``stop_after`` of them (no close, no cleanup)."""
    with Store.open(db) as store:
        for index, (device, variant) in enumerate((d, v) for d in DEVICES for v in VARIANTS):
            if index == stop_after:
                os.kill(os.getpid(), signal.SIGKILL)
            status = "failed" if index % 7 == 3 else "ok"
            store.record(run_id, device, variant, {"status": status})


def test_a_writer_killed_mid_run_keeps_what_it_stored_and_a_resume_finishes_the_rest(db):
    with Store.open(db) as store:
        run_id = store.create_run("/runs/killed", MANIFEST, {})
    process = multiprocessing.get_context("spawn").Process(target=_killed_writer, args=(db, run_id, 37))
    process.start()
    process.join(120)
    assert process.exitcode == -signal.SIGKILL
    with Store.open(db) as store:
        done = set(store.done_pairs(run_id))
        stored = store.results(run_id)
        assert len(stored) == 37 and len(done) == 37 - sum(1 for i in range(37) if i % 7 == 3)
        left: List[Tuple[str, str]] = [(d, v) for d in DEVICES for v in VARIANTS if (d, v) not in done]
        for device, variant in left:
            store.record(run_id, device, variant, {"status": "ok"})
        rows = store.results(run_id)
    assert len(rows) == len(DEVICES) * len(VARIANTS) and {r["status"] for r in rows} == {"ok"}
    retried = [r for r in rows if r["attempts"] == 2]
    assert len(retried) == 37 - len(done)  # the failed ones, stored again in place
