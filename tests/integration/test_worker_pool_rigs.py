"""Slot workers kept across calls over real SSH (fake sshd rigs on 127.0.0.1): a later call reuses the remote
workers, a rig that died between calls gets none reused and is taken out, and neither a raising call nor the
pool's close leaves a process on a rig."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))

from sched_helpers import WORKER_ARGV, chunks
from test_slot_workers import _rig_config, _rig_executors, _wait_none, rig_processes

from cluster.errors import SchedulingError
from cluster.scheduler import WorkerPool, run_chunks
from cluster.scheduler.types import ScheduleReport
from pipeline.store import RunStore

pytestmark = pytest.mark.integration


def _pids(report: ScheduleReport) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for result in report.results.values():
        out.setdefault(result["slot"], set()).add(result["pid"])
    return out


def test_remote_workers_are_reused_and_a_rig_lost_between_calls_is_taken_out(rigs, tmp_path: Path) -> None:
    rig_a, rig_b = rigs(2, gpus=3)
    config = _rig_config([rig_a, rig_b], breaker_min_failures=2, breaker_window=4)
    executors = _rig_executors(config)
    try:
        with RunStore(tmp_path / "w.db") as store, WorkerPool() as pool:
            run = store.create_run(1)

            def call(round_: int, n: int = 12) -> ScheduleReport:
                return run_chunks(
                    config, chunks(n, round=round_), sink=store.chunk_sink(run, 1), executors=executors,
                    worker_argv=WORKER_ARGV, probe=None, cleanup=None, progress=False, pool=pool,
                )  # fmt: skip

            first = call(1)
            up = pool.live_pids()
            assert len(up) == 6 and set().union(*_pids(first).values()) == set(up.values())
            second = call(2)
            assert set().union(*_pids(second).values()) <= set(up.values()), "remote workers were started again"
            assert pool.starts == 6
            rig_b.down()
            third = call(3)
            assert rig_b.name in third.nodes_tripped
            assert {s.node for s in pool.runners} == {rig_a.name}, "runners of the lost rig were kept"
            on_a = {s: p for s, p in up.items() if s.node == rig_a.name}
            assert {s: p for s, p in pool.live_pids().items()} == on_a
            assert len(rig_processes([rig_a])) >= 3
    finally:
        for ex in executors.values():
            ex.close()
    assert _wait_none([rig_a, rig_b]) == []


def test_a_raising_call_leaves_nothing_on_the_rig(rigs, tmp_path: Path) -> None:
    (rig,) = rigs(1, gpus=3)
    config = _rig_config([rig], max_attempts=1)
    executors = _rig_executors(config)
    try:
        with RunStore(tmp_path / "w.db") as store, WorkerPool() as pool:
            run = store.create_run(1)
            kw = dict(sink=store.chunk_sink(run, 1), executors=executors, worker_argv=WORKER_ARGV, probe=None,
                      cleanup=None, progress=False, pool=pool)  # fmt: skip
            run_chunks(config, chunks(6, round=1), **kw)  # type: ignore[arg-type]
            assert len(rig_processes([rig])) >= 3
            with pytest.raises(SchedulingError, match="bad job spec"):
                run_chunks(config, chunks(3, round=2) + chunks(1, value=9, bad_spec=True), **kw)  # type: ignore[arg-type]
            assert _wait_none([rig]) == [], "a raising call left workers on the rig"
            run_chunks(config, chunks(6, round=3), **kw)  # type: ignore[arg-type]
            assert pool.starts == 6
    finally:
        for ex in executors.values():
            ex.close()
    assert _wait_none([rig]) == []
