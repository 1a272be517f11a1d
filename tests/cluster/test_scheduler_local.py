"""The scheduler end to end over local 'nodes' (LocalExecutor, the real worker process path) and a real store."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from sched_helpers import (
    WORKER_ARGV,
    captured_log,
    chunks,
    executions,
    flag_probe,
    local_config,
    local_executors,
    survivors,
)

from cluster.errors import HaltRequested, SchedulingError
from cluster.gpu.health import GpuHealth, HealthStatus
from cluster.scheduler import run_chunks
from cluster.scheduler.types import Slot
from pipeline.store import RunStore


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    s = RunStore(tmp_path / "watcher.db")
    yield s
    s.close()


def _run(config, specs, store, run_id, **kw):
    kw.setdefault("cleanup", None)
    kw.setdefault("probe", None)
    return run_chunks(
        config, specs, sink=store.chunk_sink(run_id, 1), executors=local_executors(config), worker_argv=WORKER_ARGV,
        progress=False, **kw,
    )  # fmt: skip


def _reference(tmp_path: Path, n: int) -> dict:
    cfg = local_config(tmp_path, {"ref": 2})
    with RunStore(tmp_path / "ref.db") as ref:
        return survivors(_run(cfg, chunks(n), ref, ref.create_run(1)).results)


def test_all_chunks_stored_then_resume_runs_nothing(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 2, "b": 2})
    log = tmp_path / "exec.log"
    specs = chunks(12, log=str(log))
    run = store.create_run(1)
    report = _run(cfg, specs, store, run)
    assert set(report.results) == {c.chunk_id for c in specs} and report.executed == 12
    assert {r["value"] for r in report.results.values()} == set(range(12))
    assert store.chunk_counts(run, 1)["done"] == 12
    assert len(executions(log)) == 12
    again = _run(cfg, specs, store, run)
    assert again.resumed == 12 and again.executed == 0 and again.results == report.results
    assert len(executions(log)) == 12


def test_faulting_gpu_is_quarantined_and_its_chunks_redone(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 2, "b": 2}, breaker_min_failures=50)
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "a:1").touch()
    log = tmp_path / "exec.log"
    run = store.create_run(1)
    report = _run(cfg, chunks(10, fault_dir=str(faults), log=str(log)), store, run, probe=flag_probe(faults),
                  ledger=store)  # fmt: skip
    assert survivors(report.results) == _reference(tmp_path, 10)
    assert report.quarantined == [Slot("a", 1)]
    assert [(e.node, e.gpu) for e in store.entries()] == [("a", 1)]
    assert "4294.967295" in store.entries()[0].evidence[0]
    failures = store.chunk_failures(run)
    assert len(failures) == 1 and failures[0]["gpu_state"]["status"] == "faulted"
    # the quarantined GPU got exactly one chunk (the one that failed), and that chunk was redone elsewhere
    on_bad = [e for e in executions(log) if e[1] == "a:1"]
    assert len(on_bad) == 1
    redo = [e for e in executions(log) if e[0] == on_bad[0][0] and e[1] != "a:1"]
    assert len(redo) == 1 and redo[0][2] == "2"
    # a later call does not use the quarantined slot at all
    assert Slot("a", 1) not in _run(cfg, chunks(3, value_offset=1), store, run, ledger=store).slots_used


def test_failure_is_logged_in_full_and_stored_before_its_retry(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 1, "b": 1}, breaker_min_failures=50)
    flaky = tmp_path / "flaky"
    flaky.mkdir()
    run = store.create_run(1)
    with captured_log() as messages:
        # a little work per chunk, so that both nodes get a fair share of chunks
        report = _run(cfg, chunks(9, sleep=0.03, flaky={"dir": str(flaky), "every": 3, "nodes": ["b"]}), store, run)
    assert survivors(report.results) == _reference(tmp_path, 9)
    failed = [i for i, m in enumerate(messages) if " FAILED on " in m]
    assert failed, "the flaky node never failed"
    for index in failed:
        text = messages[index]
        chunk_id, attempt = text.split()[1], int(text.split()[3].split("/")[0])
        assert "exit code: 4" in text and "flaky failure on b" in text and "sched_worker.py" in text
        retry = f"retrying chunk {chunk_id} attempt {attempt + 1}/"
        assert [i for i, m in enumerate(messages) if m.startswith(retry)] > [index], "retried before it was logged"
    assert len(store.chunk_failures(run)) == len(report.failures) == len(failed)


def test_breaker_takes_a_bad_node_out_and_the_step_completes(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 2, "b": 2}, breaker_min_failures=2, breaker_window=4, max_attempts=3)
    run = store.create_run(1)
    with captured_log() as messages:
        report = _run(cfg, chunks(12, fail_nodes=["b"]), store, run)
    assert set(report.nodes_tripped) == {"b"}
    assert survivors(report.results) == _reference(tmp_path, 12)
    assert all(r["slot"].startswith("a:") for r in report.results.values())
    assert any("node b taken out" in m for m in messages)
    (event,) = store.events(run_id=run, kind="breaker")
    assert event["node"] == "b" and "circuit breaker" in event["reason"]


def test_every_slot_gone_fails_with_reason_and_store_stays_consistent(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 2, "b": 1}, breaker_min_failures=2, max_attempts=3)
    run = store.create_run(1)
    with pytest.raises(SchedulingError) as info:
        _run(cfg, chunks(8, fail_nodes=["a", "b"]), store, run)
    message = str(info.value)
    assert "chunks have no result" in message and "circuit breaker" in message
    counts = store.chunk_counts(run, 1)
    assert counts["done"] == 0 and counts["running"] == 0 and sum(counts.values()) == 8
    assert len(store.chunk_failures(run)) >= 3


def test_chunk_out_of_retries_fails_the_call_with_no_partial_success(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 2}, breaker_min_failures=50, max_attempts=2)
    specs = chunks(4) + chunks(1, ok_false=True)
    run = store.create_run(1)
    with pytest.raises(SchedulingError, match=r"failed 2 attempts .*kernel returned garbage.*step is incomplete"):
        _run(cfg, specs, store, run)
    assert [f["attempt"] for f in store.chunk_failures(run)] == [1, 2]
    assert {f["gpu"] for f in store.chunk_failures(run)} == {0, 1}  # the retry went to the other slot


def test_bad_spec_is_not_retried(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 2})
    run = store.create_run(1)
    with pytest.raises(SchedulingError, match="bad job spec"):
        _run(cfg, chunks(1, bad_spec=True), store, run)
    assert len(store.chunk_failures(run)) == 1


def test_validation_failure_means_not_done(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 2}, max_attempts=2)

    def validate(result: dict) -> None:
        if result["value"] == 3:
            raise ValueError("survivor list does not match seeds_tested")

    run = store.create_run(1)
    with pytest.raises(SchedulingError, match="failed validation: survivor list"):
        _run(cfg, chunks(5), store, run, validate=validate)
    assert store.chunk_counts(run, 1)["done"] == 4


def test_no_usable_slots_at_start(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 1})
    store.quarantine("a", 0, "SMU", ["0xFFFFFFFF"], "preflight")
    with pytest.raises(SchedulingError, match="0 usable slot"):
        _run(cfg, chunks(2), store, store.create_run(1), ledger=store)


def test_halt_stops_dispatch_and_resume_finishes(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 2})
    log = tmp_path / "exec.log"
    specs = chunks(40, sleep=0.05, log=str(log))
    run = store.create_run(1)
    with pytest.raises(HaltRequested, match="use --resume"):
        _run(cfg, specs, store, run, halt_check=lambda: len(executions(log)) >= 4)
    done = store.chunk_counts(run, 1)["done"]
    assert 4 <= done < 40 and store.chunk_counts(run, 1)["running"] == 0
    report = _run(cfg, specs, store, run)
    assert report.resumed == done and len(report.results) == 40
    assert len(executions(log)) == 40  # nothing ran twice


@pytest.mark.parametrize("smi_interval", [0, 10])
def test_cleanup_after_each_batch_on_nodes_that_took_part(tmp_path: Path, store: RunStore, smi_interval) -> None:
    health = {"min_probe_interval_s": smi_interval}
    cfg = local_config(tmp_path, {"a": 2, "idle": 1}, health=health, cleanup_batch_size=4)
    calls: list[str] = []
    executors = local_executors(cfg)
    del executors["idle"]
    run_chunks(
        cfg, chunks(10), sink=store.chunk_sink(store.create_run(1), 1), executors=executors, worker_argv=WORKER_ARGV,
        progress=False, probe=None, cleanup=lambda ex: calls.append(ex.name),
    )  # fmt: skip
    # batches end at 4 and 8, and the last partial batch at the end; the node without work is left alone;
    # on a ROCm node a batch cleanup within health.min_probe_interval_s of the last one waits (the final one runs)
    assert calls == ["a"] * (3 if smi_interval == 0 else 2)


def test_result_files_are_fetched_to_the_coordinator(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 2})
    node_dir, fetched = tmp_path / "node", tmp_path / "fetched"
    node_dir.mkdir()
    report = run_chunks(
        cfg, chunks(3, file_dir=str(node_dir)), sink=store.chunk_sink(store.create_run(1), 1),
        executors=local_executors(cfg), worker_argv=WORKER_ARGV, progress=False, probe=None, cleanup=None,
        fetch_dir=fetched, fetch_keys=("survivors_file",),
    )  # fmt: skip
    for cid, result in report.results.items():
        local = Path(result["survivors_file"])
        assert local.parent == fetched and cid in local.name
        assert result["survivors_file_remote"].startswith(str(node_dir))
        assert json.loads(local.read_text())["survivors"] == result["survivors"]
    small = local_config(tmp_path, {"a": 1}, fetch_max_bytes=8, max_attempts=1)
    run = store.create_run(1)
    with pytest.raises(SchedulingError, match="failed 1 attempts"):
        _run(small, chunks(1, file_dir=str(node_dir)), store, run, fetch_dir=fetched, fetch_keys=("survivors_file",))
    (failure,) = store.chunk_failures(run)
    assert failure["kind"] == "invalid" and "over the limit of 8 bytes" in failure["error"]


def test_chunk_stuck_on_a_node_taken_out_is_requeued_at_once(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 2, "b": 3}, breaker_min_failures=2, breaker_window=4)
    specs = chunks(8, hang_slots=["b:0"], hang_s=25, fail_slots=["b:1", "b:2"])
    run = store.create_run(1)
    started = time.monotonic()
    report = _run(cfg, specs, store, run)
    assert time.monotonic() - started < 15, "waited for the hung attempt instead of requeueing it"
    assert set(report.nodes_tripped) == {"b"}
    assert survivors(report.results) == _reference(tmp_path, 8)
    assert all(r["slot"].startswith("a:") for r in report.results.values())
    assert store.chunk_counts(run, 1)["done"] == 8


def test_node_lost_mid_step_gives_the_fault_free_results(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 2, "b": 2}, breaker_min_failures=2, breaker_window=4)
    down, log = tmp_path / "down", tmp_path / "exec.log"
    down.mkdir()
    specs = chunks(24, down_dir=str(down), log=str(log), sleep=0.05)
    run = store.create_run(1)

    def pull_the_plug() -> None:
        deadline = time.monotonic() + 30
        while len(executions(log)) < 6 and time.monotonic() < deadline:
            time.sleep(0.005)
        (down / "b").touch()

    killer = threading.Thread(target=pull_the_plug, daemon=True)
    killer.start()
    report = _run(cfg, specs, store, run)
    killer.join(5)
    assert (down / "b").exists()
    assert survivors(report.results) == _reference(tmp_path, 24)
    assert "b" in report.nodes_tripped and report.failures
    assert store.chunk_counts(run, 1) == {"pending": 0, "running": 0, "done": 24, "failed": 0}


def test_too_few_slots_left_fails_the_step_with_the_reason(tmp_path: Path, store: RunStore) -> None:
    health = {"min_healthy_gpus": 3}
    cfg = local_config(tmp_path, {"a": 2, "b": 2}, health=health, breaker_min_failures=2, breaker_window=4)
    run = store.create_run(1)
    with pytest.raises(SchedulingError, match=r"2 usable slot\(s\) left, at least 3 needed.*b \(circuit breaker"):
        _run(cfg, chunks(12, fail_nodes=["b"], sleep=0.05), store, run)
    small = local_config(tmp_path, {"a": 2}, health=health)
    with pytest.raises(SchedulingError, match=r"2 usable slot\(s\), at least 3 needed \(health.min_healthy_gpus\)"):
        _run(small, chunks(2), store, run)


def test_coordinator_interrupt_stops_the_slots_too(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 2})
    log = tmp_path / "exec.log"

    def interrupted() -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(cfg, chunks(20, sleep=0.1, log=str(log)), store, store.create_run(1), halt_check=interrupted)
    time.sleep(0.2)  # a worker that was already starting may still log its start
    started = len(executions(log))
    time.sleep(0.5)
    assert len(executions(log)) == started < 20, "slots kept taking chunks after the coordinator stopped"


def test_gpu_the_cleanup_finds_faulted_is_quarantined(tmp_path: Path, store: RunStore) -> None:
    cfg = local_config(tmp_path, {"a": 3}, cleanup_batch_size=3)
    log = tmp_path / "exec.log"
    calls: list[str] = []

    def cleanup(executor) -> list[GpuHealth]:
        calls.append(executor.name)
        return [GpuHealth("a", 1, HealthStatus.FAULTED, ("cleanup: SMU not answering",))] if len(calls) == 1 else []

    run = store.create_run(1)
    report = _run(cfg, chunks(12, log=str(log), sleep=0.02), store, run, ledger=store, cleanup=cleanup)
    assert len(report.results) == 12 and report.quarantined == [Slot("a", 1)]
    assert [(e.node, e.gpu, e.evidence) for e in store.entries()] == [("a", 1, ("cleanup: SMU not answering",))]
    slots_in_order = [slot for _chunk, slot, _attempt in executions(log)]  # 3 done + 2 in flight, then cleanup
    assert "a:1" not in slots_in_order[5:], "the quarantined GPU kept getting chunks after the first cleanup"
