"""`nvidia-smi --query-gpu=index,temperature.gpu,power.draw,memory.used,memory.total,utilization.gpu
--format=csv,noheader` -> GpuHealth per GPU (for CUDA nodes such as the coordinator), with the readings named
as every reader names them (memory in bytes, the die temperature as temp_edge) and graded the same way."""

from __future__ import annotations

from cluster.gpu.health import GpuHealth, grade, missing_gpu

QUERY = "index,temperature.gpu,power.draw,memory.used,memory.total,utilization.gpu"
BAD_TOKENS = ("[GPU requires reset]", "[Unknown Error]", "ERR!", "[Not Supported]")
MIB = float(1 << 20)


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
        readings: dict[str, float | str | None] = {
            "temp_edge": temp, "power_w": power, "use_pct": util,
            "vram_used": None if used is None else used * MIB, "vram_total": None if total is None else total * MIB,
        }  # fmt: skip
        evidence = [f"{c!r} in nvidia-smi row" for c in cells if any(b in c for b in BAD_TOKENS)]
        if temp is None or util is None:
            evidence.append(f"unreadable temperature/utilisation: {line.strip()}")
        seen[index] = grade(node, index, evidence, readings, None, max_temp_c, max_memory_pct)
    for index in range(gpu_count):
        if index not in seen:
            seen[index] = missing_gpu(node, index, "nvidia-smi")
    return [seen[i] for i in sorted(seen)]
