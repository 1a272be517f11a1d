"""`slot_mode: ray` on a real local Ray cluster: two raylets (rig-a, the head, and rig-b) standing for two
configured nodes of two slots each, started once for the module (Ray is heavy on two cores).

The scheduler's policy is the same code in every mode, so these check what the Ray runner adds: the same answers
and failure records as the other modes, actors kept across calls in a pool, and every fault Ray can report
(the actor's process dying, a hung actor, a chunk past the job timeout, a node leaving the cluster) as a stored
`ChunkFailure` with Ray's words, before the chunk is retried elsewhere. The node-leaving test is last: it takes
rig-b out of the module's cluster.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from raycluster import LocalRay, local_ray, ray_processes
from sched_helpers import WORKER_ARGV, captured_log, chunks, local_config, local_executors, survivors

from cluster.config import ClusterConfig
from cluster.errors import ConfigError, SchedulingError
from cluster.scheduler import WorkerPool, run_chunks
from cluster.scheduler.types import ScheduleReport
from pipeline.store import RunStore

pytestmark = pytest.mark.slow
NODES = {"rig-a": 2, "rig-b": 2}


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRay]:
    with local_ray(tmp_path_factory.getbasetemp() / "ray27", list(NODES)) as cluster:
        yield cluster


def ray_config(tmp: Path, cluster: LocalRay, nodes: dict[str, int] = NODES, **policy: Any) -> ClusterConfig:
    config = local_config(tmp, nodes, **policy)
    data = config.model_dump()
    data["scheduler"]["slot_mode"] = "ray"
    data["ray"] = {"address": cluster.address}
    return ClusterConfig.model_validate(data)


def run(config: ClusterConfig, specs: list, store: RunStore, run_id: int, **kw: Any) -> ScheduleReport:
    """One call; a pool's calls pass the same `executors` (a runner kept over another executor is replaced)."""
    kw = {"probe": None, "cleanup": None, "progress": False, "executors": local_executors(config), **kw}
    return run_chunks(config, specs, sink=store.chunk_sink(run_id, 1), worker_argv=WORKER_ARGV, **kw)


def _record(failure: Any) -> tuple:
    tail = (failure["stderr_tail"] or "").strip().splitlines()[-1:]
    return (failure["kind"], failure["exit_code"], failure["error"], tuple(tail))


def test_same_results_and_failure_records_as_the_other_modes(tmp_path: Path, ray_cluster: LocalRay) -> None:
    """The contract the three runners share: the same chunks, with faults pinned to a slot or to a chunk, end in
    the same results and the same stored failure records."""
    calls = [
        chunks(12, fail_slots=["rig-b:0"]),
        chunks(1, value=100, ok_false=True),
        chunks(1, value=101, bad_output=True),
        chunks(1, value=102, bad_spec=True),
    ]
    outcomes: dict[str, list] = {}
    for mode in ("workers", "ray"):
        config = ray_config(tmp_path, ray_cluster, breaker_min_failures=50, max_attempts=2)
        outcomes[mode] = []
        with RunStore(tmp_path / f"{mode}.db") as store:
            for number, specs in enumerate(calls):
                run_id = store.create_run(1)
                try:
                    results = survivors(run(config, specs, store, run_id, slot_mode=mode).results)
                except SchedulingError as err:
                    results = {"error": str(err).split(";")[0]}
                records = sorted({_record(f) for f in store.chunk_failures(run_id)})
                outcomes[mode].append((number, results, records, store.chunk_counts(run_id, 1)["done"]))
    assert outcomes["ray"] == outcomes["workers"]
    assert {rec[0] for _n, _r, records, _d in outcomes["ray"] for rec in records} == {
        "exit", "worker_error", "invalid", "bad_spec"
    }  # fmt: skip


def test_actors_stay_up_across_calls_on_their_own_slots(tmp_path: Path, ray_cluster: LocalRay) -> None:
    base = local_config(tmp_path, NODES).model_dump()
    base["nodes"][0]["excluded_gpus"] = [{"index": 1, "reason": "SMU faults"}]
    config = ray_config(tmp_path, ray_cluster)
    config = ClusterConfig.model_validate({**config.model_dump(), "nodes": base["nodes"]})
    executors = local_executors(config)
    with RunStore(tmp_path / "w.db") as store, WorkerPool() as pool:
        run_id = store.create_run(1)
        first = run(config, chunks(12, round=1), store, run_id, pool=pool, executors=executors)
        up = pool.live_pids()
        second = run(config, chunks(12, round=2), store, run_id, pool=pool, executors=executors)
        assert {str(s) for s in up} == {"rig-a:0", "rig-b:0", "rig-b:1"}, "the excluded GPU got an actor"
        for report in (first, second):
            by_slot = {(r["slot"], r["pid"]) for r in report.results.values()}
            assert {pid for _slot, pid in by_slot} <= set(up.values()), "an actor was placed again"
            assert {slot for slot, _pid in by_slot} <= {"rig-a:0", "rig-b:0", "rig-b:1"}
        assert pool.live_pids() == up
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in up.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in up.values() if os.path.exists(f"/proc/{pid}")], "the pool's close left actors up"


def test_an_actor_dying_mid_chunk_is_stored_with_rays_words_before_the_retry(
    tmp_path: Path, ray_cluster: LocalRay
) -> None:
    config = ray_config(tmp_path, ray_cluster, breaker_min_failures=50, max_attempts=3)
    with RunStore(tmp_path / "w.db") as store, captured_log() as messages:
        run_id = store.create_run(1)
        report = run(config, chunks(16, die_slots=["rig-b:1"], sleep=0.2), store, run_id)
        died = [f for f in store.chunk_failures(run_id) if f["node"] == "rig-b" and f["gpu"] == 1]
    assert len(report.results) == 16 and all(r["slot"] != "rig-b:1" for r in report.results.values())
    assert died and all(f["kind"] == "exit" and f["exit_code"] is None for f in died)
    assert all("slot actor died in the middle of the chunk" in f["error"] for f in died)
    assert all("(Ray: The actor died unexpectedly" in f["error"] for f in died), died[0]["error"]
    first = next(i for i, m in enumerate(messages) if " FAILED on rig-b:1" in m)
    chunk_id = messages[first].split()[1]
    retry = [i for i, m in enumerate(messages) if m.startswith(f"retrying chunk {chunk_id} attempt 2/")]
    assert retry and retry[0] > first, "retried before the failure was logged"
    assert any("slot actor rig-b:1: restart" in m for m in messages), "the dead actor was not replaced with backoff"


def test_a_hung_actor_is_stale_and_a_long_chunk_times_out(tmp_path: Path, ray_cluster: LocalRay) -> None:
    hb = 1.0
    config = ray_config(tmp_path, ray_cluster, heartbeat_timeout_s=hb, breaker_min_failures=50, max_attempts=1)
    config = ClusterConfig.model_validate({**config.model_dump(), "timeouts": {"job": 3}})
    stopped: dict[str, float] = {}
    executors = local_executors(config)
    with RunStore(tmp_path / "w.db") as store, WorkerPool() as pool:
        run_id = store.create_run(1)
        run(config, chunks(4), store, run_id, pool=pool, executors=executors)
        target = next(pid for slot, pid in pool.live_pids().items() if str(slot) == "rig-a:1")

        def stop_it() -> None:
            time.sleep(0.3)
            os.kill(target, signal.SIGSTOP)
            stopped["at"] = time.time()

        threading.Thread(target=stop_it, daemon=True).start()
        with pytest.raises(SchedulingError, match="failed 1 attempts"):  # the stale chunk is out of attempts
            run(config, chunks(12, round=2, sleep=0.5), store, run_id, pool=pool, executors=executors)
        everywhere = [f"{node}:{gpu}" for node in NODES for gpu in (0, 1)]
        hanging = chunks(1, value=50, hang_slots=everywhere, hang_s=30)
        with pytest.raises(SchedulingError, match="job timeout of 3 s"):
            run(config, hanging, store, run_id, executors=executors)
        failures = store.chunk_failures(run_id)
    stale = [f for f in failures if f["kind"] == "stale"]
    assert len(stale) == 1 and (stale[0]["node"], stale[0]["gpu"]) == ("rig-a", 1)
    assert "heartbeat_timeout_s" in stale[0]["error"] and stale[0]["time"] - stopped["at"] <= hb + 1.5
    assert [f["kind"] for f in failures if f["chunk_id"] == hanging[0].chunk_id] == ["timeout"]
    deadline = time.monotonic() + 10  # the stopped process is killed by pid, not left to Ray
    while _running(target) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(target), "the SIGSTOPped actor's process is still there"


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_ray_node_no_configured_node_accounts_for_is_refused(tmp_path: Path, ray_cluster: LocalRay) -> None:
    config = ray_config(tmp_path, ray_cluster, nodes={"rig-a": 2})
    with RunStore(tmp_path / "w.db") as store, pytest.raises(ConfigError) as err:
        run(config, chunks(2), store, store.create_run(1))
    assert "watcher-node='rig-b', which is no node of distributed_config.json" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_ray_node_leaving_mid_call_fails_its_chunks_and_the_other_node_finishes(
    tmp_path: Path, ray_cluster: LocalRay
) -> None:
    """Last in the module: rig-b leaves the module's Ray cluster for good."""
    config = ray_config(tmp_path, ray_cluster, breaker_min_failures=50, max_attempts=3)
    kw = {"executors": local_executors(config)}
    with RunStore(tmp_path / "w.db") as store, WorkerPool() as pool:
        run_id = store.create_run(1)
        run(config, chunks(4), store, run_id, pool=pool, **kw)  # actors up everywhere

        def remove_b() -> None:
            time.sleep(0.8)
            ray_cluster.remove("rig-b")

        remover = threading.Thread(target=remove_b, daemon=True)
        remover.start()
        report = run(config, chunks(16, round=2, sleep=0.4), store, run_id, pool=pool, **kw)
        remover.join(30)
        lost = [f for f in store.chunk_failures(run_id) if f["node"] == "rig-b"]
        rows = {r["chunk_id"]: r for r in store.chunk_rows(run_id, 1)}
        later = run(config, chunks(4, round=3), store, run_id, pool=pool, **kw)
    assert len(report.results) == 16 and lost, "no chunk was running on rig-b when it left"
    for failure in lost:  # a crashed raylet: its actors are unreachable first, then Ray declares the node dead
        assert failure["kind"] == "transport" and "(Ray: " in failure["error"], failure["error"]
        assert "rig-b may be leaving the Ray cluster" in failure["error"] or "rig-b left the" in failure["error"]
        assert rows[failure["chunk_id"]]["status"] == "done" and rows[failure["chunk_id"]]["node"] == "rig-a"
    gone = {**report.nodes_tripped, **later.nodes_tripped}["rig-b"]
    assert "rig-b left the cluster" in gone or "no live Ray node" in gone
    assert len(later.results) == 4 and {r["slot"] for r in later.results.values()} <= {"rig-a:0", "rig-a:1"}
    assert not [p for p, cmd in ray_processes(ray_cluster.base) if "raylet.1" in cmd], "rig-b's raylet is still up"
