"""`watcher run --from-step 1` with `scheduler.slot_mode: ray`: chunks reach the two fake rigs' slots through a
local two-node Ray cluster (one raylet per rig, labelled with its name), while preflight, GPU health and cleanup
still go over SSH to the same rigs. The run recovers the planted seed with the same step 2 survivors as the SSH
workers (`reference_survivors`, shared with test_run_dead_rig.py); with one Ray node removed while a chunk of
step 1 runs on it, it still does, that chunk redone on the other rig after its failure was stored, and the
node refused in the later steps. The Ray cluster is
started once for the module; the removal test is last (it takes rig02's raylet out for good). And a raylet that
no configured node accounts for stops `watcher run` at load (exit 78, one line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import fakerig
import pytest
from test_run_dead_rig import REPO, reference_survivors, setup, survivors

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))

from raycluster import LOOPBACK_ENV, LocalRay, local_ray

from cluster.errors import StoreError
from pipeline.store import RunStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RIGS = ["rig01", "rig02"]  # the names fakerig gives a test's first two rigs


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRay]:
    if fakerig.available():
        pytest.skip(str(fakerig.available()))
    with local_ray(tmp_path_factory.getbasetemp() / "rayr", RIGS) as cluster:
        yield cluster


def ray_run(tmp: Path, rigs: list[fakerig.FakeRig], cluster: LocalRay, *extra: str) -> subprocess.Popen:
    """`watcher run --from-step 1` on `rigs` (the plan test_run_dead_rig.setup writes), chunks over Ray."""
    args = [*setup(tmp, rigs, min(2, 2 * len(rigs))), *extra]
    config = json.loads((tmp / "cluster.json").read_text())
    config["scheduler"]["slot_mode"] = "ray"
    config["ray"] = {"address": cluster.address}
    (tmp / "cluster.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k not in {"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"}}
    cmd = [sys.executable, "-m", "agents.cli", "--state-dir", str(tmp / "state"), "run", "--from-step", "1", *args]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, env={**env, **LOOPBACK_ENV})  # fmt: skip


def test_a_raylet_no_configured_node_accounts_for_stops_the_run_at_load(
    rigs, tmp_path: Path, ray_cluster: LocalRay
) -> None:
    made = rigs(2, gpus=2)
    proc = ray_run(tmp_path, made[:1], ray_cluster, "--dry-run")  # rig02's raylet is in the cluster, not the config
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 78, out
    (line,) = [x for x in out.splitlines() if "watcher-node='rig02'" in x]
    assert "which is no node of distributed_config.json" in line and "fix:" in line


def test_a_run_over_ray_recovers_the_seed_with_the_ssh_workers_survivors(
    rigs, tmp_path: Path, ray_cluster: LocalRay
) -> None:
    made = rigs(2, gpus=2)
    assert [r.name for r in made] == RIGS
    proc = ray_run(tmp_path, made, ray_cluster)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out
    assert "seed 12345678 recovered" in out
    assert survivors(tmp_path) == reference_survivors(tmp_path / "ref", made[0])
    with RunStore(tmp_path / "state" / "watcher.db", readonly=True) as store:
        done = [r for r in store.chunk_rows(1, 1) if r["status"] == "done"]
        assert {r["node"] for r in done} == set(RIGS), "step 1 did not use both rigs' slots"
        assert store.chunk_failures(1) == []


def test_a_ray_node_removed_mid_step1_leaves_a_run_that_finishes_with_the_seed(
    rigs, tmp_path: Path, ray_cluster: LocalRay
) -> None:
    """Last in the module: rig02's raylet leaves the cluster for good."""
    made = rigs(2, gpus=2)
    proc = ray_run(tmp_path, made, ray_cluster)
    removed = _remove_mid_step1(tmp_path, proc, ray_cluster, "rig02")
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out
    assert "seed 12345678 recovered" in out
    assert survivors(tmp_path) == reference_survivors(tmp_path / "ref", made[0])
    with RunStore(tmp_path / "state" / "watcher.db", readonly=True) as store:
        lost = [f for f in store.chunk_failures(1) if f["node"] == "rig02" and f["time"] >= removed]
        rows = {(s, r["chunk_id"]): r for s in (1, 2) for r in store.chunk_rows(1, s)}
    assert lost, f"no chunk on rig02 failed after its raylet left: {out[-3000:]}"
    assert "node rig02 has no live Ray node in the cluster" in out  # the later steps run without it
    for failure in lost:  # each redone on rig01, and stored as failed before that attempt was made
        row = rows[(failure["step"], failure["chunk_id"])]
        assert row["status"] == "done" and row["node"] == "rig01", row
        assert failure["time"] <= row["started"], (failure, row)


def _remove_mid_step1(tmp: Path, proc: subprocess.Popen, cluster: LocalRay, name: str) -> float:
    """Remove the node's raylet while a chunk of step 1 runs in its slot worker; returns when (wall clock)."""
    db = tmp / "state" / "watcher.db"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with RunStore(db, readonly=True) as store:
                running = any(r["status"] == "running" and r["node"] == name for r in store.chunk_rows(1, 1))
        except StoreError:
            running = False  # not created yet, or being created by the run right now
        if running and _serving(name):
            time.sleep(1.0)  # the chunk is in the worker's hands (step 1's first chunks take seconds: JIT)
            at = time.time()
            cluster.remove(name)
            return at
        time.sleep(0.05)
    pytest.fail(f"watcher run ended before a chunk of step 1 ran on {name}")


def _serving(rig: str) -> bool:
    """Whether a slot worker of `rig` is up (its node env names the rig)."""
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
            if b"--serve" in cmd and f"WATCHER_RIG={rig}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                return True
        except OSError:
            continue
    return False
