"""Kernel log lines that mean trouble on a rig, and which of them are new since the last check.

Read off `dmesg`; a line naming a PCI address is mapped to that GPU, and so is one naming a KFD topology
node ("HW Exception by GPU node-11": the HSA agent's node id) once the probe has read which PCI address
each KFD node is (`map_kfd_nodes`); the others are the node's.
Kinds: `smu` (the SMU, the GPU's firmware controller, failed or hung), `gpu_hang` (HW exception,
ring test timeouts), `oom` (the kernel's OOM killer took a process: a worker dies without a word on
stderr) and `soft_lockup` (a CPU stuck: the rig itself is struggling). Healthy boot noise ("SMU is
initialized successfully") is never a fault.

Kernel lines never expire on their own (dmesg keeps them until a reboot), so a reader keeps a cursor:
the boot id and the kernel timestamp of the last line it read. Only lines after it count; a different
boot id means the rig rebooted and every line is new. A reader with nowhere to keep a cursor may instead
take only the lines of the last seconds (`recent_lines`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

SMU_PATTERNS = (
    re.compile(r"SMU: response:\s*0xFFFFFFFF", re.IGNORECASE),
    re.compile(r"I'm not done with your previous command"),
    re.compile(r"No response msg_reg"),
    re.compile(r"SMC is not ready"),
    re.compile(r"SMC engine is not correctly up"),
    re.compile(r"GPU reset begin"),
    re.compile(r"\[powerplay\] Failed to send message"),
)
GPU_HANG_PATTERNS = (
    re.compile(r"HW Exception by GPU node-\d+"),
    re.compile(r"GPU Hang", re.IGNORECASE),
    re.compile(r"ring \S+ test failed"),
    re.compile(r"ring \S+ timeout", re.IGNORECASE),
)
OOM_PATTERN = re.compile(r"Out of memory: Killed process (\d+) \(([^)]*)\)")
SOFT_LOCKUP_PATTERN = re.compile(r"soft lockup - CPU#\d+ stuck for \d+s")
FAULT_PATTERNS = SMU_PATTERNS + GPU_HANG_PATTERNS  # GPU faults (kept for callers of the old name)
PCI = re.compile(r"\b(?:amdgpu\s+)?([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f])\b", re.IGNORECASE)
TIMESTAMP = re.compile(r"^\[\s*(\d+(?:\.\d+)?)\]")
KFD_NODE = re.compile(r"\bGPU node-(\d+)\b")


@dataclass(frozen=True)
class KernelFault:
    pci_bus: str | None  # lower-case domain:bus:dev.fn, None when the line names no device
    line: str
    kind: str = "smu"  # smu | gpu_hang | oom | soft_lockup
    timestamp: float | None = None  # seconds since boot, as dmesg prints it
    kfd_node: int | None = None  # the KFD topology node the line names ("GPU node-11"), if any

    @property
    def gpu_fault(self) -> bool:
        return self.kind in {"smu", "gpu_hang"}


@dataclass(frozen=True)
class KernelCursor:
    """Where a reader of one node's kernel log stopped: that boot, that kernel timestamp."""

    boot_id: str
    timestamp: float


def line_timestamp(line: str) -> float | None:
    match = TIMESTAMP.match(line.strip())
    return float(match.group(1)) if match else None


def _kind(line: str) -> str | None:
    if OOM_PATTERN.search(line):
        return "oom"
    if SOFT_LOCKUP_PATTERN.search(line):
        return "soft_lockup"
    if any(p.search(line) for p in GPU_HANG_PATTERNS):
        return "gpu_hang"
    if any(p.search(line) for p in SMU_PATTERNS):
        return "smu"
    return None


def parse_kernel_lines(text: str) -> list[KernelFault]:
    faults = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        kind = _kind(line)
        if kind is not None:
            match = PCI.search(line)
            bus = match.group(1).lower() if match else None
            kfd = KFD_NODE.search(line)
            faults.append(KernelFault(bus, line, kind, line_timestamp(line), int(kfd.group(1)) if kfd else None))
    return faults


def new_lines(text: str, boot_id: str, cursor: KernelCursor | None) -> tuple[str, KernelCursor | None]:
    """The part of a dmesg text after `cursor` (all of it after a reboot or on a first read), and the cursor
    to keep: the last timestamp seen on this boot (the old cursor when the text has no timestamp)."""
    same_boot = cursor is not None and cursor.boot_id == boot_id
    kept, last = [], cursor.timestamp if same_boot and cursor else None
    for raw in text.splitlines():
        ts = line_timestamp(raw)
        if ts is not None and same_boot and cursor is not None and ts <= cursor.timestamp:
            continue
        kept.append(raw)
        if ts is not None and (last is None or ts > last):
            last = ts
    if last is None:
        return "\n".join(kept), (cursor if same_boot else (KernelCursor(boot_id, 0.0) if boot_id else None))
    return "\n".join(kept), KernelCursor(boot_id, last)


def recent_lines(text: str, since: float) -> str:
    """The lines of a dmesg text stamped at or after `since` (seconds since boot). A text without any
    timestamp (printk.time=0) cannot be cut by time: all of it is returned."""
    lines = text.splitlines()
    stamps = [line_timestamp(raw) for raw in lines]
    if all(ts is None for ts in stamps):
        return text
    return "\n".join(raw for raw, ts in zip(lines, stamps, strict=True) if ts is not None and ts >= since)


def map_kfd_nodes(faults: Iterable[KernelFault], kfd_buses: Mapping[int, str]) -> list[KernelFault]:
    """Lines that name a KFD node but no PCI address get that node's PCI address (from the KFD topology)."""
    return [replace(f, pci_bus=kfd_buses[f.kfd_node]) if f.pci_bus is None and f.kfd_node in kfd_buses else f
            for f in faults]  # fmt: skip


def node_lines(faults: Iterable[KernelFault]) -> list[KernelFault]:
    """Lines that name no GPU: the OOM killer, soft lockups, SMU messages without an address."""
    return [f for f in faults if f.pci_bus is None]


def oom_line(evidence: Iterable[str]) -> str | None:
    """The OOM killer's line among evidence strings, if one is there."""
    for item in evidence:
        if OOM_PATTERN.search(item):
            return item
    return None


def normalise_bus(bus: str | None) -> str | None:
    """rocm-smi prints "0000:03:00.0"; older tools may drop the domain."""
    if not bus:
        return None
    bus = bus.strip().lower()
    return bus if bus.count(":") == 2 else f"0000:{bus}"
