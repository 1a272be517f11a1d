"""Run scripts/cleanup_gpus.sh on a node after a job batch, read all of what it reports, and keep it.

The coordinator tells the script which GPUs to expect (the node's `gpu_count` and the PCI addresses the
config gives), so a GPU that vanished is caught. Every result (exit code, findings, kernel lines, stderr)
is stored in the health ledger the caller hands over (`cleanup_node(..., ledger=)`, or bound once with
`batch_cleanup` for the scheduler); findings are logged at WARNING, and a missing or failing script is an
ERROR naming the node. Excluded GPUs are never reported as faulted (they get no work; re-quarantining them
would only add noise).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from loguru import logger

from cluster.config import NodeConfig
from cluster.gpu.health import GpuHealth, HealthStatus
from cluster.gpu.ledger import CleanupResult, HealthLedger
from cluster.transport.base import Executor

FAULT_LINE = re.compile(r"^(FAULTED|MISSING) gpu=(\d+) reason=(.*)$", re.MULTILINE)
FINDING = re.compile(r"^(?:FAULTED|MISSING|ORPHANED_VRAM|CLOCKS) .*$", re.MULTILINE)
KERNEL = re.compile(r"^KERNEL (.*)$", re.MULTILINE)
NOT_FOUND_EXITS = {126, 127}
DEFAULT_SCRIPT = "scripts/cleanup_gpus.sh"


def parse_cleanup_report(node: str, stdout: str) -> list[GpuHealth]:
    return [
        GpuHealth(node, int(m.group(2)), HealthStatus.FAULTED, (f"cleanup: {m.group(3).strip()}",))
        for m in FAULT_LINE.finditer(stdout)
    ]


def expectation_args(node: NodeConfig) -> list[str]:
    """What the script must find on the node, from the config (never from rocm-smi's own listing)."""
    args = ["--expect-count", str(node.gpu_count or 0)]
    pcis = [f"{g.index}={g.pci}" for g in node.excluded_gpus if g.pci]
    if pcis:
        args += ["--expect-pci", ",".join(pcis)]
    return args


def read_result(node: str, exit_code: int | None, stdout: str, stderr: str) -> CleanupResult:
    findings = [m.group(0).strip() for m in FINDING.finditer(stdout)]
    if exit_code in NOT_FOUND_EXITS or (exit_code not in {0, 3, 4} and not findings):
        tail = " | ".join(stderr.strip().splitlines()[-3:]) or stdout.strip()[-200:]
        findings.append(f"ERROR cleanup script failed with exit {exit_code}: {tail}")
    kernel = [m.group(1).strip() for m in KERNEL.finditer(stdout)]
    return CleanupResult(node, exit_code, tuple(findings), tuple(kernel), stderr[-2000:])


def cleanup_node(
    executor: Executor, script: str = DEFAULT_SCRIPT, ledger: HealthLedger | None = None
) -> list[GpuHealth]:
    """Faulted GPUs the cleanup found (empty when all answered). The script path is relative to the
    node's workdir, where watcher is installed; the result is recorded in `ledger` (None: logged only).
    A script that is missing or fails raises, naming the node (after its result is recorded)."""
    node = executor.node
    if node.gpu_kind != "rocm":
        return []
    path = script if Path(script).is_absolute() else f"{node.workdir.rstrip('/')}/{script}"
    res = executor.run(["bash", path, *expectation_args(node)], timeout=120)
    result = read_result(executor.name, res.exit_code, res.stdout, res.stderr)
    if ledger is not None:
        ledger.record_cleanup(result)
    for finding in result.findings:
        if finding.startswith("ERROR "):
            logger.error(f"GPU cleanup on {executor.name}: {finding[6:]}")
        else:
            logger.warning(f"GPU cleanup on {executor.name}: {finding}")
    for line in result.kernel:
        logger.warning(f"GPU cleanup on {executor.name}: kernel: {line}")
    errors = [f for f in result.findings if f.startswith("ERROR ")]
    if errors:
        raise RuntimeError(f"cleanup on node {executor.name} ({path}): {errors[0][6:]}")
    excluded = node.excluded_indices
    return [g for g in parse_cleanup_report(executor.name, res.stdout) if g.index not in excluded]


def batch_cleanup(ledger: HealthLedger | None, script: str = DEFAULT_SCRIPT) -> Callable[[Executor], list[GpuHealth]]:
    """`cleanup_node` bound to a ledger and the config's `scheduler.cleanup_script`: the `cleanup` a caller
    of `cluster.scheduler.run_chunks` passes so that every batch cleanup's result is stored."""

    def cleanup(executor: Executor) -> list[GpuHealth]:
        return cleanup_node(executor, script, ledger)

    return cleanup
