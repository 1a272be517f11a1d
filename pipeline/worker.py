"""`python -m pipeline.worker [--serve] JOBS_MODULE`: the worker side of the worker protocol.

The protocol itself (messages, exit codes, the version check) is `cluster.protocol`, shared with the
coordinator; this module only runs it. It knows no workload: JOBS_MODULE (named by the workload, e.g.
`pipeline.prng.jobs`) holds a `JOBS` table from job kind to handler, and this module reads the job,
dispatches on its "kind", and answers. Started once per chunk on every node in one-shot mode, so imports are
deferred to the job that needs them. Every answer is one line: {"ok": true, "kind", ...handler fields,
"torch_version", "worker_version", "protocol", "wall_seconds"} or {"ok": false, "error", ["traceback"],
"worker_version", "protocol", "wall_seconds"}; exit 0 done, 2 the job is invalid (the error names the field),
1 anything unexpected (with traceback).

`--serve` keeps one worker per GPU slot up (cluster/scheduler/workers.py is the other end): a `Hello`, then
one `Frame` per `Envelope`, heartbeats from a background thread (handlers report progress with
`report_progress`). Stray writes to fd 1 go to stderr; a marker line on stderr ends each job's share of it.
It exits when stdin closes, mid-job too, and (Linux) when its parent dies.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from cluster.files import installed_version
from cluster.protocol import (
    ENV_ATTEMPT,
    ENV_CHUNK_ID,
    ENV_HEARTBEAT,
    EXIT_BAD_JOB,
    EXIT_OK,
    EXIT_UNEXPECTED,
    PROTOCOL,
    SERVE_FLAG,
    STDERR_MARK,
    Envelope,
    Frame,
    Heartbeat,
    Hello,
)

_progress = 0  # work done so far in the current job, as the handler last reported it

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class JobError(ValueError):
    """The job itself is invalid (exit 2); the message names the field."""


def worker_version() -> str:
    return installed_version()


def torch_version() -> str:
    if "torch" in sys.modules:
        return str(sys.modules["torch"].__version__)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "unavailable"


def job_field(job: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if name not in job:
        if default is ...:
            raise JobError(f"job.{name} is required")
        return default
    value = job[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise JobError(f"job.{name}={value!r} has the wrong type")
    return value


def load_jobs(module_name: str) -> Mapping[str, Handler]:
    """The handler table of a workload's jobs module (its JOBS mapping)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise JobError(f"jobs module {module_name!r} cannot be imported: {err}") from None
    jobs = getattr(module, "JOBS", None)
    if not isinstance(jobs, Mapping):
        raise JobError(f"jobs module {module_name!r} has no JOBS table")
    return jobs


def handle(job: Any, jobs: Mapping[str, Handler]) -> dict[str, Any]:
    """Run one parsed job; raises JobError (or the workload's own ValueError subclasses) for invalid jobs."""
    if not isinstance(job, dict):
        raise JobError("job must be a JSON object")
    kind = job_field(job, "kind", str)
    if kind not in jobs:
        raise JobError(f"job.kind={kind!r} is unknown; use one of {', '.join(jobs)}")
    body = jobs[kind](job)
    return {"ok": True, "kind": kind, **body, "torch_version": torch_version(), "worker_version": worker_version()}


def report_progress(count: int) -> None:
    """Handlers call this with the work done so far in the current job (the unit of the workload's progress
    field); serve mode's heartbeats carry it, so the coordinator's progress moves within a chunk."""
    global _progress
    _progress = int(count)


def answer(argv: list[str], read_job: Callable[[], str]) -> tuple[dict[str, Any], int]:
    """One job, start to answer: (the reply line's object, the exit code)."""
    started = time.perf_counter()
    try:
        if len(argv) != 1:
            raise JobError("usage: python -m pipeline.worker [--serve] JOBS_MODULE (e.g. pipeline.prng.jobs)")
        jobs = load_jobs(argv[0])
        try:
            job = json.loads(read_job())
        except json.JSONDecodeError as exc:
            raise JobError(f"job is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        reply, code = handle(job, jobs), EXIT_OK
    except Exception as exc:  # every failure becomes one JSON line; the class decides the exit code
        from cluster.errors import ConfigError

        if isinstance(exc, JobError | ConfigError) or getattr(exc, "bad_job", False):
            reply, code = {"ok": False, "error": str(exc).splitlines()[0]}, EXIT_BAD_JOB
        else:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            code = EXIT_UNEXPECTED
    reply.setdefault("worker_version", worker_version())
    reply["protocol"] = PROTOCOL
    reply["wall_seconds"] = round(time.perf_counter() - started, 6)
    return reply, code


def main(argv: list[str] | None = None, stdin: Any = None, stdout: Any = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if SERVE_FLAG in argv:
        return serve([a for a in argv if a != SERVE_FLAG])
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    reply, code = answer(argv, stdin.read)
    stdout.write(json.dumps(reply, separators=(",", ":")) + "\n")
    stdout.flush()
    return code


# --- serve mode ------------------------------------------------------------------------------------------
def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent (the coordinator, or `timeout`) dies."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def memory_facts() -> dict[str, int]:
    """This process's resident memory and the machine's total, in bytes (0 where /proc is not there)."""
    facts = {"rss": 0, "mem_total": 0}
    try:
        with open("/proc/self/statm") as fh:
            facts["rss"] = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    facts["mem_total"] = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    return facts


def release_gpu_memory() -> None:
    """Between chunks: give cached GPU memory back, so the next chunk (or a cleanup) finds the GPU idle."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # a broken GPU shows up in the next job's own result, not here
        pass


def serve(argv: list[str]) -> int:
    """The long-lived worker of one slot: see the module docstring for the protocol."""
    global _progress
    ppid = os.getppid()
    die_with_parent()
    if os.getppid() != ppid:  # the parent died before the kernel was told
        return EXIT_UNEXPECTED
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # anything written to fd 1 from now on (C libraries, prints) lands on stderr
    sys.stdout = sys.stderr
    lock = threading.Lock()
    busy_since: list[float] = []

    def send(message: Hello | Heartbeat | Frame) -> None:
        line = message.line()
        with lock:
            proto.write(line)
            proto.flush()

    interval = max(0.05, float(os.environ.get(ENV_HEARTBEAT, "2") or 2))

    def heartbeat() -> None:
        while True:
            time.sleep(interval)
            since = busy_since[0] if busy_since else None
            elapsed = round(time.monotonic() - since, 3) if since is not None else 0.0
            send(Heartbeat(progress=_progress, elapsed=elapsed, busy=since is not None))

    lines: queue.Queue[bytes] = queue.Queue()

    def read_stdin() -> None:
        for raw in sys.stdin.buffer:
            lines.put(raw)
        os._exit(0)  # stdin closed: the coordinator is done with us (or gone), even in the middle of a job

    send(Hello(version=worker_version(), pid=os.getpid(), pgid=os.getpgrp(), mem_total=memory_facts()["mem_total"],
               protocol=PROTOCOL))  # fmt: skip
    threading.Thread(target=heartbeat, daemon=True, name="heartbeat").start()
    threading.Thread(target=read_stdin, daemon=True, name="stdin").start()
    while True:
        raw = lines.get()
        try:
            envelope = Envelope.model_validate_json(raw)
        except ValueError:
            sys.stderr.write(f"pipeline.worker --serve: unreadable envelope: {raw[:200]!r}\n")
            continue
        seq, job = envelope.seq, envelope.job
        os.environ[ENV_CHUNK_ID] = envelope.chunk_id
        os.environ[ENV_ATTEMPT] = str(envelope.attempt)
        _progress = 0
        busy_since[:] = [time.monotonic()]
        captured = io.StringIO()
        sys.stdout = captured
        try:
            reply, code = answer(argv, lambda job=job: json.dumps(job))
            captured.write(json.dumps(reply, separators=(",", ":")) + "\n")
        finally:
            sys.stdout = sys.stderr
            busy_since.clear()
        release_gpu_memory()
        sys.stderr.write(f"{STDERR_MARK}{seq}\n")
        sys.stderr.flush()
        send(Frame(done=seq, exit=code, stdout=captured.getvalue(), rss=memory_facts()["rss"]))


if __name__ == "__main__":
    # Run through the imported module, so JobError here is the class the jobs module raises.
    from pipeline.worker import main as imported_main

    sys.exit(imported_main())
