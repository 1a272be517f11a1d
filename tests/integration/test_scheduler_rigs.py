"""The scheduler against fake rigs (real sshd on 127.0.0.1): node killed, GPU failing, flaky node, no slots."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))

import fakerig
from sched_helpers import (
    WORKER_ARGV,
    captured_log,
    chunks,
    executions,
    local_config,
    local_executors,
    survivors,
)

from cluster.config import ClusterConfig
from cluster.errors import SchedulingError
from cluster.gpu.probe import probe_gpu
from cluster.scheduler import run_chunks
from cluster.transport import executor_for
from pipeline.store import RunStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GPUS = 3


def _config(rig_list: list[Any], **policy: Any) -> ClusterConfig:
    """The harness's config with a fast retry policy (the rig's python is this virtualenv's)."""
    scheduler = {"backoff_s": 0.05, "backoff_max_s": 0.2, "run_cleanup": False, **policy}
    timeouts = {"connect": 2.0, "command": 30.0, "job": 60.0, "preflight": 15.0}
    return fakerig.cluster_config(rig_list, scheduler=scheduler, timeouts=timeouts)


def _scratch(rig: Any) -> Path:
    """A directory both the coordinator (root) and the rig's user can write: logs and fault switches."""
    path = rig.root.parent / "sched-scratch"
    path.mkdir(exist_ok=True)
    path.chmod(0o777)
    return path


def _execute(config: ClusterConfig, specs: list, store: RunStore, run: int, **kw: Any):
    executors = {n.name: executor_for(n, config.timeouts) for n in config.nodes}
    kw.setdefault("probe", None)
    kw.setdefault("cleanup", None)
    try:
        return run_chunks(
            config, specs, sink=store.chunk_sink(run, 1), executors=executors, worker_argv=WORKER_ARGV,
            progress=False, **kw,
        )  # fmt: skip
    finally:
        for ex in executors.values():
            ex.close()


def _when(condition: Callable[[], bool], action: Callable[[], None], timeout: float = 60) -> threading.Thread:
    """Run `action` from a thread once `condition` holds (bounded wait), e.g. kill a node mid-step."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                action()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def store(tmp_path: Path):
    s = RunStore(tmp_path / "watcher.db")
    yield s
    s.close()


def fault_free(tmp_path: Path, n: int) -> dict:
    """The same chunks without any fault, on local slots: what every faulty run must reproduce."""
    config = local_config(tmp_path, {"ref": 2})
    with RunStore(tmp_path / "reference.db") as ref:
        report = run_chunks(
            config, chunks(n), sink=ref.chunk_sink(ref.create_run(1), 1), executors=local_executors(config),
            worker_argv=WORKER_ARGV, progress=False, probe=None, cleanup=None,
        )  # fmt: skip
        return survivors(report.results)


def test_node_killed_mid_step_completes_with_fault_free_results(rigs, store, tmp_path) -> None:
    rig_a, rig_b = rigs(2, gpus=GPUS)
    config = _config([rig_a, rig_b], breaker_min_failures=2, breaker_window=4)
    log = _scratch(rig_a) / "exec.log"
    run = store.create_run(1)
    killer = _when(lambda: len(executions(log)) >= 8, rig_b.down)
    report = _execute(config, chunks(30, sleep=0.2, log=str(log)), store, run)
    killer.join(5)
    assert rig_b.proc is None, "rig b was never killed"
    assert survivors(report.results) == fault_free(tmp_path, 30)
    assert rig_b.name in report.nodes_tripped
    assert any(f.kind == "transport" and f.slot.node == rig_b.name for f in report.failures)
    assert store.chunk_counts(run, 1) == {"pending": 0, "running": 0, "done": 30, "failed": 0}
    assert [e["node"] for e in store.events(run_id=run, kind="breaker")] == [rig_b.name]


def test_failing_gpu_is_quarantined_and_its_chunks_redone(rigs, store, tmp_path) -> None:
    (rig,) = rigs(1, gpus=GPUS)
    config = _config([rig], breaker_min_failures=50)
    faults = _scratch(rig) / "faults"
    faults.mkdir()
    faults.chmod(0o777)
    log = _scratch(rig) / "exec.log"

    def gpu_dies() -> None:
        rig.set_gpu(1, "ffff")  # what rocm-smi on the rig now shows
        (faults / f"{rig.name}:1").touch()  # and the worker on that GPU starts failing

    run = store.create_run(1)
    _when(lambda: len(executions(log)) >= 4, gpu_dies)
    specs = chunks(20, sleep=0.1, log=str(log), fault_dir=str(faults))
    report = _execute(config, specs, store, run, probe=probe_gpu, ledger=store)  # rocm-smi on the rig
    assert survivors(report.results) == fault_free(tmp_path, 20)
    assert [(e.node, e.gpu) for e in store.entries()] == [(rig.name, 1)]
    assert report.quarantined and report.quarantined[0].gpu == 1
    failures = store.chunk_failures(run)
    assert failures and all(f["gpu"] == 1 and f["gpu_state"]["status"] == "faulted" for f in failures)
    assert all("hipErrorLaunchFailure" in f["stderr_tail"] for f in failures)
    assert all(f["gpu_state"]["evidence"] for f in failures)


def test_cleanup_runs_after_batches_and_quarantines_what_it_finds(rigs, store) -> None:
    (rig,) = rigs(1, gpus=GPUS)
    config = _config([rig], run_cleanup=True, cleanup_batch_size=4)
    rig.set_gpu(2, "ffff")  # the running chunks do not notice; the cleanup's check does
    run = store.create_run(1)
    report = _execute(config, chunks(10, sleep=0.05), store, run, ledger=store, cleanup="auto")
    assert len(report.results) == 10
    assert [(e.node, e.gpu) for e in store.entries()] == [(rig.name, 2)]
    assert report.quarantined and report.quarantined[0].gpu == 2
    assert any("--resetclocks" in call for call in rig.rocm_smi_calls())


def test_flaky_node_logs_each_full_error_before_its_retry(rigs, store, tmp_path) -> None:
    rig_a, rig_b = rigs(2, gpus=2)
    config = _config([rig_a, rig_b], breaker_min_failures=50)
    flaky = _scratch(rig_a) / "flaky"
    flaky.mkdir()
    flaky.chmod(0o777)
    run = store.create_run(1)
    with captured_log() as messages:
        # every 2nd chunk on rig_b fails: at least 2 failures as long as rig_b takes 4 of the 16 chunks
        report = _execute(config, chunks(16, flaky={"dir": str(flaky), "every": 2, "nodes": [rig_b.name]}), store, run)
    assert survivors(report.results) == fault_free(tmp_path, 16)
    failed = [i for i, m in enumerate(messages) if " FAILED on " in m]
    assert len(failed) >= 2
    assert all(f"flaky failure on {rig_b.name}" in messages[i] and "exit code: 4" in messages[i] for i in failed)
    for index in failed:
        chunk_id, attempt = messages[index].split()[1], int(messages[index].split()[3].split("/")[0])
        assert "command: " in messages[index] and "sched_worker.py" in messages[index]
        retry = f"retrying chunk {chunk_id} attempt {attempt + 1}/"
        assert [i for i, m in enumerate(messages) if m.startswith(retry)] > [index], "retried before it was logged"
    assert len(store.chunk_failures(run)) == len(failed)


def test_rig_refusing_commands_is_retried_elsewhere(rigs, store, tmp_path) -> None:
    rig_a, rig_b = rigs(2, gpus=2)
    config = _config([rig_a, rig_b], breaker_min_failures=50)
    rig_a.fail_times(2)  # the rig's own switch: its next 2 commands fail before the worker starts
    run = store.create_run(1)
    with captured_log() as messages:
        report = _execute(config, chunks(8), store, run)
    assert survivors(report.results) == fault_free(tmp_path, 8)
    failed = [m for m in messages if " FAILED on " in m]
    # the switch counts down without a lock, so concurrent commands may see it once more
    assert len(failed) >= 2 and all("exit code: 97" in m and "injected failure" in m for m in failed)
    assert len(store.chunk_failures(run)) == len(failed)


def test_every_slot_gone_fails_clearly_and_store_is_consistent(rigs, store) -> None:
    rig_a, rig_b = rigs(2, gpus=2)
    config = _config([rig_a, rig_b], breaker_min_failures=2)
    rig_a.down()
    rig_b.down()
    run = store.create_run(1)
    with pytest.raises(SchedulingError, match="usable slot") as info:
        _execute(config, chunks(6), store, run)
    assert "circuit breaker" in str(info.value)
    counts = store.chunk_counts(run, 1)
    assert counts["done"] == 0 and counts["running"] == 0 and sum(counts.values()) == 6
    assert {e["node"] for e in store.events(run_id=run, kind="breaker")} == {rig_a.name, rig_b.name}
    assert all(f["kind"] == "transport" for f in store.chunk_failures(run))
