"""The coordinator is SIGKILLed mid-step; a second one resumes: same results, finished chunks not rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline.store import RunStore

HERE = Path(__file__).resolve().parents[1] / "cluster"
COORDINATOR = HERE / "sched_coordinator.py"
sys.path.insert(0, str(HERE))

from sched_helpers import executions  # noqa: E402


def _coordinator(tmp: Path, n: int, *extra: str) -> list[str]:
    return [sys.executable, str(COORDINATOR), str(tmp / "w.db"), str(tmp), str(n), str(tmp / "exec.log"), *extra]


def _done(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with RunStore(db, readonly=True) as store:
            run = store.latest_run()
            return store.chunk_counts(run.id, 1)["done"] if run else 0
    except Exception:  # the coordinator may still be creating the file
        return 0


def kill_mid_step_and_resume(tmp: Path, n: int, *extra: str) -> None:
    proc = subprocess.Popen(_coordinator(tmp, n, *extra), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while _done(tmp / "w.db") < n // 3:
        assert proc.poll() is None, "coordinator ended before it could be killed"
        assert time.monotonic() < deadline, "coordinator made no progress"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    with RunStore(tmp / "w.db", readonly=True) as store:
        run = store.latest_run()
        assert run is not None and run.status == "running"  # killed: it never said otherwise
        rows = store.chunk_rows(run.id, 1)
        done_at_kill = {r["chunk_id"] for r in rows if r["status"] == "done"}
        left_running = [r for r in rows if r["status"] == "running"]
    assert n // 3 <= len(done_at_kill) < n
    assert left_running, "expected chunks in flight when the coordinator was killed"
    time.sleep(0.5)  # orphaned workers of the dead coordinator finish (they can only reach the dead pipe)

    resumed = subprocess.run(_coordinator(tmp, n, *extra), capture_output=True, text=True, timeout=120, check=True)
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["resumed"] == len(done_at_kill)
    assert summary["resumed"] + summary["executed"] == n

    runs_per_chunk = Counter(chunk for chunk, _slot, _attempt in executions(tmp / "exec.log"))
    assert set(runs_per_chunk) >= done_at_kill
    assert all(runs_per_chunk[c] == 1 for c in done_at_kill), "a finished chunk ran again"
    assert len(runs_per_chunk) == n

    fresh = tmp / "fresh"
    fresh.mkdir()
    fresh.chmod(0o777)  # the rig's user writes the execution log there
    reference = subprocess.run(_coordinator(fresh, n, *extra), capture_output=True, text=True, timeout=120)
    assert json.loads(reference.stdout.strip().splitlines()[-1])["survivors"] == summary["survivors"]
    with RunStore(tmp / "w.db", readonly=True) as store:
        counts = store.chunk_counts(summary["run"], 1)
        assert counts == {"pending": 0, "running": 0, "done": n, "failed": 0}
        assert store.get_run(summary["run"]).status == "succeeded"  # type: ignore[union-attr]


@pytest.mark.slow
def test_sigkilled_local_coordinator_resumes_without_rerunning(tmp_path: Path) -> None:
    kill_mid_step_and_resume(tmp_path, 30, "--sleep", "0.15")


@pytest.mark.slow
@pytest.mark.integration
def test_sigkilled_coordinator_over_fake_rigs_resumes_without_rerunning(rigs) -> None:
    import fakerig

    rig_list = rigs(2, gpus=2)
    scratch = rig_list[0].root.parent / "resume-scratch"
    scratch.mkdir()
    scratch.chmod(0o777)
    config = fakerig.cluster_config(rig_list, scheduler={"run_cleanup": False, "backoff_s": 0.05})
    config_file = scratch / "distributed_config.json"
    config_file.write_text(config.model_dump_json())
    kill_mid_step_and_resume(scratch, 24, "--sleep", "0.2", "--config", str(config_file))
