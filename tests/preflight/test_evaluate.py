"""preflight/evaluate.py and the ledger's pure rules on recorded inputs: real rocm-smi 5.2.3 captures and real
kernel SMU lines (tests/fixtures), parsed as the probe parses them, then judged. No node, no I/O. The rules
written through each ledger implementation are tests/cluster/test_ledger_contract.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cluster.config import ClusterConfig, HealthPolicy, NodeConfig
from cluster.errors import NodeUnreachableError
from cluster.gpu.health import GpuHealth, HealthStatus
from cluster.gpu.kernel_log import parse_kernel_lines
from cluster.gpu.ledger import (
    CheckAction,
    check_action,
    passes_probation,
)
from cluster.gpu.rocm_smi import apply_kernel_faults, parse_rocm_json
from preflight.evaluate import (
    evaluate_capacity,
    evaluate_gpus,
    evaluate_node_facts,
    evaluate_ramdisk,
    evaluate_reachability,
    evaluate_releases,
    usable_count,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures"
CAPTURE = "showtemp_showpower_showuse_json"  # the probe's own command line


def rig(**extra: object) -> NodeConfig:
    fields = {
        "name": "rig-a",
        "transport": "ssh",
        "host": "127.0.0.1",
        "user": "op",
        "gpu_kind": "rocm",
        "gpu_count": 2,
    }
    return NodeConfig.model_validate({**fields, **extra})


def recorded(mode: str, node: str = "rig-a") -> list[GpuHealth]:
    base = FIX / "rocm-smi-5.2.3" / mode / CAPTURE
    return parse_rocm_json(node, base.with_suffix(".out").read_text(), base.with_suffix(".err").read_text(), 2)


@pytest.mark.parametrize("mode", ["ffff", "eio"])
def test_a_faulted_capture_is_a_warning_naming_the_gpu_and_costs_its_slot(mode: str) -> None:
    node = rig()
    gpus = recorded(mode)
    results = evaluate_gpus(node, gpus, quarantined=set(), watch=set())
    (warn,) = results
    assert (warn.status, warn.target) == ("warn", "GPU 1")
    assert "faulted, quarantined" in warn.message and "watcher gpus release rig-a:1" in warn.remedy
    assert usable_count(node, gpus, set()) == 1


def test_a_healthy_capture_reports_nothing_and_counts_every_gpu() -> None:
    node = rig()
    gpus = recorded("healthy")
    assert evaluate_gpus(node, gpus, set(), set()) == []
    assert usable_count(node, gpus, set()) == 2
    assert usable_count(node, gpus, {1}) == 1  # quarantined GPUs are not capacity


def test_excluded_gpu_is_reported_excluded_and_not_counted() -> None:
    node = rig(excluded_gpus=[{"index": 1, "reason": "SMU 0xFFFFFFFF"}])
    gpus = recorded("ffff")
    (result,) = evaluate_gpus(node, gpus, set(), set())
    assert result.status == "ok" and "excluded" in result.message
    assert usable_count(node, gpus, set()) == 1


def test_kernel_smu_lines_fault_the_gpu_on_that_pci_bus() -> None:
    # the capture has no --showbus column: give the two GPUs the buses of the operators' rig
    gpus = [
        replace(g, pci_bus=bus) for g, bus in zip(recorded("healthy"), ("0000:0f:00.0", "0000:22:00.0"), strict=True)
    ]
    real = (FIX / "kernel-smu-lines.txt").read_text().splitlines()
    line = next(x for x in real if "0000:0f:00.0" in x and "0xFFFFFFFF" in x)
    faulted = apply_kernel_faults(gpus, parse_kernel_lines(line))
    assert [g.status for g in faulted] == [HealthStatus.FAULTED, HealthStatus.OK]
    (warn,) = evaluate_gpus(rig(), faulted, set(), set())
    assert warn.target == "GPU 0" and "0xFFFFFFFF" in warn.message


def test_probation_and_watchlist_lines() -> None:
    gpus = recorded("healthy")
    results = evaluate_gpus(rig(), gpus, quarantined={0}, watch={1})
    assert [(r.target, r.status) for r in results] == [("GPU 0", "warn"), ("GPU 1", "ok")]
    assert "probation" in results[0].message and "watchlist" in results[1].message
    (released,) = evaluate_releases(rig(), [(0, 3)])
    assert released.status == "ok" and "released after 3 clean checks" in released.message


def test_capacity_fails_only_below_the_minimum() -> None:
    policy = HealthPolicy(min_healthy_gpus=3)
    assert evaluate_capacity(3, policy).status == "ok"
    low = evaluate_capacity(2, policy)
    assert low.status == "fail" and "min_healthy_gpus is 3" in low.message


def test_unreachable_node_names_host_and_the_ssh_command() -> None:
    node = rig(port=2222)
    assert evaluate_reachability(node, None).status == "ok"
    result = evaluate_reachability(node, NodeUnreachableError("rig-a", "connection refused"))
    assert result.status == "fail" and "connection refused" in result.message
    assert result.remedy == "is the rig up? try: ssh -p 2222 op@127.0.0.1 true"


FACTS_OK = {"version": "1.0", "free_disk_gb": 50.0, "free_memory_gb": 6.0, "device_count": 2, "hip": "6.0.3"}


@pytest.mark.parametrize(
    ("change", "check", "words"),
    [
        ({"version": "0.9"}, "version", "worker version 0.9 != coordinator 1.0"),
        ({"free_disk_gb": 0.5}, "disk", "0.5 GB free"),
        ({"free_memory_gb": 0.1}, "memory", "0.1 GB memory available"),
        ({"device_count": 0}, "torch", "torch sees 0 GPU(s), config says 2"),
        ({"hip": None}, "torch", "not a HIP (ROCm) build"),
        ({"torch_error": "ImportError: libamdhip64.so"}, "torch", "torch does not import"),
    ],
)
def test_node_facts_each_failure_is_named(change: dict, check: str, words: str) -> None:
    (result,) = evaluate_node_facts(rig(), {**FACTS_OK, **change}, "1.0", HealthPolicy())
    assert (result.check, result.status) == (check, "fail") and words in result.message


def test_node_facts_all_fine() -> None:
    (result,) = evaluate_node_facts(rig(), FACTS_OK, "1.0", HealthPolicy())
    assert result.status == "ok"


def test_ramdisk_missing_and_stale_copies_are_named() -> None:
    expected = {"train_history.json": "aa", "holdout_history.json": "bb"}
    results = evaluate_ramdisk(rig(), expected, {"holdout_history.json": "cc"})
    assert {(r.target, r.status) for r in results} == {("train_history.json", "fail"), ("holdout_history.json", "fail")}
    assert any("missing" in r.message for r in results) and any("stale" in r.message for r in results)
    (ok,) = evaluate_ramdisk(rig(), expected, dict(expected))
    assert ok.status == "ok"


def test_ledger_rules_leave_excluded_gpus_and_cpu_slots_alone() -> None:
    excluded = rig(excluded_gpus=[{"index": 1, "reason": "known bad"}])
    gpu1 = recorded("ffff")[1]
    assert check_action(excluded, gpu1, set()) is CheckAction.SKIP
    assert check_action(rig(), gpu1, set()) is CheckAction.QUARANTINE
    assert check_action(rig(), gpu1, {1}) is CheckAction.STILL_FAULTED
    assert passes_probation(3, 3) and not passes_probation(2, 3) and not passes_probation(None, 1)
    cfg = ClusterConfig.model_validate({"nodes": [{"name": "cpu", "transport": "local", "gpu_kind": "cpu"}]})
    assert check_action(cfg.nodes[0], GpuHealth("cpu", 0, HealthStatus.FAULTED), set()) is CheckAction.SKIP
