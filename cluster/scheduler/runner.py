"""How a chunk reaches a slot: the `SlotRunner` interface the scheduler's threads talk to.

The scheduler's policy (which chunk, which slot, retries, breaker, quarantine, cleanup) never looks behind
this interface. A runner belongs to one slot, is driven by that slot's thread only (`run`), and may be
stopped from any thread (`begin_stop` / `finish_stop`). Implementations:

- `cluster.scheduler.per_chunk.PerChunkRunner`: a fresh worker process for every chunk (`slot_mode:
  per_chunk`, the old way);
- `cluster.scheduler.workers.WorkerRunner`: one long-lived worker per slot fed chunk after chunk, with
  heartbeats (`slot_mode: workers`, the default);
- `cluster.scheduler.ray_slots.runner.RayRunner`: the same slot worker, kept and fed on its node by a Ray actor
  (`slot_mode: ray`).

What every implementation promises (tests/cluster/test_slot_runner_contract.py runs one suite on each): the
same result for the same chunk, and the same failure record for the same fault (a crash is `exit` with the
worker's code and stderr tail, garbage output `invalid`, a hang `timeout` or, where heartbeats tell it sooner,
`stale`, a stop from another thread `transport` and no process left); a worker older than the coordinator, or
speaking another protocol, raises `WorkerRefused` naming both versions.

slots.SlotScheduler picks one per slot from `slot_mode`. The two whose worker stays up between chunks are
`PooledRunner`s: a `pool.WorkerPool` can keep them from one `run_chunks` call to the next.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, Protocol

from cluster.protocol import Hello
from cluster.scheduler.options import SchedulerOptions
from cluster.scheduler.types import ChunkFailure, ChunkSpec, Slot
from cluster.transport.base import Executor


class WorkerRefused(Exception):
    """The node's worker cannot be used at all (e.g. installed from an older version than the coordinator):
    the node is taken out for the call with this reason; no chunk attempt is counted."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SlotHost(Protocol):
    """What the scheduler offers its runners."""

    def start_turn(self, slot: Slot) -> bool:
        """Block until this slot may start a worker process (staggered per node, a few starts in flight per
        node); False: the call is ending. Every True is answered by one `start_done` once the start is over."""

    def start_done(self, slot: Slot) -> None:
        """The start `start_turn` allowed is over (the worker said hello, or the start failed)."""

    def chunk_progress(self, slot: Slot, count: int) -> None:
        """Progress of the chunk running on `slot`, in the caller's progress unit (from heartbeats)."""

    def worker_memory(self, slot: Slot, rss: int, mem_total: int) -> None:
        """A worker's resident size after a chunk, and its machine's memory (bytes; 0: unknown)."""


class SlotRunner(ABC):
    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.stops = 0  # how many times a stop was asked: a chunk running across one was stopped, not failed

    def stopped_since(self, mark: int) -> bool:
        """Whether a stop was asked since `mark` (a value of `stops` read when the chunk began)."""
        return self.stops != mark

    @abstractmethod
    def run(self, chunk: ChunkSpec, attempt: int) -> dict[str, Any] | ChunkFailure:
        """One attempt: the validated result or the failure with its evidence; raises only WorkerRefused."""

    def begin_stop(self) -> None:  # noqa: B027 - an implementation ends its process here
        """Ask the slot's process (if any) to exit, a chunk in flight too; returns at once. Implementations
        count the stop first (`stops += 1`)."""

    def finish_stop(self, deadline: float) -> None:  # noqa: B027
        """Wait until `deadline` (monotonic) for the process to exit, then kill it."""

    def stop(self, wait: float = 2.0) -> None:
        self.begin_stop()
        self.finish_stop(time.monotonic() + wait)

    @property
    def live(self) -> bool:
        """Whether a worker process of this slot is up right now."""
        return False


class PooledRunner(SlotRunner):
    """A runner whose worker stays up between chunks, so a `pool.WorkerPool` may keep it across calls."""

    executor: Executor
    hello: Hello | None  # what the live worker said when it came up (its pid, for logs and tests)
    # How the pool has it start its worker (PR_SET_PDEATHSIG: a local worker dies with the thread that started
    # it); a runner whose worker does not hang on a thread of this process ignores it.
    spawn: Any

    @property
    @abstractmethod
    def key(self) -> tuple[Any, ...]:
        """What the live worker was started as: a call wanting another command or environment gets a new one."""

    @abstractmethod
    def rebind(self, options: SchedulerOptions, host: SlotHost, lifetime_s: float) -> None:
        """A new `run_chunks` call takes this runner over: its options and host from here on."""


def stop_runners(runners: Iterable[SlotRunner], wait: float = 2.0) -> None:
    """Stop several runners together: all are asked first, then each gets what is left of `wait`."""
    runners = list(runners)
    for runner in runners:
        runner.begin_stop()
    deadline = time.monotonic() + wait
    for runner in runners:
        runner.finish_stop(deadline)
