"""`python -m pipeline.worker JOBS_MODULE`: the worker protocol, one JSON job on stdin, one JSON line out.

The protocol knows no workload: JOBS_MODULE (named by the workload, e.g. `pipeline.prng.jobs`) holds a
`JOBS` table from job kind to handler, and this module only reads the job, dispatches on its "kind",
and answers. Started once per chunk on every node, so imports are deferred to the job that needs them.
Exit codes: 0 done, 2 the job is invalid (the error names the field), 1 anything unexpected (with
traceback). Every answer is one line: {"ok": true, "kind", ...handler fields, "torch_version",
"worker_version", "wall_seconds"} or {"ok": false, "error", ["traceback"], "wall_seconds"}.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from cluster.files import installed_version

EXIT_OK, EXIT_UNEXPECTED, EXIT_BAD_JOB = 0, 1, 2

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


def main(argv: list[str] | None = None, stdin: Any = None, stdout: Any = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    started = time.perf_counter()
    try:
        if len(argv) != 1:
            raise JobError("usage: python -m pipeline.worker JOBS_MODULE (e.g. pipeline.prng.jobs)")
        jobs = load_jobs(argv[0])
        try:
            job = json.loads(stdin.read())
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
    reply["wall_seconds"] = round(time.perf_counter() - started, 6)
    stdout.write(json.dumps(reply, separators=(",", ":")) + "\n")
    stdout.flush()
    return code


if __name__ == "__main__":
    # Run through the imported module, so JobError here is the class the jobs module raises.
    from pipeline.worker import main as imported_main

    sys.exit(imported_main())
