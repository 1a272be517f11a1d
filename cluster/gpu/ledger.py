"""The GPU health ledger's contract and rules: which GPUs are quarantined, and when a check changes that.

The ledger is kept in the run store (pipeline/store/ledger.py implements `HealthLedger` in SQL) or, for a
process without one, in memory (memory_ledger.py); both pass one behavioural suite
(tests/cluster/test_ledger_contract.py). This module holds what every user of it shares, so preflight and
the scheduler apply one set of rules. The ledger is also where the GPU layer keeps what must outlive one
reader: each node's kernel-log cursor (and the lines read), every cleanup's result and each node's last
probe. It is handed to whoever reads or
writes those (`probe_node_full`, `probe_gpu`, `cleanup_node`, `run_preflight`) as a parameter; there is
no process-wide default. The rules:
- a GPU that reads FAULTED is quarantined (unless the config already excludes it: excluded GPUs are
  never given work, so re-quarantining them would only add noise);
- every check of a GPU is logged with its evidence;
- a quarantined GPU is released after `probation_checks` consecutive clean checks.
The decisions are pure functions; `apply_checks` is the one place that turns them into ledger writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from cluster.config import NodeConfig
from cluster.gpu.health import GpuHealth, HealthStatus
from cluster.gpu.kernel_log import KernelCursor


@dataclass(frozen=True)
class QuarantineEntry:
    node: str
    gpu: int
    reason: str
    evidence: tuple[str, ...]
    source: str
    since: float
    ok_streak: int = 0
    last_check: float | None = None
    last_status: str | None = None


@dataclass(frozen=True)
class CleanupResult:
    """What one run of scripts/cleanup_gpus.sh on a node said, kept whole in the ledger."""

    node: str
    exit_code: int | None
    findings: tuple[str, ...] = ()  # FAULTED / MISSING / ORPHANED_VRAM / CLOCKS lines, and errors running it
    kernel: tuple[str, ...] = ()  # SMU kernel lines since the last cleanup
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.findings


@runtime_checkable
class HealthLedger(Protocol):
    """Where quarantine survives the process (the run store provides it)."""

    def entries(self) -> Sequence[QuarantineEntry]:
        """GPUs quarantined now."""
        ...

    def quarantine(
        self, node: str, gpu: int, reason: str, evidence: Sequence[str] = (), source: str = "manual"
    ) -> None:
        """Take a GPU out of service (again: refreshes reason and evidence)."""
        ...

    def release(self, node: str, gpu: int, by: str) -> bool:
        """Return a GPU to service; False if it was not quarantined."""
        ...

    def record_check(self, node: str, gpu: int, status: str, evidence: Sequence[str] = ()) -> int | None:
        """Log a health check; for a quarantined GPU, its run of consecutive ok checks."""
        ...

    def kernel_cursor(self, node: str) -> KernelCursor | None:
        """Where the last reader of the node's kernel log stopped (None: never read)."""
        ...

    def save_kernel_cursor(self, node: str, cursor: KernelCursor, lines: Sequence[str]) -> None:
        """Move the node's cursor and keep the trouble lines read up to it, together."""
        ...

    def kernel_lines(self, node: str | None = None) -> list[dict[str, Any]]:
        """The kept kernel lines, oldest first: {"node", "boot_id", "line", "time"} each."""
        ...

    def record_cleanup(self, result: CleanupResult) -> None:
        """Keep what one run of the cleanup script on a node said."""
        ...

    def cleanup_results(self, node: str | None = None) -> list[dict[str, Any]]:
        """The kept cleanup results, oldest first: {"node", "exit_code", "ok", "findings", "kernel",
        "stderr_tail", "time"} each."""
        ...

    def last_probe(self, node: str) -> tuple[float, dict[str, Any]] | None:
        """(wall-clock time, reading) of the node's last fresh GPU probe by any process, or None."""
        ...

    def save_probe(self, node: str, reading: dict[str, Any]) -> None:
        """Keep a fresh probe's reading (JSON-able) as the node's last, stamped now."""
        ...


def quarantined_keys(entries: Iterable[QuarantineEntry | tuple[str, int]]) -> set[tuple[str, int]]:
    """(node, gpu) keys of ledger entries (or of plain (node, gpu) pairs)."""
    keys: set[tuple[str, int]] = set()
    for entry in entries:
        if isinstance(entry, tuple):
            keys.add((str(entry[0]), int(entry[1])))
        else:
            keys.add((entry.node, int(entry.gpu)))
    return keys


def quarantined_on(entries: Iterable[QuarantineEntry], node: str) -> set[int]:
    return {gpu for name, gpu in quarantined_keys(entries) if name == node}


class CheckAction(StrEnum):
    QUARANTINE = "quarantine"  # newly faulted
    STILL_FAULTED = "still_faulted"  # quarantined and still faulted
    CHECKED = "checked"  # a plain check to log
    SKIP = "skip"  # excluded by config, or a cpu slot: not the ledger's business


def check_action(node: NodeConfig, gpu: GpuHealth, quarantined: set[int]) -> CheckAction:
    """What one fresh reading of a GPU means for the ledger."""
    if gpu.index in node.excluded_indices or node.gpu_kind == "cpu":
        return CheckAction.SKIP
    if gpu.status is HealthStatus.FAULTED:
        return CheckAction.STILL_FAULTED if gpu.index in quarantined else CheckAction.QUARANTINE
    return CheckAction.CHECKED


def quarantine_reason(gpu: GpuHealth) -> str:
    """ "SMU hang suspected" when a read of the GPU hung or failed, else the plain fault."""
    hang = next((e for e in gpu.evidence if e.startswith("SMU hang suspected")), None)
    return f"preflight: {hang}" if hang else "preflight: GPU faulted"


def passes_probation(streak: int | None, probation_checks: int) -> bool:
    """A quarantined GPU's run of clean checks is long enough to give it work again."""
    return streak is not None and streak >= probation_checks


def apply_checks(
    ledger: HealthLedger, node: NodeConfig, gpus: Iterable[GpuHealth], quarantined: set[int], probation_checks: int
) -> tuple[list[GpuHealth], list[tuple[int, int]]]:
    """Write one node's fresh readings to the ledger. Returns (newly quarantined GPUs, [(gpu, streak)] released)."""
    newly: list[GpuHealth] = []
    released: list[tuple[int, int]] = []
    for gpu in gpus:
        action = check_action(node, gpu, quarantined)
        if action is CheckAction.SKIP:
            continue
        if action is CheckAction.QUARANTINE:
            ledger.quarantine(node.name, gpu.index, quarantine_reason(gpu), list(gpu.evidence), "preflight")
            newly.append(gpu)
        streak = ledger.record_check(node.name, gpu.index, gpu.status.value, list(gpu.evidence))
        if action is CheckAction.CHECKED and gpu.index in quarantined and passes_probation(streak, probation_checks):
            ledger.release(node.name, gpu.index, "probation")
            released.append((gpu.index, int(streak or 0)))
    return newly, released
