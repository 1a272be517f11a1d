"""GPU health values shared by the probes, preflight, the scheduler and the health ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class HealthStatus(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"  # usable but worth a look: hot, memory nearly full
    FAULTED = "faulted"  # must get no work: SMU not answering, all-ones readings, missing from the driver

    @property
    def rank(self) -> int:
        return {"ok": 0, "degraded": 1, "faulted": 2}[self.value]


@dataclass(frozen=True)
class GpuHealth:
    """The verdict on one GPU plus the evidence that decided it (what an operator reads first)."""

    node: str
    index: int
    status: HealthStatus
    evidence: tuple[str, ...] = ()
    pci_bus: str | None = None
    readings: dict[str, float | str | None] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        return f"{self.node}:{self.index}"


def worst(a: HealthStatus, b: HealthStatus) -> HealthStatus:
    return a if a.rank >= b.rank else b
