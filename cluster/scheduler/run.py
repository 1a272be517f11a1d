"""Pull-based chunk scheduler over GPU slots `(node, gpu)`.

One thread per usable slot pulls the next chunk from a shared queue and runs the worker there, so a
fast GPU simply takes more chunks and a dead one stops taking any. Every failure is logged in full and
stored *before* its chunk goes back on the queue (to a different slot, after a backoff); a faulted GPU
is quarantined, a node failing too often is taken out for the rest of the call (circuit breaker), and
the call either returns every result or raises: partial results are never passed off as complete.

    report = run_chunks(config, chunks, sink=store.chunk_sink(run_id, step), executors=executors, ...)

Resume: chunks the sink already has a result for are not run again (`report.resumed` counts them).

Slots run chunks through long-lived slot workers by default (`slot_mode="workers"`: one worker process per
slot, heartbeats, restarts; see workers.py), one process per chunk (`slot_mode="per_chunk"`), or slot workers
kept by a Ray actor on each slot's node (`slot_mode="ray"`, see ray_slots/runner.py); the keyword overrides the
config's `scheduler.slot_mode`. Every worker is stopped before the call returns or
raises, Ctrl-C included, unless the caller passes a `pool.WorkerPool`: then a call that returns leaves its
healthy slots' workers up for the next call with the same pool (their GPU cleanup is owed to the pool's
close), and a call that raises still stops them all.
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
from cluster.scheduler.cleanup import resolve_cleanup
from cluster.scheduler.options import CleanupFn, Probe, SchedulerOptions, Validator, Verifier
from cluster.scheduler.policy import select_slots
from cluster.scheduler.pool import WorkerPool
from cluster.scheduler.progress import Progress
from cluster.scheduler.ray_slots.backend import Backend
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
    progress: bool | Progress | None = None,
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
    halt_check: polled twice a second, and before anything starts; progress: rich bar (True), log lines (False),
    by TTY (None), or an open `Progress` spanning several calls (a step's rounds: one line for all); cleanup:
    called with a node's executor after each batch ("auto": cluster.gpu.cleanup); min_slots: default the
    config's health.min_healthy_gpus, at least 1; slot_mode: "workers", "per_chunk" or "ray" (default: the
    config's scheduler.slot_mode); pool: an open WorkerPool whose live workers this call reuses and leaves up
    (workers and ray; see pool.py; None: this call's workers are its own); ray_backend: how slot_mode "ray"
    reaches Ray (None: this process joins the cluster at the config's ray.address). The rest is described on
    SchedulerOptions.
    The error raised carries `.report`.
    """
    started = time.monotonic()
    todo, report = _plan(chunks, sink, label)
    if not todo:
        report.seconds = time.monotonic() - started
        return report
    if halt_check is not None and halt_check():  # a halt is honoured between calls too (a step's rounds), not
        raise HaltRequested(f"{label}: halted before starting {len(todo)} chunk(s); `watcher run --resume` continues")
    slots = _initial_slots(config, executors, ledger)
    options = _options(
        config, slots, len(todo), worker_argv=tuple(worker_argv), min_slots=min_slots, slot_mode=slot_mode,
        validate=validate, verify=verify, ledger=ledger, probe=_resolve_probe(probe, ledger, config),
        cleanup=resolve_cleanup(cleanup, config, ledger), fetch_dir=fetch_dir, fetch_keys=tuple(fetch_keys),
        progress_key=progress_key, progress_unit=progress_unit, label=label, ray_backend=ray_backend,
    )  # fmt: skip
    if options.slot_mode == "per_chunk":
        pool = None  # a process per chunk: nothing to keep between calls
    call = Call(config, sink, executors, options, pool, halt_check, progress)
    with pool.call(slots) if pool is not None else contextlib.nullcontext():
        return call.run(todo, slots, report, started)


def _plan(chunks: Sequence[ChunkSpec], sink: ChunkSink, label: str) -> tuple[list[ChunkSpec], ScheduleReport]:
    """Register the chunks with the sink; (the ones still to run, a report holding the stored results)."""
    unique = list({c.chunk_id: c for c in chunks}.values())
    sink.chunks_planned(unique)
    stored = sink.completed_results()
    wanted = {c.chunk_id for c in unique}
    done_before = {cid: res for cid, res in stored.items() if cid in wanted}
    if done_before:
        logger.info(f"{label}: {len(done_before)} of {len(unique)} chunks already have stored results; skipping them")
    todo = [c for c in unique if c.chunk_id not in done_before]
    return todo, ScheduleReport(results=dict(done_before), resumed=len(done_before))


def _options(
    config: ClusterConfig, slots: list[Slot], chunks: int, *, min_slots: int | None, slot_mode: str | None,
    label: str, **caller: Any,
) -> SchedulerOptions:  # fmt: skip
    """The call's options, its slots checked: enough of them (health.min_healthy_gpus), a known slot mode."""
    needed = min_slots if min_slots is not None else max(1, config.health.min_healthy_gpus)
    if len(slots) < needed:
        raise SchedulingError(
            f"{label}: {len(slots)} usable slot(s), at least {needed} needed (health.min_healthy_gpus): the other "
            "GPUs are excluded, quarantined or on nodes without an executor; fix: check `watcher gpus` and the config"
        )
    mode = slot_mode or config.scheduler.slot_mode
    if mode not in ("workers", "per_chunk", "ray"):
        raise SchedulingError(f"{label}: slot_mode {mode!r} is unknown; use 'workers', 'per_chunk' or 'ray'")
    rounds = math.ceil(chunks / len(slots)) if slots else 1
    lifetime = config.timeouts.job * (rounds + 1) * config.scheduler.max_attempts
    return SchedulerOptions(min_slots=needed, slot_mode=mode, label=label, worker_lifetime_s=lifetime,
                            fetch_max_bytes=config.scheduler.fetch_max_bytes, **caller)  # fmt: skip


class Call:
    """One call's slot threads, from start to the report (or the error): the policy of a call, in order."""

    def __init__(
        self, config: ClusterConfig, sink: ChunkSink, executors: Mapping[str, Executor], options: SchedulerOptions,
        pool: WorkerPool | None, halt_check: Callable[[], bool] | None, progress: bool | Progress | None,
    ) -> None:  # fmt: skip
        self.config, self.sink, self.executors, self.options = config, sink, executors, options
        self.pool, self.halt_check, self.progress = pool, halt_check, progress

    def run(self, todo: list[ChunkSpec], slots: list[Slot], report: ScheduleReport, started: float) -> ScheduleReport:
        label = self.options.label
        wanted = set(report.results) | {c.chunk_id for c in todo}
        sched = SlotScheduler(self.config, todo, slots, sink=self.sink, executors=self.executors,
                              options=self.options, pool=self.pool)  # fmt: skip
        logger.log(self._level, f"{label}: {len(todo)} chunks over {len(slots)} slots on "
                   f"{len({s.node for s in slots})} node(s) ({self.options.slot_mode})")  # fmt: skip
        threads = [threading.Thread(target=sched.slot_loop, args=(s,), name=f"slot-{s}", daemon=True) for s in slots]
        for thread in threads:
            thread.start()
        self._watch(sched, len(todo))
        self._join(sched, threads, slots)
        sched.close()
        missing = wanted - set(report.results) - set(sched.chunks.results)
        self._wind_down(sched, missing)
        return self._report(sched, report, slots, started, wanted, missing)

    @property
    def _shared(self) -> bool:
        """The caller's display spans several calls (a step's rounds): this call's own lines are no news."""
        return isinstance(self.progress, Progress)

    @property
    def _level(self) -> str:
        return "DEBUG" if self._shared else "INFO"

    def _watch(self, sched: SlotScheduler, total: int) -> None:
        """Until the call is over: progress shown, the halt check polled; Ctrl-C (or a failing halt check)
        stops the slots and every worker before it travels on."""
        label = self.options.label
        progress = self.progress
        bar = progress if isinstance(progress, Progress) else Progress(0, label=label, enabled=progress,
                                                                        unit=self.options.progress_unit)  # fmt: skip
        bar.begin_call(total)
        try:
            while True:
                with sched.cond:
                    sched.cond.wait_for(sched.finished, 0.5)
                    done, failed, counted = sched.counts()
                    over = sched.finished()
                bar.update(done, failed, counted)
                if over:
                    break
                if self.halt_check is not None and not sched.halting and self.halt_check():
                    logger.warning(f"{label}: halt requested; waiting for chunks in flight, starting no new ones")
                    sched.halt()
            bar.update(sched.chunks.completed, len(sched.chunks.failures), sched.chunks.progress_total,
                       force=not self._shared)  # fmt: skip
        except BaseException as err:
            sched.abort(err)
            if self.pool is not None:
                self.pool.discard_all(wait=1.0)
            raise
        finally:
            bar.end_call()
            if not self._shared:
                bar.close()

    @staticmethod
    def _join(sched: SlotScheduler, threads: list[threading.Thread], slots: list[Slot]) -> None:
        """A thread stuck on a node that was taken out (or after a fatal error) is not waited for: its chunk was
        requeued, and whatever it returns later is dropped (`closed`)."""
        for thread, slot in zip(threads, slots, strict=True):
            if slot.node in sched.breaker.tripped:
                thread.join(0.1)
            else:
                thread.join(ABORT_GRACE_S if sched.fatal is not None else None)

    def _wind_down(self, sched: SlotScheduler, missing: set[str]) -> None:
        """Workers and cleanups at the end: with a pool and a call that went well, the workers stay up (a batch
        cleanup due at the very end runs now, the end-of-call one is owed to the pool's close); otherwise every
        worker is stopped, then the nodes that ran chunks are cleaned."""
        tripped = set(sched.breaker.tripped)
        if self.pool is not None and sched.fatal is None and not missing:
            sched.clean(sorted(sched.cleanups.due - tripped), batch=False)
            sched.hand_back(self.pool)
            return
        sched.stop_workers()
        if self.pool is not None:
            self.pool.discard_all()
            self.pool.took_part = set()  # cleaned below
        sched.clean(sorted(sched.cleanups.owed(tripped)), batch=False)

    def _report(
        self, sched: SlotScheduler, report: ScheduleReport, slots: list[Slot], started: float, wanted: set[str],
        missing: set[str],
    ) -> ScheduleReport:  # fmt: skip
        label = self.options.label
        report.results.update(sched.chunks.results)
        report.failures = list(sched.chunks.failures)
        report.slots_used = slots
        report.nodes_tripped = dict(sched.breaker.tripped)
        report.quarantined = list(sched.slots.quarantined)
        report.executed = len(sched.chunks.results)
        report.seconds = time.monotonic() - started
        if sched.fatal is not None:
            err = sched.fatal
            if isinstance(err, SchedulingError):
                err = SchedulingError(f"{label}: {err}; {len(missing)} of {len(wanted)} chunks have no result")
            err.report = report  # type: ignore[attr-defined]
            raise err
        if missing:
            if sched.halting:
                raise HaltRequested(f"{label}: halted with {len(missing)} of {len(wanted)} chunks unfinished; "
                                    "use --resume")  # fmt: skip
            raise SchedulingError(f"{label}: {len(missing)} chunk(s) have no result and no failure was recorded")
        logger.log(
            self._level,
            f"{label}: {len(wanted)} chunks done in {report.seconds:.1f} s ({report.resumed} resumed, "
            f"{len(report.failures)} failed attempts, nodes out: {', '.join(report.nodes_tripped) or 'none'})",
        )
        return report


def _resolve_probe(probe: Probe | None, ledger: HealthLedger | None, config: ClusterConfig) -> Probe | None:
    """The "auto" probe: the GPU layer's failure probe bound to this call's ledger (so it reads kernel lines from the
    node's cursor and records them there, never twice) and the config's health policy."""
    if probe is not AUTO:
        return probe
    from cluster.gpu.probe import failure_probe

    return failure_probe(ledger, config.health)
