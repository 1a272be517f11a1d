"""`python -m pipeline.worker`: one JSON job on stdin, one JSON result line on stdout.

Started once per chunk on every node, so imports are deferred to the job that needs them. Exit codes:
0 done, 2 the job is invalid (the error names the field), 1 anything unexpected (with traceback).

Jobs (dispatched through JOBS):
  {"kind": "sieve", "spec": {...SieveSpec...}, "start": int, "end": int}
  {"kind": "verify", "spec": {...}, "seeds": [int, ...]}   or "seeds_file": a JSON list on this node
Optional on both: "result_file" (where a survivor list above SURVIVOR_LIMIT goes; a temp file otherwise),
"device" ("cpu", "cuda", "cuda:1"; default: cuda when torch sees a GPU) and "path" (auto|fast|fallback|reference).
Reply: {"ok": true, "kind", "survivors": [[seed, skip, matches], ...] or "survivors_file", "survivor_count",
"seeds_tested", "seconds", "seeds_per_s", "device", "path", "torch_version", "worker_version", "wall_seconds"}.
A survivors_file holds {"survivors": [[seed, skip, matches], ...]}.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

SURVIVOR_LIMIT = 10_000  # above this the survivors go to a file the coordinator fetches
EXIT_OK, EXIT_UNEXPECTED, EXIT_BAD_JOB = 0, 1, 2


class JobError(ValueError):
    """The job itself is invalid (exit 2); the message names the field."""


def worker_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rig-watcher")
    except PackageNotFoundError:
        return "0+unknown"


def torch_version() -> str:
    if "torch" in sys.modules:
        return str(sys.modules["torch"].__version__)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "unavailable"


def _field(job: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if name not in job:
        if default is ...:
            raise JobError(f"job.{name} is required")
        return default
    value = job[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise JobError(f"job.{name}={value!r} has the wrong type")
    return value


def _spec(job: dict[str, Any]) -> Any:  # Any: the import of SieveSpec is deferred to keep startup light
    from pipeline.sieve_spec import SieveSpec

    return SieveSpec.from_dict(_field(job, "spec", dict))


def _survivor_fields(result: Any, job: dict[str, Any]) -> dict[str, Any]:
    survivors = [list(s) for s in result.survivors()]
    out: dict[str, Any] = {"survivor_count": len(survivors)}
    target = _field(job, "result_file", str, None)
    if len(survivors) > SURVIVOR_LIMIT:
        if target is None:
            fd, target = tempfile.mkstemp(prefix="watcher-survivors-", suffix=".json")
            os.close(fd)
        from pipeline.outputs import write_json_atomic

        write_json_atomic(target, {"survivors": survivors}, style="compact")
        out["survivors_file"] = target
    else:
        out["survivors"] = survivors
    return out


def _common(job: dict[str, Any]) -> tuple[str, str]:
    from pipeline.sieve import default_device

    device = _field(job, "device", str, None) or default_device()
    return device, _field(job, "path", str, "auto")


def run_sieve(job: dict[str, Any]) -> dict[str, Any]:
    from pipeline.sieve import sieve_range

    spec = _spec(job)
    device, path = _common(job)
    result = sieve_range(spec, _field(job, "start", int), _field(job, "end", int), device=device, path=path)
    return {**_survivor_fields(result, job), **_timing(result)}


def run_verify(job: dict[str, Any]) -> dict[str, Any]:
    from pipeline.sieve import verify_seeds

    spec = _spec(job)
    device, path = _common(job)
    if "seeds_file" in job:
        with open(_field(job, "seeds_file", str)) as fh:
            seeds = json.load(fh)
    else:
        seeds = _field(job, "seeds", list)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise JobError("job.seeds must be a list of integers")
    result = verify_seeds(spec, seeds, device=device, path="reference" if path == "reference" else "auto")
    return {**_survivor_fields(result, job), **_timing(result)}


def _timing(result: Any) -> dict[str, Any]:
    return {
        "seeds_tested": result.seeds_tested,
        "seconds": round(result.seconds, 6),
        "seeds_per_s": round(result.seeds_per_s, 1),
        "device": result.device,
        "path": result.path,
    }


# Dispatch stays an explicit table, no registration magic.
def run_score(job: dict[str, Any]) -> dict[str, Any]:
    from pipeline.scoring import score_job

    try:
        return score_job(job)
    except KeyError as err:
        raise JobError(f"job.{err.args[0]} is missing") from None


def run_window_batch(job: dict[str, Any]) -> dict[str, Any]:
    from pipeline.scoring import window_batch_job

    try:
        return window_batch_job(job)
    except KeyError as err:
        raise JobError(f"job.tasks[].{err.args[0]} is missing") from None


JOBS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "sieve": run_sieve,
    "verify": run_verify,
    "score": run_score,
    "window_batch": run_window_batch,
}


def handle(job: Any) -> dict[str, Any]:
    """Run one parsed job; raises JobError / SieveSpecError for invalid jobs."""
    if not isinstance(job, dict):
        raise JobError("job must be a JSON object")
    kind = _field(job, "kind", str)
    if kind not in JOBS:
        raise JobError(f"job.kind={kind!r} is unknown; use one of {', '.join(JOBS)}")
    body = JOBS[kind](job)
    return {"ok": True, "kind": kind, **body, "torch_version": torch_version(), "worker_version": worker_version()}


def main(stdin: Any = None, stdout: Any = None) -> int:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    started = time.perf_counter()
    try:
        try:
            job = json.loads(stdin.read())
        except json.JSONDecodeError as exc:
            raise JobError(f"job is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        reply, code = handle(job), EXIT_OK
    except Exception as exc:  # every failure becomes one JSON line; the class decides the exit code
        from cluster.errors import ConfigError

        if isinstance(exc, JobError | ConfigError):
            reply, code = {"ok": False, "error": str(exc).splitlines()[0]}, EXIT_BAD_JOB
        else:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            code = EXIT_UNEXPECTED
    reply["wall_seconds"] = round(time.perf_counter() - started, 6)
    stdout.write(json.dumps(reply, separators=(",", ":")) + "\n")
    stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
