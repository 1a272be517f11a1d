"""`slot_mode: ray`: a slot's chunks reach its GPU through a Ray actor instead of an SSH session.

Only the way a chunk reaches a slot changes; the scheduler's policy (queue, retries, quarantine, breaker,
cleanup, progress, the store) is the same code as in the other modes, and so is the judging of every answer
(`attempt.judge`: the workload's validator, answer checks and canaries). Per slot:
- start: on the slot's first chunk an actor (ray_actor.SlotActor, running the worker command in-process) is
  placed on the Ray node that is the slot's configured node (ray_nodes.py), paced like worker starts
  (`SlotHost.start_turn`); its hello must come within the heartbeat timeout (at least PLACE_MIN_S) plus the
  connect timeout, and an install older than the coordinator is refused with both versions named
  (`WorkerRefused`). A configured node with no live Ray node is refused the same way: it is out for the call,
  no attempt counted;
- a chunk: one call; while it runs the actor is pinged every quarter of `heartbeat_timeout_s` on its second
  thread (the answer carries the chunk's progress and the tail of its stderr). No answer to pings for
  `heartbeat_timeout_s`: `stale`, the actor killed; past the job timeout: `timeout`, the actor killed;
- faults, each a `ChunkFailure` with Ray's own words, logged and stored by the scheduler before the retry as in
  the other modes: the actor's process died (`exit`, e.g. a crash or the kernel's OOM killer, which the
  scheduler's SSH probe then names), Ray's memory monitor killed it (`exit`, "OOM-killed by Ray's memory
  monitor"), its node left the Ray cluster (`transport`: the next start on that node is refused once Ray has
  declared the node dead, so the node is out and its chunks go to the others), the actor unreachable
  (`transport`: what Ray says of a node that crashed, until its health checks declare the node dead);
- stop: the actor ends its own process (a chunk in flight ends with it) and is waited for, so a GPU cleanup
  finds the GPU free; one that does not end by the deadline is killed.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from loguru import logger

from cluster.config import NodeConfig, SchedulerPolicy, Timeouts
from cluster.errors import TransportError
from cluster.scheduler.attempt import STDERR_TAIL_LINES, chunk_failure_factory, judge, slot_env
from cluster.scheduler.options import SchedulerOptions
from cluster.scheduler.policy import backoff_delay
from cluster.scheduler.ray_backend import Backend
from cluster.scheduler.runner import PooledRunner, SlotHost, WorkerRefused
from cluster.scheduler.types import ChunkFailure, ChunkSpec, Slot
from cluster.scheduler.workers import heartbeat_interval, version_older
from cluster.transport.base import Executor, render_command

# Placing an actor starts a Python process on the node through its raylet, which starts a few at a time (as many
# as the node has CPUs): under load that takes longer than a heartbeat. Its hello may take this long at least.
PLACE_MIN_S = 30.0


class RayRunner(PooledRunner):
    def __init__(
        self,
        backend: Backend,
        executor: Executor,
        node: NodeConfig,
        slot: Slot,
        *,
        node_id: str | None,
        options: SchedulerOptions,
        policy: SchedulerPolicy,
        timeouts: Timeouts,
        host: SlotHost,
        version: str,
    ) -> None:
        super().__init__(slot)
        self.backend = backend
        self.executor = executor  # result files a worker leaves on the node still come back over SSH
        self.node = node
        self.node_id = node_id
        self.options = options
        self.policy = policy
        self.timeouts = timeouts
        self.host = host
        self.version = version
        self.argv = list(options.worker_argv)
        self.env = {**slot_env(node, slot.gpu), "WATCHER_COORDINATOR_VERSION": version}
        # where SSH commands run; a local node's workdir is the coordinator's, which the actor shares
        self.workdir = os.path.abspath(os.path.expanduser(node.workdir)) if node.transport == "local" else node.workdir
        where = f"Ray node {node_id[:8]}" if node_id else "no Ray node"
        self.command = f"ray actor on {where}: python {render_command(self.argv)}"
        self.hb_timeout = policy.heartbeat_timeout_s
        self.spawn: Any = None  # actors do not die with the thread that placed them: nothing to spawn from
        self.actor: Any = None
        self.hello: dict[str, Any] = {}
        self.deaths = 0  # consecutive actor deaths: the backoff before the next placement
        self.starts = 0
        self.stderr_tail = ""  # the running chunk's stderr, as the last ping told it
        self._stopping: Any = None

    @property
    def live(self) -> bool:
        return self.actor is not None

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.node_id, self.workdir, tuple(self.argv), tuple(sorted(self.env.items())))

    def rebind(self, options: SchedulerOptions, host: SlotHost, lifetime_s: float) -> None:
        """An actor has no remote `timeout` to outlive, so the lifetime is not used."""
        self.options = options
        self.host = host

    # --- one chunk ------------------------------------------------------------------------------------
    def run(self, chunk: ChunkSpec, attempt: int) -> dict[str, Any] | ChunkFailure:
        failure = chunk_failure_factory(chunk, attempt, self.slot, self.command)
        if self.actor is None:
            started = self._start(failure)
            if started is not None:
                return started
        self.stderr_tail = ""
        ref = self.backend.call(self.actor, "run", chunk.chunk_id, attempt, chunk.payload)
        return self._await(ref, chunk, failure)

    def _await(self, ref: Any, chunk: ChunkSpec, failure: Any) -> dict[str, Any] | ChunkFailure:
        actor, sent = self.actor, time.monotonic()
        heard, every = sent, heartbeat_interval(self.hb_timeout)
        job_deadline = sent + self.timeouts.job
        ping: Any = None
        ping_due = sent + every
        while True:
            now = time.monotonic()
            if ping is None and now >= ping_due:
                ping, ping_due = self.backend.call(actor, "ping", STDERR_TAIL_LINES), now + every
            limit = min(job_deadline, heard + self.hb_timeout, ping_due if ping is None else job_deadline)
            ready = self.backend.wait([ref] if ping is None else [ref, ping], limit - now)
            if ref in ready:
                return self._answered(ref, chunk, failure)
            if ping is not None and ping in ready:
                heard = self._pinged(ping, heard)
                ping = None
            now = time.monotonic()
            if now >= job_deadline:
                self._lost(actor)
                return failure(
                    "timeout",
                    f"chunk ran past the job timeout of {self.timeouts.job:g} s on the slot's Ray actor "
                    f"(pid {self.hello.get('pid', '?')}): actor killed",
                    stderr_tail=self.stderr_tail,
                )
            if now - heard >= self.hb_timeout:
                self._lost(actor)
                return failure(
                    "stale",
                    f"slot actor silent for {now - heard:.1f} s (heartbeat_timeout_s {self.hb_timeout:g}): killed "
                    f"(pid {self.hello.get('pid', '?')}); chunk running {now - sent:.1f} s",
                    stderr_tail=self.stderr_tail,
                )

    def _pinged(self, ping: Any, heard: float) -> float:
        try:
            said = self.backend.get(ping)
        except Exception:  # the actor is gone: the chunk's own call says how, on the next wait
            return heard
        if isinstance(said, dict):
            self.host.chunk_progress(self.slot, _count(said.get("progress")))
            tail = said.get("stderr")
            if isinstance(tail, str):
                self.stderr_tail = tail
        return time.monotonic()

    def _answered(self, ref: Any, chunk: ChunkSpec, failure: Any) -> dict[str, Any] | ChunkFailure:
        actor = self.actor
        try:
            out = self.backend.get(ref)
        except Exception as err:
            return self._fault(actor, err, failure)
        code, stdout, stderr = (
            (out.get(k) for k in ("exit", "stdout", "stderr")) if isinstance(out, dict) else ((None,) * 3)
        )
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(stdout, str):
            self._lost(actor)
            return failure("invalid", f"slot actor sent a malformed answer: {str(out)[:200]}")
        self.deaths = 0
        self.host.worker_memory(self.slot, _count(out.get("rss")), _count(self.hello.get("mem_total")))
        tail = "\n".join(str(stderr or "").splitlines()[-STDERR_TAIL_LINES:])
        return judge(self.executor, chunk, code, stdout, tail, options=self.options, failure=failure)

    def _fault(self, actor: Any, err: BaseException, failure: Any) -> ChunkFailure:
        """What Ray said about a call that did not return, as the failure the scheduler stores."""
        what, text = self.backend.describe(err)
        self._lost(actor)
        said = f"(Ray: {text})"
        if what == "node" or (
            what in ("died", "unavailable") and self.node_id and not self.backend.alive(self.node_id)
        ):
            return failure(
                "transport", f"the Ray node of {self.node.name} left the cluster while the chunk ran {said}",
                stderr_tail=self.stderr_tail,
            )  # fmt: skip
        if what == "memory":
            return failure("exit", f"OOM-killed by Ray's memory monitor {said}", stderr_tail=self.stderr_tail)
        if what == "unavailable":  # before Ray's health checks have decided about the node
            return failure(
                "transport", f"slot actor unreachable: its node {self.node.name} may be leaving the Ray cluster {said}",
                stderr_tail=self.stderr_tail,
            )  # fmt: skip
        if what == "error":
            return failure("exit", f"slot actor call failed {said}", stderr_tail=self.stderr_tail)
        return failure(
            "exit", f"slot actor died in the middle of the chunk (pid {self.hello.get('pid', '?')}; its own stderr "
            f"is in Ray's worker log on {self.node.name}) {said}", stderr_tail=self.stderr_tail,
        )  # fmt: skip

    # --- start and stop ---------------------------------------------------------------------------------
    def _start(self, failure: Any) -> ChunkFailure | None:
        """Place and greet the slot's actor: None once it is up, the failure if it could not be, WorkerRefused
        when the node cannot take actors at all."""
        if self.node_id is None or not self.backend.alive(self.node_id):
            raise WorkerRefused(
                f"node {self.node.name} has no live Ray node in the cluster (ray.address): start a raylet there "
                f"(ray start --address HEAD:6379, from watcher's virtualenv), or leave slot_mode ray"
            )
        if self.deaths:
            delay = backoff_delay(self.deaths, self.policy)
            logger.info(f"slot actor {self.slot}: restart {self.deaths} after {delay:.2f} s of backoff")
            time.sleep(delay)
        if not self.host.start_turn(self.slot):
            return failure("transport", "the call is ending: slot actor not started")
        try:
            return self._place(failure)
        finally:
            self.host.start_done(self.slot)

    def _place(self, failure: Any) -> ChunkFailure | None:
        name = f"watcher-{os.getpid()}-{self.slot.node}-{self.slot.gpu}-{self.starts}"
        assert self.node_id is not None
        actor = self.backend.create(self.node_id, name, self.argv, self.env, self.workdir)
        self.starts += 1
        limit = max(self.hb_timeout, PLACE_MIN_S) + self.timeouts.connect
        ref = self.backend.call(actor, "hello")
        if not self.backend.wait([ref], limit):
            self.backend.kill(actor)  # no hello: no pid to kill by
            self.deaths += 1
            return failure("stale", f"slot actor said nothing within {limit:g} s of being placed: killed")
        try:
            hello = self.backend.get(ref)
        except Exception as err:
            what, text = self.backend.describe(err)
            self.backend.kill(actor)
            self.deaths += 1
            if what in ("node", "unschedulable") and not self.backend.alive(self.node_id):
                raise WorkerRefused(f"the Ray node of {self.node.name} left the cluster (Ray: {text})") from None
            kind = "transport" if what in ("node", "unavailable", "unschedulable") else "exit"
            return failure(kind, f"cannot start the slot actor (Ray: {text})")
        worker_version = str(hello.get("version", "unknown")) if isinstance(hello, dict) else "unknown"
        if version_older(worker_version, self.version):
            self.backend.kill(actor)
            raise WorkerRefused(
                f"the actor on {self.slot} runs watcher {worker_version}, older than the coordinator's "
                f"{self.version}: install watcher {self.version} on {self.node.name} and restart its raylet"
            )
        self.hello = hello
        self.actor = actor
        logger.debug(f"slot actor {self.slot} up (pid {hello.get('pid')}, watcher {worker_version})")
        return None

    def _lost(self, actor: Any) -> None:
        """The actor is dead or no longer trusted with chunks: killed, and the next chunk places a new one."""
        self._kill(actor)
        self.deaths += 1
        if self.actor is actor:
            self.actor = None

    def _kill(self, actor: Any) -> None:
        """End the actor now. Ray's kill is a request the actor's own process carries out, which a hung (or
        SIGSTOPped) process never does: its process is also killed through the node's executor, by pid and start
        time (in the background, so a slow node does not hold the slot)."""
        self.backend.kill(actor)
        pid, started = self.hello.get("pid"), self.hello.get("started")
        if not isinstance(pid, int) or pid <= 1 or not isinstance(started, int) or started <= 0:
            return
        script = (
            f'test "$(sed "s/.*) //" /proc/{pid}/stat 2>/dev/null | cut -d" " -f20)" = {started} && kill -KILL {pid}'
        )

        def remote_kill() -> None:
            try:
                self.executor.run(["sh", "-c", script], timeout=self.timeouts.connect + 5)
            except TransportError as err:
                logger.debug(f"slot actor {self.slot}: kill of pid {pid} on {self.node.name} failed: {err}")

        threading.Thread(target=remote_kill, daemon=True, name=f"kill-{self.slot}").start()

    def begin_stop(self) -> None:
        """Ask the actor to end its process (it does so at once, mid-chunk too, on its second thread)."""
        actor, self.actor = self.actor, None
        if actor is not None:
            self._stopping = (actor, self.backend.call(actor, "quit"))

    def finish_stop(self, deadline: float) -> None:
        """Its `quit` fails once the process is gone (Ray reports a kill before the process has ended, a process
        that ended itself only after), so a GPU cleanup after this finds the GPU free; a hung actor is killed."""
        stopping, self._stopping = self._stopping, None
        if stopping is None:
            return
        actor, ref = stopping
        if not self.backend.wait([ref], max(deadline - time.monotonic(), 0.0)):
            logger.debug(f"slot actor {self.slot} did not end by the deadline of its stop: killed")
            self._kill(actor)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
