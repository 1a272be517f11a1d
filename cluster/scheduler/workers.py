"""Long-lived slot workers: one worker process per slot, fed chunk after chunk over one session.

The other end is `python -m pipeline.worker --serve JOBS_MODULE`; the messages both ends exchange are
`cluster.protocol`'s. Here:
- start: staggered per node by the scheduler (`SlotHost.start_turn`, which also keeps a few starts in flight
  per node), under the node's `timeout` for the worker's whole life (`lifetime_s`; a worker near the end of
  it is replaced between chunks); the hello line must come within the heartbeat timeout, and a worker of
  another protocol number or older than the coordinator is refused with both named (`WorkerRefused`);
- across calls: a `pool.WorkerPool` keeps the runner, and so its live worker, from one `run_chunks` call to
  the next (`rebind` hands it the new call's options and host); what an idle worker said between calls is
  read and dropped before its next chunk, and one that died meanwhile is started anew;
- a chunk: one envelope line out, then heartbeats in until the frame with its answer. A slot silent for
  `heartbeat_timeout_s` is stale: its process is killed (remotely its process group, so a SIGSTOPped worker
  goes too) and the chunk fails as `stale` with what was last heard; a chunk past the job timeout fails as
  `timeout`; a worker that dies fails it as `exit` with its stderr; a line outside the protocol as
  `invalid`. Every answer is judged by `attempt.judge`, as in per-chunk mode;
- after a death the next start waits `backoff_delay(deaths)`;
- stop: stdin closed (the worker exits, mid-chunk too), then killed if it has not gone by the deadline; a
  chunk it was running fails as `transport` (the coordinator's doing, not the chunk's).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from loguru import logger

from cluster.config import NodeConfig, SchedulerPolicy, Timeouts
from cluster.errors import TransportError
from cluster.files import installed_version
from cluster.protocol import (
    ENV_COORDINATOR_VERSION,
    ENV_HEARTBEAT,
    SERVE_FLAG,
    Envelope,
    Frame,
    Heartbeat,
    Hello,
    Malformed,
    read_message,
    refusal,
)
from cluster.scheduler.attempt import chunk_failure_factory, judge, slot_env, worker_command
from cluster.scheduler.options import SchedulerOptions
from cluster.scheduler.policy import backoff_delay
from cluster.scheduler.runner import PooledRunner, SlotHost, WorkerRefused
from cluster.scheduler.streams import ChunkStderr, drain, drain_idle, tail_until
from cluster.scheduler.types import ChunkFailure, ChunkSpec, Slot
from cluster.transport.base import Executor, Session, render_command

MARK_WAIT_S = 1.0  # how long a finished chunk waits for its stderr to catch up with its answer

# How a runner starts its process: given the start, runs it (the default calls it right here, in the slot's
# thread; a pool runs it in a thread that lives as long as the pool, see pool.py).
Spawner = Callable[[Callable[[], Session]], Session]


def heartbeat_interval(timeout_s: float) -> float:
    """How often a worker says it is alive: four times per timeout, between 50 ms and 5 s."""
    return min(5.0, max(0.05, timeout_s / 4))


class WorkerRunner(PooledRunner):
    def __init__(
        self,
        executor: Executor,
        node: NodeConfig,
        slot: Slot,
        *,
        options: SchedulerOptions,
        policy: SchedulerPolicy,
        timeouts: Timeouts,
        host: SlotHost,
        lifetime_s: float,
        spawn: Spawner | None = None,
        version: str | None = None,
    ) -> None:
        super().__init__(slot)
        self.executor = executor
        self.node = node
        self.options = options
        self.policy = policy
        self.timeouts = timeouts
        self.host = host
        self.lifetime_s = max(lifetime_s, timeouts.job * 2)
        self.spawn: Spawner = spawn or (lambda start: start())
        self.version = version or installed_version()  # a caller making many runners asks once (~2 ms each)
        self.argv = worker_command(node, (*options.worker_argv, SERVE_FLAG))
        self.command = render_command(self.argv)
        self.hb_timeout = policy.heartbeat_timeout_s
        self.env = {
            **slot_env(node, slot.gpu),
            ENV_HEARTBEAT: f"{heartbeat_interval(self.hb_timeout):g}",
            ENV_COORDINATOR_VERSION: self.version,
        }
        self._lock = threading.Lock()
        self.session: Session | None = None
        self.hello: Hello | None = None
        self.started_at = 0.0
        self.session_lifetime = 0.0  # the `timeout` the live worker was started under
        self.seq = 0
        self.deaths = 0  # consecutive worker deaths: the backoff before the next start
        self.starts = 0
        self.stderr = ChunkStderr()  # the current chunk's stderr so far
        self._stopping: Session | None = None

    @property
    def live(self) -> bool:
        session = self.session
        return session is not None and not session.ended

    @property
    def key(self) -> tuple[Any, ...]:
        """What the live worker was started as: a call asking for another command or environment (another
        workload, a changed node config) must not be handed this worker."""
        return (self.command, tuple(sorted(self.env.items())))

    def rebind(self, options: SchedulerOptions, host: SlotHost, lifetime_s: float) -> None:
        """A new `run_chunks` call takes this runner over (same slot, same command): its answers are judged
        with that call's options and reported to that call's scheduler; its next start uses that call's
        lifetime. Only the call's slot thread drives the runner from here on."""
        self.options = options
        self.host = host
        self.lifetime_s = max(lifetime_s, self.timeouts.job * 2)

    # --- one chunk ------------------------------------------------------------------------------------
    def run(self, chunk: ChunkSpec, attempt: int) -> dict[str, Any] | ChunkFailure:
        failure = chunk_failure_factory(chunk, attempt, self.slot, self.command)
        mark = self.stops
        session = self._usable_session()
        if session is None:
            started = self._start(failure)
            if isinstance(started, ChunkFailure):
                return started
            session = started
        self.seq += 1
        seq = self.seq
        self.stderr.begin(seq)
        envelope = Envelope(seq=seq, chunk_id=chunk.chunk_id, attempt=attempt, job=chunk.payload)
        try:
            session.write(envelope.line().encode())
        except TransportError as err:
            self._died(session)
            if self.stopped_since(mark):
                return self._stopped_failure(failure)
            return failure("transport", f"cannot send the chunk to the slot worker: {err}",
                           stderr_tail=self.stderr.tail())  # fmt: skip
        return self._await(session, seq, chunk, failure, mark)

    def warm(self, chunk: ChunkSpec, attempt: int) -> ChunkFailure | None:
        """Bring the worker up now if it is not, before `chunk` is sent (a Ray slot actor runs this runner on
        the node and has the coordinator pace its starts): None once it is up, else why it is not (the
        failure `run` would have returned for the chunk); raises WorkerRefused as `run` does."""
        if self._usable_session() is not None:
            return None
        started = self._start(chunk_failure_factory(chunk, attempt, self.slot, self.command))
        return started if isinstance(started, ChunkFailure) else None

    def _usable_session(self) -> Session | None:
        """The live worker if it may take the next chunk: not one that broke the protocol while idle, died
        between chunks, or is too close to the end of its `timeout`."""
        session = self.session
        if session is not None and not drain_idle(session, self.stderr, str(self.slot)):
            self._kill(session)  # it broke the protocol while it had nothing to do: a fresh worker takes over
            self._discard(session, wait=2.0)
            return None
        if session is not None and (
            session.ended or time.monotonic() - self.started_at + self.timeouts.job > self.session_lifetime
        ):
            self._discard(session, wait=2.0)
            return None
        return session

    def _await(
        self, session: Session, seq: int, chunk: ChunkSpec, failure: Any, mark: int
    ) -> dict[str, Any] | ChunkFailure:
        sent = last = time.monotonic()
        beat = Heartbeat()
        job_deadline = sent + self.timeouts.job
        while True:
            limit = min(last + self.hb_timeout, job_deadline)
            event = session.read(limit - time.monotonic()) if limit > time.monotonic() else None
            if event is None:
                if time.monotonic() < limit:
                    continue
                return self._silent(session, failure, sent, last, beat, time.monotonic() >= job_deadline)
            kind, value = event
            if kind == "err":
                self.stderr.feed(value)
                continue
            if kind == "exit":
                self._died(session)
                if self.stopped_since(mark):
                    return self._stopped_failure(failure)
                return self._exit_failure(session, failure, "in the middle of the chunk")
            last = time.monotonic()
            try:
                message = read_message(value)
            except Malformed as err:
                return self._broke(session, failure, f"slot worker sent a malformed answer: {err}")
            if message is None:
                return self._broke(session, failure, f"slot worker wrote a line outside the protocol: {value[:200]!r}"
                                   "; worker killed")  # fmt: skip
            if isinstance(message, Heartbeat):
                beat = message
                self.host.chunk_progress(self.slot, beat.progress)
            elif isinstance(message, Frame) and message.done == seq:
                return self._answered(session, seq, chunk, message, failure)
            # else a stray hello or an answer to an older envelope: nothing to do with this chunk

    def _silent(
        self, session: Session, failure: Any, sent: float, last: float, beat: Heartbeat, past_job: bool
    ) -> ChunkFailure:
        """Nothing heard within the heartbeat timeout, or the job timeout passed: the worker is killed."""
        self._kill(session)
        self._died(session)
        if past_job:
            return failure(
                "timeout",
                f"chunk ran past the job timeout of {self.timeouts.job:g} s on the slot worker "
                f"(it kept sending heartbeats, last progress {beat.progress}): worker killed",
                stderr_tail=self.stderr.tail(),
            )
        pid = self.hello.pid if self.hello is not None else "?"
        return failure(
            "stale",
            f"slot worker silent for {time.monotonic() - last:.1f} s (heartbeat_timeout_s {self.hb_timeout:g}): "
            f"killed (pid {pid}); chunk running {time.monotonic() - sent:.1f} s, last heartbeat at progress "
            f"{beat.progress} after {beat.elapsed:.1f} s",
            stderr_tail=self.stderr.tail(),
        )

    def _broke(self, session: Session, failure: Any, error: str) -> ChunkFailure:
        self._kill(session)
        self._died(session)
        return failure("invalid", error, stderr_tail=self.stderr.tail())

    def _stopped_failure(self, failure: Any) -> ChunkFailure:
        return failure("transport", "the slot worker was stopped by the coordinator in the middle of the chunk",
                       stderr_tail=self.stderr.tail())  # fmt: skip

    def _answered(
        self, session: Session, seq: int, chunk: ChunkSpec, frame: Frame, failure: Any
    ) -> dict[str, Any] | ChunkFailure:
        self.deaths = 0
        self.host.worker_memory(self.slot, frame.rss, self.hello.mem_total if self.hello is not None else 0)
        return judge(
            self.executor, chunk, frame.exit, frame.stdout, lambda: tail_until(session, self.stderr, seq, MARK_WAIT_S),
            options=self.options, failure=failure,
        )  # fmt: skip

    # --- start and stop ---------------------------------------------------------------------------------
    def _start(self, failure: Any) -> Session | ChunkFailure:
        if self.deaths:
            delay = backoff_delay(self.deaths, self.policy)
            logger.info(f"slot worker {self.slot}: restart {self.deaths} after {delay:.2f} s of backoff")
            time.sleep(delay)
        if not self.host.start_turn(self.slot):
            return failure("transport", "the call is ending: slot worker not started")
        try:
            return self._launch(failure)
        finally:
            self.host.start_done(self.slot)

    def _launch(self, failure: Any) -> Session | ChunkFailure:
        lifetime = self.lifetime_s
        try:
            session = self.spawn(lambda: self.executor.start(self.argv, env=self.env, timeout=lifetime))
        except TransportError as err:
            self.deaths += 1
            cause = f" (cause: {err.cause!r})" if err.cause is not None else ""
            return failure("transport", f"cannot start the slot worker: {err}{cause}", traceback=traceback.format_exc())
        self.starts += 1
        self.started_at = time.monotonic()
        self.session_lifetime = lifetime
        self.stderr.clear()
        hello = self._hello(session, failure)
        if isinstance(hello, ChunkFailure):
            self.deaths += 1
            return hello
        self.hello = hello
        with self._lock:
            self.session = session
        logger.debug(f"slot worker {self.slot} up (pid {hello.pid}, watcher {hello.version})")
        return session

    def _hello(self, session: Session, failure: Any) -> Hello | ChunkFailure:
        """The worker's first protocol line, checked: its protocol number and version (`WorkerRefused`)."""
        wait = self.hb_timeout + self.timeouts.connect
        deadline = time.monotonic() + wait
        while True:
            event = session.read(deadline - time.monotonic())
            if event is None:
                self._kill(session)
                return failure("stale", f"slot worker said nothing within {wait:g} s of starting: killed",
                               stderr_tail=self.stderr.tail())  # fmt: skip
            kind, value = event
            if kind == "err":
                self.stderr.feed(value)
                continue
            if kind == "exit":
                return self._exit_failure(session, failure, "before saying hello")
            try:
                message = read_message(value)
            except Malformed:
                message = None
            if isinstance(message, Heartbeat):
                continue
            if not isinstance(message, Hello):
                self._kill(session)
                raise WorkerRefused(
                    f"the worker on {self.slot} does not speak the slot-worker protocol of watcher {self.version} "
                    f"(an older install on {self.node.name}?); it printed {value[:200]!r}. Install the "
                    f"coordinator's version there, or set scheduler.slot_mode to per_chunk"
                )
            reason = refusal(message.protocol, message.version, self.version, str(self.slot), self.node.name)
            if reason is not None:
                self._kill(session)
                raise WorkerRefused(reason)
            return message

    def _exit_failure(self, session: Session, failure: Any, when: str) -> ChunkFailure:
        session.wait(2.0)
        drain(session, self.stderr)
        code = session.exit_code
        tail = self.stderr.tail()
        if session.timed_out:
            return failure("timeout", f"slot worker reached the end of its {self.lifetime_s:g} s life {when}",
                           stderr_tail=tail)  # fmt: skip
        if code is None or code == -1:
            return failure("transport", f"connection to the slot worker lost {when}", stderr_tail=tail, exit_code=None)
        return failure("exit", f"slot worker exited with code {code} {when}", exit_code=code, stderr_tail=tail)

    def _died(self, session: Session) -> None:
        self.deaths += 1
        with self._lock:
            if self.session is session:
                self.session = None

    def _discard(self, session: Session, wait: float) -> None:
        with self._lock:
            if self.session is session:
                self.session = None
        session.close_stdin()
        if not session.wait(wait):
            self._kill(session)

    def _kill(self, session: Session) -> None:
        """End the worker now. Closing a remote channel does not stop a worker that is hung or SIGSTOPped,
        so on an SSH node its process group is killed by a separate command too (in the background)."""
        session.kill()
        pgid = self.hello.pgid if self.hello is not None else None
        if self.node.transport != "ssh" or pgid is None or pgid <= 1:
            return

        def remote_kill() -> None:
            try:
                self.executor.run(["kill", "-KILL", "--", f"-{pgid}"], timeout=self.timeouts.connect + 5)
            except TransportError as err:
                logger.debug(f"slot worker {self.slot}: remote kill of group {pgid} failed: {err}")

        threading.Thread(target=remote_kill, daemon=True, name=f"kill-{self.slot}").start()

    def begin_stop(self) -> None:
        with self._lock:
            self.stops += 1
            session, self.session = self.session, None
            self._stopping = session
        if session is not None:
            session.close_stdin()

    def finish_stop(self, deadline: float) -> None:
        with self._lock:
            session, self._stopping = self._stopping, None
        if session is not None and not session.wait(max(deadline - time.monotonic(), 0.0)):
            self._kill(session)
            session.wait(2.0)
