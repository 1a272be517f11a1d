"""The slot threads of one `run_chunks` call and the state they share under one condition variable.

Each usable slot runs `slot_loop`: take the best chunk for this slot (pure rules in policy.py), run it through
the slot's `SlotRunner` (a long-lived worker, a process per chunk, a worker kept by a Ray actor), then record
the outcome (outcomes.py: the order inside a failure is the contract: log in full, store, quarantine if the GPU
shows faults, and only then put the chunk back on the queue). What they share is held in small objects, each
with its own methods: the chunks (`board.ChunkQueue`), the slots (`board.SlotTable`), each node's limits
(`node_limits.NodeLimits`: worker starts, live workers by memory and after an OOM kill, rocm-smi pacing), the
GPU cleanups owed (`cleanup.CleanupPacer`) and the circuit breaker (`policy.NodeBreaker`). The scheduler is also
its runners' `SlotHost`.

With a `pool.WorkerPool` the slots' runners are the pool's (live workers are reused, see pool.py): a slot
that ends because the call's work is done leaves its worker up; one that ends for any other reason (its GPU
quarantined, its node taken out, the memory cap, an error, a halt) stops it. The rocm-smi times, the nodes
owing a cleanup and the count of completed chunks that paces batch cleanups come from the pool and go back
to it (`hand_back`), so a pooled call paces cleanups as one long call would.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from loguru import logger

from cluster.config import ClusterConfig
from cluster.errors import SchedulingError
from cluster.files import installed_version
from cluster.scheduler.board import ChunkQueue, SlotTable
from cluster.scheduler.cleanup import CleanupPacer, run_cleanups
from cluster.scheduler.node_limits import NodeLimits
from cluster.scheduler.options import SchedulerOptions
from cluster.scheduler.outcomes import Outcomes
from cluster.scheduler.per_chunk import PerChunkRunner
from cluster.scheduler.policy import NodeBreaker, QueuedChunk
from cluster.scheduler.pool import WorkerPool
from cluster.scheduler.ray_slots import backend as ray_backend
from cluster.scheduler.ray_slots.backend import Backend
from cluster.scheduler.ray_slots.runner import RayRunner
from cluster.scheduler.runner import PooledRunner, SlotRunner, stop_runners
from cluster.scheduler.types import ChunkSink, ChunkSpec, Slot
from cluster.scheduler.workers import WorkerRunner
from cluster.transport.base import Executor


class SlotScheduler(Outcomes):
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
        self.policy = config.scheduler
        self.pool = pool if options.slot_mode != "per_chunk" else None
        self.sink = sink
        self.executors = executors
        self.options = options
        self.cond = threading.Condition()
        self.version = installed_version()
        self.ray: Backend | None = None
        self.ray_nodes: dict[str, str] = {}  # node name -> its Ray node's id (slot_mode ray)
        if options.slot_mode == "ray":
            self.ray = options.ray_backend or ray_backend.connect(config.ray.address)
            self.ray_nodes = self.ray.node_ids(config)
        self.chunks = ChunkQueue(todo, options.progress_key)
        self.breaker = NodeBreaker(self.policy)
        self.inflight: dict[str, int] = {node: 0 for node in executors}
        pooled = self.pool
        self.cleanups = CleanupPacer(options.cleanup, self.policy.cleanup_batch_size,
                                     pooled.completed if pooled else 0, pooled.took_part if pooled else ())  # fmt: skip
        self.limits = NodeLimits(config, self.cond, smi_used=self.pool.smi_used if self.pool else None,
                                 oom_caps=self.pool.oom_caps if self.pool else None)  # fmt: skip
        self.slots = SlotTable.of({slot: self._runner(slot) for slot in slots})
        self.fatal: BaseException | None = None
        self.halting = False
        self.closed = False  # run_chunks returned: late attempts must not touch the sink any more

    def _runner(self, slot: Slot) -> SlotRunner:
        node, executor = self.config.node(slot.node), self.executors[slot.node]
        if self.options.slot_mode == "per_chunk":
            return PerChunkRunner(executor, node, slot, options=self.options, timeouts=self.config.timeouts,
                                  version=self.version)  # fmt: skip

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

    # --- the call as a whole (run.py) ---------------------------------------------------------------------
    def finished(self) -> bool:
        """Nothing left to wait for: every chunk done, a fatal error, or no slot left (under the lock)."""
        return not self.chunks.remaining or self.fatal is not None or not self.slots.live()

    def counts(self) -> tuple[int, int, int]:
        """(chunks completed, failed attempts, progress so far counting chunks in flight), under the lock."""
        return self.chunks.completed, len(self.chunks.failures), self.chunks.progress_total + self.slots.progress()

    def halt(self) -> None:
        with self.cond:
            self.halting = True
            self.cond.notify_all()

    def abort(self, err: BaseException) -> None:
        """Ctrl-C or a failing halt check: the slots stop taking work, every worker is stopped."""
        with self.cond:
            self.fatal = self.fatal or err
            self.closed = True
            self.cond.notify_all()
        self.stop_workers(wait=1.0)

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def stop_workers(self, nodes: list[str] | None = None, wait: float = 2.0) -> None:
        """Stop the slot workers of some nodes (before their cleanup) or of every node (end of the call); a
        pool's runners stay in the pool, stopped (their next chunk starts a worker)."""
        stop_runners(self.slots.runners(nodes), wait)

    def clean(self, nodes: list[str], *, batch: bool = True) -> None:
        """The one place a call runs GPU cleanups: their nodes' workers stopped first (cleanup_gpus.sh needs
        the GPUs idle), GPUs found faulted quarantined; a batch cleanup (a slot's, mid-call) notes rocm-smi's
        time for the pacing, one at the end of the call does not."""
        if not nodes:
            return
        self.stop_workers(nodes)
        if self.options.cleanup is None:
            return
        for node in nodes if batch else ():
            self.limits.smi_running(node)
        self.quarantine_found(run_cleanups(self.options.cleanup, {n: self.executors[n] for n in nodes}), "cleanup")

    def hand_back(self, pool: WorkerPool) -> None:
        """The call ended well: the workers of slots it quarantined or of nodes it took out are stopped and
        forgotten, the others stay up for the next call; what paces cleanups goes back to the pool."""
        with self.cond:
            tripped = set(self.breaker.tripped)
            gone = [s for s in self.slots.states if s.node in tripped or s in self.slots.quarantined]
            pool.took_part = self.cleanups.took_part - tripped
            pool.completed = self.cleanups.completed_before + self.chunks.completed
            pool.smi_used = dict(self.limits.smi_used)
            pool.oom_caps = dict(self.limits.oom_caps)
        pool.discard(gone)
        pool.owe_cleanup(self.options.cleanup, self.executors, self.options.ledger)

    # --- SlotHost: what the runners ask of the scheduler ----------------------------------------------
    def start_turn(self, slot: Slot) -> bool:
        return self.limits.start_turn(slot, lambda: self.closed or self.fatal is not None)

    def start_done(self, slot: Slot) -> None:
        self.limits.start_done(slot)

    def chunk_progress(self, slot: Slot, count: int) -> None:
        with self.cond:
            if self.slots[slot].running is not None:
                self.slots[slot].progress = count

    def worker_memory(self, slot: Slot, rss: int, mem_total: int) -> None:
        self.limits.worker_memory(slot, rss, mem_total, self.slots.on_node(slot.node))

    # --- slot threads -----------------------------------------------------------------------------
    def slot_loop(self, slot: Slot) -> None:
        failed = False
        try:
            while (action := self._take(slot)) is not None:
                kind, value = action
                if kind == "cleanup":
                    try:
                        self.clean([value])
                    finally:
                        with self.cond:
                            self.cleanups.finished(value)
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
            self._slot_ended(slot, failed)

    def _slot_ended(self, slot: Slot, failed: bool) -> None:
        """A slot thread ends: its worker stays up only for a pool, after a call that went well, on a healthy
        slot; a call left with too few usable slots fails."""
        with self.cond:
            done_well = not failed and self.fatal is None and not self.halting and not self.chunks.remaining
            state = self.slots[slot]
            healthy = not state.quarantined and slot.node not in self.breaker.tripped
            keep = self.pool is not None and done_well and healthy and not state.parked
        if not keep:
            state.runner.stop()
        with self.cond:
            state.live = False
            left = self.chunks.remaining and self.fatal is None and not self.halting
            if left and self.slots.usable() < self.options.min_slots:
                self.fatal = SchedulingError(self._no_slots_reason())
            self.cond.notify_all()

    def _take(self, slot: Slot) -> tuple[str, Any] | None:
        """The slot's next action: ("run", chunk), ("cleanup", node), or None when the slot is done."""
        with self.cond:
            while True:
                if self.fatal is not None or self.halting or not self.chunks.remaining:
                    return None
                if slot.node in self.breaker.tripped or self.slots[slot].quarantined:
                    return None
                if self.limits.over_cap_locked(slot, self.slots.live()):
                    self.slots.park(slot)
                    logger.warning(f"slot {slot} stops: {self.limits.why_capped(slot.node)}")
                    return None
                if slot.node in self.cleanups.due:
                    if self.cleanups.claim(slot.node, self.inflight[slot.node]):
                        return ("cleanup", slot.node)
                    self.cond.wait(1.0)
                    continue
                item = self.chunks.take(slot, self.slots.live(), self.breaker.failure_rates())
                if item is not None:
                    self.inflight[slot.node] += 1
                    self.slots.start(slot, item)
                    self.cleanups.ran_chunk(slot.node)
                    return ("run", item)
                self.cond.wait(self.chunks.wait_s())

    def _finished_locked(self, slot: Slot, item: QueuedChunk) -> bool:
        """Bookkeeping when an attempt returns; True if its chunk had been requeued elsewhere meanwhile."""
        self.inflight[slot.node] -= 1
        self.slots.finish(slot)
        return self.chunks.returned(item)

    def _requeue_running_on(self, node: str) -> None:
        """A node just taken out may be hung: its chunks in flight are queued again for other slots at once
        (whichever copy returns a valid result first wins), instead of waiting out the job timeout."""
        for slot, item in self.slots.running_on(node):
            if self.chunks.copy(item):
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
        gone += [f"{slot} (quarantined)" for slot in self.slots.quarantined]
        return (
            f"{len(self.slots.live())} usable slot(s) left, at least {self.options.min_slots} needed, with "
            f"{len(self.chunks.remaining)} chunk(s) unfinished; taken out: {', '.join(gone) or 'slots stopped'}"
        )
