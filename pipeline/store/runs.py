"""The run store: one SQLite file (WAL) holding everything a run must not forget.

Why one database: a resume after SIGKILL, `watcher status`/`history`, the advisor's look at earlier
steps and the health ledger all need the same facts, and SQLite gives atomic multi-row writes for free.
The coordinator is the only writing process; inside it, one lock serialises the scheduler's threads.

API (all times are Unix seconds; JSON columns go in and come out as Python values):

    store = RunStore(path, readonly=False)    # creates the file once; StoreError if newer/damaged/foreign
    Runs:      create_run(from_step, to_step=None, config_hash=None, args=None) -> int
               finish_run(run_id, status, reason=None); resume_run(run_id)   # new pid/host, status running
               get_run(run_id) -> RunRecord | None; latest_run() -> RunRecord | None
               find_resumable_run(config_hash=None) -> RunRecord | None; runs(limit=20) -> list[RunRecord]
    Steps:     start_step(run_id, number, name, params=None) -> attempt (1, 2, ...)
               finish_step(run_id, number, attempt, status, metrics=None, error=None)
               step_history(number=None, run_id=None, limit=None) -> list[StepRecord]  (oldest first)
               latest_step(run_id, number) -> StepRecord | None
    Decisions: record_decision(run_id, step, attempt, *, advisor, decision, inputs=None, raw_answer=None,
                   clamped=None, applied=None, reason=None, fallback=None) -> id; decisions(run_id) -> list[dict]
    Preflight: record_preflight(result, *, run_id=None, step=None, ok=None); preflight_results(run_id=None)
    Events:    record_event(kind, *, reason, run_id=None, step=None, node=None, gpu=None, detail=None)
               events(run_id=None, kind=None) -> list[dict]       # kind "breaker" = node taken out
    Chunks:    chunk_sink(run_id, step, step_attempt=1) -> StoreChunkSink (the scheduler's ChunkSink)
               plan_chunks / chunk_started / store_chunk_result / record_chunk_failure (used by the sink)
               chunk_results(run_id, step) -> {chunk_id: result}; chunk_counts(run_id, step=None)
               chunk_rows(run_id, step); chunk_failures(run_id, step=None) -> list[dict]
    Ledger:    quarantine(node, gpu, reason, evidence, source); release(node, gpu, by) -> bool
               record_check(node, gpu, status, evidence) -> ok streak | None; entries(); ledger_log()

Run statuses: running, succeeded, failed, escalated, halted. Step statuses: running, succeeded,
failed. A run killed without a chance to say so stays "running"; `find_resumable_run` offers it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from cluster.errors import StoreError
from pipeline.store.base import dumps, loads, now
from pipeline.store.chunks import ChunkStoreMixin
from pipeline.store.ledger import LedgerMixin

RUN_STATUSES = frozenset({"running", "succeeded", "failed", "escalated", "halted"})
STEP_STATUSES = frozenset({"running", "succeeded", "failed"})


@dataclass(frozen=True)
class RunRecord:
    id: int
    started: float
    finished: float | None
    status: str
    from_step: float | None
    to_step: float | None
    config_hash: str | None
    pid: int | None
    host: str | None
    args: Any
    reason: str | None
    verdict: str | None = None


@dataclass(frozen=True)
class StepRecord:
    run_id: int
    number: float
    name: str
    attempt: int
    params: Any
    status: str
    metrics: Any
    started: float
    finished: float | None
    error: str | None


def _run(row: Any) -> RunRecord:
    return RunRecord(**{**dict(row), "args": loads(row["args"])})


def _decision(row: Any) -> dict[str, Any]:
    loaded = {k: loads(row[k]) for k in ("inputs", "clamped", "applied", "next_run")}
    return {**dict(row), **loaded}


def _step(row: Any) -> StepRecord:
    return StepRecord(**{**dict(row), "params": loads(row["params"]), "metrics": loads(row["metrics"])})


class RunStore(ChunkStoreMixin, LedgerMixin):
    # --- runs -------------------------------------------------------------------------------------
    def create_run(
        self, from_step: float, to_step: float | None = None, config_hash: str | None = None, args: Any = None
    ) -> int:
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO runs (started, status, from_step, to_step, config_hash, pid, host, args) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?, ?)",
                (now(), from_step, to_step, config_hash, os.getpid(), socket.gethostname(), dumps(args)),
            )
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, status: str, reason: str | None = None, verdict: str | None = None) -> None:
        """verdict: what the run concluded about its data, in the words of its final step."""
        if status not in RUN_STATUSES - {"running"}:
            raise StoreError(f"finish_run: status {status!r} is not one of succeeded, failed, escalated, halted")
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = ?, finished = ?, reason = ?, verdict = ? WHERE id = ?",
                (status, now(), reason, verdict, run_id),
            )
            if not cur.rowcount:
                raise StoreError(f"finish_run: no run with id {run_id}")

    def fail_unfinished(self, run_id: int, reason: str, *, steps: bool = True) -> None:
        """A run ended by an exception: it becomes failed, with why; so do its steps still marked running
        (unless steps=False: an interrupted step is left to `--resume`, as after a kill)."""
        with self._tx() as conn:
            if steps:
                conn.execute(
                    "UPDATE steps SET status = 'failed', error = ?, finished = ? "
                    "WHERE run_id = ? AND status = 'running'",
                    (reason, now(), run_id),
                )
            conn.execute(
                "UPDATE runs SET status = 'failed', reason = ?, finished = ? WHERE id = ? AND status = 'running'",
                (reason, now(), run_id),
            )

    def resume_run(self, run_id: int) -> None:
        """Mark a run as running again in this process (a crashed or stopped run being resumed)."""
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = 'running', finished = NULL, reason = NULL, pid = ?, host = ? WHERE id = ?",
                (os.getpid(), socket.gethostname(), run_id),
            )
            if not cur.rowcount:
                raise StoreError(f"resume_run: no run with id {run_id}")
            conn.execute(
                "INSERT INTO events (run_id, kind, reason, time) VALUES (?, 'resumed', ?, ?)",
                (run_id, f"resumed by pid {os.getpid()}", now()),
            )

    def get_run(self, run_id: int) -> RunRecord | None:
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _run(rows[0]) if rows else None

    def latest_run(self) -> RunRecord | None:
        rows = self._query("SELECT * FROM runs ORDER BY id DESC LIMIT 1")
        return _run(rows[0]) if rows else None

    def runs(self, limit: int = 20) -> list[RunRecord]:
        return [_run(r) for r in self._query("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))]

    def run_counts(self) -> dict[str, int]:
        """Every run the store holds, counted by status (what a counter of runs is computed from)."""
        return {
            row["status"]: int(row["n"])
            for row in self._query("SELECT status, count(*) AS n FROM runs GROUP BY status")
        }

    def find_resumable_run(self, config_hash: str | None = None) -> RunRecord | None:
        """The newest run that did not succeed (crashed while running, failed, escalated or halted)."""
        sql = "SELECT * FROM runs WHERE status != 'succeeded'"
        params: tuple[Any, ...] = ()
        if config_hash is not None:
            sql, params = sql + " AND config_hash = ?", (config_hash,)
        rows = self._query(sql + " ORDER BY id DESC LIMIT 1", params)
        return _run(rows[0]) if rows else None

    # --- steps ------------------------------------------------------------------------------------
    def start_step(self, run_id: int, number: float, name: str, params: Any = None) -> int:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT coalesce(max(attempt), 0) AS a FROM steps WHERE run_id = ? AND number = ?", (run_id, number)
            ).fetchone()
            attempt = int(row["a"]) + 1
            conn.execute(
                "INSERT INTO steps (run_id, number, name, attempt, params, status, started) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?)",
                (run_id, number, name, attempt, dumps(params), now()),
            )
            return attempt

    def finish_step(
        self, run_id: int, number: float, attempt: int, status: str, metrics: Any = None, error: str | None = None
    ) -> None:
        if status not in STEP_STATUSES - {"running"}:
            raise StoreError(f"finish_step: status {status!r} is not one of succeeded, failed")
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE steps SET status = ?, metrics = ?, error = ?, finished = ? "
                "WHERE run_id = ? AND number = ? AND attempt = ?",
                (status, dumps(metrics), error, now(), run_id, number, attempt),
            )
            if not cur.rowcount:
                raise StoreError(f"finish_step: run {run_id} has no step {number:g} attempt {attempt}")

    def step_history(
        self, number: float | None = None, run_id: int | None = None, limit: int | None = None
    ) -> list[StepRecord]:
        """Step attempts, oldest first: what the advisor learns from and `watcher history` shows."""
        where, params = [], []
        if number is not None:
            where.append("number = ?")
            params.append(number)
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        sql = "SELECT * FROM steps" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY run_id DESC, number DESC, attempt DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_step(r) for r in reversed(self._query(sql, tuple(params)))]

    def dataset_history(self, number: float, dataset: str, limit: int = 20) -> list[StepRecord]:
        """Attempts of a step on one data set (those a decision was recorded for), oldest first."""
        rows = self._query(
            "SELECT s.* FROM steps s JOIN decisions d ON d.run_id = s.run_id AND d.step = s.number "
            "AND d.attempt = s.attempt WHERE s.number = ? AND d.dataset = ? "
            "ORDER BY s.run_id DESC, s.attempt DESC LIMIT ?",
            (number, dataset, int(limit)),
        )
        return [_step(r) for r in reversed(rows)]

    def latest_step(self, run_id: int, number: float) -> StepRecord | None:
        rows = self._query(
            "SELECT * FROM steps WHERE run_id = ? AND number = ? ORDER BY attempt DESC LIMIT 1", (run_id, number)
        )
        return _step(rows[0]) if rows else None

    # --- decisions, preflight, events -------------------------------------------------------------
    def record_decision(
        self,
        run_id: int,
        step: float,
        attempt: int,
        *,
        advisor: str,
        decision: str,
        inputs: Any = None,
        raw_answer: str | None = None,
        clamped: Any = None,
        applied: Any = None,
        reason: str | None = None,
        fallback: str | None = None,
        next_run: Any = None,
        dataset: str | None = None,
    ) -> int:
        """next_run: the params the next run of this step starts from (None: pipeline.yaml's); dataset:
        the workload's study key, so a later run on other data does not inherit this budget."""
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO decisions (run_id, step, attempt, inputs, advisor, raw_answer, clamped, applied, "
                "decision, reason, fallback, time, next_run, dataset) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    step,
                    attempt,
                    dumps(inputs),
                    advisor,
                    raw_answer,
                    dumps(clamped),
                    dumps(applied),
                    decision,
                    reason,
                    fallback,
                    now(),
                    dumps(next_run),
                    dataset,
                ),
            )
            return int(cur.lastrowid or 0)

    def decisions(self, run_id: int) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM decisions WHERE run_id = ? ORDER BY id", (run_id,))
        return [_decision(r) for r in rows]

    def last_decision(self, step: float, dataset: str, *, before_run: int | None = None) -> dict[str, Any] | None:
        """The latest decision on `step` for this data set (in runs before `before_run`): where its next run starts."""
        sql = "SELECT * FROM decisions WHERE step = ? AND dataset = ?"
        params: tuple[Any, ...] = (step, dataset)
        if before_run is not None:
            sql, params = sql + " AND run_id < ?", (*params, before_run)
        rows = self._query(sql + " ORDER BY id DESC LIMIT 1", params)
        return _decision(rows[0]) if rows else None

    def record_preflight(
        self, result: Any, *, run_id: int | None = None, step: float | None = None, ok: bool | None = None
    ) -> int:
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO preflight_results (run_id, step, ok, result, time) VALUES (?, ?, ?, ?, ?)",
                (run_id, step, None if ok is None else int(ok), dumps(result), now()),
            )
            return int(cur.lastrowid or 0)

    def preflight_results(self, run_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM preflight_results", ()
        if run_id is not None:
            sql, params = sql + " WHERE run_id = ?", (run_id,)
        rows = self._query(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [{**dict(r), "result": loads(r["result"])} for r in rows]

    def record_event(
        self,
        kind: str,
        *,
        reason: str,
        run_id: int | None = None,
        step: float | None = None,
        node: str | None = None,
        gpu: int | None = None,
        detail: Any = None,
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO events (run_id, step, kind, node, gpu, reason, detail, time) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, step, kind, node, gpu, reason, dumps(detail), now()),
            )

    def events(self, run_id: int | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        where, params = [], []
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        sql = "SELECT * FROM events" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        return [{**dict(r), "detail": loads(r["detail"])} for r in self._query(sql, tuple(params))]
