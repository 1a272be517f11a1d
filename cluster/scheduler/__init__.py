"""The chunk scheduler: a pull queue of chunks over GPU slots `(node, gpu)` (see run.py for the contract).

Modules: run (run_chunks, the entry point), options (what a caller may tune), slots (the slot threads
and their shared state), attempt (one chunk on one slot), policy (the pure rules), runner and workers (how
a chunk reaches a slot), pool (slot workers kept across calls), cleanup, progress, types (values and the
ChunkSink protocol).
"""

from cluster.scheduler.pool import WorkerPool
from cluster.scheduler.run import run_chunks
from cluster.scheduler.types import ChunkFailure, ChunkSink, ChunkSpec, ScheduleReport, Slot

__all__ = ["ChunkFailure", "ChunkSink", "ChunkSpec", "ScheduleReport", "Slot", "WorkerPool", "run_chunks"]
