"""Pure evaluation of gathered facts: every function here takes recorded data and returns results,
so the decisions are tested on fixtures without any node."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cluster.config import HealthPolicy, NodeConfig
from cluster.gpu.health import GpuHealth, HealthStatus
from preflight.report import CheckResult


def evaluate_reachability(node: NodeConfig, error: BaseException | None) -> CheckResult:
    if error is None:
        return CheckResult("ssh", node.name, "ok", "reachable" if node.transport == "ssh" else "local node")
    login = f"{node.user}@{node.host}" if node.user else node.host
    reason = str(getattr(error, "reason", error))
    if node.transport == "ssh":
        return CheckResult("ssh", node.name, "fail", f"({node.host}) {reason}",
                           remedy=f"is the rig up? try: ssh -p {node.port} {login} true")  # fmt: skip
    # the coordinator itself: no rig to be down, no ssh to try
    remedy = "" if "fix:" in reason else f"check nodes[{node.name}].workdir and .python on this machine"
    return CheckResult("ssh", node.name, "fail", f"(local) {reason}", remedy=remedy)


def evaluate_gpus(
    node: NodeConfig, gpus: Sequence[GpuHealth], quarantined: set[int], watch: set[int]
) -> list[CheckResult]:
    out = []
    excluded = node.excluded_indices
    for gpu in gpus:
        target = f"GPU {gpu.index}"
        if gpu.index in excluded:
            # what the node-wide probe already says (no reads of its own; never quarantined again)
            said = f"{gpu.status.value}" + (f": {'; '.join(gpu.evidence[:2])}" if gpu.evidence else "")
            out.append(CheckResult("gpu", node.name, "ok", f"excluded by config (gets no work); reads {said}",
                                   target=target))  # fmt: skip
            continue
        evidence = "; ".join(gpu.evidence[:3])
        if gpu.status is HealthStatus.FAULTED:
            out.append(
                CheckResult(
                    "gpu",
                    node.name,
                    "warn",
                    f"faulted, quarantined: {evidence}",
                    remedy=f"inspect the rig; `watcher gpus release {node.name}:{gpu.index}` when fixed",
                    target=target,
                )
            )
        elif gpu.status is HealthStatus.DEGRADED:
            out.append(CheckResult("gpu", node.name, "warn", f"degraded: {evidence}", target=target))
        elif gpu.index in quarantined:
            out.append(
                CheckResult("gpu", node.name, "warn", "healthy now, still quarantined (probation)", target=target)
            )
        elif gpu.index in watch:
            out.append(CheckResult("gpu", node.name, "ok", f"watchlist: healthy {gpu.readings}", target=target))
    return out


def usable_count(node: NodeConfig, gpus: Sequence[GpuHealth], quarantined: set[int]) -> int:
    return sum(
        1
        for g in gpus
        if g.status is not HealthStatus.FAULTED and g.index not in node.excluded_indices and g.index not in quarantined
    )


def evaluate_capacity(total_usable: int, policy: HealthPolicy) -> CheckResult:
    if total_usable >= policy.min_healthy_gpus:
        return CheckResult("capacity", "cluster", "ok", f"{total_usable} usable GPU slot(s)")
    return CheckResult(
        "capacity",
        "cluster",
        "fail",
        f"only {total_usable} usable GPU slot(s), min_healthy_gpus is {policy.min_healthy_gpus}",
        remedy="fix or release GPUs (`watcher gpus`), or lower health.min_healthy_gpus",
    )


def evaluate_node_facts(
    node: NodeConfig, facts: Mapping[str, Any], coordinator_version: str, policy: HealthPolicy
) -> list[CheckResult]:
    out = []
    version = facts.get("version")
    if version != coordinator_version:
        said = (
            f"worker build {version} != coordinator {coordinator_version}"
            if version
            else f"watcher is not installed for {node.python} (the coordinator runs {coordinator_version})"
        )
        out.append(
            CheckResult(
                "version",
                node.name,
                "fail",
                said,
                remedy=f"watcher deploy --nodes {node.name}",
            )
        )
    disk = facts.get("free_disk_gb")
    if isinstance(disk, int | float) and disk < policy.min_free_disk_gb:
        out.append(
            CheckResult(
                "disk",
                node.name,
                "fail",
                f"{disk:.1f} GB free in {node.workdir}",
                remedy=f"free disk space (need {policy.min_free_disk_gb:g} GB)",
            )
        )
    mem = facts.get("free_memory_gb")
    if isinstance(mem, int | float) and mem < policy.min_free_memory_gb:
        out.append(
            CheckResult(
                "memory",
                node.name,
                "fail",
                f"{mem:.1f} GB memory available",
                remedy=f"stop other jobs (need {policy.min_free_memory_gb:g} GB)",
            )
        )
    if node.gpu_kind != "cpu" and policy.check_torch_devices:
        count, hip = facts.get("device_count"), facts.get("hip")
        if facts.get("torch_error"):
            out.append(
                CheckResult(
                    "torch",
                    node.name,
                    "fail",
                    f"torch does not import: {facts['torch_error']}",
                    remedy="install the ROCm/CUDA build of torch into the node's venv",
                )
            )
        elif count != node.gpu_count:
            out.append(
                CheckResult(
                    "torch",
                    node.name,
                    "fail",
                    f"torch sees {count} GPU(s), config says {node.gpu_count}",
                    remedy="a CPU-only torch on a rig is 50x slower: install the GPU build",
                )
            )
        elif node.gpu_kind == "rocm" and not hip:
            out.append(
                CheckResult(
                    "torch",
                    node.name,
                    "fail",
                    "torch is not a HIP (ROCm) build",
                    remedy="install the ROCm build of torch",
                )
            )
    if not out:
        out.append(CheckResult("node", node.name, "ok", f"build {version}, disk/memory ok"))
    return out


def evaluate_gpu_kernels(node: NodeConfig, facts: Mapping[str, Any]) -> list[CheckResult]:
    """CuPy on a GPU node (the facts script asks when it checks torch): without it the compiled GPU kernels cannot
    run there and the work takes the portable torch path, about 100x slower. A warning, not a failure: the
    answers are the same."""
    if node.gpu_kind == "cpu" or "cupy" not in facts or facts["cupy"]:
        return []
    why = f"does not import ({facts['cupy_error']})" if facts.get("cupy_error") else "is not installed"
    if node.gpu_kind == "cuda":
        fix = "pip install 'rig-watcher[cuda]' in the node's venv ('rig-watcher[cuda13]' on CUDA 13)"
    else:
        fix = "install the CuPy build of the node's ROCm in its venv (README: GPU kernels)"
    message = f"CuPy {why}: the GPU kernels cannot run here, work takes the torch path (about 100x slower)"
    return [CheckResult("cupy", node.name, "warn", message, remedy=fix)]


def evaluate_ramdisk(
    node: NodeConfig, expected: Mapping[str, str], remote: Mapping[str, str | None]
) -> list[CheckResult]:
    out = []
    for name, digest in expected.items():
        got = remote.get(name)
        if got is None:
            out.append(
                CheckResult(
                    "ramdisk",
                    node.name,
                    "fail",
                    f"{name} missing from {node.ramdisk_path}",
                    remedy="rerun the step: the runner preloads ramdisk files",
                    target=name,
                )
            )
        elif got != digest:
            out.append(
                CheckResult(
                    "ramdisk",
                    node.name,
                    "fail",
                    f"{name} is stale (hash differs from the coordinator's)",
                    remedy="rerun the step so the runner copies it again",
                    target=name,
                )
            )
    if not out and expected:
        out.append(CheckResult("ramdisk", node.name, "ok", f"{len(expected)} file(s) identical to the coordinator's"))
    return out


def evaluate_releases(node: NodeConfig, released: Sequence[tuple[int, int]]) -> list[CheckResult]:
    """GPUs the ledger just returned to service after probation: (gpu index, clean-check streak)."""
    return [
        CheckResult("gpu", node.name, "ok", f"released after {streak} clean checks", target=f"GPU {gpu}")
        for gpu, streak in released
    ]


def evaluate_probe_notes(node: NodeConfig, warnings: Sequence[str], kernel: Sequence[str]) -> list[CheckResult]:
    """Node-level findings of the GPU probe: a hung rocm-smi, an unreadable kernel log, new kernel lines
    that name no GPU (the OOM killer, soft lockups)."""
    out = []
    for text in warnings:
        check = "kernel" if text.startswith("kernel log") else "probe"
        out.append(CheckResult(check, node.name, "warn", text))
    for line in kernel:
        out.append(CheckResult("kernel", node.name, "warn", f"new kernel line: {line}"))
    return out


def evaluate_identity(node: NodeConfig, buses: Mapping[int, str], watch: Mapping[int, str | None]) -> list[CheckResult]:
    """Each configured (index, PCI) pair of `excluded_gpus` and the watchlist against what the node reports
    now: a mismatch fails, naming both, so no work goes to the wrong card after a reseat."""
    pairs = [(g.index, g.pci, "excluded_gpus") for g in node.excluded_gpus if g.pci]
    pairs += [(index, pci, "watchlist") for index, pci in watch.items() if pci]
    by_bus = {bus: index for index, bus in buses.items()}
    out = []
    for index, pci, where in pairs:
        now = buses.get(index)
        if now == pci:
            continue
        holder = by_bus.get(pci or "")
        there = f"{pci} is GPU {holder} now" if holder is not None else f"no GPU at {pci} now"
        out.append(
            CheckResult(
                "identity",
                node.name,
                "fail",
                f"{where} names GPU {index} at {pci}, but GPU {index} is at {now or 'no PCI address'} ({there})",
                remedy="a card moved (reseat, reboot with a card missing): fix the index or the pci in the config",
                target=f"GPU {index}",
            )
        )
    return out


def evaluate_missing_sources(missing: Sequence[str]) -> list[CheckResult]:
    """Ramdisk files the coordinator itself does not have: the nodes' copies cannot be checked."""
    return [
        CheckResult(
            "ramdisk",
            "coordinator",
            "fail",
            f"ramdisk source {path} is missing on the coordinator",
            remedy="rerun the step that makes it",
            target=path,
        )
        for path in missing
    ]
