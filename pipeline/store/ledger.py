"""The GPU health ledger kept in the run store (the `HealthLedger` contract of cluster/gpu/ledger.py):
quarantine, kernel-log cursors and lines, cleanup results, and each node's last GPU probe.

Quarantine survives the process: a GPU the scheduler caught faulting at 3 a.m. gets no work in the
next run either, until it passes probation or an operator releases it. Every action is also appended
to a log table, so `watcher gpus` can show who released what and when.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cluster.gpu.kernel_log import KernelCursor
from cluster.gpu.ledger import CleanupResult, QuarantineEntry
from pipeline.store.base import StoreBase, dumps, loads, now

# The last GPU probe of each node is kept as one event row per node (no table of its own: schema v3 holds).
PROBE_EVENT = "gpu_probe"


class LedgerMixin(StoreBase):
    def _log_ledger(
        self,
        conn: Any,
        node: str,
        gpu: int,
        action: str,
        *,
        status: str | None = None,
        reason: str | None = None,
        evidence: Sequence[str] | None = None,
        actor: str | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO gpu_ledger_log (node, gpu, action, status, reason, evidence, actor, time) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (node, gpu, action, status, reason, dumps(list(evidence)) if evidence is not None else None, actor, now()),
        )

    def quarantine(
        self, node: str, gpu: int, reason: str, evidence: Sequence[str] = (), source: str = "manual"
    ) -> None:
        """Take a GPU out of service; quarantining it again refreshes reason and evidence, keeps `since`."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO gpu_quarantine (node, gpu, reason, evidence, source, since) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (node, gpu) DO UPDATE SET reason = excluded.reason, evidence = excluded.evidence, "
                "source = excluded.source, ok_streak = 0",
                (node, gpu, reason, dumps(list(evidence)), source, now()),
            )
            self._log_ledger(conn, node, gpu, "quarantine", reason=reason, evidence=evidence, actor=source)

    def release(self, node: str, gpu: int, by: str) -> bool:
        """Return a GPU to service; False if it was not quarantined."""
        with self._tx() as conn:
            cur = conn.execute("DELETE FROM gpu_quarantine WHERE node = ? AND gpu = ?", (node, gpu))
            if cur.rowcount:
                self._log_ledger(conn, node, gpu, "release", actor=by)
            return cur.rowcount > 0

    def record_check(self, node: str, gpu: int, status: str, evidence: Sequence[str] = ()) -> int | None:
        """Log a health check; for a quarantined GPU returns its run of consecutive ok checks (probation)."""
        status = str(status)
        with self._tx() as conn:
            self._log_ledger(conn, node, gpu, "check", status=status, evidence=evidence)
            row = conn.execute(
                "SELECT ok_streak FROM gpu_quarantine WHERE node = ? AND gpu = ?", (node, gpu)
            ).fetchone()
            if row is None:
                return None
            streak = row["ok_streak"] + 1 if status == "ok" else 0
            conn.execute(
                "UPDATE gpu_quarantine SET ok_streak = ?, last_check = ?, last_status = ? WHERE node = ? AND gpu = ?",
                (streak, now(), status, node, gpu),
            )
            return streak

    def entries(self) -> list[QuarantineEntry]:
        """GPUs quarantined now."""
        rows = self._query("SELECT * FROM gpu_quarantine ORDER BY node, gpu")
        return [
            QuarantineEntry(
                node=row["node"],
                gpu=row["gpu"],
                reason=row["reason"],
                evidence=tuple(loads(row["evidence"]) or ()),
                source=row["source"],
                since=row["since"],
                ok_streak=row["ok_streak"],
                last_check=row["last_check"],
                last_status=row["last_status"],
            )
            for row in rows
        ]

    def ledger_log(self, node: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM gpu_ledger_log", ()
        if node is not None:
            sql, params = sql + " WHERE node = ?", (node,)
        rows = self._query(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [{**dict(row), "evidence": loads(row["evidence"])} for row in rows]

    # --- the kernel log cursor: only lines after it count (cluster.gpu.probe) -----------------------------
    def kernel_cursor(self, node: str) -> KernelCursor | None:
        rows = self._query("SELECT boot_id, timestamp FROM kernel_cursor WHERE node = ?", (node,))
        return KernelCursor(rows[0]["boot_id"], rows[0]["timestamp"]) if rows else None

    def save_kernel_cursor(self, node: str, cursor: KernelCursor, lines: Sequence[str]) -> None:
        """Move the node's cursor and keep the new lines read, in one transaction: whoever reads a line
        records it, so the next reader (a run, a cron preflight) does not count it again nor lose it."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO kernel_cursor (node, boot_id, timestamp, time) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (node) DO UPDATE SET boot_id = excluded.boot_id, timestamp = excluded.timestamp, "
                "time = excluded.time",
                (node, cursor.boot_id, cursor.timestamp, now()),
            )
            for line in lines:
                conn.execute(
                    "INSERT INTO kernel_lines (node, boot_id, line, time) VALUES (?, ?, ?, ?)",
                    (node, cursor.boot_id, line, now()),
                )

    def kernel_lines(self, node: str | None = None) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM kernel_lines", ()
        if node is not None:
            sql, params = sql + " WHERE node = ?", (node,)
        return [dict(row) for row in self._query(sql + " ORDER BY id", params)]

    # --- GPU cleanups (cluster.gpu.cleanup) -----------------------------------------------------------------
    def record_cleanup(self, result: CleanupResult) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO cleanup_results (node, exit_code, ok, findings, kernel, stderr_tail, time) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (result.node, result.exit_code, int(result.ok), dumps(list(result.findings)),
                 dumps(list(result.kernel)), result.stderr_tail, now()),
            )  # fmt: skip

    def cleanup_results(self, node: str | None = None) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM cleanup_results", ()
        if node is not None:
            sql, params = sql + " WHERE node = ?", (node,)
        rows = self._query(sql + " ORDER BY id", params)
        return [{**dict(row), "findings": loads(row["findings"]), "kernel": loads(row["kernel"])} for row in rows]

    # --- each node's last GPU probe: health.min_probe_interval_s across processes (cluster.gpu.probe) --------
    def last_probe(self, node: str) -> tuple[float, dict[str, Any]] | None:
        rows = self._query(
            "SELECT time, detail FROM events WHERE kind = ? AND node = ? ORDER BY id DESC LIMIT 1", (PROBE_EVENT, node)
        )
        if not rows:
            return None
        reading = loads(rows[0]["detail"])
        return (float(rows[0]["time"]), reading) if isinstance(reading, dict) else None

    def save_probe(self, node: str, reading: dict[str, Any]) -> None:
        """Keep the node's newest reading only (the one before it is replaced in the same transaction)."""
        with self._tx() as conn:
            conn.execute("DELETE FROM events WHERE kind = ? AND node = ?", (PROBE_EVENT, node))
            conn.execute(
                "INSERT INTO events (run_id, step, kind, node, gpu, reason, detail, time) "
                "VALUES (NULL, NULL, ?, ?, NULL, ?, ?, ?)",
                (PROBE_EVENT, node, "last GPU probe of the node", dumps(reading), now()),
            )
