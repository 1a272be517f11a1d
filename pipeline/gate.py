"""The gate before a step: preload its ramdisk files, run preflight on every node, record the result.

One call, in this order, because preflight must see what the step will see: the ramdisk copies are made
and verified first, so preflight's hash check judges the copies the step's jobs will read. The step's
required inputs are checked as complete outputs here, once; the step itself then only reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cluster.config import ClusterConfig
from cluster.errors import StepError
from cluster.gpu.ledger import HealthLedger
from cluster.transport.base import Executor
from pipeline.outputs import check_complete
from pipeline.ramdisk import preload
from pipeline.runner import step_for
from pipeline.spec import StepEntry
from pipeline.store import RunStore
from preflight import PreflightReport, run_preflight


def required_inputs(entry: StepEntry, state_dir: Path) -> list[Path]:
    return [state_dir / "outputs" / name for name in step_for(entry).inputs]


def ramdisk_sources(entry: StepEntry, state_dir: Path) -> dict[str, Path]:
    return {name: state_dir / "outputs" / name for name in step_for(entry).ramdisk_files}


def preload_ramdisk(
    entry: StepEntry, state_dir: Path, config: ClusterConfig, executors: Mapping[str, Executor]
) -> dict[str, str]:
    """Copy the step's ramdisk files to every node and verify them (before preflight checks them)."""
    sources = ramdisk_sources(entry, state_dir)
    missing = [str(p) for p in sources.values() if not p.exists()]
    if missing:
        raise StepError(f"ramdisk source file(s) missing: {', '.join(missing)}; fix: rerun step 1")
    return preload(executors, list(config.nodes), sources)


@dataclass
class GateResult:
    report: PreflightReport
    notes: list[str] = field(default_factory=list)  # what the operator should read besides the failures
    # nodes the step goes on without: unreachable, while the healthy slots left still meet min_healthy_gpus
    without: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.report.ok) or bool(self.without)


def degraded_nodes(report: PreflightReport, config: ClusterConfig) -> dict[str, str]:
    """Unreachable nodes a run may go on without: every failure is one of those nodes' unreachability, the
    capacity check passed on what is left, and the operator did not set health.require_all_nodes.
    Empty when the gate must stop the run. (`preflight check` stays strict: its exit code ignores this.)"""
    if report.ok or config.health.require_all_nodes:
        return {}
    failures = report.failures
    dead = {r.node: r.line() for r in failures if r.check == "ssh"}
    if not dead or any(r.node not in dead for r in failures):
        return {}
    capacity = [r for r in report.results if r.check == "capacity"]
    if not capacity or capacity[0].status != "ok" or len(dead) >= len(config.nodes):
        return {}
    return dead


def check_step(
    entry: StepEntry,
    *,
    config: ClusterConfig,
    state_dir: Path,
    ledger: HealthLedger | None,
    node: str | None = None,
) -> PreflightReport:
    """Preflight for a step as `preflight check --step N` runs it: nodes, GPUs, ramdisk copies (steps >= 2)
    and the step's required inputs."""
    return run_preflight(
        config,
        step=entry.number,
        ramdisk_files=ramdisk_sources(entry, state_dir) if entry.number >= 2 else {},
        required_inputs=required_inputs(entry, state_dir),
        ledger=ledger,
        node=node,
        input_check=check_complete,
    )


def open_gate(
    entry: StepEntry,
    *,
    run_id: int,
    config: ClusterConfig,
    store: RunStore,
    executors: Mapping[str, Executor],
    state_dir: Path,
    say: Callable[[str], None] = print,
) -> GateResult:
    """Preload, preflight and record; the caller starts the step only when the result is ok (which includes
    going on without unreachable nodes, listed in `without`)."""
    notes: list[str] = []
    if entry.number >= 2 and ramdisk_sources(entry, state_dir):
        try:
            preload_ramdisk(entry, state_dir, config, executors)
        except StepError as err:
            notes.append(f"ramdisk preload: {err}")  # preflight below names each node and file
            say(notes[-1])
    report = check_step(entry, config=config, state_dir=state_dir, ledger=store)
    store.record_preflight(report.to_json(), run_id=run_id, step=entry.number, ok=report.ok)
    without = degraded_nodes(report, config)
    if without:
        capacity = next(r.message for r in report.results if r.check == "capacity")
        for node, line in without.items():
            say(f"preflight: step {entry.number:g} goes on without {node} ({capacity} left): {line}")
            store.record_event("node_unreachable", reason=line, run_id=run_id, step=entry.number, node=node)
    elif not report.ok:
        for line in report.failure_lines():
            say(f"preflight: {line}")
    return GateResult(report, notes, without)
