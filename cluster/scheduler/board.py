"""What the slot threads of one `run_chunks` call share, as small objects with their own methods: the chunks
(`ChunkQueue`: queued, running copies, results, failures) and the slots (`SlotTable`: each slot's `SlotState`,
its runner, the chunk it runs). Every method expects the scheduler's condition variable held (slots.py takes
it); the rules they apply are policy.py's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cluster.protocol import count
from cluster.scheduler.policy import QueuedChunk, next_ready_time, pick_next
from cluster.scheduler.runner import SlotRunner
from cluster.scheduler.types import ChunkFailure, ChunkSpec, Slot


class ChunkQueue:
    """The call's chunks: queued (retries at the front, each after its backoff), done (first valid result
    wins) or failed attempts. A chunk still running on a node taken out is queued again as a copy; whichever
    copy answers first counts, the other's answer is dropped."""

    def __init__(self, todo: Sequence[ChunkSpec], progress_key: str | None) -> None:
        self.items = [QueuedChunk(spec) for spec in todo]
        self.remaining = {spec.chunk_id for spec in todo}
        self.results: dict[str, dict[str, Any]] = {}
        self.failures: list[ChunkFailure] = []
        self.progress_key = progress_key
        self.progress_total = 0  # the progress field summed over the results
        self._superseded: set[int] = set()  # id() of items in flight whose chunk was queued again elsewhere
        self._copied: set[str] = set()  # chunk ids queued again that way

    @property
    def completed(self) -> int:
        return len(self.results)

    def take(self, slot: Slot, live: set[Slot], rates: Mapping[str, float]) -> QueuedChunk | None:
        """The chunk `slot` should run now (counted as an attempt there), or None."""
        index = pick_next(self.items, slot, live, time.monotonic(), rates)
        if index is None:
            return None
        item = self.items.pop(index)
        item.attempts += 1
        item.tried = item.tried | {slot}
        return item

    def wait_s(self) -> float:
        """How long a slot with nothing to take waits before looking again (at most 1 s)."""
        now = time.monotonic()
        ready = next_ready_time(self.items, now)
        return min(1.0, ready - now) if ready is not None else 1.0

    def returned(self, item: QueuedChunk) -> bool:
        """An attempt of `item` is over; True when its chunk was queued again elsewhere meanwhile."""
        if id(item) in self._superseded:
            self._superseded.discard(id(item))
            return True
        return False

    def done(self, chunk_id: str, result: dict[str, Any]) -> bool:
        """A valid result; False when the chunk had one already (another copy answered first)."""
        if chunk_id not in self.remaining:
            return False
        self.remaining.discard(chunk_id)
        if chunk_id in self._copied:  # a copy still queued is not needed now
            self.items = [q for q in self.items if q.spec.chunk_id != chunk_id]
        self.results[chunk_id] = result
        if self.progress_key:
            self.progress_total += count(result.get(self.progress_key))
        return True

    def retry(self, item: QueuedChunk, delay: float) -> None:
        item.ready_at = time.monotonic() + delay
        self.items.insert(0, item)

    def untried(self, item: QueuedChunk, slot: Slot) -> None:
        """Back to the front as if `slot` never had it (its node refused the worker: no attempt counted)."""
        item.attempts -= 1
        item.tried = item.tried - {slot}
        if item.spec.chunk_id in self.remaining:
            self.items.insert(0, item)

    def copy(self, item: QueuedChunk) -> bool:
        """Queue a copy of a chunk in flight on a node that may be hung; False if it needs none."""
        if item.spec.chunk_id not in self.remaining or id(item) in self._superseded:
            return False
        self._superseded.add(id(item))
        self.items.insert(0, QueuedChunk(item.spec, item.attempts, item.hard_failures, item.tried, 0.0,
                                         list(item.errors)))  # fmt: skip
        self._copied.add(item.spec.chunk_id)
        return True


@dataclass
class SlotState:
    """One slot of the call. `live`: its thread takes chunks (a quarantined slot stays live until its thread
    sees it); `parked`: stopped to keep its node's workers within memory (it still counts as usable)."""

    slot: Slot
    runner: SlotRunner
    live: bool = True
    parked: bool = False
    quarantined: bool = False
    running: QueuedChunk | None = None
    progress: int = 0  # the running chunk's progress, from heartbeats


@dataclass
class SlotTable:
    states: dict[Slot, SlotState]
    quarantined: list[Slot] = field(default_factory=list)  # in the order they were taken out
    distrusted: dict[str, set[Slot]] = field(default_factory=dict)  # slots answering wrongly, by node

    @classmethod
    def of(cls, runners: Mapping[Slot, SlotRunner]) -> SlotTable:
        return cls({slot: SlotState(slot, runner) for slot, runner in runners.items()})

    def __getitem__(self, slot: Slot) -> SlotState:
        return self.states[slot]

    def live(self) -> set[Slot]:
        return {s for s, state in self.states.items() if state.live}

    def live_on(self, node: str) -> int:
        return sum(1 for s, state in self.states.items() if state.live and s.node == node)

    def usable(self) -> int:
        return sum(1 for state in self.states.values() if state.live or state.parked)

    def on_node(self, node: str) -> int:
        return sum(1 for s in self.states if s.node == node)

    def start(self, slot: Slot, item: QueuedChunk) -> None:
        self.states[slot].running = item

    def finish(self, slot: Slot) -> None:
        state = self.states[slot]
        state.running, state.progress = None, 0

    def progress(self) -> int:
        return sum(state.progress for state in self.states.values())

    def running_on(self, node: str) -> list[tuple[Slot, QueuedChunk]]:
        return [(s, st.running) for s, st in self.states.items() if s.node == node and st.running is not None]

    def quarantine(self, slot: Slot) -> None:
        """Out of the call (a GPU a cleanup found faulted may be one the call has no slot for: listed too)."""
        if slot in self.states:
            self.states[slot].quarantined = True
        if slot not in self.quarantined:
            self.quarantined.append(slot)

    def park(self, slot: Slot) -> None:
        self.states[slot].parked, self.states[slot].live = True, False

    def distrust(self, slot: Slot) -> int:
        """Mark the slot as answering wrongly; how many of its node's slots are marked now."""
        marked = self.distrusted.setdefault(slot.node, set())
        marked.add(slot)
        return len(marked)

    def runners(self, nodes: Iterable[str] | None = None) -> list[SlotRunner]:
        wanted = None if nodes is None else set(nodes)
        return [st.runner for s, st in self.states.items() if wanted is None or s.node in wanted]
