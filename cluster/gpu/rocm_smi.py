"""rocm-smi output -> GpuHealth per GPU, with the evidence that decided it.

rocm-smi's exit code says nothing about health (a healthy `--showuse` exits 2, a missing driver 0),
so only the content counts. A GPU whose SMU stopped answering shows up as all-ones readings
(4294967295, 4294.967295 W, 0xFFFFFFFF), a card missing from the JSON, a card without its use key, a
concise row of N/A with Perf `unknown`, or `Expected integer value from monitor` on stderr.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from cluster.gpu.health import GpuHealth, HealthStatus, grade, missing_gpu, worst
from cluster.gpu.kernel_log import KernelFault, normalise_bus

ALL_ONES = re.compile(r"^(?:4294967295(?:\.0+)?|4294\.967295|0x[fF]{8}|-1)$")
MONITOR_ERROR = "Expected integer value from monitor"
USE_KEY = "GPU use (%)"
JSON_COMMAND = ["rocm-smi", "--showtemp", "--showpower", "--showuse", "--showmeminfo", "vram", "--showbus", "--json"]


def _strip_unit(value: str) -> str:
    return re.sub(r"(°C|c|C|W|%|Mhz|MHz)$", "", value.strip())


def _float(value: object) -> float | None:
    try:
        return float(_strip_unit(str(value)))
    except ValueError:
        return None


def _all_ones(value: object) -> bool:
    return bool(ALL_ONES.match(_strip_unit(str(value))))


def parse_rocm_json(
    node: str,
    stdout: str,
    stderr: str,
    gpu_count: int,
    *,
    indices: Iterable[int] | None = None,
    max_temp_c: float = 95.0,
    max_memory_pct: float = 95.0,
) -> list[GpuHealth]:
    """`rocm-smi ... --json` output for a node with `gpu_count` GPUs (or only `indices`, as with -d)."""
    start = stdout.find("{")
    try:
        data = json.loads(stdout[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        data = {}
    monitor_errors = stderr.count(MONITOR_ERROR)
    out = []
    for index in indices if indices is not None else range(gpu_count):
        card = data.get(f"card{index}")
        if not isinstance(card, dict):
            out.append(missing_gpu(node, index, "rocm-smi's JSON") if data else
                       GpuHealth(node, index, HealthStatus.FAULTED, ("rocm-smi printed no JSON",)))  # fmt: skip
            continue
        evidence: list[str] = []
        readings: dict[str, float | str | None] = {}
        for key, value in card.items():
            if _all_ones(value):
                evidence.append(f"all-ones reading {key} = {value}")
            low = key.lower()
            if low.startswith("temperature") and "hbm" not in low:
                readings["temp_" + low.split("(sensor ")[-1].split(")")[0]] = _float(value)
            elif "power" in low:
                readings["power_w"] = _float(value)
            elif key == USE_KEY:
                readings["use_pct"] = _float(value)
            elif key == "VRAM Total Memory (B)":
                readings["vram_total"] = _float(value)
            elif key == "VRAM Total Used Memory (B)":
                readings["vram_used"] = _float(value)
        if USE_KEY not in card:
            evidence.append(f"no '{USE_KEY}' for card{index}: the SMU did not answer")
        sensors = [v for k, v in card.items() if k.lower().startswith("temperature") and "hbm" not in k.lower()]
        if sensors and all(str(v) == "N/A" for v in sensors) and evidence:
            evidence.append("every temperature sensor reads N/A")
        if monitor_errors and any(str(v) == "N/A" for k, v in card.items() if k == USE_KEY):
            evidence.append(f"stderr: {MONITOR_ERROR} (x{monitor_errors})")
        bus = normalise_bus(str(card["PCI Bus"])) if "PCI Bus" in card else None
        out.append(grade(node, index, evidence, readings, bus, max_temp_c, max_memory_pct))
    return out


def parse_concise(
    node: str, stdout: str, stderr: str = "", gpu_count: int | None = None, *, max_temp_c: float = 95.0
) -> list[GpuHealth]:
    """The concise table (plain `rocm-smi`): 5.x `GPU Temp AvgPwr ...` and 6.x `Device Node IDs ...
    Partitions ...` layouts. Columns are read from the right end, which both layouts share."""
    out: dict[int, GpuHealth] = {}
    monitor_errors = stderr.count(MONITOR_ERROR) + stdout.count(MONITOR_ERROR)
    for line in stdout.splitlines():
        tokens = line.split()
        if len(tokens) < 9 or not tokens[0].isdigit():
            continue
        index = int(tokens[0])
        sclk, _mclk, _fan, perf, _pwrcap, _vram, use = tokens[-7:]
        middle = tokens[1:-7]
        temp = next((t for t in middle if t.endswith(("c", "°C")) or t == "N/A"), None)
        power = next((t for t in middle if t.endswith("W")), None)
        evidence = []
        for label, value in (("power", power), ("temperature", temp), ("GPU%", use), ("SCLK", sclk)):
            if value and _all_ones(value):
                evidence.append(f"all-ones {label} reading {value}")
        if perf == "unknown":
            evidence.append("Perf level 'unknown' (driver lost the GPU)")
        if temp == "N/A" and (use in {"Unsupported", "N/A"} or perf == "unknown" or sclk in {"None", "N/A"}):
            evidence.append(f"N/A row: temp {temp}, SCLK {sclk}, GPU% {use}")
        if evidence and monitor_errors:
            evidence.append(f"stderr: {MONITOR_ERROR} (x{monitor_errors})")
        readings: dict[str, float | str | None] = {"temp_edge": _float(temp or ""), "power_w": _float(power or ""),
                                                   "use_pct": _float(use), "perf": perf}  # fmt: skip
        out[index] = grade(node, index, evidence, readings, None, max_temp_c, 100.0)
    if gpu_count is not None:
        for index in range(gpu_count):
            out.setdefault(index, missing_gpu(node, index, "the rocm-smi table"))
    return [out[i] for i in sorted(out)]


def parse_showuse_text(node: str, stdout: str, gpu_count: int) -> list[GpuHealth]:
    """`rocm-smi --showuse` text: `GPU[i] : GPU use (%): 97`; a GPU without that line is faulted."""
    uses: dict[int, str] = {}
    for match in re.finditer(r"GPU\[(\d+)\]\s*:\s*GPU use \(%\):\s*(\S+)", stdout):
        uses[int(match.group(1))] = match.group(2)
    out = []
    for index in range(gpu_count):
        value = uses.get(index)
        if value is None:
            out.append(GpuHealth(node, index, HealthStatus.FAULTED, ("no 'GPU use (%)' line: the SMU did not answer",)))
        elif _all_ones(value):
            out.append(GpuHealth(node, index, HealthStatus.FAULTED, (f"all-ones GPU use {value}",)))
        else:
            out.append(GpuHealth(node, index, HealthStatus.OK, (), None, {"use_pct": _float(value)}))
    return out


def apply_kernel_faults(gpus: list[GpuHealth], faults: Iterable[KernelFault]) -> list[GpuHealth]:
    """Mark the GPU a kernel SMU line names (by PCI address) as faulted, with the line as evidence."""
    by_bus: dict[str, list[str]] = {}
    for fault in faults:
        if fault.pci_bus and fault.gpu_fault:
            by_bus.setdefault(fault.pci_bus, []).append(fault.line)
    out = []
    for gpu in gpus:
        lines = by_bus.get(gpu.pci_bus or "", [])
        if lines:
            evidence = (*gpu.evidence, *(f"kernel: {line}" for line in lines[:5]))
            gpu = GpuHealth(gpu.node, gpu.index, worst(gpu.status, HealthStatus.FAULTED), evidence, gpu.pci_bus,
                            gpu.readings)  # fmt: skip
        out.append(gpu)
    return out
