"""Values and the storage protocol the scheduler shares with its callers.

`ChunkSink` is a Protocol so that cluster/ (the bottom layer) can hand results to the run store in
pipeline/ without importing it: the store provides an adapter bound to one run and step.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


def chunk_id_for(payload: Mapping[str, Any]) -> str:
    """Deterministic id from the payload: the same work gets the same id in a resumed run."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


class AnswerRejected(ValueError):
    """A worker's answer the coordinator must not believe. kind "invalid": it breaks the answer's schema
    (types, counts, values out of the chunk's range, tags never sent); "unverified": it does not reproduce
    when the coordinator recomputes it; "canary": it missed the known answer planted in the chunk. The last
    two say the slot computes wrong answers: it is quarantined with the evidence."""

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


DISTRUST_KINDS = frozenset({"unverified", "canary"})


@dataclass(frozen=True)
class ChunkSpec:
    chunk_id: str
    payload: dict[str, Any]

    @classmethod
    def of(cls, payload: dict[str, Any]) -> ChunkSpec:
        return cls(chunk_id_for(payload), payload)


@dataclass(frozen=True, order=True)
class Slot:
    """One place a chunk runs: a GPU (or a CPU slot) of a node."""

    node: str
    gpu: int

    def __str__(self) -> str:
        return f"{self.node}:{self.gpu}"


@dataclass(frozen=True)
class ChunkFailure:
    """Everything known about one failed attempt; stored and logged before the chunk is retried.

    kind: exit (non-zero exit), timeout, transport (connection lost / unreachable), worker_error
    (worker said ok=false), invalid (unparsable output or validation failed), bad_spec (worker exit 2:
    the spec itself is wrong, so retrying elsewhere cannot help).
    """

    chunk_id: str
    attempt: int
    slot: Slot
    kind: str
    error: str
    command: str
    exit_code: int | None = None
    stderr_tail: str = ""
    gpu_state: dict[str, Any] | None = None
    traceback: str | None = None
    duration: float = 0.0
    time: float = 0.0

    @property
    def retryable(self) -> bool:
        return self.kind != "bad_spec"


@runtime_checkable
class ChunkSink(Protocol):
    """Where the scheduler stores progress as it happens (the run store, bound to one run and step)."""

    def chunks_planned(self, chunks: Sequence[ChunkSpec]) -> None:
        """Register the step's chunks; rows left 'running' by a dead coordinator go back to pending."""

    def completed_results(self) -> dict[str, dict[str, Any]]:
        """Results already stored for this step (chunk id -> result): these chunks are not run again."""

    def attempt_started(self, chunk_id: str, attempt: int, slot: Slot) -> None: ...

    def chunk_done(self, chunk_id: str, slot: Slot, result: dict[str, Any], duration: float) -> bool:
        """Store a validated result in one transaction; False when a result was already stored."""

    def chunk_failed(self, failure: ChunkFailure) -> None: ...

    def node_tripped(self, node: str, reason: str) -> None: ...


@dataclass
class ScheduleReport:
    results: dict[str, dict[str, Any]]
    failures: list[ChunkFailure] = field(default_factory=list)
    slots_used: list[Slot] = field(default_factory=list)
    nodes_tripped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    resumed: int = 0  # chunks skipped because a result was already stored
    executed: int = 0  # chunks that got a result in this call
    quarantined: list[Slot] = field(default_factory=list)
