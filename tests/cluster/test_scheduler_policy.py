"""The scheduler's pure rules: slot selection, next-chunk choice, backoff, breaker, worker output."""

from __future__ import annotations

import pytest

from cluster.config import SchedulerPolicy, parse_config
from cluster.scheduler.attempt import describe_failure, parse_worker_output, slot_env
from cluster.scheduler.policy import (
    NodeBreaker,
    QueuedChunk,
    backoff_delay,
    may_take,
    next_ready_time,
    out_of_attempts,
    pick_next,
    select_slots,
)
from cluster.scheduler.types import ChunkFailure, ChunkSpec, Slot, chunk_id_for


def _config(**node_b: object):
    return parse_config(
        {
            "nodes": [
                {"name": "a", "gpu_kind": "rocm", "gpu_count": 3, "excluded_gpus": [{"index": 1, "reason": "SMU"}]},
                {"name": "b", "gpu_kind": "cuda", "gpu_count": 4, **node_b},
            ]
        }
    )


def test_slots_exclude_config_and_quarantine_and_interleave_nodes() -> None:
    slots = select_slots(_config(), quarantined=[("b", 0)])
    assert slots == [Slot("a", 0), Slot("b", 1), Slot("a", 2), Slot("b", 2), Slot("b", 3)]


def test_slots_capped_by_max_concurrent_jobs_and_limited_to_given_nodes() -> None:
    cfg = _config(max_concurrent_jobs=2)
    assert select_slots(cfg) == [Slot("a", 0), Slot("b", 0), Slot("a", 2), Slot("b", 1)]
    assert select_slots(cfg, nodes={"b"}) == [Slot("b", 0), Slot("b", 1)]


def test_slots_accept_ledger_entry_objects() -> None:
    class Entry:
        node, gpu = "a", 2

    assert Slot("a", 2) not in select_slots(_config(), quarantined=[Entry()])


def test_backoff_doubles_and_is_capped() -> None:
    policy = SchedulerPolicy(backoff_s=0.5, backoff_max_s=3.0)
    assert [backoff_delay(n, policy) for n in range(6)] == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]


def _item(n: int, tried: set[Slot] = frozenset(), ready_at: float = 0.0) -> QueuedChunk:  # type: ignore[assignment]
    return QueuedChunk(ChunkSpec(f"c{n}", {}), attempts=len(tried), tried=frozenset(tried), ready_at=ready_at)


def test_retry_goes_to_a_node_where_it_has_not_failed() -> None:
    live = {Slot("a", 0), Slot("a", 1), Slot("b", 0)}
    retry = _item(0, {Slot("a", 0)})
    assert may_take(retry, Slot("b", 0), live, {})
    assert not may_take(retry, Slot("a", 1), live, {})  # b is better: a GPU of the failing node waits
    assert not may_take(retry, Slot("a", 0), live, {})
    # a slot of the failing node takes fresh work and leaves the retry to the other node
    assert pick_next([retry, _item(1)], Slot("a", 1), live, now=10) == 1
    assert pick_next([retry, _item(1)], Slot("b", 0), live, now=10) == 0
    # once the other node is gone, another GPU of the same node may take it, the failing slot still not
    assert pick_next([retry], Slot("a", 1), {Slot("a", 0), Slot("a", 1)}, now=10) == 0
    assert pick_next([retry], Slot("a", 0), {Slot("a", 0), Slot("a", 1)}, now=10) is None


def test_retry_tie_is_broken_by_the_nodes_recent_failure_rate() -> None:
    live = {Slot("a", 0), Slot("a", 1), Slot("b", 0), Slot("b", 1)}
    retry = _item(0, {Slot("a", 0), Slot("b", 0)})  # failed once on each node
    rates = {"a": 0.1, "b": 0.34}
    assert may_take(retry, Slot("a", 1), live, rates)
    assert not may_take(retry, Slot("b", 1), live, rates)


def test_same_slot_only_when_every_live_slot_tried() -> None:
    only = {Slot("a", 0)}
    assert pick_next([_item(0, {Slot("a", 0)})], Slot("a", 0), only, now=10) == 0


def test_backing_off_chunk_waits_until_ready() -> None:
    queue = [_item(0, {Slot("a", 0)}, ready_at=12.0), _item(1, ready_at=15.0)]
    assert pick_next(queue, Slot("b", 0), {Slot("a", 0), Slot("b", 0)}, now=11.0) is None
    assert next_ready_time(queue, now=11.0) == 12.0
    assert pick_next(queue, Slot("b", 0), {Slot("a", 0), Slot("b", 0)}, now=12.0) == 0


def test_out_of_attempts_counts_hard_failures_and_bounds_lost_connections() -> None:
    policy = SchedulerPolicy(max_attempts=3)
    assert not out_of_attempts(QueuedChunk(ChunkSpec("c", {}), attempts=2, hard_failures=2), policy)
    assert out_of_attempts(QueuedChunk(ChunkSpec("c", {}), attempts=3, hard_failures=3), policy)
    assert not out_of_attempts(QueuedChunk(ChunkSpec("c", {}), attempts=5, hard_failures=0), policy)
    assert out_of_attempts(QueuedChunk(ChunkSpec("c", {}), attempts=6, hard_failures=0), policy)


def test_breaker_trips_once_on_rate_and_minimum_count() -> None:
    breaker = NodeBreaker(SchedulerPolicy(breaker_window=4, breaker_threshold=0.5, breaker_min_failures=2))
    assert breaker.record("a", True) is None  # 1 failure < minimum 2
    assert breaker.record("a", False) is None
    reason = breaker.record("a", True)  # 2 of 3 failed
    assert reason is not None and "2 of the last 3" in reason
    assert breaker.record("a", True) is None  # reported once
    assert breaker.tripped == {"a": reason}


def test_breaker_window_forgets_old_failures() -> None:
    breaker = NodeBreaker(SchedulerPolicy(breaker_window=3, breaker_threshold=0.3, breaker_min_failures=2))
    for failed in (True, False, False, False, True):  # 2 of 5 would trip; the window of 3 holds only 1
        assert breaker.record("b", failed) is None
    assert breaker.record("b", True) is not None


def test_chunk_id_is_deterministic_and_key_order_free() -> None:
    assert chunk_id_for({"a": 1, "b": [1, 2]}) == chunk_id_for({"b": [1, 2], "a": 1})
    assert chunk_id_for({"a": 1}) != chunk_id_for({"a": 2})


def test_worker_output_last_line_must_be_a_json_object() -> None:
    assert parse_worker_output('noise\n{"ok": true}\n\n') == {"ok": True}
    for bad in ("", "not json", "[1, 2]"):
        with pytest.raises(ValueError):
            parse_worker_output(bad)


def test_slot_env_selects_the_device_per_kind() -> None:
    cfg = parse_config(
        {
            "nodes": [
                {"name": "r", "gpu_kind": "rocm", "gpu_count": 2, "env": {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"}},
                {"name": "c", "gpu_kind": "cuda", "gpu_count": 2},
                {"name": "l", "transport": "local"},
            ]
        }
    )
    rocm, cuda, cpu = (slot_env(n, 1) for n in cfg.nodes)
    assert rocm["HIP_VISIBLE_DEVICES"] == "1" and rocm["HSA_OVERRIDE_GFX_VERSION"] == "10.3.0"
    assert cuda["CUDA_VISIBLE_DEVICES"] == "1" and "HIP_VISIBLE_DEVICES" not in cuda
    assert cpu["OMP_NUM_THREADS"] == "1" and "CUDA_VISIBLE_DEVICES" not in cpu
    # set at the worker's start, before its first GPU call: SDMA off on ROCm, and which runtime loads first
    assert rocm["HSA_ENABLE_SDMA"] == "0" and "HSA_ENABLE_SDMA" not in cuda
    assert [e["WATCHER_GPU_KIND"] for e in (rocm, cuda, cpu)] == ["rocm", "cuda", "cpu"]
    own = parse_config({"nodes": [{"name": "r", "gpu_kind": "rocm", "gpu_count": 1, "env": {"HSA_ENABLE_SDMA": "1"}}]})
    assert slot_env(own.nodes[0], 0)["HSA_ENABLE_SDMA"] == "1"  # the node's own setting wins


def test_failure_description_carries_all_evidence() -> None:
    failure = ChunkFailure(
        chunk_id="c1",
        attempt=1,
        slot=Slot("rig", 3),
        kind="exit",
        error="worker exited with code 1",
        command="python -m pipeline.worker",
        exit_code=1,
        stderr_tail="HIP error\nmemory access fault",
        gpu_state={"status": "faulted", "evidence": ["power 4294.967295 W"]},
        traceback="Traceback (most recent call last):\n  boom",
    )
    text = describe_failure(failure, 3)
    for needle in ("rig:3", "attempt 1/3", "python -m pipeline.worker", "exit code: 1", "memory access fault",
                   "faulted (power 4294.967295 W)", "boom"):  # fmt: skip
        assert needle in text
