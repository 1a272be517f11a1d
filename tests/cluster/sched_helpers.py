"""Shared pieces of the scheduler tests: local multi-node configs, the test worker, a flag-file probe."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loguru import logger

from cluster.config import ClusterConfig, parse_config
from cluster.gpu.health import GpuHealth, HealthStatus
from cluster.scheduler.types import ChunkSpec
from cluster.transport.base import Executor
from cluster.transport.local import LocalExecutor

WORKER = Path(__file__).with_name("sched_worker.py")
WORKER_ARGV = ("-S", str(WORKER))


def local_config(
    workdir: Path, nodes: dict[str, int], kind: str = "rocm", health: dict[str, Any] | None = None, **policy: Any
) -> ClusterConfig:
    """Several 'local' nodes on this machine: the scheduler's real code path without sshd."""
    policy = {"backoff_s": 0.01, "backoff_max_s": 0.05, "worker_start_stagger_s": 0, **policy}
    return parse_config(
        {
            "nodes": [
                {
                    "name": name,
                    "transport": "local",
                    "gpu_kind": kind,
                    "gpu_count": count,
                    "python": sys.executable,
                    "workdir": str(workdir),
                }
                for name, count in nodes.items()
            ],
            "timeouts": {"job": 30},
            "scheduler": policy,
            "health": health or {},
        }
    )


def local_executors(config: ClusterConfig) -> dict[str, Executor]:
    return {node.name: LocalExecutor(node) for node in config.nodes}


def chunks(n: int, **extra: Any) -> list[ChunkSpec]:
    return [ChunkSpec.of({"value": i, **extra}) for i in range(n)]


def flag_probe(fault_dir: Path):
    """A probe that reports a GPU faulted while <fault_dir>/<node>:<gpu> exists (the fake rig's switch)."""

    def probe(executor: Executor, gpu: int) -> GpuHealth:
        if (fault_dir / f"{executor.name}:{gpu}").exists():
            return GpuHealth(executor.name, gpu, HealthStatus.FAULTED, ("power 4294.967295 W (all ones)",))
        return GpuHealth(executor.name, gpu, HealthStatus.OK)

    return probe


def executions(log: Path) -> list[tuple[str, str, str]]:
    """(chunk id, slot, attempt) for every worker start the test worker logged."""
    if not log.exists():
        return []
    return [tuple(line.split()) for line in log.read_text().splitlines() if line.strip()]  # type: ignore[misc]


@contextmanager
def captured_log(level: str = "DEBUG") -> Iterator[list[str]]:
    messages: list[str] = []
    sink_id = logger.add(lambda m: messages.append(str(m.record["message"])), level=level)
    try:
        yield messages
    finally:
        logger.remove(sink_id)


def survivors(results: dict[str, dict[str, Any]]) -> dict[int, list[int]]:
    """Survivors per chunk value (chunk ids differ between runs whose payloads carry fault switches)."""
    return {res["value"]: res["survivors"] for res in results.values()}
