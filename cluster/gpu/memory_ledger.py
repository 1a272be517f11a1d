"""The `HealthLedger` kept in memory: for a process that has no run store (a one-off check, a library caller,
the tests of the ledger's rules), and the reference the SQL ledger of the run store is held to.

Both implementations pass one behavioural suite (tests/cluster/test_ledger_contract.py), so a rule proved on
this one holds on the one that runs in production. Nothing here outlives the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from cluster.gpu.kernel_log import KernelCursor
from cluster.gpu.ledger import CleanupResult, QuarantineEntry


class MemoryLedger:
    """Safe to use from several threads (the scheduler's slots write to it concurrently)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._quarantine: dict[tuple[str, int], QuarantineEntry] = {}
        self._log: list[dict[str, Any]] = []
        self._cursors: dict[str, KernelCursor] = {}
        self._lines: list[dict[str, Any]] = []
        self._cleanups: list[dict[str, Any]] = []
        self._probes: dict[str, tuple[float, dict[str, Any]]] = {}

    def _note(self, node: str, gpu: int, action: str, **fields: Any) -> None:
        self._log.append({"node": node, "gpu": gpu, "action": action, "time": time.time(), **fields})

    # --- quarantine -----------------------------------------------------------------------------------
    def entries(self) -> list[QuarantineEntry]:
        with self._lock:
            return [self._quarantine[key] for key in sorted(self._quarantine)]

    def quarantine(
        self, node: str, gpu: int, reason: str, evidence: Sequence[str] = (), source: str = "manual"
    ) -> None:
        """Quarantining a GPU again refreshes reason, evidence and source, keeps `since`, restarts probation."""
        with self._lock:
            kept = self._quarantine.get((node, gpu))
            since = kept.since if kept is not None else time.time()
            last = (kept.last_check, kept.last_status) if kept is not None else (None, None)
            self._quarantine[(node, gpu)] = QuarantineEntry(node, gpu, reason, tuple(evidence), source, since, 0, *last)
            self._note(node, gpu, "quarantine", reason=reason, evidence=list(evidence), actor=source)

    def release(self, node: str, gpu: int, by: str) -> bool:
        with self._lock:
            if self._quarantine.pop((node, gpu), None) is None:
                return False
            self._note(node, gpu, "release", actor=by)
            return True

    def record_check(self, node: str, gpu: int, status: str, evidence: Sequence[str] = ()) -> int | None:
        status = str(status)
        with self._lock:
            self._note(node, gpu, "check", status=status, evidence=list(evidence))
            kept = self._quarantine.get((node, gpu))
            if kept is None:
                return None
            streak = kept.ok_streak + 1 if status == "ok" else 0
            self._quarantine[(node, gpu)] = replace(kept, ok_streak=streak, last_check=time.time(), last_status=status)
            return streak

    def ledger_log(self, node: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Every action, newest first."""
        with self._lock:
            rows = [dict(row) for row in reversed(self._log) if node is None or row["node"] == node]
        return rows[:limit]

    # --- what the probes and cleanups keep ----------------------------------------------------------------
    def kernel_cursor(self, node: str) -> KernelCursor | None:
        with self._lock:
            return self._cursors.get(node)

    def save_kernel_cursor(self, node: str, cursor: KernelCursor, lines: Sequence[str]) -> None:
        with self._lock:
            self._cursors[node] = cursor
            now = time.time()
            self._lines.extend({"node": node, "boot_id": cursor.boot_id, "line": line, "time": now} for line in lines)

    def kernel_lines(self, node: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(row) for row in self._lines if node is None or row["node"] == node]

    def record_cleanup(self, result: CleanupResult) -> None:
        with self._lock:
            self._cleanups.append({"node": result.node, "exit_code": result.exit_code, "ok": int(result.ok),
                                   "findings": list(result.findings), "kernel": list(result.kernel),
                                   "stderr_tail": result.stderr_tail, "time": time.time()})  # fmt: skip

    def cleanup_results(self, node: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(row) for row in self._cleanups if node is None or row["node"] == node]

    def last_probe(self, node: str) -> tuple[float, dict[str, Any]] | None:
        with self._lock:
            return self._probes.get(node)

    def save_probe(self, node: str, reading: dict[str, Any]) -> None:
        with self._lock:
            self._probes[node] = (time.time(), dict(reading))
