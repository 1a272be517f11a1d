"""GPU health values shared by the probes, preflight, the scheduler and the health ledger."""

from __future__ import annotations

import math
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


# Readings no working GPU can give: a dead SMU or a broken driver returns these (NaN, -300 C, -5 %).
LIMITS: dict[str, tuple[float, float]] = {
    "temp": (-40.0, 150.0),
    "use_pct": (0.0, 100.0),
    "power_w": (0.0, 1000.0),
    "vram_used": (0.0, float(1 << 50)),
    "vram_total": (0.0, float(1 << 50)),
}


def impossible_readings(readings: dict[str, float | str | None]) -> list[str]:
    """Evidence for every non-finite or physically impossible numeric reading."""
    out = []
    for key, value in readings.items():
        if not isinstance(value, float | int) or isinstance(value, bool):
            continue
        if not math.isfinite(value):
            out.append(f"non-finite reading {key} = {value}")
            continue
        low, high = LIMITS.get("temp" if key.startswith("temp") else key, (-math.inf, math.inf))
        if not low <= value <= high:
            out.append(f"physically impossible reading {key} = {value:g}")
    return out
