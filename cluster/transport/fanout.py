"""Run one command on many nodes at once and keep every node's outcome (like fabric's GroupResult).

A fan-out never stops at the first failure: preflight must report every dead rig in one pass, not
the first one only, and the whole pass is bounded by one deadline.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cluster.errors import TransportError
from cluster.transport.base import Command, CommandResult, Executor

T = TypeVar("T")


@dataclass
class FanOutResult:
    """node name -> CommandResult (it ran; any exit code) or the exception that stopped it."""

    results: dict[str, CommandResult] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def succeeded(self) -> dict[str, CommandResult]:
        return {n: r for n, r in self.results.items() if r.ok}

    @property
    def failed(self) -> dict[str, CommandResult | BaseException]:
        bad: dict[str, CommandResult | BaseException] = {n: r for n, r in self.results.items() if not r.ok}
        bad.update(self.errors)
        return bad

    @property
    def ok(self) -> bool:
        return not self.failed


def _as_mapping(executors: Mapping[str, Executor] | Iterable[Executor]) -> dict[str, Executor]:
    if isinstance(executors, Mapping):
        return dict(executors)
    return {ex.name: ex for ex in executors}


def fan_out_call(
    executors: Mapping[str, Executor] | Iterable[Executor],
    fn: Callable[[Executor], T],
    *,
    deadline: float | None = None,
    max_workers: int | None = None,
) -> tuple[dict[str, T], dict[str, BaseException]]:
    """Call `fn(executor)` for every node in parallel; a node still busy at the deadline is reported as
    a timeout (its thread is left to finish in the background, bounded by its own timeouts)."""
    targets = _as_mapping(executors)
    values: dict[str, T] = {}
    errors: dict[str, BaseException] = {}
    if not targets:
        return values, errors
    pool = cf.ThreadPoolExecutor(max_workers=max_workers or min(64, len(targets)), thread_name_prefix="fanout")
    try:
        futures = {pool.submit(fn, ex): name for name, ex in targets.items()}
        try:
            for fut in cf.as_completed(futures, timeout=deadline):
                name = futures[fut]
                try:
                    values[name] = fut.result()
                except Exception as err:
                    errors[name] = err
        except cf.TimeoutError:
            for name in futures.values():
                if name not in values and name not in errors:
                    errors[name] = TransportError(name, f"no answer within the {deadline:g} s deadline")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return values, errors


def fan_out(
    executors: Mapping[str, Executor] | Iterable[Executor],
    cmd: Command,
    *,
    timeout: float | None = None,
    deadline: float | None = None,
    max_workers: int | None = None,
    **run_kw: Any,
) -> FanOutResult:
    started = time.monotonic()
    overall = deadline if deadline is not None else (timeout + 10 if timeout else None)
    values, errors = fan_out_call(
        executors, lambda ex: ex.run(cmd, timeout=timeout, **run_kw), deadline=overall, max_workers=max_workers
    )
    return FanOutResult(results=values, errors=errors, seconds=time.monotonic() - started)
