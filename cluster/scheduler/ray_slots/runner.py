"""`slot_mode: ray`: a slot's chunks reach its GPU through a Ray actor on its node instead of an SSH session.

Only the link changes. The scheduler's policy (queue, retries, quarantine, breaker, cleanup, progress, the store)
is the same code as in the other modes; the slot worker is the same process, kept on the node by the slot's
actor (actor.py: a `WorkerRunner` over the node's local executor, so its exit codes, stderr tails, stale and
timeout records are those of `slot_mode: workers`); and every answer is judged here, on the coordinator, by
`attempt.judge` (validator, answer checks, canaries, result files fetched over the node's executor). Per slot:
- placement: on the slot's first chunk an actor is placed on the Ray node that is the slot's configured node
  (nodes.py) and says hello within the heartbeat timeout (at least PLACE_MIN_S) plus the connect timeout;
  a node with no live Ray node, or whose watcher is older than the coordinator's, is refused (`WorkerRefused`:
  out for the call, no attempt counted);
- worker starts are paced per node by the scheduler (`SlotHost.start_turn`) as in the other modes: the actor
  starts its worker only when asked (`start_worker`);
- a chunk: one call. While it runs the actor is pinged as often as a worker beats (`workers.heartbeat_interval`:
  a quarter of `heartbeat_timeout_s`, at most 5 s; progress from the worker's heartbeats comes back that way).
  The actor enforces the worker's heartbeat and job timeouts itself; the link has its own: no answer to pings
  for `heartbeat_timeout_s`, or no outcome by the job timeout plus the heartbeat timeout, and the actor is
  killed (`stale` / `timeout`);
- Ray's faults, each a `ChunkFailure` with Ray's own words, stored by the scheduler before the retry: the actor's
  process died (`exit`; the kernel's OOM killer is then named by the scheduler's SSH probe), Ray's memory monitor
  killed it (`exit`, "OOM-killed by Ray's memory monitor"), its node left the Ray cluster (`transport`; the next
  placement there is refused once Ray has declared the node dead, so the node is out and its chunks go to the
  others), the actor unreachable (`transport`: what Ray says of a node that crashed, until its health checks
  declare it dead);
- stop: the actor stops its worker (a chunk in flight ends as stopped) and says when the process is gone, so a
  GPU cleanup finds the GPU free; an actor that does not answer is killed, its worker with it. The actor itself
  lives as long as this runner holds it (Ray ends an actor whose handles are all gone) or the coordinator.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from loguru import logger

from cluster.config import NodeConfig, SchedulerPolicy, Timeouts
from cluster.errors import TransportError
from cluster.protocol import Hello, count, version_older
from cluster.scheduler.attempt import chunk_failure_factory, judge, worker_command
from cluster.scheduler.options import SchedulerOptions
from cluster.scheduler.ray_slots.backend import Backend
from cluster.scheduler.runner import PooledRunner, SlotHost, WorkerRefused
from cluster.scheduler.types import ChunkFailure, ChunkSpec, Slot
from cluster.scheduler.workers import heartbeat_interval
from cluster.transport.base import Executor, render_command

# Placing an actor starts a Python process on the node through its raylet, which starts a few at a time (as many
# as the node has CPUs): under load that takes longer than a heartbeat. Its hello may take this long at least.
PLACE_MIN_S = 30.0
KINDS = frozenset({"exit", "timeout", "stale", "transport", "worker_error", "invalid", "bad_spec"})


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
        lifetime_s: float = 7200.0,
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
        self.lifetime_s = lifetime_s
        self.argv = tuple(options.worker_argv)
        where = f"Ray node {node_id[:8]}" if node_id else "no Ray node"
        self.command = f"{render_command(worker_command(node, self.argv))} (kept by a Ray actor on {where})"
        self.hb_timeout = policy.heartbeat_timeout_s
        self.spawn: Any = None  # the worker is started on the node, by the actor: nothing to start here
        self.actor: Any = None
        self.actor_hello: dict[str, Any] = {}
        self.hello: Hello | None = None  # the slot worker's, as the actor last reported it
        self.worker_up = False
        self._stopping: tuple[Any, Any] | None = None

    @property
    def live(self) -> bool:
        return self.actor is not None and self.worker_up

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.node_id, self.argv)

    def rebind(self, options: SchedulerOptions, host: SlotHost, lifetime_s: float) -> None:
        self.options = options
        self.host = host

    # --- one chunk ------------------------------------------------------------------------------------
    def run(self, chunk: ChunkSpec, attempt: int) -> dict[str, Any] | ChunkFailure:
        failure = chunk_failure_factory(chunk, attempt, self.slot, self.command)
        mark = self.stops
        if self.actor is None:
            placed = self._place(failure)
            if placed is not None:
                return placed
        if not self.worker_up:
            started = self._start_worker(chunk, attempt, failure)
            if started is not None:
                return started
        actor = self.actor
        ref = self.backend.call(actor, "run", chunk.chunk_id, attempt, chunk.payload)
        reply = self._await(actor, ref, failure, self.timeouts.job + self.hb_timeout)
        if isinstance(reply, ChunkFailure):
            return reply
        outcome = self._outcome(reply, failure)
        if isinstance(outcome, dict) and "answer" in outcome:
            rss, total = (reply.get("memory") or [0, 0])[:2]
            self.host.worker_memory(self.slot, count(rss), count(total))
            stdout = json.dumps(outcome["answer"])
            return judge(self.executor, chunk, 0, stdout, str(reply.get("stderr") or ""), options=self.options,
                         failure=failure)  # fmt: skip
        if isinstance(outcome, ChunkFailure) and self.stopped_since(mark) and outcome.kind != "transport":
            return failure("transport", "the slot worker was stopped by the coordinator in the middle of the chunk")
        return outcome if isinstance(outcome, ChunkFailure) else failure("invalid", "slot actor sent no outcome")

    def _await(self, actor: Any, ref: Any, failure: Any, limit_s: float) -> dict[str, Any] | ChunkFailure:
        """The actor's reply to `ref`, pinging it meanwhile; or the failure when the link fails."""
        sent = heard = time.monotonic()
        every, deadline = heartbeat_interval(self.hb_timeout), sent + limit_s
        ping: Any = None
        ping_due = sent + every
        while True:
            now = time.monotonic()
            if ping is None and now >= ping_due:
                ping, ping_due = self.backend.call(actor, "ping"), now + every
            until = min(deadline, heard + self.hb_timeout, ping_due if ping is None else deadline)
            ready = self.backend.wait([ref] if ping is None else [ref, ping], until - now)
            if ref in ready:
                try:
                    reply = self.backend.get(ref)
                except Exception as err:
                    return self._fault(actor, err, failure)
                return reply if isinstance(reply, dict) else self._broke(actor, failure, reply)
            if ping is not None and ping in ready:
                heard = self._pinged(ping, heard)
                ping = None
            now = time.monotonic()
            if now >= deadline:
                self._lost(actor)
                return failure("timeout", f"no outcome from the slot's Ray actor within {limit_s:g} s (job timeout "
                               "plus heartbeat timeout): actor killed, its worker with it")  # fmt: skip
            if now - heard >= self.hb_timeout:
                self._lost(actor)
                return failure("stale", f"slot actor silent for {now - heard:.1f} s (heartbeat_timeout_s "
                               f"{self.hb_timeout:g}): killed (pid {self.actor_hello.get('pid', '?')}), its worker "
                               f"with it; chunk running {now - sent:.1f} s")  # fmt: skip

    def _pinged(self, ping: Any, heard: float) -> float:
        try:
            said = self.backend.get(ping)
        except Exception:  # the actor is gone: the chunk's own call says how, on the next wait
            return heard
        if isinstance(said, dict):
            self.host.chunk_progress(self.slot, count(said.get("progress")))
        return time.monotonic()

    def _outcome(self, reply: dict[str, Any], failure: Any, answer: bool = True) -> dict[str, Any] | ChunkFailure:
        """The actor's reply, checked (a node's word): the reply with the answer to judge (with none, when
        `answer` is False: a worker start), or the failure it reports; raises WorkerRefused when the worker on
        the node is refused."""
        self.worker_up = reply.get("live") is True
        try:
            self.hello = Hello.model_validate(reply["hello"]) if reply.get("hello") else None
        except ValueError:
            self.hello = None
        if isinstance(reply.get("refused"), str):
            self.worker_up = False
            raise WorkerRefused(reply["refused"][:1000])
        said = reply.get("failure")
        if isinstance(said, dict):
            kind = said.get("kind") if said.get("kind") in KINDS else "invalid"
            code = said.get("exit_code")
            return failure(
                kind, str(said.get("error") or "")[:4000],
                exit_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
                stderr_tail=str(said.get("stderr_tail") or "")[:20000],
                traceback=str(said["traceback"])[:20000] if said.get("traceback") else None,
            )  # fmt: skip
        if isinstance(reply.get("answer"), dict) or not answer:
            return reply
        return failure("invalid", f"slot actor sent a malformed reply: {json.dumps(reply, default=str)[:200]}")

    def _broke(self, actor: Any, failure: Any, reply: Any) -> ChunkFailure:
        self._lost(actor)
        return failure("invalid", f"slot actor sent a malformed reply: {str(reply)[:200]}")

    def _fault(self, actor: Any, err: BaseException, failure: Any) -> ChunkFailure:
        """What Ray said about a call that did not return, as the failure the scheduler stores."""
        what, text = self.backend.describe(err)
        self._lost(actor)
        said = f"(Ray: {text})"
        if what == "node" or (
            what in ("died", "unavailable") and self.node_id and not self.backend.alive(self.node_id)
        ):
            return failure("transport", f"the Ray node of {self.node.name} left the cluster while the chunk ran {said}")
        if what == "memory":
            return failure("exit", f"OOM-killed by Ray's memory monitor {said}")
        if what == "unavailable":  # before Ray's health checks have decided about the node
            return failure("transport", f"slot actor unreachable: its node {self.node.name} may be leaving the Ray "
                           f"cluster {said}")  # fmt: skip
        if what == "error":
            return failure("exit", f"slot actor call failed {said}")
        return failure("exit", f"slot actor died in the middle of the chunk (pid {self.actor_hello.get('pid', '?')}, "
                       f"its worker with it) {said}")  # fmt: skip

    # --- placement, worker start and stop ---------------------------------------------------------------
    def place(self) -> str | None:
        """Place the slot's actor now, as its first chunk would: None once it is up, else why it is not (raises
        WorkerRefused as `run` does). For a caller that wants the placement (a Python process started through
        the node's raylet) out of a chunk's time, such as the contract suite timing a hang."""
        if self.actor is not None:
            return None
        failed = self._place(chunk_failure_factory(ChunkSpec("-", {}), 0, self.slot, self.command))
        return failed.error if failed is not None else None

    def _place(self, failure: Any) -> ChunkFailure | None:
        """Place and greet the slot's actor: None once it is up, the failure if it could not be; WorkerRefused
        when the node cannot take actors at all."""
        if self.node_id is None or not self.backend.alive(self.node_id):
            raise WorkerRefused(
                f"node {self.node.name} has no live Ray node in the cluster (ray.address): start a raylet there "
                f"(ray start --address HEAD:6379, from watcher's virtualenv), or leave slot_mode ray"
            )
        name = f"watcher-{os.getpid()}-{self.slot.node}-{self.slot.gpu}-{time.monotonic_ns()}"
        actor = self.backend.create(
            self.node_id, name, self.node.model_dump(), self.slot.gpu, list(self.argv), self.policy.model_dump(),
            self.timeouts.model_dump(), self.version, self.lifetime_s,
        )  # fmt: skip
        limit = max(self.hb_timeout, PLACE_MIN_S) + self.timeouts.connect
        ref = self.backend.call(actor, "hello")
        if not self.backend.wait([ref], limit):
            self.backend.kill(actor)  # no hello: no pid to kill by
            return failure("stale", f"slot actor said nothing within {limit:g} s of being placed: killed")
        try:
            hello = self.backend.get(ref)
        except Exception as err:
            what, text = self.backend.describe(err)
            self.backend.kill(actor)
            if what in ("node", "unschedulable") and not self.backend.alive(self.node_id):
                raise WorkerRefused(f"the Ray node of {self.node.name} left the cluster (Ray: {text})") from None
            kind = "transport" if what in ("node", "unavailable", "unschedulable") else "exit"
            return failure(kind, f"cannot place the slot actor (Ray: {text})")
        installed = str(hello.get("version", "unknown")) if isinstance(hello, dict) else "unknown"
        if version_older(installed, self.version):
            self.backend.kill(actor)
            raise WorkerRefused(
                f"the Ray actor on {self.slot} runs watcher {installed}, older than the coordinator's {self.version}: "
                f"install watcher {self.version} on {self.node.name} and restart its raylet"
            )
        self.actor, self.actor_hello, self.worker_up = actor, hello, False
        logger.debug(f"slot actor {self.slot} placed (pid {hello.get('pid')}, watcher {installed})")
        return None

    def _start_worker(self, chunk: ChunkSpec, attempt: int, failure: Any) -> ChunkFailure | None:
        """The actor brings its worker up, paced per node like every worker start."""
        if not self.host.start_turn(self.slot):
            return failure("transport", "the call is ending: slot worker not started")
        try:
            actor = self.actor
            ref = self.backend.call(actor, "start_worker", chunk.chunk_id, attempt)
            reply = self._await(actor, ref, failure, self.hb_timeout + self.timeouts.connect + self.hb_timeout)
        finally:
            self.host.start_done(self.slot)
        if isinstance(reply, ChunkFailure):
            return reply
        outcome = self._outcome(reply, failure, answer=False)
        return outcome if isinstance(outcome, ChunkFailure) else None

    def _lost(self, actor: Any) -> None:
        """The actor is dead or no longer trusted: killed, and the next chunk places a new one."""
        self._kill(actor)
        if self.actor is actor:
            self.actor, self.worker_up = None, False

    def _kill(self, actor: Any) -> None:
        """End the actor now. Ray's kill is a request the actor's own process carries out, which a hung process
        never does: it is also killed through the node's executor, by pid and start time (in the background, so
        a slow node does not hold the slot). Its worker dies with it."""
        self.backend.kill(actor)
        pid, started = self.actor_hello.get("pid"), self.actor_hello.get("started")
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
        """Ask the actor to stop its worker (at once, mid-chunk too, on its second thread)."""
        self.stops += 1
        actor = self.actor
        if actor is not None:
            self.worker_up = False
            self._stopping = (actor, self.backend.call(actor, "stop_worker", 2.0))

    def finish_stop(self, deadline: float) -> None:
        """Wait for the actor to say its worker is gone; an actor that does not is killed, its worker with it."""
        stopping, self._stopping = self._stopping, None
        if stopping is None:
            return
        actor, ref = stopping
        if self.backend.wait([ref], max(deadline - time.monotonic(), 0.0)):
            try:
                if self.backend.get(ref) is True:
                    return
            except Exception:
                pass  # the actor is gone, and its worker with it
            else:
                logger.debug(f"slot actor {self.slot}: its worker did not end when stopped: actor killed")
        self._lost(actor)
