"""What a caller of `run_chunks` decides, in one typed value.

The scheduler knows no workload: which command a slot runs, how a result is judged, which field of a
result counts as progress and which result fields name files to bring back are all told to it here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.gpu.health import GpuHealth
from cluster.gpu.ledger import HealthLedger
from cluster.transport.base import Executor

Validator = Callable[[dict[str, Any]], None]
Verifier = Callable[[dict[str, Any], dict[str, Any]], None]  # (chunk payload, answer); raises AnswerRejected
Probe = Callable[[Executor, int], GpuHealth]
CleanupFn = Callable[[Executor], Any]


@dataclass(frozen=True)
class SchedulerOptions:
    """worker_argv: arguments after the node's python (the worker protocol's entry point);
    validate: raises if a parsed result is unusable; verify: the caller's trust check of an answer against
    the chunk it answers (may rewrite the answer, e.g. drop planted checks; raises AnswerRejected);
    ledger: where quarantine is kept (None: this call only);
    probe: a fresh look at a GPU after a failure (None: no probe); cleanup: run on a node after each batch
    (None: no cleanup); min_slots: fewer live slots than this fails the call; fetch_dir / fetch_keys: result
    fields naming a file on the node, copied to fetch_dir (streamed to disk; a file over fetch_max_bytes fails
    the attempt as invalid); progress_key / progress_unit: the result field summed for the progress rate, and
    its unit; label: names the call in logs and errors; slot_mode: "workers" (one long-lived worker per slot),
    "per_chunk" (a process per chunk) or "ray" (the slot worker kept by a Ray actor on its node);
    worker_lifetime_s: the remote `timeout` of a slot worker (the call's deadline; a worker is replaced between
    chunks before it runs out); ray_backend: a `ray_slots.backend.Backend` for slot_mode "ray" (None: join the
    cluster at the config's ray.address)."""

    worker_argv: Sequence[str]
    min_slots: int = 1
    validate: Validator | None = None
    verify: Verifier | None = None
    ledger: HealthLedger | None = None
    probe: Probe | None = None
    cleanup: CleanupFn | None = None
    fetch_dir: Path | None = None
    fetch_keys: tuple[str, ...] = ()
    fetch_max_bytes: int | None = 2 << 30
    progress_key: str | None = None
    progress_unit: str = "items"
    label: str = "chunks"
    slot_mode: str = "workers"
    worker_lifetime_s: float = 7200.0
    ray_backend: Any = None
