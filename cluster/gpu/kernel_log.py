"""Kernel log lines that mean an AMD GPU's SMU (firmware controller) failed or hung.

Read off `dmesg`; mapped to a GPU by the PCI address in the line. Healthy boot noise ("SMU is
initialized successfully") is never a fault. A line without a PCI address is a node-level warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FAULT_PATTERNS = (
    re.compile(r"SMU: response:\s*0xFFFFFFFF", re.IGNORECASE),
    re.compile(r"I'm not done with your previous command"),
    re.compile(r"No response msg_reg"),
    re.compile(r"SMC is not ready"),
    re.compile(r"SMC engine is not correctly up"),
    re.compile(r"GPU reset begin"),
    re.compile(r"ring \S+ test failed"),
    re.compile(r"\[powerplay\] Failed to send message"),
)
PCI = re.compile(r"\b(?:amdgpu\s+)?([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f])\b", re.IGNORECASE)


@dataclass(frozen=True)
class KernelFault:
    pci_bus: str | None  # lower-case domain:bus:dev.fn, None when the line names no device
    line: str


def parse_kernel_lines(text: str) -> list[KernelFault]:
    faults = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if any(p.search(line) for p in FAULT_PATTERNS):
            match = PCI.search(line)
            faults.append(KernelFault(match.group(1).lower() if match else None, line))
    return faults


def normalise_bus(bus: str | None) -> str | None:
    """rocm-smi prints "0000:03:00.0"; older tools may drop the domain."""
    if not bus:
        return None
    bus = bus.strip().lower()
    return bus if bus.count(":") == 2 else f"0000:{bus}"
