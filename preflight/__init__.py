"""Preflight: the gate before every step (and from cron by hand). Gather facts from every node in
parallel under one deadline, then evaluate them with the pure functions of preflight.evaluate."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from cluster.config import ClusterConfig, NodeConfig
from cluster.errors import StepError
from cluster.gpu.health import GpuHealth, HealthStatus
from cluster.gpu.probe import probe_node
from cluster.scheduler_attempt import worker_command
from cluster.transport import executor_for
from cluster.transport.base import Executor
from cluster.transport.fanout import fan_out_call
from preflight.evaluate import (
    evaluate_capacity,
    evaluate_gpus,
    evaluate_node_facts,
    evaluate_ramdisk,
    evaluate_reachability,
    usable_count,
)
from preflight.report import CheckResult, PreflightReport

__all__ = ["CheckResult", "PreflightReport", "run_preflight"]

FACTS_SCRIPT = r"""
import json, os, shutil, sys
out = {}
try:
    from importlib.metadata import version
    out["version"] = version("rig-watcher")
except Exception as e:
    out["version"] = None
out["free_disk_gb"] = shutil.disk_usage(".").free / 1e9
try:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            out["free_memory_gb"] = int(line.split()[1]) / 1e6
except OSError:
    pass
if sys.argv[1] != "cpu":
    try:
        import torch
        out["device_count"] = torch.cuda.device_count()
        out["hip"] = getattr(torch.version, "hip", None)
    except Exception as e:
        out["torch_error"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


def coordinator_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rig-watcher")
    except PackageNotFoundError:
        return "0+unknown"


def _file_hash(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _node_ramdisk(node: NodeConfig) -> str:
    return node.path_on_node(node.ramdisk_path).rstrip("/")


def _gather(
    ex: Executor, node: NodeConfig, config: ClusterConfig, ramdisk: Mapping[str, str]
) -> tuple[list[GpuHealth], dict[str, Any], dict[str, str | None]]:
    ex.connect()
    gpus = probe_node(ex, node, config.health)
    python = worker_command(node, [])[0]
    want_torch = node.gpu_kind if config.health.check_torch_devices else "cpu"  # importing torch costs ~2 s
    res = ex.run([python, "-c", FACTS_SCRIPT, want_torch], timeout=config.timeouts.command)
    try:
        facts = json.loads(res.stdout.strip().splitlines()[-1]) if res.stdout.strip() else {}
    except json.JSONDecodeError:
        facts = {}
    if not facts:
        facts = {"version": None, "torch_error": f"python on the node failed: {res.tail(lines=3)}"}
    remote: dict[str, str | None] = {}
    if ramdisk:
        base = _node_ramdisk(node)
        script = 'd=$1; shift; cd "$d" 2>/dev/null && sha256sum -- "$@" 2>/dev/null; true'
        listing = ex.run(["sh", "-c", script, "sh", base, *ramdisk])
        for line in listing.stdout.splitlines():
            digest, _, name = line.partition("  ")
            remote[name.strip()] = digest
    return gpus, facts, remote


def run_preflight(
    config: ClusterConfig,
    *,
    step: float | None = None,
    ramdisk_files: Mapping[str, Path] | None = None,
    required_inputs: Sequence[Path] = (),
    ledger: Any = None,
    node: str | None = None,
    deadline: float | None = None,
    input_check: Callable[[Path], None] | None = None,
) -> PreflightReport:
    """input_check: how the caller's layer validates a required input (raises StepError); preflight sits
    below the pipeline and only checks that the file exists when none is given."""
    started = time.monotonic()
    nodes = [config.node(node)] if node else list(config.nodes)
    report = PreflightReport(step=step)
    for path in required_inputs:
        try:
            if not Path(path).exists():
                raise StepError(f"{path}: missing; fix: run the step that makes it (watcher run --from-step N)")
            if input_check is not None:
                input_check(Path(path))
            report.results.append(CheckResult("input", "coordinator", "ok", f"{path} complete"))
        except StepError as err:
            report.results.append(CheckResult("input", "coordinator", "fail", str(err), target=Path(path).name))
    expected = {name: _file_hash(p) for name, p in (ramdisk_files or {}).items() if Path(p).exists()}
    executors = {n.name: executor_for(n, config.timeouts) for n in nodes}
    by_name = {n.name: n for n in nodes}
    quarantined: dict[str, set[int]] = {}
    if ledger is not None:
        for entry in ledger.entries():
            quarantined.setdefault(entry.node, set()).add(entry.gpu)
    watch: dict[str, set[int]] = {}
    for w in config.watchlist:
        watch.setdefault(w.node, set()).add(w.gpu)
    try:
        values, errors = fan_out_call(
            executors,
            lambda ex: _gather(ex, by_name[ex.name], config, expected),
            deadline=deadline or config.timeouts.preflight,
        )
    finally:
        for ex in executors.values():
            ex.close()
    total_usable = 0
    version = coordinator_version()
    for n in nodes:
        err = errors.get(n.name)
        report.results.append(evaluate_reachability(n, err))
        if n.name not in values:
            continue
        gpus, facts, remote = values[n.name]
        q = quarantined.get(n.name, set())
        report.results.extend(_apply_ledger(ledger, n, gpus, q, config))
        q = _current_quarantine(ledger, n.name, q)
        report.results.extend(evaluate_gpus(n, gpus, q, watch.get(n.name, set())))
        total_usable += usable_count(n, gpus, q)
        for g in gpus:
            if g.index in watch.get(n.name, set()):
                logger.info("watchlist {}: {} {}", g.key, g.status.value, "; ".join(g.evidence) or g.readings)
        report.results.extend(evaluate_node_facts(n, facts, version, config.health))
        if step is not None and step >= 2:
            report.results.extend(evaluate_ramdisk(n, expected, remote))
    if not node:
        report.results.append(evaluate_capacity(total_usable, config.health))
    report.seconds = time.monotonic() - started
    return report


def _apply_ledger(
    ledger: Any, node: NodeConfig, gpus: list[GpuHealth], quarantined: set[int], config: ClusterConfig
) -> list[CheckResult]:
    """Quarantine newly faulted GPUs; count clean checks of quarantined ones towards release."""
    if ledger is None:
        return []
    out = []
    for g in gpus:
        if g.index in node.excluded_indices or node.gpu_kind == "cpu":
            continue
        if g.status is HealthStatus.FAULTED:
            if g.index not in quarantined:
                ledger.quarantine(node.name, g.index, "preflight: GPU faulted", list(g.evidence), "preflight")
                logger.warning("quarantined {}: {}", g.key, "; ".join(g.evidence))
            ledger.record_check(node.name, g.index, "faulted", list(g.evidence))
        else:
            streak = ledger.record_check(node.name, g.index, g.status.value, list(g.evidence))
            if g.index in quarantined and streak is not None and streak >= config.health.probation_checks:
                ledger.release(node.name, g.index, "probation")
                out.append(
                    CheckResult(
                        "gpu", node.name, "ok", f"released after {streak} clean checks", target=f"GPU {g.index}"
                    )
                )
    return out


def _current_quarantine(ledger: Any, node: str, fallback: set[int]) -> set[int]:
    if ledger is None:
        return fallback
    return {e.gpu for e in ledger.entries() if e.node == node}
