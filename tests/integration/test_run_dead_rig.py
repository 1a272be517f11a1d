"""`watcher run` through the motivating incident: a rig killed (sshd and its workers) in the middle of
step 1. With enough healthy slots left the run goes on without it, says so, records it, and ends with the
same step 2 survivors as a fault-free run; below health.min_healthy_gpus it stops with exit 69 naming the rig."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import fakerig
import pytest
import yaml

from cluster.errors import StoreError
from pipeline.store import RunStore

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]
ENV = {k: v for k, v in os.environ.items() if k not in {"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"}}


def setup(tmp: Path, rigs, min_healthy: int) -> list[str]:
    spec = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    spec["data"].update(history=str(REPO / "data" / "history.json"), offset_range=[6, 8], skip_range=[1, 2])
    spec["steps"][0]["params"].update(trials=12, max_seeds=20_000)
    spec["steps"][1]["params"]["chunk_seeds"] = 1 << 19
    spec["steps"][2]["params"]["trials"] = 4
    spec["agent"]["limits"] = {"retries_per_step": 0, "total_retries": 0}
    (tmp / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    config = fakerig.cluster_config(rigs, health={"check_torch_devices": False, "min_healthy_gpus": min_healthy},
                                    scheduler={"rocm_smi_min_interval_s": 0, "backoff_s": 0.05})  # fmt: skip
    (tmp / "cluster.json").write_text(config.model_dump_json())
    return ["--pipeline", str(tmp / "pipeline.yaml"), "--config", str(tmp / "cluster.json")]


def watcher_run(tmp: Path, args: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "agents.cli", "--state-dir", str(tmp / "state"), "run", "--from-step", "1", *args]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, env=ENV)  # fmt: skip


def survivors(tmp: Path):
    return json.loads((tmp / "state" / "outputs" / "bidirectional_survivors.json").read_text())["data"]


def kill_mid_step1(tmp: Path, proc: subprocess.Popen, rig: fakerig.FakeRig) -> None:
    db = tmp / "state" / "watcher.db"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with RunStore(db, readonly=True) as store:
                if any(r["status"] == "done" for r in store.chunk_rows(1, 1)):
                    rig.down()
                    return
        except StoreError:
            pass  # not created yet, or being created by the run right now
        time.sleep(0.05)
    pytest.fail("watcher run ended before step 1 had a finished chunk")


@pytest.mark.parametrize("min_healthy", [2, 4])
def test_rig_killed_mid_step1(rigs, tmp_path, min_healthy) -> None:
    a, b = rigs(2, gpus=2)
    args = setup(tmp_path, [a, b], min_healthy)
    proc = watcher_run(tmp_path, args)
    kill_mid_step1(tmp_path, proc, b)
    out, _ = proc.communicate(timeout=400)
    if min_healthy == 4:
        assert proc.returncode == 69, out
        assert f"preflight: {b.name}: (127.0.0.1) connection refused" in out, out
        return
    assert proc.returncode == 0, out
    assert f"goes on without {b.name}" in out
    with RunStore(tmp_path / "state" / "watcher.db", readonly=True) as store:
        events = store.events(kind="node_unreachable")
    assert events and all(e["node"] == b.name for e in events)
    # the same survivors as a fault-free run on the healthy rig alone
    reference = tmp_path / "ref"
    reference.mkdir()
    proc = watcher_run(reference, setup(reference, [a], 1))
    out2, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out2
    assert survivors(tmp_path) == survivors(reference)
