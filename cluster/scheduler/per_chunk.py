"""A fresh worker process for every chunk (`slot_mode: per_chunk`): nothing stays up between chunks.

The process is started as a `Session` (`Executor.start`), so the runner holds it while the chunk runs and a
stop from another thread can end it (a plain `Executor.run` could only be waited out): the chunk is written
to its stdin, stdin closed, and its output read until it exits, capped as a command's output is. The answer
is judged by `attempt.judge`, as in the other runners, after the worker's protocol and version are checked
(`cluster.protocol.refusal`): an older worker is refused, not trusted with the step.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from cluster.config import NodeConfig, Timeouts
from cluster.errors import TransportError
from cluster.files import installed_version
from cluster.protocol import ENV_ATTEMPT, ENV_CHUNK_ID, ENV_COORDINATOR_VERSION, refusal
from cluster.scheduler.attempt import chunk_failure_factory, judge, parse_worker_output, slot_env, worker_command
from cluster.scheduler.options import SchedulerOptions
from cluster.scheduler.runner import SlotRunner, WorkerRefused
from cluster.scheduler.streams import ProcessOutput
from cluster.scheduler.types import ChunkFailure, ChunkSpec, Slot
from cluster.transport.base import Executor, Session, capped_stdout, render_command

REMOTE_TIMEOUT_EXIT = 124  # coreutils `timeout`: the node's own deadline for the command ended it
DEADLINE_GRACE_S = 5.0  # past the job timeout, the coordinator stops waiting for the node to end the process


class PerChunkRunner(SlotRunner):
    def __init__(
        self,
        executor: Executor,
        node: NodeConfig,
        slot: Slot,
        *,
        options: SchedulerOptions,
        timeouts: Timeouts,
        version: str | None = None,
    ) -> None:
        super().__init__(slot)
        self.executor = executor
        self.node = node
        self.options = options
        self.timeouts = timeouts
        self.version = version or installed_version()
        self.argv = worker_command(node, options.worker_argv)
        self.command = render_command(self.argv)
        self._lock = threading.Lock()
        self._session: Session | None = None

    @property
    def live(self) -> bool:
        session = self._session
        return session is not None and not session.ended

    def run(self, chunk: ChunkSpec, attempt: int) -> dict[str, Any] | ChunkFailure:
        failure = chunk_failure_factory(chunk, attempt, self.slot, self.command)
        env = {**slot_env(self.node, self.slot.gpu), ENV_CHUNK_ID: chunk.chunk_id, ENV_ATTEMPT: str(attempt),
               ENV_COORDINATOR_VERSION: self.version}  # fmt: skip
        mark = self.stops
        limit = self.timeouts.job
        try:
            session = self.executor.start(self.argv, env=env, timeout=limit)
        except TransportError as err:
            cause = f" (cause: {err.cause!r})" if err.cause is not None else ""
            return failure("transport", f"{err}{cause}")
        with self._lock:
            self._session = session
        if self.stopped_since(mark):  # a stop asked while it was starting
            session.kill()
        try:
            output, code, expired = self._collect(session, json.dumps(chunk.payload).encode(), limit)
        finally:
            with self._lock:
                self._session = None
        if self.stopped_since(mark):
            return failure("transport", "the worker was stopped by the coordinator in the middle of the chunk",
                           stderr_tail=output.stderr_tail())  # fmt: skip
        if expired or session.timed_out:
            return failure("timeout", f"{self.executor.name}: command timed out after {limit:g} s: {self.command}",
                           stderr_tail=output.stderr_tail())  # fmt: skip
        if code is None:
            return failure("transport", f"{self.executor.name}: connection lost while the command was running",
                           stderr_tail=output.stderr_tail())  # fmt: skip
        stdout = output.stdout()
        self._check_identity(stdout)
        return judge(self.executor, chunk, int(code), stdout, output.stderr_tail(), options=self.options,
                     failure=failure)  # fmt: skip

    def _collect(self, session: Session, data: bytes, limit: float) -> tuple[ProcessOutput, int | None, bool]:
        """Feed the job, then read until the process exits: (output, exit code, whether the job timeout ended
        it). The code is None when the link was lost. The timeout is the node's `timeout` (a remote exit
        124 at the limit), the local session's timer, or the coordinator's own deadline a little later."""
        started = time.monotonic()
        threading.Thread(target=_feed, args=(session, data), daemon=True, name=f"stdin-{self.slot}").start()
        output = ProcessOutput(capped_stdout())
        deadline = started + limit + DEADLINE_GRACE_S
        while True:
            event = session.read(deadline - time.monotonic())
            if event is None:
                if time.monotonic() < deadline:
                    continue
                session.kill()
                session.wait(2.0)
                return output, None, True
            kind, value = event
            if kind == "exit":
                remote_timeout = value == REMOTE_TIMEOUT_EXIT and self.node.transport == "ssh"
                return output, value, remote_timeout and time.monotonic() - started >= limit * 0.98
            output.feed(kind, value)

    def _check_identity(self, stdout: str) -> None:
        """Refuse an answer from a worker of another protocol or an older version (as the hello is checked in
        serve mode); an answer without them is judged as it is."""
        try:
            answer = parse_worker_output(stdout)
        except ValueError:
            return
        reason = refusal(answer.get("protocol"), answer.get("worker_version"), self.version, str(self.slot),
                         self.node.name)  # fmt: skip
        if reason is not None:
            raise WorkerRefused(reason)

    def begin_stop(self) -> None:
        with self._lock:
            self.stops += 1
            session = self._session
        if session is not None:
            session.kill()  # a process per chunk has nothing to finish cleanly: it is mid-chunk or gone

    def finish_stop(self, deadline: float) -> None:
        session = self._session
        if session is not None:
            session.wait(max(deadline - time.monotonic(), 0.0))


def _feed(session: Session, data: bytes) -> None:
    """Write the job and close stdin, in a thread of its own: a process that never reads its stdin must not
    block the runner (its output and its deadline are watched meanwhile)."""
    try:
        session.write(data)
    except TransportError:
        return  # it ended before reading its job: its exit and stderr say why
    session.close_stdin()
