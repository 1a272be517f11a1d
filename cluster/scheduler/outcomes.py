"""What becomes of one attempt, once its runner returns: the result stored, or the failure handled in the order
that is the contract (log it in full, store it, probe the GPU and quarantine it if it shows faults, and only
then put the chunk back on the queue, after its backoff, or give up on it), or the node taken out when its
worker is refused. A mixin of slots.SlotScheduler, whose state it reads and writes under its lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from loguru import logger

from cluster.config import ClusterConfig, SchedulerPolicy
from cluster.errors import SchedulingError
from cluster.gpu.health import GpuHealth, HealthStatus
from cluster.gpu.kernel_log import oom_line
from cluster.scheduler.attempt import describe_failure, health_state, with_gpu_state
from cluster.scheduler.board import ChunkQueue, SlotTable
from cluster.scheduler.cleanup import CleanupPacer
from cluster.scheduler.node_limits import NodeLimits
from cluster.scheduler.options import SchedulerOptions
from cluster.scheduler.policy import NodeBreaker, QueuedChunk, backoff_delay, out_of_attempts
from cluster.scheduler.runner import WorkerRefused
from cluster.scheduler.types import DISTRUST_KINDS, ChunkFailure, ChunkSink, Slot
from cluster.transport.base import Executor

DISTRUSTED_SLOTS_PER_NODE = 2  # slots of one node answering wrongly before the node is taken out


class Outcomes:
    config: ClusterConfig
    policy: SchedulerPolicy
    options: SchedulerOptions
    sink: ChunkSink
    executors: Mapping[str, Executor]
    cond: threading.Condition
    chunks: ChunkQueue
    slots: SlotTable
    breaker: NodeBreaker
    limits: NodeLimits
    cleanups: CleanupPacer
    closed: bool

    def _finished_locked(self, slot: Slot, item: QueuedChunk) -> bool: ...
    def _requeue_running_on(self, node: str) -> None: ...
    def _set_fatal_locked(self, err: BaseException) -> None: ...

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
            outcome = self.slots[slot].runner.run(chunk, attempt)
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
            self.chunks.untried(item, slot)
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
            if self.chunks.done(chunk_id, result):
                now = time.monotonic()
                self.cleanups.completed(self.chunks.completed, self.breaker.tripped,
                                        lambda node: self.limits.smi_free_locked(node, now))  # fmt: skip
            self.cond.notify_all()

    def _failed(self, slot: Slot, item: QueuedChunk, failure: ChunkFailure) -> None:
        if self.closed:
            logger.debug(f"late failure of chunk {failure.chunk_id} on {slot} after the call returned: {failure.error}")
            return
        failure, faulted = self._probed(slot, failure)
        logger.error(describe_failure(failure, self.policy.max_attempts))
        self.sink.chunk_failed(failure)  # stored before the chunk can be retried
        distrusted = self._distrust(slot, failure) if failure.kind in DISTRUST_KINDS else None
        if faulted:
            evidence = list((failure.gpu_state or {}).get("evidence") or [])
            reason = f"faulted after chunk {failure.chunk_id} failed ({failure.kind}): {failure.error}"[:500]
            self._quarantine(slot, reason, evidence)
        elif self.options.ledger is not None and failure.gpu_state and failure.gpu_state["status"] != "unknown":
            self.options.ledger.record_check(slot.node, slot.gpu, failure.gpu_state["status"],
                                             failure.gpu_state["evidence"])  # fmt: skip
        with self.cond:
            tripped = self._settle_failure(slot, item, failure, distrusted)
            self.cond.notify_all()
        if tripped is not None:
            logger.error(f"node {slot.node} taken out for the rest of this step: {tripped}")
            self.sink.node_tripped(slot.node, tripped)

    def _settle_failure(
        self, slot: Slot, item: QueuedChunk, failure: ChunkFailure, distrusted: str | None
    ) -> str | None:
        """Under the lock: the breaker, then the chunk's fate (retried after its backoff, or the call fails).
        Returns the reason its node was taken out now, if it was."""
        tripped: str | None = None
        if distrusted is not None and slot.node not in self.breaker.tripped:
            tripped = self.breaker.tripped[slot.node] = distrusted
        self.chunks.failures.append(failure)
        superseded = self._finished_locked(slot, item)
        if failure.retryable and tripped is None:
            tripped = self.breaker.record(slot.node, failed=True)
        if failure.kind != "transport":
            item.hard_failures += 1
        item.errors.append(f"{slot} {failure.kind}: {failure.error}")
        if superseded or item.spec.chunk_id not in self.chunks.remaining:
            pass  # another copy of this chunk is queued, running or done: nothing to retry
        elif not failure.retryable:
            self._set_fatal_locked(
                SchedulingError(f"chunk {item.spec.chunk_id} rejected as a bad job spec: {failure.error}")
            )
        elif out_of_attempts(item, self.policy):
            self._set_fatal_locked(SchedulingError(
                f"chunk {item.spec.chunk_id} failed {item.attempts} attempts ({'; '.join(item.errors[-3:])}); the "
                "step is incomplete"
            ))  # fmt: skip
        else:
            self.chunks.retry(item, backoff_delay(item.attempts, self.policy))
        if tripped is not None:
            self._requeue_running_on(slot.node)
        return tripped

    def _probed(self, slot: Slot, failure: ChunkFailure) -> tuple[ChunkFailure, bool]:
        """The failure with the GPU's state after it (a fresh probe, or the ledger's reading within the rocm-smi
        pacing), and whether the GPU reads faulted."""
        probe = self.options.probe
        if probe is None or self.config.node(slot.node).gpu_kind == "cpu" or failure.kind == "bad_spec":
            return failure, False
        faulted = False
        try:
            health = self.limits.probe(slot, probe, self.executors[slot.node], self.options.ledger)
            if health is None:
                interval = self.config.health.min_probe_interval_s
                why = f"not probed: rocm-smi ran on {slot.node} less than {interval:g} s ago"
                why += " (health.min_probe_interval_s)"
                state: dict[str, Any] = {"status": "unknown", "evidence": [why]}
            else:
                state, faulted = health_state(health), health.status == HealthStatus.FAULTED
        except Exception as err:  # the probe failing is itself evidence (node gone), not a reason to stop
            state = {"status": "unknown", "evidence": [f"probe failed: {err}"]}
        return self._oom_killed(slot, with_gpu_state(failure, state)), faulted

    def _oom_killed(self, slot: Slot, failure: ChunkFailure) -> ChunkFailure:
        """A worker the kernel's OOM killer took leaves no word of its own: the failure says so with the
        kernel line, and the node runs one slot worker fewer from now on (never fewer than one)."""
        line = oom_line((failure.gpu_state or {}).get("evidence") or [])
        if line is None:
            return failure
        with self.cond:
            cap = self.limits.oom_killed_locked(slot.node, self.slots.live_on(slot.node))
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
            count = self.slots.distrust(slot)
        if count >= DISTRUSTED_SLOTS_PER_NODE:
            return f"{count} of its slots answered wrongly ({what}): the node's answers are not trusted"
        return None

    def _quarantine(self, slot: Slot, reason: str, evidence: list[str]) -> None:
        """Record in the ledger (so later steps skip the GPU too) and stop this call's slot."""
        if self.options.ledger is not None:
            self.options.ledger.quarantine(slot.node, slot.gpu, reason, evidence, "scheduler")
        logger.error(f"GPU {slot} quarantined: {'; '.join(evidence) or reason}")
        with self.cond:
            self.slots.quarantine(slot)
            self.cond.notify_all()

    def quarantine_found(self, found: list[GpuHealth], where: str) -> None:
        for health in found:
            self._quarantine(Slot(health.node, health.index), f"faulted in GPU {where}", list(health.evidence))
