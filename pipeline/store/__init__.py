"""The run store: one SQLite file (WAL) holding everything a run must not forget.

Modules: base (connection, transactions, error translation), schema (creation and migration), runs
(RunStore: runs, steps, decisions, preflight results, events), chunks (chunk rows and the scheduler's
sink), ledger (the GPU health ledger's SQL; its rules live in cluster/gpu/ledger.py).
"""

from cluster.gpu.ledger import QuarantineEntry
from pipeline.store.chunks import StoreChunkSink
from pipeline.store.runs import RunRecord, RunStore, StepRecord
from pipeline.store.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "QuarantineEntry", "RunRecord", "RunStore", "StepRecord", "StoreChunkSink"]
