"""The slot threads of one `run_chunks` call and the state they share under one condition variable.

Each usable slot runs `slot_loop`: take the best chunk for this slot (pure rules in scheduler_policy),
run it through the slot's `SlotRunner` (runner.py: a long-lived worker, a Ray actor, or a process per chunk), then
record the outcome. The order inside `_failed` is the contract: log in full, store, quarantine if the GPU
shows faults, and only then put the chunk back on the queue. The scheduler is also its runners'
`SlotHost`; what each node allows (worker starts in flight and their stagger, live workers by memory and after
an OOM kill, rocm-smi for failure probes and batch cleanups) is node_limits.NodeLimits, under the same lock.

With a `pool.WorkerPool` the slots' runners are the pool's (live workers are reused, see pool.py): a slot
that ends because the call's work is done leaves its worker up; one that ends for any other reason (its GPU
quarantined, its node taken out, the memory cap, an error, a halt) stops it. The rocm-smi times, the nodes
owing a cleanup and the count of completed chunks that paces batch cleanups come from the pool and go back
to it (run.py), so a pooled call paces cleanups as one long call would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from loguru import logger

from cluster.config import ClusterConfig
from cluster.errors import SchedulingError
from cluster.files import installed_version
from cluster.gpu.health import GpuHealth, HealthStatus
from cluster.gpu.kernel_log import oom_line
from cluster.gpu.ledger import HealthLedger
from cluster.scheduler import ray_backend
from cluster.scheduler.attempt import describe_failure, health_state, with_gpu_state
from cluster.scheduler.cleanup import run_cleanups
from cluster.scheduler.node_limits import NodeLimits
from cluster.scheduler.options import CleanupFn, Probe, SchedulerOptions
from cluster.scheduler.policy import (
    NodeBreaker,
    QueuedChunk,
    backoff_delay,
    next_ready_time,
    out_of_attempts,
    pick_next,
)
from cluster.scheduler.pool import WorkerPool
from cluster.scheduler.ray_backend import Backend
from cluster.scheduler.ray_runner import RayRunner
from cluster.scheduler.runner import PerChunkRunner, PooledRunner, SlotRunner, WorkerRefused, stop_runners
from cluster.scheduler.types import DISTRUST_KINDS, ChunkFailure, ChunkSink, ChunkSpec, Slot
from cluster.scheduler.workers import WorkerRunner
from cluster.transport.base import Executor

DISTRUSTED_SLOTS_PER_NODE = 2  # slots of one node answering wrongly before the node is taken out


def _count(value: Any) -> int:
    """A result's progress count; anything but a non-negative int counts as 0 (a node's word is not trusted)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class SlotScheduler:
    def __init__(
        self,
        config: ClusterConfig,
        todo: list[ChunkSpec],
        slots: list[Slot],
        *,
        sink: ChunkSink,
        executors: Mapping[str, Executor],
        options: SchedulerOptions,
        pool: WorkerPool | None = None,
    ) -> None:
        self.config = config
        self.pool = pool if options.slot_mode != "per_chunk" else None
        self.policy = config.scheduler
        self.sink = sink
        self.executors = executors
        self.options = options
        self.ledger: HealthLedger | None = options.ledger
        self.probe: Probe | None = options.probe
        self.cleanup: CleanupFn | None = options.cleanup
        self.min_slots = options.min_slots
        self.cond = threading.Condition()
        self.queue = [QueuedChunk(spec) for spec in todo]
        self.remaining = {spec.chunk_id for spec in todo}
        self.results: dict[str, dict[str, Any]] = {}
        self.failures: list[ChunkFailure] = []
        self.live: set[Slot] = set(slots)
        self.slots = list(slots)
        self.quarantined: list[Slot] = []
        self.distrusted: dict[str, set[Slot]] = {}  # slots whose answers failed verification, by node
        self.breaker = NodeBreaker(self.policy)
        self.inflight: dict[str, int] = {node: 0 for node in self.executors}
        self.running: dict[Slot, QueuedChunk] = {}
        self.superseded: set[int] = set()  # id() of in-flight items whose chunk was requeued elsewhere
        self.copied: set[str] = set()  # chunk ids requeued that way
        self.took_part: set[str] = set(self.pool.took_part) if self.pool else set()  # ran chunks since last cleanup
        self.cleanup_due: set[str] = set()
        self.cleaning: set[str] = set()
        self.completed = 0
        self.completed_before = self.pool.completed if self.pool else 0  # paces batch cleanups across calls
        self.progress_total = 0  # sum of options.progress_key over the results
        self.fatal: BaseException | None = None
        self.halting = False
        self.closed = False  # run_chunks returned: late attempts must not touch the sink any more
        self.version = installed_version() if options.slot_mode != "per_chunk" else ""
        self.ray: Backend | None = None
        self.ray_nodes: dict[str, str] = {}  # node name -> its Ray node's id (slot_mode ray)
        if options.slot_mode == "ray":
            self.ray = options.ray_backend or ray_backend.connect(config.ray.address)
            self.ray_nodes = self.ray.node_ids(config)
        self.limits = NodeLimits(
            config, self.cond, smi_used=self.pool.smi_used if self.pool else None,
            oom_caps=self.pool.oom_caps if self.pool else None,
        )  # fmt: skip
        self.runners: dict[Slot, SlotRunner] = {slot: self._runner(slot) for slot in slots}
        self.parked: set[Slot] = set()  # slots stopped to keep their node's workers within its memory
        self.live_progress: dict[Slot, int] = {}  # progress of chunks in flight, from heartbeats

    def _runner(self, slot: Slot) -> SlotRunner:
        node, executor = self.config.node(slot.node), self.executors[slot.node]
        if self.options.slot_mode == "per_chunk":
            return PerChunkRunner(executor, node, slot, options=self.options, timeouts=self.config.timeouts)

        def make() -> PooledRunner:
            if self.ray is not None:
                return RayRunner(
                    self.ray, executor, node, slot, node_id=self.ray_nodes.get(slot.node), options=self.options,
                    policy=self.policy, timeouts=self.config.timeouts, host=self, version=self.version,
                )  # fmt: skip
            return WorkerRunner(
                executor, node, slot, options=self.options, policy=self.policy, timeouts=self.config.timeouts,
                host=self, lifetime_s=self.options.worker_lifetime_s, version=self.version,
            )  # fmt: skip

        if self.pool is None:
            return make()
        runner = self.pool.runner(slot, executor, make)
        runner.rebind(self.options, self, self.options.worker_lifetime_s)
        return runner

    # --- SlotHost: what the runners ask of the scheduler ----------------------------------------------
    def start_turn(self, slot: Slot) -> bool:
        return self.limits.start_turn(slot, lambda: self.closed or self.fatal is not None)

    def start_done(self, slot: Slot) -> None:
        self.limits.start_done(slot)

    def chunk_progress(self, slot: Slot, count: int) -> None:
        with self.cond:
            if slot in self.running:
                self.live_progress[slot] = count

    def worker_memory(self, slot: Slot, rss: int, mem_total: int) -> None:
        self.limits.worker_memory(slot, rss, mem_total, sum(1 for s in self.slots if s.node == slot.node))

    def stop_workers(self, node: str | None = None, wait: float = 2.0) -> None:
        """Stop the slot workers of one node (before its cleanup) or of every node (end of the call); a pool's
        runners stay in the pool, stopped (their next chunk starts a worker)."""
        stop_runners([r for s, r in self.runners.items() if node is None or s.node == node], wait)

    def hand_back(self, pool: WorkerPool) -> None:
        """The call ended well: the workers of slots it quarantined or of nodes it took out are stopped and
        forgotten, the others stay up for the next call; what paces cleanups goes back to the pool."""
        with self.cond:
            tripped = set(self.breaker.tripped)
            gone = [s for s in self.runners if s.node in tripped or s in self.quarantined]
            pool.took_part = self.took_part - tripped
            pool.completed = self.completed_before + self.completed
            pool.smi_used = dict(self.limits.smi_used)
            pool.oom_caps = dict(self.limits.oom_caps)
        pool.discard(gone)
        pool.owe_cleanup(self.cleanup, self.executors, self.ledger)

    # --- slot threads -----------------------------------------------------------------------------
    def slot_loop(self, slot: Slot) -> None:
        failed = False
        try:
            while True:
                action = self._take(slot)
                if action is None:
                    return
                kind, value = action
                if kind == "cleanup":
                    try:
                        self.stop_workers(value)  # cleanup_gpus.sh needs the GPUs idle
                        self.limits.smi_running(value)
                        self.quarantine_found(run_cleanups(self.cleanup, {value: self.executors[value]}), "cleanup")
                    finally:
                        with self.cond:
                            self.cleaning.discard(value)
                            self.cleanup_due.discard(value)
                            self.cond.notify_all()
                else:
                    self._execute(slot, value)
        except BaseException as err:  # a bug or a store failure: stop everything, report it in the caller
            failed = True
            if self.closed:
                logger.debug(f"late error on {slot} after the call returned: {err}")
                return
            logger.opt(exception=err).error(f"scheduler slot {slot} stopped by an unexpected error: {err}")
            self._set_fatal(err)
        finally:
            with self.cond:
                done_well = not failed and self.fatal is None and not self.halting and not self.remaining
                healthy = slot not in self.quarantined and slot.node not in self.breaker.tripped
                keep = self.pool is not None and done_well and healthy and slot not in self.parked
            if not keep:
                self.runners[slot].stop()
            with self.cond:
                self.live.discard(slot)
                usable = len(self.live) + len(self.parked)
                if self.remaining and usable < self.min_slots and self.fatal is None and not self.halting:
                    self.fatal = SchedulingError(self._no_slots_reason())
                self.cond.notify_all()

    def _take(self, slot: Slot) -> tuple[str, Any] | None:
        with self.cond:
            while True:
                if self.fatal is not None or self.halting or not self.remaining:
                    return None
                if slot.node in self.breaker.tripped or slot in self.quarantined:
                    return None
                if self.limits.over_cap_locked(slot, self.live):
                    self.parked.add(slot)
                    self.live.discard(slot)
                    logger.warning(f"slot {slot} stops: {self.limits.why_capped(slot.node)}")
                    return None
                if slot.node in self.cleanup_due:
                    if self.inflight[slot.node] == 0 and slot.node not in self.cleaning:
                        self.cleaning.add(slot.node)
                        return ("cleanup", slot.node)
                    self.cond.wait(1.0)
                    continue
                now = time.monotonic()
                index = pick_next(self.queue, slot, self.live, now, self.breaker.failure_rates())
                if index is not None:
                    item = self.queue.pop(index)
                    item.attempts += 1
                    item.tried = item.tried | {slot}
                    self.inflight[slot.node] += 1
                    self.running[slot] = item
                    self.took_part.add(slot.node)
                    return ("run", item)
                ready = next_ready_time(self.queue, now)
                self.cond.wait(min(1.0, ready - now) if ready is not None else 1.0)

    def _execute(self, slot: Slot, item: QueuedChunk) -> None:
        chunk, attempt = item.spec, item.attempts
        if attempt > 1:
            logger.warning(
                f"retrying chunk {chunk.chunk_id} attempt {attempt}/{self.policy.max_attempts} on {slot} "
                f"(earlier slots: {', '.join(sorted(map(str, item.tried - {slot})))})"
            )
        self.sink.attempt_started(chunk.chunk_id, attempt, slot)
        began = time.monotonic()
        try:
            outcome = self.runners[slot].run(chunk, attempt)
        except WorkerRefused as refused:
            self._refused(slot, item, refused.reason)
            return
        if isinstance(outcome, ChunkFailure):
            self._failed(slot, item, outcome)
        else:
            self._succeeded(slot, item, outcome, time.monotonic() - began)

    def _refused(self, slot: Slot, item: QueuedChunk, reason: str) -> None:
        """The node's worker cannot be used: the node is out for this call; the chunk goes back untried."""
        logger.error(f"node {slot.node} taken out for the rest of this step: {reason}")
        with self.cond:
            self._finished_locked(slot, item)
            item.attempts -= 1
            item.tried = item.tried - {slot}
            if item.spec.chunk_id in self.remaining:
                self.queue.insert(0, item)
            first = slot.node not in self.breaker.tripped
            if first:
                self.breaker.tripped[slot.node] = reason
                self._requeue_running_on(slot.node)
            self.cond.notify_all()
        if first:
            self.sink.node_tripped(slot.node, reason)

    def _succeeded(self, slot: Slot, item: QueuedChunk, result: dict[str, Any], duration: float) -> None:
        chunk_id = item.spec.chunk_id
        if self.closed:
            logger.debug(f"late result for chunk {chunk_id} from {slot} after the call returned: dropped")
            return
        if not self.sink.chunk_done(chunk_id, slot, result, duration):
            logger.debug(f"chunk {chunk_id}: a result was already stored; keeping the first one")
            result = self.sink.completed_results().get(chunk_id, result)
        with self.cond:
            self._finished_locked(slot, item)
            self.breaker.record(slot.node, failed=False)
            if chunk_id in self.remaining:
                self.remaining.discard(chunk_id)
                if chunk_id in self.copied:  # a copy queued when its node was taken out is not needed now
                    self.queue = [q for q in self.queue if q.spec.chunk_id != chunk_id]
                self.results[chunk_id] = result
                self.completed += 1
                if self.options.progress_key:
                    self.progress_total += _count(result.get(self.options.progress_key))
                batch = self.policy.cleanup_batch_size
                if self.cleanup is not None and (self.completed_before + self.completed) % batch == 0:
                    now = time.monotonic()
                    free = self.limits.smi_free_locked
                    due = {n for n in self.took_part - set(self.breaker.tripped) if free(n, now)}
                    self.cleanup_due |= due
                    self.took_part -= due
            self.cond.notify_all()

    def _failed(self, slot: Slot, item: QueuedChunk, failure: ChunkFailure) -> None:
        if self.closed:
            logger.debug(f"late failure of chunk {failure.chunk_id} on {slot} after the call returned: {failure.error}")
            return
        node = self.config.node(slot.node)
        faulted = False
        if self.probe is not None and node.gpu_kind != "cpu" and failure.kind != "bad_spec":
            try:
                health = self.limits.probe(slot, self.probe, self.executors[slot.node])
                if health is None:
                    state = {
                        "status": "unknown",
                        "evidence": [
                            f"not probed: rocm-smi ran on {slot.node} less than "
                            f"{self.policy.rocm_smi_min_interval_s:g} s ago (rocm_smi_min_interval_s)"
                        ],
                    }
                else:
                    state, faulted = health_state(health), health.status == HealthStatus.FAULTED
            except Exception as err:  # the probe failing is itself evidence (node gone), not a reason to stop
                state = {"status": "unknown", "evidence": [f"probe failed: {err}"]}
            failure = with_gpu_state(failure, state)
            failure = self._oom_killed(slot, failure)
        logger.error(describe_failure(failure, self.policy.max_attempts))
        self.sink.chunk_failed(failure)  # stored before the chunk can be retried
        distrusted = self._distrust(slot, failure) if failure.kind in DISTRUST_KINDS else None
        if faulted:
            evidence = list((failure.gpu_state or {}).get("evidence") or [])
            reason = f"faulted after chunk {failure.chunk_id} failed ({failure.kind}): {failure.error}"[:500]
            self._quarantine(slot, reason, evidence)
        elif self.ledger is not None and failure.gpu_state is not None and failure.gpu_state["status"] != "unknown":
            self.ledger.record_check(slot.node, slot.gpu, failure.gpu_state["status"], failure.gpu_state["evidence"])
        tripped: str | None = None
        with self.cond:
            if distrusted is not None and slot.node not in self.breaker.tripped:
                tripped = self.breaker.tripped[slot.node] = distrusted
            self.failures.append(failure)
            superseded = self._finished_locked(slot, item)
            if failure.retryable and tripped is None:
                tripped = self.breaker.record(slot.node, failed=True)
            if failure.kind != "transport":
                item.hard_failures += 1
            item.errors.append(f"{slot} {failure.kind}: {failure.error}")
            if superseded or item.spec.chunk_id not in self.remaining:
                pass  # another copy of this chunk is queued, running or done: nothing to retry
            elif not failure.retryable:
                self._set_fatal_locked(
                    SchedulingError(f"chunk {item.spec.chunk_id} rejected as a bad job spec: {failure.error}")
                )
            elif out_of_attempts(item, self.policy):
                self._set_fatal_locked(
                    SchedulingError(
                        f"chunk {item.spec.chunk_id} failed {item.attempts} attempts "
                        f"({'; '.join(item.errors[-3:])}); the step is incomplete"
                    )
                )
            else:
                item.ready_at = time.monotonic() + backoff_delay(item.attempts, self.policy)
                self.queue.insert(0, item)
            if tripped is not None:
                self._requeue_running_on(slot.node)
            self.cond.notify_all()
        if tripped is not None:
            logger.error(f"node {slot.node} taken out for the rest of this step: {tripped}")
            self.sink.node_tripped(slot.node, tripped)

    def _oom_killed(self, slot: Slot, failure: ChunkFailure) -> ChunkFailure:
        """A worker the kernel's OOM killer took leaves no word of its own: the failure says so with the
        kernel line, and the node runs one slot worker fewer from now on (never fewer than one)."""
        line = oom_line((failure.gpu_state or {}).get("evidence") or [])
        if line is None:
            return failure
        with self.cond:
            cap = self.limits.oom_killed_locked(slot.node, sum(1 for s in self.live if s.node == slot.node))
            self.cond.notify_all()
        logger.warning(f"{slot.node}: the OOM killer took a worker; at most {cap} slot worker(s) there from now on")
        return replace(failure, error=f"OOM-killed: {line} ({failure.error})")

    def _distrust(self, slot: Slot, failure: ChunkFailure) -> str | None:
        """A slot that answered wrongly is quarantined with the evidence; returns the reason to take its node
        out when that node now has DISTRUSTED_SLOTS_PER_NODE such slots."""
        what = "missed the known answer planted in its chunk" if failure.kind == "canary" else (
            "answered results that do not reproduce when the coordinator recomputes them")  # fmt: skip
        self._quarantine(slot, f"{what} (chunk {failure.chunk_id})", [failure.error[:500]])
        with self.cond:
            self.distrusted.setdefault(slot.node, set()).add(slot)
            count = len(self.distrusted[slot.node])
        if count >= DISTRUSTED_SLOTS_PER_NODE:
            return f"{count} of its slots answered wrongly ({what}): the node's answers are not trusted"
        return None

    def _quarantine(self, slot: Slot, reason: str, evidence: list[str]) -> None:
        """Record in the ledger (so later steps skip the GPU too) and stop this call's slot."""
        if self.ledger is not None:
            self.ledger.quarantine(slot.node, slot.gpu, reason, evidence, "scheduler")
        logger.error(f"GPU {slot} quarantined: {'; '.join(evidence) or reason}")
        with self.cond:
            if slot not in self.quarantined:
                self.quarantined.append(slot)
            self.cond.notify_all()

    def quarantine_found(self, found: list[GpuHealth], where: str) -> None:
        for health in found:
            self._quarantine(Slot(health.node, health.index), f"faulted in GPU {where}", list(health.evidence))

    def _finished_locked(self, slot: Slot, item: QueuedChunk) -> bool:
        """Bookkeeping when an attempt returns; True if its chunk had been requeued elsewhere meanwhile."""
        self.inflight[slot.node] -= 1
        self.running.pop(slot, None)
        self.live_progress.pop(slot, None)
        if id(item) in self.superseded:
            self.superseded.discard(id(item))
            return True
        return False

    def _requeue_running_on(self, node: str) -> None:
        """A node just taken out may be hung: its chunks in flight are queued again for other slots at once
        (whichever copy returns a valid result first wins), instead of waiting out the job timeout."""
        for slot, item in self.running.items():
            if slot.node == node and item.spec.chunk_id in self.remaining and id(item) not in self.superseded:
                self.superseded.add(id(item))
                copy = QueuedChunk(item.spec, item.attempts, item.hard_failures, item.tried, 0.0, list(item.errors))
                self.queue.insert(0, copy)
                self.copied.add(item.spec.chunk_id)
                logger.warning(f"chunk {item.spec.chunk_id} still running on {slot} of {node}: queued again elsewhere")

    def _set_fatal(self, err: BaseException) -> None:
        with self.cond:
            self._set_fatal_locked(err)
            self.cond.notify_all()

    def _set_fatal_locked(self, err: BaseException) -> None:
        if self.fatal is None:
            self.fatal = err

    def _no_slots_reason(self) -> str:
        gone = [f"{node} ({reason})" for node, reason in self.breaker.tripped.items()]
        gone += [f"{slot} (quarantined)" for slot in self.quarantined]
        return (
            f"{len(self.live)} usable slot(s) left, at least {self.min_slots} needed, with "
            f"{len(self.remaining)} chunk(s) unfinished; taken out: {', '.join(gone) or 'slots stopped'}"
        )
