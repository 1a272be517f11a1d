"""Run scripts/cleanup_gpus.sh on a node after a job batch and read what it reports."""

from __future__ import annotations

import re
from pathlib import Path

from cluster.gpu.health import GpuHealth, HealthStatus
from cluster.transport.base import Executor

FAULT_LINE = re.compile(r"^FAULTED gpu=(\d+) reason=(.*)$", re.MULTILINE)


def parse_cleanup_report(node: str, stdout: str) -> list[GpuHealth]:
    return [
        GpuHealth(node, int(m.group(1)), HealthStatus.FAULTED, (f"cleanup: {m.group(2).strip()}",))
        for m in FAULT_LINE.finditer(stdout)
    ]


def cleanup_node(executor: Executor, script: str = "scripts/cleanup_gpus.sh") -> list[GpuHealth]:
    """Faulted GPUs the cleanup found (empty when all answered). The script path is relative to the
    node's workdir, where watcher is installed."""
    if executor.node.gpu_kind != "rocm":
        return []
    path = script if Path(script).is_absolute() else f"{executor.node.workdir.rstrip('/')}/{script}"
    result = executor.run(["bash", path], timeout=120)
    return parse_cleanup_report(executor.name, result.stdout)
