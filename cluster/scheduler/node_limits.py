"""What each node allows at the moment, within one `run_chunks` call: worker starts in flight and how far apart,
how many slot workers may be up together (the memory estimate, lowered for good by an OOM kill), and whether
rocm-smi may run there now: failure probes and batch cleanups are paced by `health.min_probe_interval_s`, the
one setting every rocm-smi call obeys; within it a failure gets the node's last reading from the health
ledger (the one cache of readings), or none.

Kept apart from the slot threads' chunk bookkeeping (slots.py) because these are per-node limits with their own
rules, but they share the scheduler's condition variable: a start waits on it, and the slot threads re-check the
caps when notified. Methods named `*_locked` expect that lock held; the others take it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from loguru import logger

from cluster.config import ClusterConfig
from cluster.gpu.health import GpuHealth
from cluster.gpu.ledger import HealthLedger
from cluster.gpu.probe import kept_reading
from cluster.scheduler.options import Probe
from cluster.scheduler.policy import worker_cap
from cluster.scheduler.types import Slot
from cluster.transport.base import Executor

# Worker starts in flight (from the start to its hello) per node. A start is CPU work on the node
# (interpreter, imports): with every slot starting at once they share the cores and none is ready before
# nearly all are, so every slot idles for the whole start-up; two at a time hand the first workers chunks
# at once and bring the last one up hardly later where the cores were the limit (bench/scheduler.py: 24
# workers on 2 cores, makespan 1.32x -> 1.2x the ideal). GPU nodes' stagger spaces starts further.
STARTS_IN_FLIGHT = 2


class NodeLimits:
    """smi_used and oom_caps come from the step's worker pool (and go back to it), so that a pooled call keeps
    the rocm-smi times and the OOM caps of the calls before it."""

    def __init__(
        self,
        config: ClusterConfig,
        cond: threading.Condition,
        *,
        smi_used: dict[str, float] | None = None,
        oom_caps: dict[str, int] | None = None,
    ) -> None:
        self.config = config
        self.policy = config.scheduler
        self.cond = cond
        self.starting: dict[str, int] = {}  # worker starts in flight per node
        self.next_start: dict[str, float] = {}
        self.worker_rss: dict[str, int] = {}
        self.smi_used: dict[str, float] = dict(smi_used or {})  # node -> when rocm-smi last ran there
        # node -> workers allowed since the OOM killer took one there (the memory estimate never raises it again)
        self.oom_caps: dict[str, int] = dict(oom_caps or {})
        self.worker_caps: dict[str, int] = dict(self.oom_caps)

    # --- worker starts ------------------------------------------------------------------------------
    def start_turn(self, slot: Slot, stopped: Callable[[], bool]) -> bool:
        """At most STARTS_IN_FLIGHT worker starts per node at once, and on a GPU node starts
        `worker_start_stagger_s` apart (no stagger on cpu nodes). False when `stopped()` turns true first."""
        stagger = self.policy.worker_start_stagger_s if self.config.node(slot.node).gpu_kind != "cpu" else 0.0
        with self.cond:
            while self.starting.get(slot.node, 0) >= STARTS_IN_FLIGHT:
                if stopped():
                    return False
                self.cond.wait(0.5)
            self.starting[slot.node] = self.starting.get(slot.node, 0) + 1
            now = time.monotonic()
            at = max(now, self.next_start.get(slot.node, 0.0))
            self.next_start[slot.node] = at + stagger
            while True:
                if stopped():
                    self.starting[slot.node] -= 1
                    self.cond.notify_all()
                    return False
                wait = at - time.monotonic()
                if wait <= 0:
                    return True
                self.cond.wait(min(wait, 0.5))

    def start_done(self, slot: Slot) -> None:
        with self.cond:
            self.starting[slot.node] -= 1
            self.cond.notify_all()

    # --- workers up together ------------------------------------------------------------------------
    def worker_memory(self, slot: Slot, rss: int, mem_total: int, slots_on_node: int) -> None:
        """A worker's resident size and its node's memory: the node's cap is what fits in
        `worker_memory_fraction` of it, never above a cap an OOM kill set."""
        if rss <= 0 or mem_total <= 0:
            return
        with self.cond:
            self.worker_rss[slot.node] = max(rss, self.worker_rss.get(slot.node, 0))
            fraction = self.policy.worker_memory_fraction
            cap = worker_cap(mem_total, self.worker_rss[slot.node], fraction, slots_on_node)
            if cap < slots_on_node and self.worker_caps.get(slot.node) != cap:
                logger.warning(
                    f"{slot.node}: slot workers use up to {self.worker_rss[slot.node] / 2**20:.0f} MiB each; "
                    f"{cap} of {slots_on_node} may be up together ({fraction:.0%} of {mem_total / 2**30:.1f} GiB)"
                )
            # an OOM kill's lower cap stands whatever the memory estimate says: the estimate missed it once
            self.worker_caps[slot.node] = min(cap, self.oom_caps.get(slot.node, cap))

    def over_cap_locked(self, slot: Slot, live: set[Slot]) -> bool:
        """Whether this slot is the one to stop: its node has more live slots than its cap, and it is the last."""
        cap = self.worker_caps.get(slot.node)
        if cap is None:
            return False
        active = sorted(s for s in live if s.node == slot.node)
        return len(active) > cap and slot == active[-1]

    def why_capped(self, node: str) -> str:
        why = "an OOM kill there" if node in self.oom_caps else "its node's memory"
        return f"{why} allows {self.worker_caps[node]} workers"

    def oom_killed_locked(self, node: str, active: int) -> int:
        """The OOM killer took a worker on `node`: one slot worker fewer from now on (never fewer than one)."""
        cap = max(1, min(self.worker_caps.get(node, active), active) - 1)
        self.worker_caps[node] = self.oom_caps[node] = cap
        return cap

    # --- rocm-smi -----------------------------------------------------------------------------------
    def smi_free_locked(self, node: str, now: float) -> bool:
        """Whether rocm-smi may run on `node` now (always on nodes that are not ROCm)."""
        if self.config.node(node).gpu_kind != "rocm":
            return True
        last = self.smi_used.get(node)
        return last is None or now - last >= self.config.health.min_probe_interval_s

    def smi_running(self, node: str) -> None:
        """rocm-smi is about to run on `node` (a batch cleanup)."""
        with self.cond:
            self.smi_used[node] = time.monotonic()

    def probe(self, slot: Slot, probe: Probe, executor: Executor, ledger: HealthLedger | None) -> GpuHealth | None:
        """A fresh look at the slot's GPU, or, within min_probe_interval_s of the node's last rocm-smi, the
        ledger's reading of it taken then (None without a ledger, or if that reading is older)."""
        with self.cond:
            now = time.monotonic()
            fresh = self.smi_free_locked(slot.node, now)
            if fresh:
                self.smi_used[slot.node] = now
        if fresh:
            return probe(executor, slot.gpu)
        node = self.config.node(slot.node)
        kept = kept_reading(ledger, node, self.config.health.min_probe_interval_s) if ledger is not None else None
        return next((g for g in kept.gpus if g.index == slot.gpu), None) if kept is not None else None
