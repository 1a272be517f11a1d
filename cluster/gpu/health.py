"""GPU health values shared by the probes, preflight, the scheduler and the health ledger, and what every GPU
reader (rocm-smi, amd-smi, nvidia-smi, sysfs) shares: the names of the readings, how readings are graded, how
a missing GPU is told. tests/cluster/test_gpu_reader_contract.py holds every reader to them."""

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


# The readings every reader gives, by these names (absent where the tool has no such value): temp_edge (the
# GPU's main temperature sensor, C; NVIDIA's only one), temp_junction and temp_memory where the tool has them,
# power_w (W), use_pct (%), vram_used and vram_total (bytes).
READING_NAMES = ("temp_edge", "temp_junction", "temp_memory", "power_w", "use_pct", "vram_used", "vram_total")


def grade(
    node: str, index: int, evidence: list[str], readings: dict[str, float | str | None], bus: str | None,
    max_temp_c: float, max_memory_pct: float,
) -> GpuHealth:  # fmt: skip
    """One GPU's verdict from what a reader found: FAULTED with any evidence (impossible readings added),
    DEGRADED when hot or its memory nearly full, else OK."""
    evidence = [*evidence, *impossible_readings(readings)]
    if evidence:
        return GpuHealth(node, index, HealthStatus.FAULTED, tuple(evidence), bus, readings)
    status, notes = HealthStatus.OK, []
    temps = [v for k, v in readings.items() if k.startswith("temp") and isinstance(v, float)]
    if temps and max(temps) > max_temp_c:
        status, notes = HealthStatus.DEGRADED, [f"temperature {max(temps):g} C above {max_temp_c:g} C"]
    used, total = readings.get("vram_used"), readings.get("vram_total")
    if isinstance(used, float) and isinstance(total, float) and total > 0 and used / total * 100 > max_memory_pct:
        status = HealthStatus.DEGRADED
        notes.append(f"VRAM {used / total:.0%} used (above {max_memory_pct:g}%)")
    return GpuHealth(node, index, status, tuple(notes), bus, readings)


def missing_gpu(node: str, index: int, tool: str) -> GpuHealth:
    """A GPU the config expects that the tool does not report: the driver lost it, or its SMU hung."""
    return GpuHealth(node, index, HealthStatus.FAULTED, (f"GPU {index} missing from {tool} output",))
