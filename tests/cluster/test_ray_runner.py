"""`slot_mode: ray` on a real local Ray cluster: two raylets (rig-a, the head, and rig-b) standing for two
configured nodes of two slots each, started once for the module (Ray is heavy on two cores).

The runner's own answers and failure records are the SlotRunner contract suite's (test_slot_runner_contract.py,
which runs it too); these check it under the real scheduler, with what only Ray adds: actors kept across calls in
a pool, never one for an excluded GPU, the link's faults (a hung actor, a dead one, a node leaving the cluster)
as stored `ChunkFailure`s with Ray's words before the retry, and a Ray node no configured node accounts for
refused. The node-leaving test is last: it takes rig-b out of the module's cluster.
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
from sched_helpers import WORKER_ARGV, captured_log, chunks, local_config, local_executors

from cluster.config import ClusterConfig
from cluster.errors import ConfigError
from cluster.scheduler import WorkerPool, run_chunks
from cluster.scheduler.types import AnswerRejected, ScheduleReport
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


def test_a_hung_actor_is_stale_and_a_dead_one_is_stored_with_rays_words(tmp_path: Path, ray_cluster: LocalRay) -> None:
    """Faults of the link itself (the worker's own are the contract suite's): an actor that stops answering is
    `stale` and its process killed by pid; one whose process dies is `exit` with what Ray says. Both are stored
    before their chunks are retried elsewhere."""
    hb = 1.0
    config = ray_config(tmp_path, ray_cluster, heartbeat_timeout_s=hb, breaker_min_failures=50)
    executors = local_executors(config)
    with RunStore(tmp_path / "w.db") as store, WorkerPool() as pool, captured_log() as messages:
        run_id = store.create_run(1)
        run(config, chunks(4), store, run_id, pool=pool, executors=executors)
        actors = {str(slot): runner.actor_hello["pid"] for slot, runner in pool.runners.items()}  # type: ignore[attr-defined]
        hung, dead = actors["rig-a:1"], actors["rig-b:1"]

        def fault() -> None:
            time.sleep(0.5)
            os.kill(hung, signal.SIGSTOP)
            os.kill(dead, signal.SIGKILL)

        threading.Thread(target=fault, daemon=True).start()
        report = run(config, chunks(12, round=2, sleep=0.5), store, run_id, pool=pool, executors=executors)
        failures = {(f["node"], f["gpu"]): f for f in store.chunk_failures(run_id)}
    assert len(report.results) == 12
    stale, died = failures[("rig-a", 1)], failures[("rig-b", 1)]
    assert stale["kind"] == "stale" and "slot actor silent" in stale["error"] and f"pid {hung}" in stale["error"]
    assert died["kind"] == "exit" and "slot actor died in the middle of the chunk" in died["error"]
    assert "(Ray: The actor died unexpectedly" in died["error"]
    for failure in (stale, died):
        logged = next(i for i, m in enumerate(messages) if f"chunk {failure['chunk_id']} attempt 1/" in m)
        retried = [
            i for i, m in enumerate(messages) if m.startswith(f"retrying chunk {failure['chunk_id']} attempt 2/")
        ]
        assert retried and retried[0] > logged, "retried before the failure was logged"
    # the stopped actor is killed by pid at once, not left to Ray (whose kill of a stopped process took ~4 s)
    deadline = time.monotonic() + 2
    while _running(hung) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(hung), "the SIGSTOPped actor's process is still there"


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_answers_are_judged_on_the_coordinator(tmp_path: Path, ray_cluster: LocalRay) -> None:
    """The actor hands answers back unjudged: the caller's validator and answer checks (canaries) run here, and a
    slot that misses its canary is quarantined as in the other modes."""
    config = ray_config(tmp_path, ray_cluster, breaker_min_failures=50)
    checked: list[str] = []

    def verify(payload: dict[str, Any], answer: dict[str, Any]) -> None:
        checked.append(answer["slot"])
        if answer["slot"] == "rig-b:1":
            raise AnswerRejected("the planted seed is missing", kind="canary")

    def validate(answer: dict[str, Any]) -> None:
        if not isinstance(answer.get("survivors"), list):
            raise ValueError("survivors must be a list")

    with RunStore(tmp_path / "w.db") as store:
        run_id = store.create_run(1)
        report = run(config, chunks(12, sleep=0.2), store, run_id, verify=verify, validate=validate)
        failures = store.chunk_failures(run_id)
    assert len(report.results) == 12 and "rig-b:1" not in {r["slot"] for r in report.results.values()}
    assert len(checked) >= 12 and "rig-b:1" in checked
    assert [str(s) for s in report.quarantined] == ["rig-b:1"]
    assert [(f["kind"], f["node"], f["gpu"]) for f in failures] == [("canary", "rig-b", 1)]
    assert "answer rejected: the planted seed is missing" in failures[0]["error"]


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
    # A crashed raylet takes its processes down in some order: a worker killed before its actor is reported by
    # the actor (exit -9), an actor killed with its node is reported by Ray (unreachable, then node dead).
    said = {"worker exited with code -9", "rig-b may be leaving the Ray cluster", "the Ray node of rig-b left the"}
    for failure in lost:
        assert failure["kind"] in {"exit", "transport"} and any(s in failure["error"] for s in said), failure["error"]
        assert rows[failure["chunk_id"]]["status"] == "done" and rows[failure["chunk_id"]]["node"] == "rig-a"
    gone = {**report.nodes_tripped, **later.nodes_tripped}["rig-b"]
    assert "rig-b left the cluster" in gone or "no live Ray node" in gone
    assert len(later.results) == 4 and {r["slot"] for r in later.results.values()} <= {"rig-a:0", "rig-a:1"}
    assert not [p for p, cmd in ray_processes(ray_cluster.base) if "raylet.1" in cmd], "rig-b's raylet is still up"
