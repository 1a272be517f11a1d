"""What every slot runner shares about one attempt of one chunk: the worker's command and environment, and
`judge`, which turns what the worker returned into either a validated result or a `ChunkFailure` carrying
the full evidence, the same way for every runner.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cluster.config import NodeConfig
from cluster.errors import FileTooLargeError, TransportError
from cluster.gpu.health import GpuHealth
from cluster.protocol import ENV_SLOT, EXIT_BAD_JOB
from cluster.scheduler.options import SchedulerOptions
from cluster.scheduler.types import AnswerRejected, ChunkFailure, ChunkSpec, Slot
from cluster.transport.base import Executor

STDERR_TAIL_LINES = 40


def slot_env(node: NodeConfig, gpu: int) -> dict[str, str]:
    """The node's env plus the slot's device selection; CPU slots get one thread each so N slots do not
    oversubscribe the cores."""
    env = dict(node.env)
    if node.gpu_kind == "rocm":
        env["HIP_VISIBLE_DEVICES"] = str(gpu)
    elif node.gpu_kind == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    else:
        env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WATCHER_THREADS": "1"})
    env[ENV_SLOT] = f"{node.name}:{gpu}"
    return env


def worker_command(node: NodeConfig, worker_argv: Sequence[str]) -> list[str]:
    return [node.interpreter(), *worker_argv]


def parse_worker_output(stdout: str) -> dict[str, Any]:
    """The worker's answer is its last non-empty stdout line, a JSON object (earlier lines may be noise)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("worker printed nothing on stdout")
    try:
        value = json.loads(lines[-1])
    except json.JSONDecodeError as err:
        raise ValueError(f"last stdout line is not JSON ({err.msg}): {lines[-1][:200]!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"worker answer is a JSON {type(value).__name__}, not an object")
    return value


def fetch_files(executor: Executor, answer: dict[str, Any], options: SchedulerOptions, chunk_id: str) -> None:
    """Bring result files the worker left on the node (large results) to the coordinator, and point the
    result at the local copy; the node's path is kept as `<key>_remote`. Raises FileTooLargeError past the
    caller's limit."""
    if options.fetch_dir is None:
        return
    for key in options.fetch_keys:
        remote = answer.get(key)
        if isinstance(remote, str) and remote:
            local = Path(options.fetch_dir) / f"{chunk_id}-{key}.json"
            executor.get(remote, local, max_bytes=options.fetch_max_bytes)
            answer[f"{key}_remote"] = remote
            answer[key] = str(local)


def health_state(health: GpuHealth) -> dict[str, Any]:
    return {
        "status": str(health.status),
        "evidence": list(health.evidence),
        "pci_bus": health.pci_bus,
        "readings": dict(health.readings),
    }


def chunk_failure_factory(chunk: ChunkSpec, attempt: int, slot: Slot, command: str) -> Callable[..., ChunkFailure]:
    """`failure(kind, error, **extra)` for one attempt, its duration counted from now."""
    started = time.monotonic()

    def failure(kind: str, error: str, **extra: Any) -> ChunkFailure:
        return ChunkFailure(
            chunk_id=chunk.chunk_id,
            attempt=attempt,
            slot=slot,
            kind=kind,
            error=error,
            command=command,
            duration=time.monotonic() - started,
            time=time.time(),
            **extra,
        )

    return failure


def judge(
    executor: Executor,
    chunk: ChunkSpec,
    exit_code: int,
    stdout: str,
    stderr_tail: str | Callable[[], str],
    *,
    options: SchedulerOptions,
    failure: Callable[..., ChunkFailure],
) -> dict[str, Any] | ChunkFailure:
    """What a finished worker's exit code, stdout and stderr tail amount to: the validated result (files
    fetched) or the failure. Every slot runner judges through here, so their records are the same. The tail
    may be given as a function: it is then read only when a failure needs it."""
    read_tail = stderr_tail if callable(stderr_tail) else (lambda: stderr_tail)
    try:
        answer: dict[str, Any] | None = parse_worker_output(stdout)
        parse_error = ""
    except ValueError as err:
        answer, parse_error = None, str(err)

    def tail() -> str:
        text = read_tail()
        if answer is not None and answer.get("traceback"):
            worker_tb = "\n".join(str(answer["traceback"]).splitlines()[-STDERR_TAIL_LINES:])
            text = f"{text}\n[worker traceback]\n{worker_tb}".strip()
        return text

    if exit_code != 0:
        said = f": {answer.get('error')}" if answer and answer.get("error") else ""
        kind = "bad_spec" if exit_code == EXIT_BAD_JOB and answer is not None else "exit"
        return failure(kind, f"worker exited with code {exit_code}{said}", exit_code=exit_code, stderr_tail=tail())
    if answer is None:
        return failure("invalid", f"unreadable worker output: {parse_error}", exit_code=0, stderr_tail=tail())
    if answer.get("ok") is not True:
        return failure(
            "worker_error", f"worker reported failure: {answer.get('error', answer)}", exit_code=0, stderr_tail=tail()
        )
    return _accept(executor, chunk, answer, options=options, failure=failure, tail=tail)


def _accept(
    executor: Executor,
    chunk: ChunkSpec,
    answer: dict[str, Any],
    *,
    options: SchedulerOptions,
    failure: Callable[..., ChunkFailure],
    tail: Callable[[], str],
) -> dict[str, Any] | ChunkFailure:
    """An answer the worker says is good: its files fetched, then the caller's validation and trust check."""
    try:
        fetch_files(executor, answer, options, chunk.chunk_id)
    except FileTooLargeError as err:  # the same file on any node: the job's answer, not the link, is at fault
        return failure("invalid", f"result file refused: {err}", exit_code=0, stderr_tail=tail())
    except (OSError, TransportError) as err:
        return failure("transport", f"cannot fetch result file: {err}", exit_code=0, traceback=traceback.format_exc())
    if options.validate is not None:
        try:
            options.validate(answer)
        except Exception as err:  # a validator may raise anything; the chunk is simply not done
            return failure("invalid", f"result failed validation: {err}", exit_code=0, stderr_tail=tail(),
                           traceback=traceback.format_exc())  # fmt: skip
    if options.verify is not None:
        try:
            options.verify(chunk.payload, answer)
        except AnswerRejected as err:  # the node's answer is wrong: its failure, with what was wrong
            return failure(err.kind, f"answer rejected: {err}", exit_code=0, stderr_tail=tail())
        except Exception as err:  # a bug in the check itself must not pass the answer either
            return failure("invalid", f"answer check failed: {type(err).__name__}: {err}", exit_code=0,
                           stderr_tail=tail(), traceback=traceback.format_exc())  # fmt: skip
    return answer


def with_gpu_state(failure: ChunkFailure, state: dict[str, Any] | None) -> ChunkFailure:
    return replace(failure, gpu_state=state)


def describe_failure(failure: ChunkFailure, max_attempts: int) -> str:
    """The full multi-line log text of a failure: what an operator needs without opening the store."""
    lines = [
        f"chunk {failure.chunk_id} attempt {failure.attempt}/{max_attempts} FAILED on {failure.slot} "
        f"[{failure.kind}] after {failure.duration:.1f} s: {failure.error}",
        f"  command: {failure.command}",
        f"  exit code: {failure.exit_code if failure.exit_code is not None else 'none (did not finish)'}",
    ]
    if failure.stderr_tail:
        lines.append("  stderr tail:")
        lines.extend(f"    | {line}" for line in failure.stderr_tail.splitlines())
    else:
        lines.append("  stderr tail: (empty)")
    state = failure.gpu_state
    if state is None:
        lines.append("  gpu state after failure: not probed")
    else:
        evidence = "; ".join(state.get("evidence") or []) or "no evidence"
        lines.append(f"  gpu state after failure: {state.get('status')} ({evidence})")
    if failure.traceback:
        lines.append("  traceback (coordinator side):")
        lines.extend(f"    {line}" for line in failure.traceback.rstrip().splitlines())
    return "\n".join(lines)
