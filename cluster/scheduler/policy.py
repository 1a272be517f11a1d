"""The scheduler's decisions as pure functions: which slots exist, which chunk a slot takes next,
how long to back off, when a node's breaker trips. No I/O and no threads, so each rule is tested
directly on values.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from cluster.config import ClusterConfig, NodeConfig, SchedulerPolicy
from cluster.gpu.ledger import quarantined_keys
from cluster.scheduler.types import ChunkSpec, Slot


def node_slots(node: NodeConfig, quarantined: Set[tuple[str, int]]) -> list[Slot]:
    usable = [
        Slot(node.name, i)
        for i in range(node.slot_count)
        if i not in node.excluded_indices and (node.name, i) not in quarantined
    ]
    if node.max_concurrent_jobs is not None:
        usable = usable[: node.max_concurrent_jobs]
    return usable


def select_slots(config: ClusterConfig, quarantined: Iterable[Any] = (), nodes: Set[str] | None = None) -> list[Slot]:
    """Usable slots: each node's slots minus excluded and quarantined GPUs, capped by max_concurrent_jobs.

    Interleaved across nodes (node A gpu 0, node B gpu 0, A 1, ...) so the first chunks spread out.
    """
    keys = quarantined_keys(quarantined)
    per_node = [node_slots(n, keys) for n in config.nodes if nodes is None or n.name in nodes]
    out: list[Slot] = []
    for depth in range(max((len(s) for s in per_node), default=0)):
        out.extend(slots[depth] for slots in per_node if depth < len(slots))
    return out


def backoff_delay(failures: int, policy: SchedulerPolicy) -> float:
    """Exponential backoff after the n-th failure of a chunk (1 -> base, 2 -> 2*base, ...), capped."""
    if failures <= 0:
        return 0.0
    return min(policy.backoff_max_s, policy.backoff_s * 2 ** (failures - 1))


@dataclass
class QueuedChunk:
    spec: ChunkSpec
    attempts: int = 0  # attempts made so far
    hard_failures: int = 0  # failures that count against max_attempts (lost connections do not)
    tried: frozenset[Slot] = frozenset()
    ready_at: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def tried_nodes(self) -> frozenset[str]:
        return frozenset(s.node for s in self.tried)


def retry_key(item: QueuedChunk, slot: Slot, node_failure_rate: Mapping[str, float]) -> tuple[int, float]:
    """How bad `slot` looks for this chunk: its failures on that node first, then the node's recent failure rate."""
    on_node = sum(1 for tried in item.tried if tried.node == slot.node)
    return on_node, round(node_failure_rate.get(slot.node, 0.0), 3)


def may_take(item: QueuedChunk, slot: Slot, live: Set[Slot], node_failure_rate: Mapping[str, float]) -> bool:
    """Whether `slot` should run `item` now. A fresh chunk goes anywhere. A retry goes only to a slot it has
    not failed on (the same slot only once every live slot has had it), and only to one of the best such
    slots: fewest failures of this chunk on the node, then the node with the lowest recent failure rate.
    A worse slot leaves it for a better one, so a flaky node cannot use up a chunk's attempts."""
    if not item.tried:
        return True
    candidates = [s for s in live if s not in item.tried] or list(live)
    if slot not in candidates:
        return False
    best = min(retry_key(item, s, node_failure_rate) for s in candidates)
    return retry_key(item, slot, node_failure_rate) == best


def pick_next(
    queue: Sequence[QueuedChunk],
    slot: Slot,
    live: Set[Slot],
    now: float,
    node_failure_rate: Mapping[str, float] | None = None,
) -> int | None:
    """Index of the chunk `slot` should run next: the first ready one it may take (retries sit at the front)."""
    rates = node_failure_rate or {}
    for index, item in enumerate(queue):
        if item.ready_at <= now and may_take(item, slot, live, rates):
            return index
    return None


def next_ready_time(queue: Sequence[QueuedChunk], now: float) -> float | None:
    """When the earliest chunk still backing off becomes ready (None if none is waiting)."""
    waiting = [item.ready_at for item in queue if item.ready_at > now]
    return min(waiting) if waiting else None


def out_of_attempts(item: QueuedChunk, policy: SchedulerPolicy) -> bool:
    """A chunk is given up after max_attempts real failures, or twice that many attempts in all
    (lost connections count as failed attempts, but a flapping link must still end)."""
    return item.hard_failures >= policy.max_attempts or item.attempts >= 2 * policy.max_attempts


class NodeBreaker:
    """Per-node sliding window of outcomes; trips once failures reach both the minimum count and the rate."""

    def __init__(self, policy: SchedulerPolicy) -> None:
        self.window = policy.breaker_window
        self.threshold = policy.breaker_threshold
        self.min_failures = policy.breaker_min_failures
        self._outcomes: dict[str, deque[bool]] = {}
        self.tripped: dict[str, str] = {}

    def failure_rate(self, node: str) -> float:
        outcomes = self._outcomes.get(node)
        return sum(outcomes) / len(outcomes) if outcomes else 0.0

    def failure_rates(self) -> dict[str, float]:
        return {node: self.failure_rate(node) for node in self._outcomes}

    def record(self, node: str, failed: bool) -> str | None:
        """Add one outcome; returns the reason the first time the node trips, else None."""
        if node in self.tripped:
            return None
        outcomes = self._outcomes.setdefault(node, deque(maxlen=self.window))
        outcomes.append(failed)
        failures = sum(outcomes)
        if failures >= self.min_failures and failures / len(outcomes) >= self.threshold:
            reason = (
                f"circuit breaker: {failures} of the last {len(outcomes)} attempts on {node} failed "
                f"(threshold {self.threshold:.0%}, at least {self.min_failures})"
            )
            self.tripped[node] = reason
            return reason
        return None


def worker_cap(mem_total: int, worker_rss: int, fraction: float, slots: int) -> int:
    """How many slot workers of one node may be up together: `fraction` of the node's memory over one
    worker's resident size (at least 1, at most `slots`); unknown sizes (0) mean no cap."""
    if mem_total <= 0 or worker_rss <= 0:
        return slots
    return max(1, min(slots, int(mem_total * fraction // worker_rss)))
