"""Long-lived slot workers: one worker process per slot, fed chunk after chunk over one session.

The other end is `python -m pipeline.worker --serve JOBS_MODULE` (see pipeline/worker.py for the lines it
writes). Here:
- start: staggered per node by the scheduler (`SlotHost.start_turn`, which also keeps a few starts in flight
  per node), under the node's `timeout` for the worker's whole life (`lifetime_s`; a worker near the end of
  it is replaced between chunks); the hello line must come within the heartbeat timeout, and a worker older
  than the coordinator is refused with both versions named (`WorkerRefused`);
- across calls: a `pool.WorkerPool` keeps the runner, and so its live worker, from one `run_chunks` call to
  the next (`rebind` hands it the new call's options and host); what an idle worker said between calls is
  read and dropped before its next chunk, and one that died meanwhile is started anew;
- a chunk: one envelope line out, then heartbeats in until the frame with its answer. A slot silent for
  `heartbeat_timeout_s` is stale: its process is killed (remotely its process group, so a SIGSTOPped worker
  goes too) and the chunk fails as `stale` with what was last heard; a chunk past the job timeout fails as
  `timeout`; a worker that dies fails it as `exit` with its stderr; a line outside the protocol as
  `invalid`. Every answer is judged by `attempt.judge`, as in per-chunk mode;
- after a death the next start waits `backoff_delay(deaths)`;
- stop: stdin closed (the worker exits, mid-chunk too), then killed if it has not gone by the deadline.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from loguru import logger

from cluster.config import NodeConfig, SchedulerPolicy, Timeouts
from cluster.errors import TransportError
from cluster.files import installed_version
from cluster.scheduler.attempt import (
    STDERR_TAIL_LINES,
    chunk_failure_factory,
    judge,
    slot_env,
    worker_command,
)
from cluster.scheduler.options import SchedulerOptions
from cluster.scheduler.policy import backoff_delay
from cluster.scheduler.runner import PooledRunner, SlotHost, WorkerRefused
from cluster.scheduler.types import ChunkFailure, ChunkSpec, Slot
from cluster.transport.base import Executor, Session, render_command

SERVE_FLAG = "--serve"
STDERR_MARK = "\x1fwatcher-done "  # pipeline.worker.STDERR_MARK: ends one chunk's share of stderr
MARK_WAIT_S = 1.0  # how long a finished chunk waits for its stderr to catch up with its answer
STDERR_KEEP = 400

# How a runner starts its process: given the start, runs it (the default calls it right here, in the slot's
# thread; a pool runs it in a thread that lives as long as the pool, see pool.py).
Spawner = Callable[[Callable[[], Session]], Session]


def heartbeat_interval(timeout_s: float) -> float:
    """How often a worker says it is alive: four times per timeout, between 50 ms and 5 s."""
    return min(5.0, max(0.05, timeout_s / 4))


def version_older(worker: str, coordinator: str) -> bool:
    """Whether the worker's installed version is older than the coordinator's (PEP 440 order; unparsable
    versions compare as different only when they are not equal strings)."""
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover - packaging ships with pip
        return worker != coordinator
    try:
        return Version(worker) < Version(coordinator)
    except InvalidVersion:
        return worker != coordinator


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
            "WATCHER_HEARTBEAT_S": f"{heartbeat_interval(self.hb_timeout):g}",
            "WATCHER_COORDINATOR_VERSION": self.version,
        }
        self._lock = threading.Lock()
        self.session: Session | None = None
        self.hello: dict[str, Any] = {}
        self.started_at = 0.0
        self.session_lifetime = 0.0  # the `timeout` the live worker was started under
        self.seq = 0
        self.marked = 0  # the last chunk whose stderr end marker has come
        self.deaths = 0  # consecutive worker deaths: the backoff before the next start
        self.starts = 0
        self.stderr: deque[str] = deque(maxlen=STDERR_KEEP)  # the current chunk's stderr so far
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
        session = self.session
        if session is not None and not self._drain_idle(session):
            self._kill(session)  # it broke the protocol while it had nothing to do: a fresh worker takes over
            self._discard(session, wait=2.0)
            session = None
        if session is not None and (
            session.ended or time.monotonic() - self.started_at + self.timeouts.job > self.session_lifetime
        ):
            self._discard(session, wait=2.0)  # dead between chunks, or too close to its `timeout`
            session = None
        if session is None:
            started = self._start(failure)
            if isinstance(started, ChunkFailure):
                return started
            session = started
        self.seq += 1
        seq = self.seq
        self.stderr.clear()
        envelope = {"seq": seq, "chunk_id": chunk.chunk_id, "attempt": attempt, "job": chunk.payload}
        try:
            session.write((json.dumps(envelope, separators=(",", ":")) + "\n").encode())
        except TransportError as err:
            self._died(session)
            return failure("transport", f"cannot send the chunk to the slot worker: {err}", stderr_tail=self._tail())
        return self._await(session, seq, chunk, failure)

    def _await(self, session: Session, seq: int, chunk: ChunkSpec, failure: Any) -> dict[str, Any] | ChunkFailure:
        sent = last = time.monotonic()
        progress, hb_elapsed = 0, 0.0
        job_deadline = sent + self.timeouts.job
        while True:
            now = time.monotonic()
            limit = min(last + self.hb_timeout, job_deadline)
            event = session.read(limit - now) if limit > now else None
            if event is None:
                if time.monotonic() < limit:
                    continue
                self._kill(session)
                self._died(session)
                if time.monotonic() >= job_deadline:
                    return failure(
                        "timeout",
                        f"chunk ran past the job timeout of {self.timeouts.job:g} s on the slot worker "
                        f"(it kept sending heartbeats, last progress {progress}): worker killed",
                        stderr_tail=self._tail(),
                    )
                return failure(
                    "stale",
                    f"slot worker silent for {time.monotonic() - last:.1f} s (heartbeat_timeout_s "
                    f"{self.hb_timeout:g}): killed (pid {self.hello.get('pid', '?')}); chunk running "
                    f"{time.monotonic() - sent:.1f} s, last heartbeat at progress {progress} "
                    f"after {hb_elapsed:.1f} s",
                    stderr_tail=self._tail(),
                )
            kind, value = event
            if kind == "err":
                self._stderr_line(value)
                continue
            if kind == "exit":
                self._died(session)
                return self._exit_failure(session, failure, "in the middle of the chunk")
            last = time.monotonic()
            message = _parse(value)
            if message is None:
                self._kill(session)
                self._died(session)
                return failure(
                    "invalid",
                    f"slot worker wrote a line outside the protocol: {value[:200]!r}; worker killed",
                    stderr_tail=self._tail(),
                )
            if message.get("heartbeat"):
                progress = _count(message.get("progress"))
                hb_elapsed = float(message.get("elapsed") or 0.0)
                self.host.chunk_progress(self.slot, progress)
                continue
            if message.get("done") == seq:
                return self._answered(session, seq, chunk, message, failure)
            # a stray hello or an answer to an older envelope: nothing to do with this chunk

    def _answered(
        self, session: Session, seq: int, chunk: ChunkSpec, frame: dict[str, Any], failure: Any
    ) -> dict[str, Any] | ChunkFailure:
        self.deaths = 0
        code = frame.get("exit")
        stdout = frame.get("stdout")
        self.host.worker_memory(self.slot, _count(frame.get("rss")), _count(self.hello.get("mem_total")))
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(stdout, str):
            self._kill(session)
            self._died(session)
            return failure("invalid", f"slot worker sent a malformed answer: {json.dumps(frame)[:200]}")
        return judge(
            self.executor, chunk, code, stdout, lambda: self._tail_until(session, seq), options=self.options,
            failure=failure,
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
        deadline = time.monotonic() + self.hb_timeout + self.timeouts.connect
        while True:
            event = session.read(deadline - time.monotonic())
            if event is None:
                self._kill(session)
                self.deaths += 1
                return failure(
                    "stale",
                    f"slot worker said nothing within {self.hb_timeout + self.timeouts.connect:g} s of starting: "
                    "killed",
                    stderr_tail=self._tail(),
                )
            kind, value = event
            if kind == "err":
                self._stderr_line(value)
                continue
            if kind == "exit":
                self.deaths += 1
                return self._exit_failure(session, failure, "before saying hello")
            message = _parse(value)
            if message is not None and message.get("heartbeat"):
                continue
            if message is None or not message.get("hello"):
                self._kill(session)
                raise WorkerRefused(
                    f"the worker on {self.slot} does not speak the slot-worker protocol of watcher {self.version} "
                    f"(an older install on {self.node.name}?); it printed {value[:200]!r}. Install the "
                    f"coordinator's version there, or set scheduler.slot_mode to per_chunk"
                )
            worker_version = str(message.get("version", "unknown"))
            if version_older(worker_version, self.version):
                self._kill(session)
                raise WorkerRefused(
                    f"the worker on {self.slot} runs watcher {worker_version}, older than the coordinator's "
                    f"{self.version}: install watcher {self.version} on {self.node.name}"
                )
            self.hello = message
            with self._lock:
                self.session = session
            logger.debug(f"slot worker {self.slot} up (pid {message.get('pid')}, watcher {worker_version})")
            return session

    def _exit_failure(self, session: Session, failure: Any, when: str) -> ChunkFailure:
        session.wait(2.0)
        self._drain(session)
        code = session.exit_code
        if session.timed_out:
            return failure(
                "timeout",
                f"slot worker reached the end of its {self.lifetime_s:g} s life {when}",
                stderr_tail=self._tail(),
            )
        if code is None or code == -1:
            return failure(
                "transport", f"connection to the slot worker lost {when}", stderr_tail=self._tail(), exit_code=None
            )
        return failure("exit", f"slot worker exited with code {code} {when}", exit_code=code, stderr_tail=self._tail())

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
        pgid = self.hello.get("pgid")
        if self.node.transport != "ssh" or not isinstance(pgid, int) or pgid <= 1:
            return

        def remote_kill() -> None:
            try:
                self.executor.run(["kill", "-KILL", "--", f"-{pgid}"], timeout=self.timeouts.connect + 5)
            except TransportError as err:
                logger.debug(f"slot worker {self.slot}: remote kill of group {pgid} failed: {err}")

        threading.Thread(target=remote_kill, daemon=True, name=f"kill-{self.slot}").start()

    def begin_stop(self) -> None:
        with self._lock:
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

    # --- stderr ---------------------------------------------------------------------------------------
    def _stderr_line(self, line: str) -> bool:
        """Keep a stderr line of the current chunk; True for the marker that ends a chunk's stderr."""
        if line.startswith(STDERR_MARK):
            marked = line[len(STDERR_MARK) :].strip()
            if marked == str(self.seq):
                self.marked = self.seq
            else:
                self.stderr.clear()  # the end of an earlier chunk's stderr, come late: not this chunk's
            return True
        self.stderr.append(line)
        return False

    def _tail_until(self, session: Session, seq: int) -> str:
        """The chunk's stderr tail, once its end marker has come (bounded wait: stderr and stdout are two
        streams, so the marker may arrive just after the answer)."""
        deadline = time.monotonic() + MARK_WAIT_S
        while self.marked < seq:
            event = session.read(deadline - time.monotonic())
            if event is None:
                break
            kind, value = event
            if kind == "err":
                self._stderr_line(value)
            elif kind == "exit":
                session.push_back(event)  # keep it for the next chunk to see
                break
        return self._tail()

    def _drain(self, session: Session) -> None:
        while (event := session.read(0)) is not None:
            if event[0] == "err":
                self._stderr_line(event[1])

    def _drain_idle(self, session: Session) -> bool:
        """Before a chunk: drop what the worker said while it had none (heartbeats of an idle worker kept
        between calls, the tail of an earlier chunk's stderr), so the chunk's record holds only its own.
        False when it wrote a line outside the protocol meanwhile (it is not trusted with the chunk). An exit
        read here stays in the session's state (`ended`): the caller starts a new worker."""
        clean = True
        while (event := session.read(0)) is not None:
            kind, value = event
            if kind == "exit":
                break
            if kind == "out" and clean and not (_parse(value) or {}).get("heartbeat"):
                logger.warning(f"slot worker {self.slot} wrote {value[:200]!r} while idle: replaced")
                clean = False
        self.stderr.clear()
        return clean

    def _tail(self) -> str:
        return "\n".join(list(self.stderr)[-STDERR_TAIL_LINES:])


def _parse(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
