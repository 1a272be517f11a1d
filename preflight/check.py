"""Preflight: the gate before every step (and from cron by hand). Gather facts from every node in parallel
under one deadline (preflight/gather.py), write what they say to the health ledger (the rules of
cluster/gpu/ledger.py), then evaluate them with the pure functions of preflight/evaluate.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from loguru import logger

from cluster.config import ClusterConfig
from cluster.errors import StepError
from cluster.files import installed_version, sha256_file
from cluster.gpu.ledger import HealthLedger, apply_checks, quarantined_on
from cluster.transport import executor_for
from preflight.evaluate import (
    evaluate_capacity,
    evaluate_gpu_kernels,
    evaluate_gpus,
    evaluate_identity,
    evaluate_missing_sources,
    evaluate_node_facts,
    evaluate_probe_notes,
    evaluate_ramdisk,
    evaluate_reachability,
    evaluate_releases,
    usable_count,
)
from preflight.gather import gather_all
from preflight.report import CheckResult, PreflightReport


def _check_inputs(paths: Sequence[Path], input_check: Callable[[Path], None] | None) -> list[CheckResult]:
    results = []
    for path in paths:
        try:
            if not Path(path).exists():
                raise StepError(f"{path}: missing; fix: run the step that makes it (watcher run --from-step N)")
            if input_check is not None:
                input_check(Path(path))
            results.append(CheckResult("input", "coordinator", "ok", f"{path} complete"))
        except StepError as err:
            results.append(CheckResult("input", "coordinator", "fail", str(err), target=Path(path).name))
    return results


def run_preflight(
    config: ClusterConfig,
    *,
    step: float | None = None,
    ramdisk_files: Mapping[str, Path] | None = None,
    required_inputs: Sequence[Path] = (),
    ledger: HealthLedger | None = None,
    node: str | None = None,
    deadline: float | None = None,
    input_check: Callable[[Path], None] | None = None,
) -> PreflightReport:
    """ledger: the health ledger (quarantine, kernel cursors, the last probe of each node), read and
    written by this check; None: nothing is kept and nothing reused. input_check: how the caller's layer
    validates a required input (raises StepError); preflight sits below the pipeline and only checks that the
    file exists when none is given."""
    started = time.monotonic()
    nodes = [config.node(node)] if node else list(config.nodes)
    report = PreflightReport(step=step)
    report.results.extend(_check_inputs(required_inputs, input_check))
    expected = {name: sha256_file(p) for name, p in (ramdisk_files or {}).items() if Path(p).exists()}
    if step is not None and step >= 2:
        report.results.extend(evaluate_missing_sources([str(p) for p in (ramdisk_files or {}).values()
                                                        if not Path(p).exists()]))  # fmt: skip
    executors = {n.name: executor_for(n, config.timeouts) for n in nodes}
    by_name = {n.name: n for n in nodes}
    entries = list(ledger.entries()) if ledger is not None else []
    watch: dict[str, dict[int, str | None]] = {}
    for w in config.watchlist:
        watch.setdefault(w.node, {})[w.gpu] = w.pci
    try:
        values, errors = gather_all(executors, by_name, config, expected, deadline or config.timeouts.preflight, ledger)
    finally:
        for ex in executors.values():
            ex.close()
    total_usable = 0
    version = installed_version()
    for n in nodes:
        report.results.append(evaluate_reachability(n, errors.get(n.name)))
        if n.name not in values:
            continue
        probe, facts, remote = values[n.name]
        gpus = probe.gpus
        report.results.extend(evaluate_probe_notes(n, probe.warnings, [f.line for f in probe.kernel]))
        report.results.extend(evaluate_identity(n, probe.buses, watch.get(n.name, {})))
        if not probe.fresh:
            logger.info("{}: GPU reading from {:.1f} s ago reused (health.min_probe_interval_s)", n.name, probe.age_s)
        quarantined = quarantined_on(entries, n.name)
        if ledger is not None and probe.fresh:
            newly, released = apply_checks(ledger, n, gpus, quarantined, config.health.probation_checks)
            for g in newly:
                logger.warning("quarantined {}: {}", g.key, "; ".join(g.evidence))
            report.results.extend(evaluate_releases(n, released))
            quarantined = quarantined_on(ledger.entries(), n.name)
        report.results.extend(evaluate_gpus(n, gpus, quarantined, set(watch.get(n.name, {}))))
        total_usable += usable_count(n, gpus, quarantined)
        for g in gpus:
            if g.index in watch.get(n.name, {}):
                logger.warning(
                    "watchlist {} ({}): {}; readings {}; {}", g.key, g.pci_bus or "pci unknown", g.status.value,
                    {k: v for k, v in g.readings.items() if v is not None}, "; ".join(g.evidence) or "no evidence",
                )  # fmt: skip
        report.results.extend(evaluate_node_facts(n, facts, version, config.health))
        report.results.extend(evaluate_gpu_kernels(n, facts))
        if step is not None and step >= 2:
            report.results.extend(evaluate_ramdisk(n, expected, remote))
    if not node:
        report.results.append(evaluate_capacity(total_usable, config.health))
    report.seconds = time.monotonic() - started
    return report
