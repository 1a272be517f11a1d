"""Slot workers kept across `run_chunks` calls (cluster/scheduler/pool.py), on local nodes: a later call is
answered by the same worker processes, and nothing outlives the pool, however a call or the pool ends.

The stand-in worker asks the kernel to end it with the thread that started it, as the real one does, so a
pool whose workers were started by a call's (short-lived) slot threads would fail the reuse tests here."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sched_helpers import WORKER_ARGV, chunks, flag_probe, local_config, local_executors

from cluster.config import ClusterConfig, parse_config
from cluster.errors import SchedulingError
from cluster.scheduler import WorkerPool, run_chunks
from cluster.scheduler.types import ChunkSpec, ScheduleReport, Slot
from cluster.transport.base import Executor
from pipeline.store import RunStore


@pytest.fixture
def store(tmp_path: Path):
    s = RunStore(tmp_path / "watcher.db")
    yield s
    s.close()


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_dead(pids: set[int], seconds: float = 5.0) -> set[int]:
    """The pids still alive after up to `seconds`."""
    deadline = time.monotonic() + seconds
    while (left := {p for p in pids if alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def pids(report: ScheduleReport) -> dict[str, set[int]]:
    """Which worker processes answered, by slot."""
    out: dict[str, set[int]] = {}
    for result in report.results.values():
        out.setdefault(result["slot"], set()).add(result["pid"])
    return out


def every(by_slot: dict[str, set[int]]) -> set[int]:
    return set().union(*by_slot.values()) if by_slot else set()


def batch(n: int, round_: int, **extra: Any) -> list[ChunkSpec]:
    """n chunks whose ids differ from other rounds' (as a step's Optuna batches do)."""
    return chunks(n, round=round_, **extra)


class Runner:
    """run_chunks over local nodes into one store, with one set of executors (as a step has)."""

    def __init__(self, config: ClusterConfig, store: RunStore) -> None:
        self.config = config
        self.store = store
        self.run_id = store.create_run(1)
        self.executors = local_executors(config)

    def __call__(self, specs: list[ChunkSpec], pool: WorkerPool | None, **kw: Any) -> ScheduleReport:
        kw.setdefault("probe", None)
        kw.setdefault("cleanup", None)
        kw.setdefault("worker_argv", WORKER_ARGV)
        return run_chunks(
            self.config, specs, sink=self.store.chunk_sink(self.run_id, 1), executors=self.executors,
            progress=False, pool=pool, **kw,
        )  # fmt: skip


def test_a_second_call_is_answered_by_the_same_workers_and_close_stops_them(tmp_path: Path, store: RunStore) -> None:
    run = Runner(local_config(tmp_path, {"a": 2, "b": 1}), store)
    with WorkerPool() as pool:
        first = run(batch(9, 1), pool)
        up = set(pool.live_pids().values())
        assert len(up) == 3 and every(pids(first)) == up
        second = run(batch(9, 2), pool)
        assert every(pids(second)) <= up, "the second call started new workers"
        assert pool.starts == 3 and set(pool.live_pids().values()) == up
        # another command on the same slots: not the workers started for the first one
        third = run(batch(3, 3), pool, worker_argv=(*WORKER_ARGV, "--variant"))
        assert not every(pids(third)) & up
        assert not wait_dead(up), "workers replaced for another command are still up"
        last = set(pool.live_pids().values())
    assert pool.runners == {} and not wait_dead(last | up)


def test_a_raising_call_stops_every_worker_and_the_pool_goes_on(tmp_path: Path, store: RunStore) -> None:
    run = Runner(local_config(tmp_path, {"a": 2}, max_attempts=1), store)
    with WorkerPool() as pool:
        run(batch(4, 1), pool)
        up = set(pool.live_pids().values())
        with pytest.raises(SchedulingError, match="bad job spec"):
            run(batch(3, 2) + batch(1, 2, value=99, bad_spec=True), pool)
        assert pool.runners == {} and not wait_dead(up), "a raising call left workers up"
        again = run(batch(4, 3), pool)
        fresh = every(pids(again))
        assert fresh and not fresh & up
    assert not wait_dead(fresh)


def test_nothing_survives_a_raise_through_the_pool(tmp_path: Path, store: RunStore) -> None:
    """An error from the caller's own code between calls (a step crashing) still ends every worker."""
    run = Runner(local_config(tmp_path, {"a": 2}), store)
    up: set[int] = set()
    with pytest.raises(RuntimeError, match="step crashed"), WorkerPool() as pool:
        run(batch(4, 1), pool)
        up = set(pool.live_pids().values())
        raise RuntimeError("step crashed")
    assert len(up) == 2 and not wait_dead(up)


def test_workers_of_quarantined_slots_and_tripped_nodes_are_not_reused(tmp_path: Path, store: RunStore) -> None:
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "a:1").touch()
    cfg = local_config(tmp_path, {"a": 2, "b": 2}, breaker_min_failures=2, breaker_window=4, max_attempts=4)
    run = Runner(cfg, store)
    with WorkerPool() as pool:
        first = run(batch(12, 1, fault_dir=str(faults), fail_nodes=["b"]), pool, probe=flag_probe(faults), ledger=store)
        assert "b" in first.nodes_tripped and Slot("a", 1) in first.quarantined
        assert set(pool.runners) == {Slot("a", 0)}, "workers of a quarantined slot or a tripped node were kept"
        kept = pool.live_pids()[Slot("a", 0)]
        second = run(batch(12, 2), pool, ledger=store)
        by_slot = pids(second)
        assert "a:1" not in by_slot  # quarantined in the ledger: not a slot of the second call
        assert by_slot.get("a:0", {kept}) == {kept}
        assert kept not in by_slot.get("b:0", set()) | by_slot.get("b:1", set())
    assert not wait_dead(every(pids(first)) | every(by_slot))


def test_cleanup_is_paced_across_calls_and_owed_to_the_close(tmp_path: Path, store: RunStore) -> None:
    """cleanup_batch_size counts chunks across calls; the end-of-call cleanup runs once, at close; every
    cleanup finds the node's workers stopped."""
    run = Runner(local_config(tmp_path, {"a": 1}, cleanup_batch_size=4), store)
    seen: list[set[int]] = []
    answered: set[int] = set()

    def cleanup(executor: Executor) -> list[Any]:
        seen.append({p for p in answered if alive(p)})
        return []

    with WorkerPool() as pool:
        answered |= every(pids(run(batch(3, 1), pool, cleanup=cleanup)))
        assert seen == [], "a call cleaned up at its end although the pool owes that cleanup"
        second = run(batch(3, 2), pool, cleanup=cleanup)
        answered |= every(pids(second))
        assert len(seen) == 1, "the 4th chunk (in the second call) did not bring the batch cleanup"
        assert len(every(pids(second))) == 2, "the worker was not stopped for the cleanup and started again"
    assert len(seen) == 2 and seen == [set(), set()], f"a cleanup ran with workers up: {seen}"


def test_ctrl_c_stops_the_pool_and_skips_the_owed_cleanup(tmp_path: Path, store: RunStore) -> None:
    run = Runner(local_config(tmp_path, {"a": 2}), store)
    cleanups: list[str] = []

    def interrupt() -> bool:
        raise KeyboardInterrupt

    up: set[int] = set()
    with pytest.raises(KeyboardInterrupt), WorkerPool() as pool:
        run(batch(2, 1), pool, cleanup=lambda ex: cleanups.append(ex.name))
        up = set(pool.live_pids().values())
        run(batch(8, 2, sleep=0.3), pool, halt_check=interrupt)
    assert len(up) == 2 and not wait_dead(up) and cleanups == []
    assert pool.closed and pool.runners == {}


def test_per_chunk_mode_ignores_the_pool(tmp_path: Path, store: RunStore) -> None:
    run = Runner(local_config(tmp_path, {"a": 2}), store)
    cleanups: list[str] = []
    clean: Callable[[Executor], list[Any]] = lambda ex: cleanups.append(ex.name) or []  # noqa: E731
    with WorkerPool() as pool:
        first = run(batch(4, 1), pool, slot_mode="per_chunk", cleanup=clean)
        run(batch(4, 2), pool, slot_mode="per_chunk", cleanup=clean)
        assert pool.starts == 0 and pool.runners == {}
        assert len(every(pids(first))) == 4, "per-chunk mode reused a process"
        assert cleanups == ["a", "a"], "per-chunk mode no longer cleans up at the end of each call"
    assert cleanups == ["a", "a"]


def test_a_closed_pool_refuses_calls(tmp_path: Path, store: RunStore) -> None:
    run = Runner(local_config(tmp_path, {"a": 1}), store)
    with WorkerPool() as pool:
        pass
    with pytest.raises(SchedulingError, match="closed"):
        run(batch(1, 1), pool)


def test_the_version_check_applies_to_every_call(tmp_path: Path, store: RunStore) -> None:
    """A node whose worker is too old is refused in each call; the pool keeps nothing of it."""
    base = local_config(tmp_path, {"old": 1, "new": 1}).model_dump()
    base["nodes"][0]["env"] = {"SCHED_WORKER_VERSION": "0.0.1"}
    run = Runner(parse_config(base), store)
    with WorkerPool() as pool:
        for round_ in (1, 2):
            report = run(batch(4, round_), pool)
            assert "older than the coordinator's" in report.nodes_tripped["old"]
            assert {r["slot"] for r in report.results.values()} == {"new:0"}
            assert set(pool.runners) == {Slot("new", 0)}
        assert pool.starts == 3  # new:0 once, old:0 refused in each call
