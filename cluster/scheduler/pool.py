"""Slot workers that outlive one `run_chunks` call: a `WorkerPool` is opened by a caller that runs chunks in
rounds (a step asking Optuna for one batch of trials after another) and handed to every call.

Why: a slot worker's start (interpreter, imports, the GPU context on its first chunk) is paid once per
worker, not once per call; without a pool every call starts and stops every slot's worker.

    with WorkerPool() as pool:
        for batch in batches:
            run_chunks(config, batch, ..., pool=pool)

What a call does with it (slots.SlotScheduler, run.run_chunks):
- it takes the pool's runner for each of its slots, rebound to the call, and starts only the workers that are
  not up; a runner started for another command or environment, or over another executor, is replaced;
- the pool's runners of slots the call cannot use (quarantined since, excluded, no executor) are stopped at
  the start of the call; at its end, those of slots it quarantined and of nodes it took out are stopped and
  forgotten (a thread may still be stuck on such a node: a later call gets a new runner, never that one);
- a call that raises (a failed chunk, a halt, Ctrl-C) stops every worker of the pool, so nothing runs on
  the nodes while the error travels; the pool stays usable, the next call starts fresh workers;
- GPU cleanups: a batch cleanup still stops the node's workers first and runs every `cleanup_batch_size`
  chunks, counted across calls; the cleanup a call ran at its end without a pool is owed to the pool instead,
  which runs it when it closes, after stopping every worker.

`close` (the end of the `with`): every worker is stopped, then the owed cleanups run (not after Ctrl-C or
another BaseException: the operator wants out). Workers are started from threads the pool owns, which end
only when it closes: a local worker asks the kernel to end it with the thread that started it
(PR_SET_PDEATHSIG is per thread), so a worker started by one call's slot thread would die with that thread.
The pool is for one caller thread: calls made with it must not overlap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from loguru import logger

from cluster.errors import SchedulingError
from cluster.gpu.ledger import HealthLedger
from cluster.scheduler.cleanup import run_cleanups
from cluster.scheduler.options import CleanupFn
from cluster.scheduler.runner import PooledRunner, stop_runners
from cluster.scheduler.types import Slot
from cluster.transport.base import Executor, Session

SPAWN_THREADS = 64  # threads that start workers (each blocks only while its start is in progress)


class WorkerPool:
    def __init__(self) -> None:
        self.runners: dict[Slot, PooledRunner] = {}
        self.closed = False
        self.in_call = False
        # carried from one call to the next (see the module docstring)
        self.took_part: set[str] = set()  # nodes that ran chunks since their last GPU cleanup
        self.completed = 0  # chunks completed through the pool: batch cleanups count across calls
        self.smi_used: dict[str, float] = {}  # node -> when rocm-smi last ran there (health.min_probe_interval_s)
        self.oom_caps: dict[str, int] = {}  # node -> slot workers allowed there since the OOM killer took one
        self.starts = 0  # worker processes started through the pool (what reuse saves shows here)
        self._cleanup: tuple[CleanupFn, Mapping[str, Executor], HealthLedger | None] | None = None
        self._lock = threading.Lock()
        self._spawner = ThreadPoolExecutor(SPAWN_THREADS, thread_name_prefix="slot-spawn")

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self.close(cleanup=exc_type is None or issubclass(exc_type, Exception))

    # --- what run_chunks asks of the pool ------------------------------------------------------------
    @contextmanager
    def call(self, slots: Iterable[Slot]) -> Iterator[WorkerPool]:
        """One `run_chunks` call over `slots`: one at a time; the workers of slots it will not use are
        stopped before it starts."""
        wanted = set(slots)
        with self._lock:
            if self.closed:
                raise SchedulingError("the slot worker pool is closed: open a new one for more calls")
            if self.in_call:
                raise SchedulingError("the slot worker pool is in use by another call: calls must not overlap")
            self.in_call = True
            unused = [s for s in self.runners if s not in wanted]
        try:
            self.discard(unused)
            yield self
        finally:
            with self._lock:
                self.in_call = False

    def runner(self, slot: Slot, executor: Executor, make: Callable[[], PooledRunner]) -> PooledRunner:
        """The slot's runner: the pool's own if it was started as `make()` would start it (same command,
        environment and executor), else a new one from `make()` (the old one stopped)."""
        fresh = make()
        with self._lock:
            kept = self.runners.get(slot)
            if kept is not None and kept.executor is executor and kept.key == fresh.key:
                return kept
            self.runners[slot] = fresh
        fresh.spawn = self.spawn
        if kept is not None:
            logger.debug(f"slot worker {slot}: the call wants another command, environment or executor: replaced")
            kept.stop()
        return fresh

    def spawn(self, start: Callable[[], Session]) -> Session:
        """Run a worker start in one of the pool's threads (see the module docstring: PR_SET_PDEATHSIG)."""
        session = self._spawner.submit(start).result()
        with self._lock:
            self.starts += 1
        return session

    def discard(self, slots: Iterable[Slot], wait: float = 2.0) -> None:
        """Stop the workers of these slots and forget their runners."""
        with self._lock:
            gone = [self.runners.pop(s) for s in set(slots) if s in self.runners]
        stop_runners(gone, wait)

    def discard_all(self, wait: float = 2.0) -> None:
        self.discard(list(self.runners), wait)

    def owe_cleanup(
        self, cleanup: CleanupFn | None, executors: Mapping[str, Executor], ledger: HealthLedger | None
    ) -> None:
        """The last call's cleanup is the one run at close, on the nodes in `took_part`."""
        self._cleanup = (cleanup, executors, ledger) if cleanup is not None else None

    def live_pids(self) -> dict[Slot, Any]:
        """The pid each live worker gave in its hello (for logs and tests)."""
        with self._lock:
            return {s: r.hello.pid if r.hello is not None else None for s, r in self.runners.items() if r.live}

    # --- the end -------------------------------------------------------------------------------------
    def close(self, cleanup: bool = True, wait: float = 2.0) -> None:
        """Stop every worker, then run the cleanup owed on the nodes that ran chunks since their last one."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        try:
            self.discard_all(wait)
            owed, self._cleanup = self._cleanup, None
            nodes, self.took_part = set(self.took_part), set()
            if cleanup and owed is not None and nodes:
                fn, executors, ledger = owed
                started = time.monotonic()
                found = run_cleanups(fn, {n: executors[n] for n in sorted(nodes) if n in executors})
                for health in found:
                    logger.error(f"GPU {health.node}:{health.index} quarantined: {'; '.join(health.evidence)}")
                    if ledger is not None:
                        ledger.quarantine(
                            health.node, health.index, "faulted in GPU cleanup", list(health.evidence), "scheduler"
                        )
                took = time.monotonic() - started
                logger.debug(f"slot worker pool: cleanup on {', '.join(sorted(nodes))} in {took:.1f} s")
        finally:
            self._spawner.shutdown(wait=False, cancel_futures=True)
