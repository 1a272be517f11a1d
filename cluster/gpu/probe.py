"""Gather GPU health from a node: one rocm-smi (or nvidia-smi) call for all its GPUs, plus dmesg.

Gentle on purpose: hammering a sick SMU with rocm-smi polling crashed a rig before, so a check asks
once per node, never once per GPU.
"""

from __future__ import annotations

import shlex

from cluster.config import HealthPolicy, NodeConfig
from cluster.errors import TransportError
from cluster.gpu.health import GpuHealth, HealthStatus
from cluster.gpu.kernel_log import parse_kernel_lines
from cluster.gpu.nvidia_smi import QUERY, parse_nvidia_csv
from cluster.gpu.rocm_smi import JSON_COMMAND, apply_kernel_faults, parse_rocm_json
from cluster.transport.base import Executor

DMESG = "dmesg 2>/dev/null | tail -n 3000"


def probe_node(executor: Executor, node: NodeConfig, policy: HealthPolicy | None = None) -> list[GpuHealth]:
    """Health of every GPU of the node (CPU slots of a cpu node are always ok)."""
    policy = policy or HealthPolicy()
    if node.gpu_kind == "cpu":
        return [GpuHealth(node.name, i, HealthStatus.OK, ("cpu slot",)) for i in range(node.slot_count)]
    count = node.gpu_count or 0
    if node.gpu_kind == "cuda":
        res = executor.run(["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"], timeout=30)
        if res.exit_code == 127:
            raise TransportError(node.name, "nvidia-smi not found on the node's PATH")
        return parse_nvidia_csv(node.name, res.stdout, count, policy.max_temp_c, policy.max_memory_use_pct)
    res = executor.run(shlex.join(JSON_COMMAND), timeout=30)
    if res.exit_code == 127 and not res.stdout:
        raise TransportError(node.name, "rocm-smi not found on the node's PATH (install rocm-smi)")
    gpus = parse_rocm_json(
        node.name, res.stdout, res.stderr, count, max_temp_c=policy.max_temp_c, max_memory_pct=policy.max_memory_use_pct
    )
    kernel = executor.run(DMESG, timeout=30)
    return apply_kernel_faults(gpus, parse_kernel_lines(kernel.stdout))


def probe_gpu(executor: Executor, gpu: int) -> GpuHealth:
    """The scheduler's fresh look at one GPU right after a failure (still one rocm-smi call)."""
    for health in probe_node(executor, executor.node):
        if health.index == gpu:
            return health
    return GpuHealth(executor.name, gpu, HealthStatus.FAULTED, (f"GPU {gpu} not reported by the node",))
