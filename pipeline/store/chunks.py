"""Chunk rows of the run store, and the `ChunkSink` adapter the scheduler writes through.

Chunks are keyed by (run, step, chunk id) and the chunk id is derived from the payload, so a resumed
run finds the results of the same work. The first valid result wins, written in one transaction: a
late answer for a chunk already done (an orphaned worker, a duplicate after a retry) changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cluster.files import write_text_atomic
from cluster.scheduler.types import ChunkFailure, ChunkSpec, Slot
from pipeline.store.base import StoreBase, dumps, loads, now

# Results larger than this go to a file next to the database; the row keeps a reference.
INLINE_RESULT_LIMIT = 1 << 20


# What a failure record keeps of text that came from a node: the end, which holds the cause. A worker
# writing 20 MB of stderr per attempt must not grow the store by as much.
STDERR_STORED = 16 << 10
TRACEBACK_STORED = 16 << 10
ERROR_STORED = 4 << 10


def _last_bytes(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    return f"[... {len(data) - limit} bytes cut ...]" + data[-limit:].decode("utf-8", "replace")


class ChunkStoreMixin(StoreBase):
    def plan_chunks(self, run_id: int, step: float, chunks: Sequence[ChunkSpec], step_attempt: int = 1) -> int:
        """Insert missing chunks as pending and send orphaned 'running' rows back; returns how many were orphans."""
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO chunks (run_id, step, chunk_id, step_attempt, spec, status) "
                "VALUES (?, ?, ?, ?, ?, 'pending')",
                [(run_id, step, c.chunk_id, step_attempt, dumps(c.payload)) for c in chunks],
            )
            cur = conn.execute(
                "UPDATE chunks SET status = 'pending' WHERE run_id = ? AND step = ? AND status = 'running'",
                (run_id, step),
            )
            return cur.rowcount

    def chunk_started(self, run_id: int, step: float, chunk_id: str, attempt: int, slot: Slot) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE chunks SET status = 'running', attempts = ?, node = ?, gpu = ?, started = ? "
                "WHERE run_id = ? AND step = ? AND chunk_id = ? AND status != 'done'",
                (attempt, slot.node, slot.gpu, now(), run_id, step, chunk_id),
            )

    def store_chunk_result(
        self, run_id: int, step: float, chunk_id: str, slot: Slot, result: dict[str, Any], duration: float
    ) -> bool:
        """First valid result wins; returns False (and writes nothing) if the chunk is already done."""
        text = dumps(result) or "null"
        with self._tx() as conn:
            row = conn.execute(
                "SELECT status FROM chunks WHERE run_id = ? AND step = ? AND chunk_id = ?", (run_id, step, chunk_id)
            ).fetchone()
            if row is not None and row["status"] == "done":
                return False
            inline, ref = text, None
            if len(text) > INLINE_RESULT_LIMIT:
                ref_path = self.path.parent / "chunk_results" / str(run_id) / f"{step:g}" / f"{chunk_id}.json"
                write_text_atomic(ref_path, text)
                inline, ref = None, str(ref_path.relative_to(self.path.parent))
            if row is None:  # a sink used without plan_chunks: keep the result anyway
                conn.execute(
                    "INSERT INTO chunks (run_id, step, chunk_id, step_attempt, spec, status) "
                    "VALUES (?, ?, ?, 1, 'null', 'pending')",
                    (run_id, step, chunk_id),
                )
            finished = now()
            conn.execute(
                "UPDATE chunks SET status = 'done', node = ?, gpu = ?, finished = ?, duration = ?, result = ?, "
                "result_ref = ? WHERE run_id = ? AND step = ? AND chunk_id = ?",
                (slot.node, slot.gpu, finished, duration, inline, ref, run_id, step, chunk_id),
            )
            return True

    def record_chunk_failure(self, run_id: int, step: float, failure: ChunkFailure) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO chunk_failures (run_id, step, chunk_id, attempt, node, gpu, kind, command, exit_code, "
                "stderr_tail, gpu_state, traceback, error, duration, time) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    step,
                    failure.chunk_id,
                    failure.attempt,
                    failure.slot.node,
                    failure.slot.gpu,
                    failure.kind,
                    failure.command,
                    failure.exit_code,
                    _last_bytes(failure.stderr_tail, STDERR_STORED),
                    dumps(failure.gpu_state),
                    _last_bytes(failure.traceback, TRACEBACK_STORED),
                    _last_bytes(failure.error, ERROR_STORED),
                    failure.duration,
                    failure.time or now(),
                ),
            )
            conn.execute(
                "UPDATE chunks SET status = 'failed', attempts = max(attempts, ?) "
                "WHERE run_id = ? AND step = ? AND chunk_id = ? AND status != 'done'",
                (failure.attempt, run_id, step, failure.chunk_id),
            )

    def _load_result(self, row: Any) -> dict[str, Any]:
        if row["result_ref"]:
            try:
                return loads((self.path.parent / row["result_ref"]).read_text(encoding="utf-8"))
            except OSError as err:
                from cluster.errors import StoreError

                raise StoreError(
                    f"chunk {row['chunk_id']}: result file {row['result_ref']} is missing or unreadable ({err}); "
                    "fix: restore it, or delete the chunk row so it is recomputed"
                ) from err
        return loads(row["result"])

    def chunk_results(self, run_id: int, step: float) -> dict[str, dict[str, Any]]:
        rows = self._query(
            "SELECT chunk_id, result, result_ref FROM chunks WHERE run_id = ? AND step = ? AND status = 'done'",
            (run_id, step),
        )
        return {row["chunk_id"]: self._load_result(row) for row in rows}

    def chunk_counts(self, run_id: int, step: float | None = None) -> dict[str, int]:
        sql = "SELECT status, count(*) AS n FROM chunks WHERE run_id = ?"
        params: tuple[Any, ...] = (run_id,)
        if step is not None:
            sql, params = sql + " AND step = ?", (run_id, step)
        counts = {"pending": 0, "running": 0, "done": 0, "failed": 0}
        for row in self._query(sql + " GROUP BY status", params):
            counts[row["status"]] = row["n"]
        return counts

    def chunk_rows(self, run_id: int, step: float) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT chunk_id, step_attempt, status, attempts, node, gpu, started, finished, duration "
            "FROM chunks WHERE run_id = ? AND step = ? ORDER BY chunk_id",
            (run_id, step),
        )
        return [dict(row) for row in rows]

    def chunk_failure_counts(self) -> dict[str, int]:
        """Failed chunk attempts of every run, counted by node."""
        rows = self._query("SELECT node, count(*) AS n FROM chunk_failures GROUP BY node ORDER BY node")
        return {str(row["node"]): int(row["n"]) for row in rows}

    def chunk_failures(self, run_id: int, step: float | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM chunk_failures WHERE run_id = ?"
        params: tuple[Any, ...] = (run_id,)
        if step is not None:
            sql, params = sql + " AND step = ?", (run_id, step)
        out = []
        for row in self._query(sql + " ORDER BY id", params):
            item = dict(row)
            item["gpu_state"] = loads(item["gpu_state"])
            out.append(item)
        return out

    def chunk_sink(self, run_id: int, step: float, step_attempt: int = 1) -> StoreChunkSink:
        """The scheduler's `ChunkSink` bound to one run and step; a chunk row keeps the step attempt that
        first planned it (a retry reuses the chunks an earlier attempt finished)."""
        return StoreChunkSink(self, run_id, step, step_attempt)


class StoreChunkSink:
    """Implements cluster.scheduler.types.ChunkSink over the run store (structurally, no import cycle)."""

    def __init__(self, store: Any, run_id: int, step: float, step_attempt: int = 1) -> None:
        self.store = store
        self.run_id = run_id
        self.step = step
        self.step_attempt = step_attempt
        self.orphans_reset = 0

    def chunks_planned(self, chunks: Sequence[ChunkSpec]) -> None:
        self.orphans_reset = self.store.plan_chunks(self.run_id, self.step, chunks, self.step_attempt)

    def completed_results(self) -> dict[str, dict[str, Any]]:
        return self.store.chunk_results(self.run_id, self.step)

    def attempt_started(self, chunk_id: str, attempt: int, slot: Slot) -> None:
        self.store.chunk_started(self.run_id, self.step, chunk_id, attempt, slot)

    def chunk_done(self, chunk_id: str, slot: Slot, result: dict[str, Any], duration: float) -> bool:
        return self.store.store_chunk_result(self.run_id, self.step, chunk_id, slot, result, duration)

    def chunk_failed(self, failure: ChunkFailure) -> None:
        self.store.record_chunk_failure(self.run_id, self.step, failure)

    def node_tripped(self, node: str, reason: str) -> None:
        self.store.record_event("breaker", run_id=self.run_id, step=self.step, node=node, reason=reason)
