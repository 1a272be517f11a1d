"""The slot's Ray actor: on the slot's node, it keeps the slot worker up and feeds it, as the coordinator does
over SSH in `slot_mode: workers`.

A slot's actor is one Ray worker process on the slot's node (runner.py places it there). It does no GPU work
itself: it runs a `workers.WorkerRunner` over the node's own `LocalExecutor`, so the slot worker is the very
`python -m pipeline.worker --serve JOBS_MODULE` process of the other modes, started with the slot's environment
(HIP_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES from the operators' config; the actor asks Ray for no GPU, so Ray
sets none), in the node's workdir, with its hello, heartbeats, stale detection, job timeout, exit codes, stderr
tails and restart backoff. A chunk's outcome goes back to the coordinator as plain data, unjudged: the answer the
worker printed, or the failure's fields, or why the worker is refused. The coordinator judges every answer
itself (`attempt.judge`: schema, recomputation, canaries), so a node is trusted no more than over SSH.

What only Ray adds is the link: the actor's death, its node leaving the cluster, a call that never returns are
what the coordinator hears from Ray (runner.py). The worker dies with the actor (PR_SET_PDEATHSIG on the
actor's spawner thread), so nothing is left on a rig after its actor or the coordinator is gone.

Nothing here imports Ray: backend.py makes the class an actor, and tests drive it in-process as it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cluster.config import NodeConfig, SchedulerPolicy, Timeouts
from cluster.files import installed_version
from cluster.scheduler.options import SchedulerOptions
from cluster.scheduler.runner import WorkerRefused
from cluster.scheduler.types import ChunkFailure, ChunkSpec, Slot
from cluster.scheduler.workers import WorkerRunner
from cluster.transport.base import Session
from cluster.transport.local import LocalExecutor

FAILURE_FIELDS = ("kind", "error", "exit_code", "stderr_tail", "traceback")


def start_ticks(pid: int | str = "self") -> int:
    """When the process started (clock ticks since boot, /proc/PID/stat field 22): with the pid, it names this
    process for good, so a kill sent later cannot hit another process that got the pid meanwhile."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


class _Host:
    """The SlotHost of the node-side runner: starts are paced by the coordinator (it asks for them through
    `start_worker`), progress and memory are kept for the coordinator to read."""

    def __init__(self) -> None:
        self.progress = 0
        self.memory = (0, 0)

    def start_turn(self, slot: Slot) -> bool:
        return True

    def start_done(self, slot: Slot) -> None:
        pass

    def chunk_progress(self, slot: Slot, count: int) -> None:
        self.progress = count

    def worker_memory(self, slot: Slot, rss: int, mem_total: int) -> None:
        self.memory = (rss, mem_total)


def on_node(node: NodeConfig) -> NodeConfig:
    """The slot's node as seen from the node itself: commands run locally, in the workdir an SSH login would
    use (a relative workdir is under the home directory)."""
    home = os.path.expanduser(node.workdir)
    workdir = home if os.path.isabs(home) else os.path.join(os.path.expanduser("~"), home)
    return node.model_copy(update={"transport": "local", "workdir": workdir})


class SlotActor:
    """One slot's worker keeper. `run` takes one chunk at a time; `ping` and `stop_worker` answer on the actor's
    second thread while a chunk runs."""

    def __init__(
        self,
        node: dict[str, Any],
        gpu: int,
        worker_argv: list[str],
        policy: dict[str, Any],
        timeouts: dict[str, Any],
        coordinator_version: str,
        lifetime_s: float,
    ) -> None:
        # Ray sets this to the actor's CPU share (none); the slot worker's threads are the slot's business
        # (attempt.slot_env), as they are over SSH.
        os.environ.pop("OMP_NUM_THREADS", None)
        local = on_node(NodeConfig.model_validate(node))
        self.slot = Slot(local.name, gpu)
        self.host = _Host()
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="slot-spawn")  # lives as long as the actor
        self.runner = WorkerRunner(
            LocalExecutor(local), local, self.slot, options=SchedulerOptions(worker_argv=tuple(worker_argv)),
            policy=SchedulerPolicy.model_validate(policy), timeouts=Timeouts.model_validate(timeouts),
            host=self.host, lifetime_s=lifetime_s, spawn=self._spawn, version=coordinator_version,
        )  # fmt: skip
        self._lock = threading.Lock()

    def _spawn(self, start: Any) -> Session:
        """Start the worker from a thread that lives as long as the actor (PR_SET_PDEATHSIG is per thread)."""
        return self._spawner.submit(start).result()

    def hello(self) -> dict[str, Any]:
        """The actor itself: the watcher installed here (the actor runs its code), its process."""
        return {"version": installed_version(), "pid": os.getpid(), "started": start_ticks()}

    def ping(self) -> dict[str, Any]:
        """Alive (answered while a chunk runs), with the chunk's progress from the worker's heartbeats."""
        return {"progress": self.host.progress, "live": self.runner.live}

    def start_worker(self, chunk_id: str, attempt: int) -> dict[str, Any]:
        """Bring the slot worker up if it is not (the coordinator paces these per node); the outcome as `run`'s,
        with no answer when the worker came up."""
        chunk = ChunkSpec(chunk_id, {})
        with self._lock:
            try:
                started = self.runner.warm(chunk, attempt)
            except WorkerRefused as refused:
                return {"refused": refused.reason}
            return self._reply(started if isinstance(started, ChunkFailure) else None)

    def run(self, chunk_id: str, attempt: int, job: Any) -> dict[str, Any]:
        """One chunk: {"answer": the worker's answer, unjudged} or {"failure": its fields} or {"refused": why},
        with the worker's state ("live", "hello", "memory")."""
        with self._lock:
            self.host.progress = 0
            try:
                outcome = self.runner.run(ChunkSpec(chunk_id, job), attempt)
            except WorkerRefused as refused:
                return {"refused": refused.reason}
            return self._reply(outcome)

    def _reply(self, outcome: dict[str, Any] | ChunkFailure | None) -> dict[str, Any]:
        hello = self.runner.hello
        reply: dict[str, Any] = {
            "live": self.runner.live,
            "hello": hello.model_dump() if hello is not None else None,
            "memory": list(self.host.memory),
        }
        if isinstance(outcome, ChunkFailure):
            fields = dataclasses.asdict(outcome)
            reply["failure"] = {key: fields[key] for key in FAILURE_FIELDS}
        elif outcome is not None:
            reply["answer"] = outcome
            reply["stderr"] = self.runner.stderr.tail()
        return reply

    def stop_worker(self, wait: float) -> bool:
        """Stop the slot worker (a chunk in flight ends as stopped); True once its process is gone."""
        self.runner.stop(wait)
        return not self.runner.live

    def quit(self) -> None:
        """End the actor's process (its worker goes with it); the caller's call fails once it is gone."""
        with contextlib.suppress(Exception):
            self.runner.stop(1.0)
        os._exit(0)
