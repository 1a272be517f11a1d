"""Preflight against fake rigs (real sshd): dead and hung nodes, faulted GPUs, ramdisk files, hostile
config values, gentle polling, and the `preflight check` CLI's exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import fakerig
import pytest

from cluster.config import ClusterConfig
from pipeline.store import RunStore
from preflight import run_preflight

pytestmark = pytest.mark.integration
Rigs = Callable[..., list[fakerig.FakeRig]]
REPO = Path(__file__).resolve().parents[2]


def config_for(rigs: list[fakerig.FakeRig], **health: object) -> ClusterConfig:
    return fakerig.cluster_config(rigs, health={"min_healthy_gpus": 1, "check_torch_devices": False, **health})


def fails(report, check: str) -> list[str]:
    return [r.line() for r in report.results if r.status == "fail" and r.check == check]


def test_healthy_cluster_passes_with_one_rocm_smi_call_per_node(rigs: Rigs) -> None:
    cluster = rigs(3, gpus=12)
    report = run_preflight(config_for(cluster))
    assert report.ok, report.failure_lines()
    for rig in cluster:
        calls = rig.rocm_smi_calls()
        assert len(calls) == 1 and "--json" in calls[0]  # gentle: one call for all 12 GPUs


def test_cpu_only_torch_and_no_cupy_on_a_rocm_rig_are_caught(rigs: Rigs) -> None:
    (rig,) = rigs(1, gpus=2)
    report = run_preflight(config_for([rig], check_torch_devices=True))
    assert any("torch sees 0 GPU(s), config says 2" in line for line in fails(report, "torch")), report.failure_lines()
    # and the rig has no CuPy: a warning naming the fix (the work would take the torch path)
    (cupy,) = [r for r in report.results if r.check == "cupy"]
    assert cupy.status == "warn" and "CuPy is not installed" in cupy.message and "ROCm" in (cupy.remedy or "")


def test_dead_and_hung_nodes_fail_fast_and_name_the_node(rigs: Rigs) -> None:
    good, dead, hung = rigs(3, gpus=2)
    dead.down()
    hung.hang()
    started = time.monotonic()
    report = run_preflight(config_for([good, dead, hung]))
    elapsed = time.monotonic() - started
    assert elapsed < 2.0 + 1.5, elapsed  # the hung node costs the connect timeout (2 s), not more
    lines = fails(report, "ssh")
    assert any(line.startswith(f"{dead.name}: (127.0.0.1) connection refused") for line in lines), lines
    assert any(line.startswith(f"{hung.name}: (127.0.0.1) no SSH banner within 2 s") for line in lines), lines
    assert all("try: ssh -p" in line for line in lines)
    assert report.exit_code == 69


def test_faulted_gpu_is_quarantined_and_only_capacity_fails(rigs: Rigs, tmp_path: Path) -> None:
    a, b = rigs(2, gpus=4)
    b.set_gpu(2, "ffff")
    a.set_gpu(1, "na")
    store = RunStore(tmp_path / "watcher.db")
    report = run_preflight(config_for([a, b]), ledger=store)
    assert report.ok, report.failure_lines()
    quarantined = {(e.node, e.gpu) for e in store.entries()}
    assert quarantined == {(b.name, 2), (a.name, 1)}
    evidence = next(e for e in store.entries() if e.node == b.name).evidence
    assert any("4294.967295" in ev for ev in evidence) and any("kernel:" in ev for ev in evidence)
    strict = run_preflight(config_for([a, b], min_healthy_gpus=7), ledger=store)
    assert not strict.ok and fails(strict, "capacity") and strict.exit_code == 69


def test_probation_releases_after_clean_checks(rigs: Rigs, tmp_path: Path) -> None:
    (rig,) = rigs(1, gpus=2)
    rig.set_gpu(0, "eio")
    store = RunStore(tmp_path / "watcher.db")
    config = config_for([rig], probation_checks=2)
    run_preflight(config, ledger=store)
    assert [(e.node, e.gpu) for e in store.entries()] == [(rig.name, 0)]
    rig.set_gpu(0, "healthy")
    run_preflight(config, ledger=store)
    assert store.entries(), "one clean check is not enough"
    run_preflight(config, ledger=store)
    assert store.entries() == []


def test_ramdisk_missing_or_stale_is_named(rigs: Rigs, tmp_path: Path) -> None:
    (rig,) = rigs(1, gpus=1)
    local = tmp_path / "train_history.json"
    local.write_text("[1, 2, 3]")
    report = run_preflight(config_for([rig]), step=2, ramdisk_files={"train_history.json": local})
    assert any("train_history.json missing" in line for line in fails(report, "ramdisk"))
    (rig.ramdisk / "train_history.json").write_text("[9, 9, 9]")
    report = run_preflight(config_for([rig]), step=2, ramdisk_files={"train_history.json": local})
    assert any("train_history.json is stale" in line for line in fails(report, "ramdisk"))
    (rig.ramdisk / "train_history.json").write_text("[1, 2, 3]")
    assert run_preflight(config_for([rig]), step=2, ramdisk_files={"train_history.json": local}).ok


def test_hostile_config_values_do_not_inject(rigs: Rigs, tmp_path: Path) -> None:
    (rig,) = rigs(1, gpus=1)
    marker = tmp_path / "INJECTED"
    evil = f"{rig.ramdisk}/x; touch {marker}; $(touch {marker})"
    config = fakerig.cluster_config([rig])
    data = config.model_dump()
    data["nodes"][0]["ramdisk_path"] = evil
    data["nodes"][0]["env"] = {"EVIL": f"'; touch {marker}; '"}
    local = tmp_path / "f.json"
    local.write_text("{}")
    report = run_preflight(ClusterConfig.model_validate(data), step=2, ramdisk_files={"f.json": local})
    assert not marker.exists()
    assert fails(report, "ramdisk")  # the file is simply not at that odd path
    with pytest.raises(Exception, match="host"):
        fakerig.cluster_config([rig]).model_validate({"nodes": [{**data["nodes"][0], "host": "127.0.0.1; rm -rf /"}]})


def test_preflight_cli_exit_codes_and_json(rigs: Rigs, tmp_path: Path) -> None:
    good, dead = rigs(2, gpus=2)
    dead.down()
    path = tmp_path / "cluster.json"
    path.write_text(config_for([good, dead]).model_dump_json())
    cmd = [
        sys.executable,
        "-m",
        "agents.commands.preflight",
        "check",
        "--config",
        str(path),
        "--state-dir",
        str(tmp_path),
    ]
    res = subprocess.run([*cmd, "--json"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 69
    data = json.loads(res.stdout)
    assert not data["ok"] and any(r["node"] == dead.name and r["status"] == "fail" for r in data["results"])
    res = subprocess.run([*cmd, "--node", good.name], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    path.write_text('{"nodes": [{"name": "x", "bogus": 1}]}')
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 78 and "nodes[0].bogus: unknown key" in res.stderr
