"""Pull-based chunk scheduler over GPU slots `(node, gpu)`.

One thread per usable slot pulls the next chunk from a shared queue and runs the worker there, so a
fast GPU simply takes more chunks and a dead one stops taking any. Every failure is logged in full and
stored *before* its chunk goes back on the queue (to a different slot, after a backoff); a faulted GPU
is quarantined, a node failing too often is taken out for the rest of the call (circuit breaker), and
the call either returns every result or raises: partial results are never passed off as complete.

    report = run_chunks(config, chunks, sink=store.chunk_sink(run_id, step), executors=executors, ...)

Resume: chunks the sink already has a result for are not run again (`report.resumed` counts them).

Slots run chunks through long-lived slot workers by default (`slot_mode="workers"`: one worker process per
slot, heartbeats, restarts; see workers.py), one process per chunk (`slot_mode="per_chunk"`) or one Ray actor
per slot (`slot_mode="ray"`, see ray_runner.py); the keyword overrides the config's `scheduler.slot_mode`.
Every worker is stopped before the call returns or raises, Ctrl-C included, unless the caller passes a
`pool.WorkerPool`: then a call that returns leaves its healthy slots' workers up for the next call with the same
pool (their GPU cleanup is owed to the pool's close), and a call that raises still stops them all.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from cluster.config import ClusterConfig
from cluster.errors import HaltRequested, SchedulingError
from cluster.gpu.ledger import HealthLedger
from cluster.scheduler.cleanup import resolve_cleanup, run_cleanups
from cluster.scheduler.options import CleanupFn, Probe, SchedulerOptions, Validator, Verifier
from cluster.scheduler.policy import select_slots
from cluster.scheduler.pool import WorkerPool
from cluster.scheduler.progress import Progress
from cluster.scheduler.ray_backend import Backend
from cluster.scheduler.slots import SlotScheduler
from cluster.scheduler.types import ChunkSink, ChunkSpec, ScheduleReport, Slot
from cluster.transport.base import Executor

AUTO: Any = "auto"
ABORT_GRACE_S = 5.0  # how long a failed call waits for attempts still in flight to be stored


def _initial_slots(config: ClusterConfig, executors: Mapping[str, Executor], ledger: HealthLedger | None) -> list[Slot]:
    quarantined = list(ledger.entries()) if ledger is not None else []
    missing = [n.name for n in config.nodes if n.name not in executors]
    if missing:
        logger.warning(f"no executor for node(s) {', '.join(missing)}: they get no chunks")
    return select_slots(config, quarantined, nodes=set(executors))


def run_chunks(
    config: ClusterConfig,
    chunks: Sequence[ChunkSpec],
    *,
    sink: ChunkSink,
    executors: Mapping[str, Executor],
    worker_argv: Sequence[str],
    validate: Validator | None = None,
    verify: Verifier | None = None,
    ledger: HealthLedger | None = None,
    probe: Probe | None = AUTO,
    halt_check: Callable[[], bool] | None = None,
    progress: bool | None = None,
    cleanup: CleanupFn | None = AUTO,
    min_slots: int | None = None,
    label: str = "chunks",
    fetch_dir: Path | None = None,
    fetch_keys: Sequence[str] = (),
    progress_key: str | None = None,
    progress_unit: str = "items",
    slot_mode: str | None = None,
    pool: WorkerPool | None = None,
    ray_backend: Backend | None = None,
) -> ScheduleReport:
    """Run every chunk to a validated result, or raise SchedulingError / HaltRequested (never a partial report).

    sink: where progress is stored as it happens (RunStore.chunk_sink(run_id, step)); executors: one per node
    that may take work; probe: fresh GPU state after a failure ("auto": cluster.gpu.probe.probe_gpu);
    halt_check: polled twice a second; progress: rich bar (True), log lines (False), by TTY (None); cleanup:
    called with a node's executor after each batch ("auto": cluster.gpu.cleanup); min_slots: default the
    config's health.min_healthy_gpus, at least 1; slot_mode: "workers", "per_chunk" or "ray" (default: the
    config's scheduler.slot_mode); pool: an open WorkerPool whose live workers (or Ray actors) this call reuses and
    leaves up (not per_chunk; see pool.py; None: this call's workers are its own); ray_backend: how slot_mode "ray"
    reaches Ray (None: this process joins the cluster at the config's ray.address). The rest is described on
    SchedulerOptions.
    The error raised carries `.report`.
    """
    started = time.monotonic()
    unique = list({c.chunk_id: c for c in chunks}.values())
    sink.chunks_planned(unique)
    stored = sink.completed_results()
    wanted = {c.chunk_id for c in unique}
    done_before = {cid: res for cid, res in stored.items() if cid in wanted}
    todo = [c for c in unique if c.chunk_id not in done_before]
    report = ScheduleReport(results=dict(done_before), resumed=len(done_before))
    if done_before:
        logger.info(f"{label}: {len(done_before)} of {len(unique)} chunks already have stored results; skipping them")
    if not todo:
        report.seconds = time.monotonic() - started
        return report
    slots = _initial_slots(config, executors, ledger)
    if min_slots is None:
        min_slots = max(1, config.health.min_healthy_gpus)
    if len(slots) < min_slots:
        raise SchedulingError(
            f"{label}: {len(slots)} usable slot(s), at least {min_slots} needed (health.min_healthy_gpus): the other "
            "GPUs are excluded, quarantined or on nodes without an executor; fix: check `watcher gpus` and the config"
        )
    mode = slot_mode or config.scheduler.slot_mode
    if mode not in ("workers", "per_chunk", "ray"):
        raise SchedulingError(f"{label}: slot_mode {mode!r} is unknown; use 'workers', 'per_chunk' or 'ray'")
    rounds = math.ceil(len(todo) / len(slots)) if slots else 1
    options = SchedulerOptions(
        worker_argv=tuple(worker_argv),
        min_slots=min_slots,
        validate=validate,
        verify=verify,
        ledger=ledger,
        probe=_resolve_probe(probe, ledger, config),
        cleanup=resolve_cleanup(cleanup, config, ledger),
        fetch_dir=fetch_dir,
        fetch_keys=tuple(fetch_keys),
        progress_key=progress_key,
        progress_unit=progress_unit,
        label=label,
        slot_mode=mode,
        worker_lifetime_s=config.timeouts.job * (rounds + 1) * config.scheduler.max_attempts,
        ray_backend=ray_backend,
    )
    if mode == "per_chunk":
        pool = None  # a process per chunk: nothing to keep between calls
    with pool.call(slots) if pool is not None else contextlib.nullcontext():
        return _schedule(config, todo, slots, sink=sink, executors=executors, options=options, pool=pool,
                         report=report, started=started, halt_check=halt_check, progress=progress)  # fmt: skip


def _schedule(
    config: ClusterConfig,
    todo: list[ChunkSpec],
    slots: list[Slot],
    *,
    sink: ChunkSink,
    executors: Mapping[str, Executor],
    options: SchedulerOptions,
    pool: WorkerPool | None,
    report: ScheduleReport,
    started: float,
    halt_check: Callable[[], bool] | None,
    progress: bool | None,
) -> ScheduleReport:
    """The slot threads of one call, from start to the report (or the error); `report` holds the resumed
    results already."""
    label, mode = options.label, options.slot_mode
    wanted = set(report.results) | {c.chunk_id for c in todo}
    sched = SlotScheduler(config, todo, slots, sink=sink, executors=executors, options=options, pool=pool)
    bar = Progress(len(todo), label=label, enabled=progress, unit=options.progress_unit)
    threads = [
        threading.Thread(target=sched.slot_loop, args=(slot,), name=f"slot-{slot}", daemon=True) for slot in slots
    ]
    logger.info(
        f"{label}: {len(todo)} chunks over {len(slots)} slots on {len({s.node for s in slots})} node(s) ({mode})"
    )
    for thread in threads:
        thread.start()
    try:
        while True:
            with sched.cond:
                sched.cond.wait_for(lambda: not sched.remaining or sched.fatal is not None or not sched.live, 0.5)
                done, nfail = sched.completed, len(sched.failures)
                counted = sched.progress_total + sum(sched.live_progress.values())
                finished = not sched.remaining or sched.fatal is not None or not sched.live
            bar.update(done, nfail, counted)
            if finished:
                break
            if halt_check is not None and not sched.halting and halt_check():
                logger.warning(f"{label}: halt requested; waiting for chunks in flight, starting no new ones")
                with sched.cond:
                    sched.halting = True
                    sched.cond.notify_all()
        bar.update(sched.completed, len(sched.failures), sched.progress_total, force=True)
    except BaseException as err:  # Ctrl-C or a failing halt_check: the slots must stop taking work too
        with sched.cond:
            sched.fatal = sched.fatal or err
            sched.closed = True
            sched.cond.notify_all()
        sched.stop_workers(wait=1.0)  # nothing may keep running on the nodes
        if pool is not None:
            pool.discard_all(wait=1.0)
        raise
    finally:
        bar.close()
    for thread, slot in zip(threads, slots, strict=True):
        # a thread stuck on a node that was taken out (or after a fatal error) is not waited for: its
        # chunk was requeued, and whatever it returns later is dropped (see `closed`)
        if slot.node in sched.breaker.tripped:
            thread.join(0.1)
        else:
            thread.join(ABORT_GRACE_S if sched.fatal is not None else None)
    with sched.cond:
        sched.closed = True
        sched.cond.notify_all()
    missing = wanted - set(report.results) - set(sched.results)
    if pool is not None and sched.fatal is None and not missing:
        # the workers stay up for the pool's next call; a batch cleanup that came due at the very end is run
        # now (its node's workers stopped first), the end-of-call one is owed to the pool's close
        due = sched.cleanup_due - set(sched.breaker.tripped)
        for node in sorted(due):
            sched.stop_workers(node)
        if sched.cleanup is not None and due:
            sched.quarantine_found(run_cleanups(sched.cleanup, {n: executors[n] for n in due}), "cleanup")
        sched.hand_back(pool)
    else:
        sched.stop_workers()  # every slot worker, before the last cleanup and before returning
        if pool is not None:
            pool.discard_all()
            pool.took_part = set()  # cleaned below
        if sched.cleanup is not None:
            nodes = {n: executors[n] for n in (sched.took_part | sched.cleanup_due) - set(sched.breaker.tripped)}
            sched.quarantine_found(run_cleanups(sched.cleanup, nodes), "cleanup")
    report.results.update(sched.results)
    report.failures = list(sched.failures)
    report.slots_used = slots
    report.nodes_tripped = dict(sched.breaker.tripped)
    report.quarantined = list(sched.quarantined)
    report.executed = len(sched.results)
    report.seconds = time.monotonic() - started
    if sched.fatal is not None:
        err = sched.fatal
        if isinstance(err, SchedulingError):
            err = SchedulingError(f"{label}: {err}; {len(missing)} of {len(wanted)} chunks have no result")
        err.report = report  # type: ignore[attr-defined]
        raise err
    if missing:
        if sched.halting:
            raise HaltRequested(f"{label}: halted with {len(missing)} of {len(wanted)} chunks unfinished; use --resume")
        raise SchedulingError(f"{label}: {len(missing)} chunk(s) have no result and no failure was recorded")
    logger.info(
        f"{label}: {len(wanted)} chunks done in {report.seconds:.1f} s ({report.resumed} resumed, "
        f"{len(report.failures)} failed attempts, nodes out: {', '.join(report.nodes_tripped) or 'none'})"
    )
    return report


def _resolve_probe(probe: Probe | None, ledger: HealthLedger | None, config: ClusterConfig) -> Probe | None:
    """The "auto" probe: the GPU layer's failure probe bound to this call's ledger (so it reads kernel lines from the
    node's cursor and records them there, never twice) and the config's health policy."""
    if probe is not AUTO:
        return probe
    from cluster.gpu.probe import failure_probe

    return failure_probe(ledger, config.health)
