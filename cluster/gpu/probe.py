"""Gather GPU health from a node: one rocm-smi call for all its GPUs (amd-smi where rocm-smi is absent,
nvidia-smi on CUDA nodes), the amdgpu sysfs read per GPU under a deadline (cluster/gpu/sysfs.py), and the
kernel log lines new since the last check.

Gentle on purpose: hammering a sick SMU with rocm-smi polling crashed a rig before, so a check asks once
per node, never once per GPU, and a node is not probed again within `health.min_probe_interval_s` (the
last reading is reused, marked as such). That reading is kept in the health ledger, so the interval holds
across processes: a cron `preflight check` right after a run's gate does not poll the SMU again. A hung
rocm-smi is reported as a hung rocm-smi, not as a dead node; a GPU whose sysfs reads hang is FAULTED
with "SMU hang suspected".

Kernel lines count once: the boot id and kernel timestamp of the last line read on each node are kept in
the ledger, so a GPU that faulted once is not faulted again by the same old line, and a release sticks
until a new fault. The ledger is a parameter of every probe (nothing is registered process-wide). A probe
without one keeps nothing: a check reads every line since boot, and the scheduler's failure probe only
the lines of the last `RECENT_KERNEL_S` seconds of the node's uptime (what happened around the failure,
never an OOM kill of last week), OOM-killer lines of the last `RECENT_OOM_S` only (the kill is the
worker's death, seen at once: an older one took some other process). That is a guess where the ledger
is a record: a caller of the scheduler that has a ledger binds it with `failure_probe(ledger, policy)`.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from cluster.config import HealthPolicy, NodeConfig
from cluster.errors import CommandTimeoutError, TransportError
from cluster.gpu.amd_smi import LIST_COMMAND as AMD_LIST
from cluster.gpu.amd_smi import METRIC_COMMAND as AMD_METRIC
from cluster.gpu.amd_smi import SPLIT as AMD_SPLIT
from cluster.gpu.amd_smi import parse_amd_smi
from cluster.gpu.health import GpuHealth, HealthStatus, worst
from cluster.gpu.kernel_log import (
    KernelFault,
    map_kfd_nodes,
    new_lines,
    node_lines,
    parse_kernel_lines,
    recent_lines,
)
from cluster.gpu.ledger import HealthLedger
from cluster.gpu.nvidia_smi import QUERY, parse_nvidia_csv
from cluster.gpu.rocm_smi import JSON_COMMAND, apply_kernel_faults, parse_rocm_json
from cluster.gpu.sysfs import HANG_REASON, SYSFS_SCRIPT, parse_kfd_nodes, parse_sysfs, sysfs_health
from cluster.transport.base import Executor

DMESG_LINES = 5000
# The scheduler's failure probe without a ledger: kernel lines stamped within this many seconds of the
# node's uptime are what happened around the failure (a stale worker is noticed within heartbeat_timeout_s);
# an OOM kill is the death itself, noticed at once, so its line counts within RECENT_OOM_S only.
RECENT_KERNEL_S = 60.0
RECENT_OOM_S = 15.0
# boot id and uptime first, then dmesg's own output and exit status (a dmesg refused for lack of permission
# is a named warning, not an empty log)
KERNEL_SCRIPT = (
    'echo "boot_id=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"; '
    'echo "uptime=$(cut -d" " -f1 /proc/uptime 2>/dev/null)"; '
    f'out=$(dmesg 2>&1); rc=$?; printf "%s\\n" "$out" | tail -n {DMESG_LINES}; echo "dmesg_exit=$rc"'
)


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

    def to_json(self, key: str) -> dict[str, Any]:
        """The reading as the ledger keeps it (kernel lines are not part of it: they count once)."""
        gpus = [{"index": g.index, "status": g.status.value, "evidence": list(g.evidence), "pci_bus": g.pci_bus,
                 "readings": dict(g.readings)} for g in self.gpus]  # fmt: skip
        return {"key": key, "gpus": gpus, "warnings": list(self.warnings)}

    @classmethod
    def from_json(cls, node: str, data: Any, key: str) -> NodeProbe | None:
        """A kept reading, or None when it is not one of this node (config changed) or not readable."""
        try:
            if not isinstance(data, dict) or data.get("key") != key:
                return None
            gpus = [GpuHealth(node, int(g["index"]), HealthStatus(g["status"]), tuple(map(str, g["evidence"])),
                              g.get("pci_bus"), dict(g.get("readings") or {}))
                    for g in data["gpus"]]  # fmt: skip
            return cls(node, gpus, [str(w) for w in data.get("warnings") or []])
        except (KeyError, TypeError, ValueError):
            return None


def _key(node: NodeConfig) -> str:
    return f"{node.name}@{node.host}:{node.port}"


def kept_reading(ledger: HealthLedger, node: NodeConfig, interval_s: float) -> NodeProbe | None:
    """The node's last reading, when some process took it less than `interval_s` ago."""
    last = ledger.last_probe(node.name)
    if last is None:
        return None
    age = time.time() - last[0]
    if not 0 <= age < interval_s:
        return None
    kept = NodeProbe.from_json(node.name, last[1], _key(node))
    return replace(kept, fresh=False, age_s=age) if kept is not None else None


def probe_node_full(
    executor: Executor,
    node: NodeConfig,
    policy: HealthPolicy | None = None,
    ledger: HealthLedger | None = None,
    *,
    recent_s: float | None = None,
) -> NodeProbe:
    """Everything one check knows about the node's GPUs, or the last reading when the ledger says the node
    was probed less than `min_probe_interval_s` ago. ledger: where the kernel cursor and the last reading
    are kept (None: nothing is kept, nothing reused); recent_s: without a ledger, count only the kernel
    lines of the node's last `recent_s` seconds (None: every line since boot)."""
    policy = policy or HealthPolicy()
    if node.gpu_kind == "cpu":
        return _probe(executor, node, policy, None, None)
    if ledger is not None and policy.min_probe_interval_s > 0:
        kept = kept_reading(ledger, node, policy.min_probe_interval_s)
        if kept is not None:
            return kept
    result = _probe(executor, node, policy, ledger, recent_s)
    if ledger is not None:
        ledger.save_probe(node.name, result.to_json(_key(node)))
    return result


def _probe(
    executor: Executor, node: NodeConfig, policy: HealthPolicy, ledger: HealthLedger | None, recent_s: float | None
) -> NodeProbe:
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
    kfd_buses: dict[int, str] = {}
    try:
        skip = [str(g.index) for g in node.excluded_gpus] + [g.pci for g in node.excluded_gpus if g.pci]
        res = executor.run([node.interpreter(), "-c", SYSFS_SCRIPT, node.sysfs_root, f"{deadline:g}", ",".join(skip)],
                           timeout=deadline + 5)  # fmt: skip
        sysfs_records, done = parse_sysfs(node.name, res.stdout)
        kfd_buses = parse_kfd_nodes(res.stdout)
        if not done:
            warnings.append(f"sysfs probe under {node.sysfs_root} did not finish: {res.tail(lines=2) or res.exit_code}")
    except CommandTimeoutError:
        warnings.append(f"sysfs probe under {node.sysfs_root} gave no answer within {deadline + 5:g} s")
    smi_hung = False
    try:
        gpus = _read_smi(executor, node, policy)
    except CommandTimeoutError as err:
        smi_hung = True
        tool = "amd-smi" if "amd-smi" in err.command else "rocm-smi"
        warnings.append(f"{tool} hung: no answer within {deadline:g} s (a GPU whose SMU stopped answering blocks it)")
        gpus = [GpuHealth(node.name, i, HealthStatus.OK) for i in range(count)]
    gpus = _merge_sysfs(node, gpus, sysfs_records, smi_hung)
    kernel_new, kernel_node = _kernel(executor, node, ledger, recent_s, warnings, kfd_buses)
    gpus = apply_kernel_faults(gpus, kernel_new)
    return NodeProbe(node.name, gpus, warnings, kernel_node)


def _read_smi(executor: Executor, node: NodeConfig, policy: HealthPolicy) -> list[GpuHealth]:
    """One call of rocm-smi for every GPU of the node, or, where rocm-smi is absent (ROCm 7), of amd-smi
    (`list` and `metric` in one command). Raises CommandTimeoutError naming the tool when it hangs."""
    deadline, count = policy.probe_deadline_s, node.gpu_count or 0
    res = executor.run(shlex.join(JSON_COMMAND), timeout=deadline)
    if res.exit_code == 124 and not res.stdout.strip():
        raise CommandTimeoutError(node.name, "rocm-smi", deadline)
    if not (res.exit_code == 127 and not res.stdout):
        return parse_rocm_json(node.name, res.stdout, res.stderr, count, max_temp_c=policy.max_temp_c,
                               max_memory_pct=policy.max_memory_use_pct)  # fmt: skip
    both = f"{shlex.join(AMD_LIST)} && echo {shlex.quote(AMD_SPLIT)} && {shlex.join(AMD_METRIC)}"
    res = executor.run(both, timeout=deadline)
    if res.exit_code == 127 and not res.stdout:
        raise TransportError(node.name, "neither rocm-smi nor amd-smi is on the node's PATH (install rocm-smi or "
                                        "amd-smi-lib)")  # fmt: skip
    if res.exit_code == 124 and AMD_SPLIT not in res.stdout:
        raise CommandTimeoutError(node.name, "amd-smi", deadline)
    listed, _, metric = res.stdout.partition(AMD_SPLIT)
    return parse_amd_smi(node.name, listed, metric, count, max_temp_c=policy.max_temp_c,
                         max_memory_pct=policy.max_memory_use_pct)  # fmt: skip


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


def _read_kernel(stdout: str) -> tuple[str, float | None, list[str], int]:
    """KERNEL_SCRIPT's output -> (boot id, uptime in seconds, dmesg lines, dmesg's exit status)."""
    lines = stdout.splitlines()
    boot_id, uptime = "", None
    while lines and lines[0].startswith(("boot_id=", "uptime=")):
        name, _, value = lines.pop(0).partition("=")
        if name == "boot_id":
            boot_id = value.strip()
        else:
            try:
                uptime = float(value)
            except ValueError:
                uptime = None
            uptime = uptime if uptime is not None and math.isfinite(uptime) else None
    code = 0
    if lines and lines[-1].startswith("dmesg_exit="):
        try:
            code = int(lines.pop().removeprefix("dmesg_exit=") or 0)
        except ValueError:
            code = 1
    return boot_id, uptime, lines, code


def _kernel(
    executor: Executor,
    node: NodeConfig,
    ledger: HealthLedger | None,
    recent_s: float | None,
    warnings: list[str],
    kfd_buses: dict[int, str],
) -> tuple[list[KernelFault], list[KernelFault]]:
    """(new kernel lines, those of them that name no GPU). With a ledger, "new" means after the node's
    cursor, which advances past what was read; without one, the last `recent_s` seconds (OOM-killer lines:
    at most RECENT_OOM_S), or everything."""
    try:
        res = executor.run(["sh", "-c", KERNEL_SCRIPT], timeout=30)
    except CommandTimeoutError:
        warnings.append("kernel log unreadable: dmesg gave no answer within 30 s; SMU kernel lines are not checked")
        return [], []
    boot_id, uptime, body, code = _read_kernel(res.stdout)
    text = "\n".join(body)
    if code != 0:
        said = (body[-1] if body else "").strip() or f"exit {code}"
        warnings.append(f"kernel log unreadable: dmesg: {said[:200]}; SMU kernel lines are not checked "
                        "(fix: sysctl kernel.dmesg_restrict=0 or add the rig user to the adm group)")  # fmt: skip
        return [], []
    if ledger is not None:
        fresh, cursor = new_lines(text, boot_id, ledger.kernel_cursor(node.name))
        faults = parse_kernel_lines(fresh)
        if cursor is not None:
            ledger.save_kernel_cursor(node.name, cursor, [f.line for f in faults])
    elif recent_s is not None and uptime is not None:
        oom_since = uptime - min(recent_s, RECENT_OOM_S)
        faults = [f for f in parse_kernel_lines(recent_lines(text, uptime - recent_s))
                  if f.kind != "oom" or f.timestamp is None or f.timestamp >= oom_since]  # fmt: skip
    else:
        faults = parse_kernel_lines(text)
    faults = map_kfd_nodes(faults, kfd_buses)  # "GPU node-N" -> that GPU's PCI address
    return faults, node_lines(faults)


def probe_node(
    executor: Executor, node: NodeConfig, policy: HealthPolicy | None = None, ledger: HealthLedger | None = None
) -> list[GpuHealth]:
    """Health of every GPU of the node (CPU slots of a cpu node are always ok)."""
    return probe_node_full(executor, node, policy, ledger).gpus


def probe_gpu(
    executor: Executor, gpu: int, ledger: HealthLedger | None = None, policy: HealthPolicy | None = None
) -> GpuHealth:
    """The scheduler's fresh look at one GPU right after a failure (still one node-wide probe, never a kept
    reading). New kernel lines that name no GPU (the OOM killer, soft lockups) are added to its evidence: a
    worker the OOM killer took left no word of its own. Without a ledger, "new" is the last RECENT_KERNEL_S
    seconds of the node's kernel log (RECENT_OOM_S for OOM-killer lines)."""
    policy = (policy or HealthPolicy()).model_copy(update={"min_probe_interval_s": 0.0})
    probe = probe_node_full(executor, executor.node, policy, ledger, recent_s=RECENT_KERNEL_S)
    extra = tuple(f"kernel ({f.kind}): {f.line}" for f in probe.kernel) + tuple(probe.warnings)
    for health in probe.gpus:
        if health.index == gpu:
            return replace(health, evidence=(*health.evidence, *extra))
    return GpuHealth(executor.name, gpu, HealthStatus.FAULTED, (f"GPU {gpu} not reported by the node", *extra))


def failure_probe(
    ledger: HealthLedger | None, policy: HealthPolicy | None = None
) -> Callable[[Executor, int], GpuHealth]:
    """`probe_gpu` bound to a ledger and the config's health policy: the `probe` a caller of
    `cluster.scheduler.run_chunks` passes so that failure probes share the run's kernel cursors."""

    def probe(executor: Executor, gpu: int) -> GpuHealth:
        return probe_gpu(executor, gpu, ledger, policy)

    return probe
