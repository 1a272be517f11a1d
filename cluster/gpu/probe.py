"""Gather GPU health from a node: one rocm-smi (or nvidia-smi) call for all its GPUs, the amdgpu sysfs
read per GPU under a deadline (cluster/gpu/sysfs.py), and the kernel log lines new since the last check.

Gentle on purpose: hammering a sick SMU with rocm-smi polling crashed a rig before, so a check asks once
per node, never once per GPU, and a node is not probed again within `health.min_probe_interval_s` (the
last reading is reused, marked as such). A hung rocm-smi is reported as a hung rocm-smi, not as a dead
node; a GPU whose sysfs reads hang is FAULTED with "SMU hang suspected".

Kernel lines count once: the boot id and kernel timestamp of the last line read on each node are kept in
a cursor store (the health ledger in a run or a cron preflight; an in-process one otherwise), so a GPU
that faulted once is not faulted again by the same old line, and a release sticks until a new fault.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from cluster.config import HealthPolicy, NodeConfig
from cluster.errors import CommandTimeoutError, TransportError
from cluster.gpu.health import GpuHealth, HealthStatus, worst
from cluster.gpu.kernel_log import KernelCursor, KernelFault, new_lines, node_lines, parse_kernel_lines
from cluster.gpu.nvidia_smi import QUERY, parse_nvidia_csv
from cluster.gpu.rocm_smi import JSON_COMMAND, apply_kernel_faults, parse_rocm_json
from cluster.gpu.sysfs import HANG_REASON, SYSFS_SCRIPT, parse_sysfs, sysfs_health
from cluster.transport.base import Executor

DMESG_LINES = 5000
# boot id first, then dmesg's own output and exit status (a dmesg refused for lack of permission is a
# named warning, not an empty log)
KERNEL_SCRIPT = (
    'echo "boot_id=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"; '
    f'out=$(dmesg 2>&1); rc=$?; printf "%s\\n" "$out" | tail -n {DMESG_LINES}; echo "dmesg_exit=$rc"'
)


class CursorStore(Protocol):
    """Where the kernel cursor of each node is kept (the run store's ledger implements it)."""

    def kernel_cursor(self, node: str) -> KernelCursor | None: ...

    def save_kernel_cursor(self, node: str, cursor: KernelCursor, lines: Sequence[str]) -> None: ...


class MemoryCursors:
    """The cursor store of a process with no ledger."""

    def __init__(self) -> None:
        self._cursors: dict[str, KernelCursor] = {}
        self._lock = threading.Lock()

    def kernel_cursor(self, node: str) -> KernelCursor | None:
        with self._lock:
            return self._cursors.get(node)

    def save_kernel_cursor(self, node: str, cursor: KernelCursor, lines: Sequence[str]) -> None:
        with self._lock:
            self._cursors[node] = cursor


_default_cursors: list[CursorStore] = [MemoryCursors()]
_last_probe: dict[str, tuple[float, NodeProbe]] = {}
_probe_lock = threading.Lock()


def use_cursor_store(store: CursorStore | None) -> None:
    """Make `store` the cursor store of probes that are not handed one (the scheduler's failure probe)."""
    _default_cursors[0] = store if store is not None else MemoryCursors()


def forget_probes() -> None:
    """Drop the remembered readings (tests; a new run)."""
    with _probe_lock:
        _last_probe.clear()


@dataclass
class NodeProbe:
    node: str
    gpus: list[GpuHealth]
    warnings: list[str] = field(default_factory=list)  # node-level: rocm-smi hung, dmesg unreadable
    kernel: list[KernelFault] = field(default_factory=list)  # new kernel lines that name no GPU
    fresh: bool = True  # False: the reading of an earlier probe, reused within min_probe_interval_s
    age_s: float = 0.0

    @property
    def buses(self) -> dict[int, str]:
        return {g.index: g.pci_bus for g in self.gpus if g.pci_bus}


def _key(node: NodeConfig) -> str:
    return f"{node.name}@{node.host}:{node.port}"


def probe_node_full(
    executor: Executor,
    node: NodeConfig,
    policy: HealthPolicy | None = None,
    cursors: CursorStore | None = None,
) -> NodeProbe:
    """Everything one check knows about the node's GPUs, or the last reading when the node was probed less
    than `min_probe_interval_s` ago."""
    policy = policy or HealthPolicy()
    key = _key(node)
    with _probe_lock:
        last = _last_probe.get(key)
        now = time.monotonic()
        if last is not None and now - last[0] < policy.min_probe_interval_s:
            return replace(last[1], fresh=False, age_s=now - last[0], kernel=[])
        _last_probe[key] = (now, last[1] if last else NodeProbe(node.name, []))  # claim the turn
    try:
        result = _probe(executor, node, policy, cursors or _default_cursors[0])
    except BaseException:
        with _probe_lock:
            if last is None:
                _last_probe.pop(key, None)
            else:
                _last_probe[key] = last
        raise
    with _probe_lock:
        _last_probe[key] = (time.monotonic(), result)
    return result


def _probe(executor: Executor, node: NodeConfig, policy: HealthPolicy, cursors: CursorStore) -> NodeProbe:
    if node.gpu_kind == "cpu":
        slots = [GpuHealth(node.name, i, HealthStatus.OK, ("cpu slot",)) for i in range(node.slot_count)]
        return NodeProbe(node.name, slots)
    count = node.gpu_count or 0
    if node.gpu_kind == "cuda":
        res = executor.run(["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"], timeout=30)
        if res.exit_code == 127:
            raise TransportError(node.name, "nvidia-smi not found on the node's PATH")
        return NodeProbe(node.name, parse_nvidia_csv(node.name, res.stdout, count, policy.max_temp_c,
                                                     policy.max_memory_use_pct))  # fmt: skip
    warnings: list[str] = []
    deadline = policy.probe_deadline_s
    # sysfs first: it is the channel that cannot hang us (per-GPU deadline on the node)
    sysfs_records: list[dict] = []
    try:
        skip = [str(g.index) for g in node.excluded_gpus] + [g.pci for g in node.excluded_gpus if g.pci]
        res = executor.run([node.interpreter(), "-c", SYSFS_SCRIPT, node.sysfs_root, f"{deadline:g}", ",".join(skip)],
                           timeout=deadline + 5)  # fmt: skip
        sysfs_records, done = parse_sysfs(node.name, res.stdout)
        if not done:
            warnings.append(f"sysfs probe under {node.sysfs_root} did not finish: {res.tail(lines=2) or res.exit_code}")
    except CommandTimeoutError:
        warnings.append(f"sysfs probe under {node.sysfs_root} gave no answer within {deadline + 5:g} s")
    smi_hung = False
    try:
        res = executor.run(shlex.join(JSON_COMMAND), timeout=deadline)
        if res.exit_code == 127 and not res.stdout:
            raise TransportError(node.name, "rocm-smi not found on the node's PATH (install rocm-smi)")
        if res.exit_code == 124 and not res.stdout.strip():
            raise CommandTimeoutError(node.name, "rocm-smi", deadline)
        gpus = parse_rocm_json(node.name, res.stdout, res.stderr, count, max_temp_c=policy.max_temp_c,
                               max_memory_pct=policy.max_memory_use_pct)  # fmt: skip
    except CommandTimeoutError:
        smi_hung = True
        warnings.append(f"rocm-smi hung: no answer within {deadline:g} s (a GPU whose SMU stopped answering blocks it)")
        gpus = [GpuHealth(node.name, i, HealthStatus.OK) for i in range(count)]
    gpus = _merge_sysfs(node, gpus, sysfs_records, smi_hung)
    kernel_new, kernel_node = _kernel(executor, node, cursors, warnings)
    gpus = apply_kernel_faults(gpus, kernel_new)
    return NodeProbe(node.name, gpus, warnings, kernel_node)


def _merge_sysfs(node: NodeConfig, gpus: list[GpuHealth], records: list[dict], smi_hung: bool) -> list[GpuHealth]:
    """Join each sysfs card to its GPU (by PCI address when rocm-smi gave one, else by card order)."""
    if not records:
        if smi_hung:
            return [replace(g, status=HealthStatus.DEGRADED, evidence=("no reading: rocm-smi hung, no sysfs cards",))
                    for g in gpus]  # fmt: skip
        return gpus
    by_bus = {g.pci_bus: g.index for g in gpus if g.pci_bus}
    health: dict[int, GpuHealth] = {}
    for order, record in enumerate(records):
        bus = sysfs_health(node.name, 0, record).pci_bus
        index = by_bus.get(bus) if by_bus else order
        if index is None or record.get("skipped"):
            continue
        health[index] = sysfs_health(node.name, index, record)
    out = []
    for gpu in gpus:
        seen = health.get(gpu.index)
        if seen is None:
            if smi_hung and gpu.index not in node.excluded_indices:
                gone = ("GPU missing from the sysfs (rocm-smi hung)",)
                gpu = replace(gpu, status=HealthStatus.FAULTED, evidence=gone)
            out.append(gpu)
            continue
        evidence = tuple(dict.fromkeys((*gpu.evidence, *seen.evidence)))
        readings = {**seen.readings, **gpu.readings} if not smi_hung else dict(seen.readings)
        if smi_hung and seen.status is HealthStatus.FAULTED and not any(HANG_REASON in e for e in evidence):
            evidence = (f"{HANG_REASON}: rocm-smi hung and GPU {gpu.index} sysfs reads fail", *evidence)
        out.append(GpuHealth(node.name, gpu.index, worst(gpu.status, seen.status), evidence,
                             gpu.pci_bus or seen.pci_bus, readings))  # fmt: skip
    return out


def _kernel(
    executor: Executor, node: NodeConfig, cursors: CursorStore, warnings: list[str]
) -> tuple[list[KernelFault], list[KernelFault]]:
    """(new kernel lines, those of them that name no GPU); the cursor advances past what was read."""
    try:
        res = executor.run(["sh", "-c", KERNEL_SCRIPT], timeout=30)
    except CommandTimeoutError:
        warnings.append("kernel log unreadable: dmesg gave no answer within 30 s; SMU kernel lines are not checked")
        return [], []
    lines = res.stdout.splitlines()
    boot_id = lines[0].removeprefix("boot_id=").strip() if lines and lines[0].startswith("boot_id=") else ""
    body = lines[1:] if boot_id or (lines and lines[0].startswith("boot_id=")) else lines
    code = 0
    if body and body[-1].startswith("dmesg_exit="):
        code = int(body[-1].removeprefix("dmesg_exit=") or 0)
        body = body[:-1]
    text = "\n".join(body)
    if code != 0:
        said = (body[-1] if body else "").strip() or f"exit {code}"
        warnings.append(f"kernel log unreadable: dmesg: {said[:200]}; SMU kernel lines are not checked "
                        "(fix: sysctl kernel.dmesg_restrict=0 or add the rig user to the adm group)")  # fmt: skip
        return [], []
    fresh, cursor = new_lines(text, boot_id, cursors.kernel_cursor(node.name))
    faults = parse_kernel_lines(fresh)
    if cursor is not None:
        cursors.save_kernel_cursor(node.name, cursor, [f.line for f in faults])
    return faults, node_lines(faults)


def probe_node(executor: Executor, node: NodeConfig, policy: HealthPolicy | None = None) -> list[GpuHealth]:
    """Health of every GPU of the node (CPU slots of a cpu node are always ok)."""
    return probe_node_full(executor, node, policy).gpus


def probe_gpu(executor: Executor, gpu: int) -> GpuHealth:
    """The scheduler's fresh look at one GPU right after a failure (still one node-wide probe). New kernel
    lines that name no GPU (the OOM killer, soft lockups) are added to its evidence: a worker the OOM
    killer took left no word of its own."""
    probe = probe_node_full(executor, executor.node, HealthPolicy(min_probe_interval_s=0.0))
    extra = tuple(f"kernel ({f.kind}): {f.line}" for f in probe.kernel) + tuple(probe.warnings)
    for health in probe.gpus:
        if health.index == gpu:
            return replace(health, evidence=(*health.evidence, *extra))
    return GpuHealth(executor.name, gpu, HealthStatus.FAULTED, (f"GPU {gpu} not reported by the node", *extra))
