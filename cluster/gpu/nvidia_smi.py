"""`nvidia-smi --query-gpu=index,temperature.gpu,power.draw,memory.used,memory.total,utilization.gpu
--format=csv,noheader` -> GpuHealth per GPU (for CUDA nodes such as the coordinator)."""

from __future__ import annotations

from cluster.gpu.health import GpuHealth, HealthStatus

QUERY = "index,temperature.gpu,power.draw,memory.used,memory.total,utilization.gpu"
BAD_TOKENS = ("[GPU requires reset]", "[Unknown Error]", "ERR!", "[Not Supported]")


def _number(text: str) -> float | None:
    token = text.strip().split(" ")[0]
    try:
        return float(token)
    except ValueError:
        return None


def parse_nvidia_csv(
    node: str, text: str, gpu_count: int, max_temp_c: float = 95.0, max_memory_pct: float = 95.0
) -> list[GpuHealth]:
    seen: dict[int, GpuHealth] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 6 or not cells[0].isdigit():
            continue
        index = int(cells[0])
        temp, power, used, total, util = (_number(c) for c in cells[1:6])
        readings = {"temp_c": temp, "power_w": power, "vram_used_mib": used, "vram_total_mib": total, "use_pct": util}
        evidence = [f"{c!r} in nvidia-smi row" for c in cells if any(b in c for b in BAD_TOKENS)]
        if temp is None or util is None:
            evidence.append(f"unreadable temperature/utilisation: {line.strip()}")
        status = HealthStatus.FAULTED if evidence else HealthStatus.OK
        if status is HealthStatus.OK:
            if temp is not None and temp > max_temp_c:
                status, evidence = HealthStatus.DEGRADED, [f"temperature {temp:g} C above {max_temp_c:g} C"]
            elif used is not None and total and used / total * 100 > max_memory_pct:
                status, evidence = HealthStatus.DEGRADED, [f"memory {used / total:.0%} used"]
        seen[index] = GpuHealth(node, index, status, tuple(evidence), None, readings)
    for index in range(gpu_count):
        if index not in seen:
            seen[index] = GpuHealth(node, index, HealthStatus.FAULTED, ("GPU missing from nvidia-smi output",))
    return [seen[i] for i in sorted(seen)]
