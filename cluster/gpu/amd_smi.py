"""`amd-smi list --json` and `amd-smi metric --json` -> GpuHealth per GPU, with the evidence that decided it.

ROCm 6 ships amd-smi beside rocm-smi and ROCm 7 moves to it; a node without rocm-smi is read with amd-smi
(cluster/gpu/probe.py). Its JSON is a list with one object per GPU ("gpu": its index), or, in later releases,
that list under "gpu_data". A value is either plain (a number, a string such as "45 C") or an object
{"value", "unit"}; the library's "no reading" (the type's maximum, e.g. 0xFFFF) is printed as "N/A". What
means a sick GPU here: every reading N/A (the SMU stopped answering), a GPU missing from either list, or an
impossible reading. The readings use the names every GPU reader shares (`health.READING_NAMES`).
"""

from __future__ import annotations

import json
from typing import Any

from cluster.gpu.health import GpuHealth, grade, missing_gpu
from cluster.gpu.kernel_log import normalise_bus

LIST_COMMAND = ["amd-smi", "list", "--json"]
METRIC_COMMAND = ["amd-smi", "metric", "--json"]
SPLIT = "--- watcher: amd-smi metric ---"  # between the two commands' output in one call (probe.py)
NA = "N/A"
UNITS = {"B": 1.0, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30}
# (section, key) in a GPU's metric object -> the shared reading name
READINGS = {
    ("temperature", "edge"): "temp_edge",
    ("temperature", "hotspot"): "temp_junction",
    ("temperature", "mem"): "temp_memory",
    ("power", "socket_power"): "power_w",
    ("usage", "gfx_activity"): "use_pct",
    ("mem_usage", "used_vram"): "vram_used",
    ("mem_usage", "total_vram"): "vram_total",
}


def _gpus(stdout: str) -> dict[int, dict[str, Any]]:
    """GPU index -> its object, from either JSON shape (anything before the JSON, such as warnings, skipped)."""
    starts = [i for i in (stdout.find("["), stdout.find("{")) if i >= 0]
    try:
        data = json.loads(stdout[min(starts) :]) if starts else []
    except json.JSONDecodeError:
        return {}
    if isinstance(data, dict):
        data = data.get("gpu_data", [])
    out = {}
    for item in data if isinstance(data, list) else []:
        if isinstance(item, dict) and isinstance(item.get("gpu"), int) and not isinstance(item.get("gpu"), bool):
            out[item["gpu"]] = item
    return out


def reading(value: Any) -> float | str | None:
    """A value as a number (memory in bytes), NA for the library's "no reading", None when absent."""
    unit = ""
    if isinstance(value, dict):
        value, unit = value.get("value"), str(value.get("unit") or "")
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.upper() in {NA, "NA"}:
            return NA
        number, _, rest = text.partition(" ")
        value, unit = number, unit or rest.strip()
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number * UNITS.get(unit.upper(), 1.0)


def parse_amd_smi(
    node: str,
    list_stdout: str,
    metric_stdout: str,
    gpu_count: int,
    *,
    max_temp_c: float = 95.0,
    max_memory_pct: float = 95.0,
) -> list[GpuHealth]:
    listed, metrics = _gpus(list_stdout), _gpus(metric_stdout)
    out = []
    for index in range(gpu_count):
        if index not in listed or index not in metrics:
            where = "amd-smi list" if index not in listed else "amd-smi metric"
            out.append(missing_gpu(node, index, where if listed or metrics else "amd-smi (no JSON)"))
            continue
        bdf = listed[index].get("bdf")
        bus = normalise_bus(str(bdf)) if isinstance(bdf, str) and bdf not in {NA, ""} else None
        values = {name: reading((metrics[index].get(section) or {}).get(key)) for (section, key), name in
                  READINGS.items() if isinstance(metrics[index].get(section), dict)}  # fmt: skip
        present = {name: v for name, v in values.items() if v is not None}
        evidence = []
        if present and all(v == NA for v in present.values()):
            evidence.append(f"every amd-smi reading of GPU {index} is N/A ({', '.join(sorted(present))}): the SMU "
                            "did not answer")  # fmt: skip
        elif not present:
            evidence.append(f"amd-smi metric gave GPU {index} no temperature, power, usage or memory reading")
        readings: dict[str, float | str | None] = {n: v for n, v in present.items() if isinstance(v, float)}
        out.append(grade(node, index, evidence, readings, bus, max_temp_c, max_memory_pct))
    return out
