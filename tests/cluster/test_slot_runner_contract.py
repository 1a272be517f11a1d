"""The `SlotRunner` contract: one suite, run on every implementation (cluster/scheduler/runner.py says what
they promise). A runner is driven here as the scheduler drives it, one chunk at a time from one thread, and
stopped from another, over a real local executor and real worker processes (tests/cluster/sched_worker.py).

Every implementation must give the same answer for the same chunk and the same failure record for the same
fault: a crash, garbage on stdout, a failed job, a bad job spec, a hang (SIGSTOP), an old worker, a stop from
another thread; and it must leave no process behind. A new implementation is proved by adding its factory
to `RUNNERS`. The Ray runner's slot `a:0` is on raylet `a` of a local two-node Ray cluster (tests/cluster/
raycluster.py), started once for the module and only when a Ray case runs.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from raycluster import local_ray
from sched_helpers import WORKER_ARGV, executions, local_config

from cluster.config import ClusterConfig, NodeConfig, parse_config
from cluster.files import installed_version
from cluster.scheduler.options import SchedulerOptions
from cluster.scheduler.per_chunk import PerChunkRunner
from cluster.scheduler.ray_slots import backend as ray_backend
from cluster.scheduler.ray_slots.runner import RayRunner
from cluster.scheduler.runner import SlotRunner, WorkerRefused
from cluster.scheduler.types import ChunkFailure, ChunkSpec, Slot
from cluster.scheduler.workers import WorkerRunner
from cluster.transport.base import Executor
from cluster.transport.local import LocalExecutor

SLOT = Slot("a", 0)
JOB_TIMEOUT_S = 3.0
HEARTBEAT_TIMEOUT_S = 1.0


@dataclass
class Host:
    """The scheduler's side of a runner (`SlotHost`): every start allowed, progress and memory recorded."""

    progress: list[int] = field(default_factory=list)
    memory: list[tuple[int, int]] = field(default_factory=list)
    starts: int = 0

    def start_turn(self, slot: Slot) -> bool:
        self.starts += 1
        return True

    def start_done(self, slot: Slot) -> None:
        pass

    def chunk_progress(self, slot: Slot, count: int) -> None:
        self.progress.append(count)

    def worker_memory(self, slot: Slot, rss: int, mem_total: int) -> None:
        self.memory.append((rss, mem_total))


@dataclass
class RunnerEnv:
    """What a runner factory is given: one slot of a local node, its executor, the call's options."""

    config: ClusterConfig
    node: NodeConfig
    executor: Executor
    options: SchedulerOptions
    host: Host
    ray: tuple[ray_backend.Backend, dict[str, str]] | None = None  # the Ray link and node ids, for the Ray runner


def per_chunk(env: RunnerEnv) -> SlotRunner:
    return PerChunkRunner(env.executor, env.node, SLOT, options=env.options, timeouts=env.config.timeouts)


def workers(env: RunnerEnv) -> SlotRunner:
    return WorkerRunner(env.executor, env.node, SLOT, options=env.options, policy=env.config.scheduler,
                        timeouts=env.config.timeouts, host=env.host, lifetime_s=60.0)  # fmt: skip


def ray(env: RunnerEnv) -> SlotRunner:
    assert env.ray is not None
    backend, ids = env.ray
    runner = RayRunner(backend, env.executor, env.node, SLOT, node_id=ids["a"], options=env.options,
                       policy=env.config.scheduler, timeouts=env.config.timeouts, host=env.host,
                       version=installed_version())  # fmt: skip
    assert runner.place() is None  # the actor's process start through the raylet is not what the suite times
    return runner


ray.needs_ray = True  # type: ignore[attr-defined]

# Every SlotRunner implementation, by the slot_mode that selects it.
RUNNERS: dict[str, Callable[[RunnerEnv], SlotRunner]] = {"per_chunk": per_chunk, "workers": workers, "ray": ray}


@pytest.fixture(scope="module")
def ray_link(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ray_backend.Backend, dict[str, str]]]:
    """Two raylets, `a` and `b` (two slots each), and this process joined to them as the coordinator is."""
    with local_ray(tmp_path_factory.getbasetemp() / "rayc", ["a", "b"]) as cluster:
        backend = ray_backend.connect(cluster.address)
        yield backend, backend.node_ids(local_config(cluster.base, {"a": 2, "b": 2}))


def _config(workdir: Path, env: dict[str, str] | None = None, job_timeout: float = JOB_TIMEOUT_S) -> ClusterConfig:
    node = {"name": "a", "transport": "local", "gpu_kind": "rocm", "gpu_count": 1, "python": sys.executable,
            "workdir": str(workdir), "env": env or {}}  # fmt: skip
    policy = {"backoff_s": 0.01, "backoff_max_s": 0.05, "worker_start_stagger_s": 0,
              "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S}  # fmt: skip
    return parse_config({"nodes": [node], "timeouts": {"job": job_timeout}, "scheduler": policy})


@pytest.fixture(params=sorted(RUNNERS))
def runner_factory(request: pytest.FixtureRequest) -> Callable[[RunnerEnv], SlotRunner]:
    return RUNNERS[request.param]


@pytest.fixture
def make_runner(
    runner_factory: Callable[[RunnerEnv], SlotRunner], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., SlotRunner]]:
    """`make_runner(env={...}, job_timeout=s)`: a runner of the implementation under test on slot a:0 (stopped
    at teardown)."""
    made: list[SlotRunner] = []
    link = request.getfixturevalue("ray_link") if getattr(runner_factory, "needs_ray", False) else None

    def make(env: dict[str, str] | None = None, job_timeout: float = JOB_TIMEOUT_S) -> SlotRunner:
        config = _config(tmp_path, env, job_timeout)
        options = SchedulerOptions(worker_argv=WORKER_ARGV, slot_mode="contract")
        env_ = RunnerEnv(config, config.nodes[0], LocalExecutor(config.nodes[0]), options, Host(), link)
        runner = runner_factory(env_)
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.stop(wait=1.0)
    assert _wait_no_workers(tmp_path) == [], "the runner left worker processes behind"


def _workers_in(workdir: Path) -> list[int]:
    """Worker processes of this test (sched_worker.py running in its workdir), SIGSTOPped ones included."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
            cwd = os.readlink(entry / "cwd") if b"sched_worker.py" in cmd else ""
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0] if cwd else ""
        except OSError:
            continue
        if cwd == str(workdir) and state != "Z":
            found.append(int(entry.name))
    return found


def _wait_no_workers(workdir: Path, seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _workers_in(workdir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _record(outcome: dict[str, Any] | ChunkFailure) -> tuple[Any, ...]:
    """What every runner must agree on in a failure record."""
    assert isinstance(outcome, ChunkFailure), f"expected a failure, got {outcome}"
    last = (outcome.stderr_tail or "").strip().splitlines()[-1:]
    return (outcome.kind, outcome.exit_code, outcome.retryable, tuple(last))


def _expected_survivors(value: int) -> list[int]:
    return [s for s in range(value * 10, value * 10 + 10) if (s * 2654435761) % 7 == 0]


# --- answers ----------------------------------------------------------------------------------------------
def test_chunks_in_a_row_give_their_answers(make_runner: Callable[..., SlotRunner]) -> None:
    runner = make_runner()
    for value in (3, 4):
        answer = runner.run(ChunkSpec.of({"value": value}), 1)
        assert isinstance(answer, dict), answer
        assert (answer["ok"], answer["value"], answer["survivors"], answer["slot"]) == (
            True, value, _expected_survivors(value), "a:0"
        )  # fmt: skip


# --- faults: the same record from every runner ------------------------------------------------------------
FAULTS: dict[str, tuple[dict[str, Any], tuple[Any, ...], str]] = {
    # payload, (kind, exit code, retryable, last stderr line), what the error says
    "crash": ({"die_slots": ["a:0"]}, ("exit", 9, True, ("dying on a:0",)), "exited with code 9"),
    "garbage": ({"bad_output": True}, ("invalid", 0, True, ()), "unreadable worker output: last stdout line is not"),
    "failed job": ({"ok_false": True}, ("worker_error", 0, True, ()), "worker reported failure: kernel returned"),
    "bad spec": ({"bad_spec": True}, ("bad_spec", 2, False, ()), "bad spec: 'value' must be an int"),
    "failing slot": ({"fail_slots": ["a:0"]}, ("exit", 3, True, ("simulated failure on a:0",)), "exited with code 3"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_gives_the_same_failure_record(make_runner: Callable[..., SlotRunner], fault: str) -> None:
    payload, record, said = FAULTS[fault]
    runner = make_runner()
    chunk = ChunkSpec.of({"value": 1, **payload})
    outcome = runner.run(chunk, 2)
    assert _record(outcome) == record
    assert isinstance(outcome, ChunkFailure) and said in outcome.error
    assert (outcome.chunk_id, outcome.attempt, outcome.slot) == (chunk.chunk_id, 2, SLOT)
    assert "sched_worker.py" in outcome.command
    again = runner.run(ChunkSpec.of({"value": 5}), 1)  # the slot recovers: the next chunk is answered
    assert isinstance(again, dict) and again["value"] == 5


def test_a_hung_worker_fails_its_chunk_in_bounded_time_and_is_killed(
    make_runner: Callable[..., SlotRunner], tmp_path: Path
) -> None:
    """SIGSTOP (a GPU call that never returns): `timeout` after the job timeout, or `stale` after the heartbeat
    timeout where the runner hears heartbeats; either way the process is gone."""
    runner = make_runner()
    started = time.monotonic()
    outcome = runner.run(ChunkSpec.of({"value": 1, "stop_slots": ["a:0"]}), 1)
    took = time.monotonic() - started
    assert isinstance(outcome, ChunkFailure) and outcome.retryable
    assert outcome.kind in {"timeout", "stale"}
    assert outcome.exit_code is None and outcome.stderr_tail.splitlines()[-1:] == ["stopping on a:0"]
    assert took < JOB_TIMEOUT_S + 3, f"the hang was noticed after {took:.1f} s"
    if outcome.kind == "stale":
        assert took < HEARTBEAT_TIMEOUT_S + 2 and "heartbeat_timeout_s" in outcome.error
    else:
        assert f"{JOB_TIMEOUT_S:g} s" in outcome.error
    assert _wait_no_workers(tmp_path) == [], "the stopped worker was left behind"


# --- identity: an old worker, another protocol -------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "named"),
    [({"SCHED_WORKER_VERSION": "0.0.1"}, "0.0.1, older than the coordinator's"),
     ({"SCHED_WORKER_PROTOCOL": "2"}, "speaks worker protocol 2, the coordinator 1")],
)  # fmt: skip
def test_an_old_or_foreign_worker_is_refused_naming_both(
    make_runner: Callable[..., SlotRunner], env: dict[str, str], named: str
) -> None:
    runner = make_runner(env=env)
    with pytest.raises(WorkerRefused) as info:
        runner.run(ChunkSpec.of({"value": 1}), 1)
    assert named in info.value.reason and "install watcher" in info.value.reason


# --- stop from another thread -------------------------------------------------------------------------------
def test_a_stop_from_another_thread_ends_the_chunk_and_its_process(
    make_runner: Callable[..., SlotRunner], tmp_path: Path
) -> None:
    runner = make_runner(job_timeout=60.0)  # only the stop can end the chunk in time
    log = tmp_path / "exec.log"
    outcome: list[Any] = []
    chunk = ChunkSpec.of({"value": 1, "sleep": 30, "log": str(log)})
    thread = threading.Thread(target=lambda: outcome.append(runner.run(chunk, 1)))
    thread.start()
    deadline = time.monotonic() + 10
    while not executions(log) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert executions(log), "the chunk never started"
    stopped = time.monotonic()
    runner.stop(wait=1.0)
    thread.join(5)
    assert not thread.is_alive(), "run() kept going after the stop"
    assert time.monotonic() - stopped < 3
    (failure,) = outcome
    assert isinstance(failure, ChunkFailure) and failure.kind == "transport" and "stopped" in failure.error
    assert _wait_no_workers(tmp_path) == []
    assert not runner.live
    after = runner.run(ChunkSpec.of({"value": 2}), 1)  # a stop is not the end: the next chunk starts a worker
    assert isinstance(after, dict) and after["value"] == 2
