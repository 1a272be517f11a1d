"""The reference workload's worker jobs: the handler table `python -m pipeline.worker pipeline.prng.jobs` uses.

Jobs:
  {"kind": "sieve", "spec": {...SieveSpec...}, "start": int, "end": int}
  {"kind": "verify", "spec": {...}, "seeds": [int, ...]}   or "seeds_file": a JSON list on this node
  {"kind": "score", ...}          survivors scored on a history file (pipeline.prng.scoring.score_job)
  {"kind": "window_batch", ...}   forward sieves over blocks plus the reverse check (pipeline.prng.windows)
Optional on sieve and verify: "result_file" (where a survivor list above SURVIVOR_LIMIT goes; a temp file
otherwise), "device" ("cpu", "cuda", "cuda:1"; default: cuda when torch sees a GPU) and "path"
(auto|fast|fallback|reference). Their answer: "survivors": [[seed, skip, matches], ...] or
"survivors_file" (holding {"survivors": [...]}), "survivor_count", "seeds_tested", "seconds",
"seeds_per_s", "device", "path".
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

from pipeline.worker import JobError, job_field

SURVIVOR_LIMIT = 10_000  # above this the survivors go to a file the coordinator fetches


def _spec(job: dict[str, Any]) -> Any:  # Any: the import of SieveSpec is deferred to keep startup light
    from pipeline.prng.sieve.spec import SieveSpec

    return SieveSpec.from_dict(job_field(job, "spec", dict))


def _survivor_fields(result: Any, job: dict[str, Any]) -> dict[str, Any]:
    survivors = [list(s) for s in result.survivors()]
    out: dict[str, Any] = {"survivor_count": len(survivors)}
    target = job_field(job, "result_file", str, None)
    if len(survivors) > SURVIVOR_LIMIT:
        if target is None:
            fd, target = tempfile.mkstemp(prefix="watcher-survivors-", suffix=".json")
            os.close(fd)
        from cluster.files import write_json_atomic

        write_json_atomic(target, {"survivors": survivors}, style="compact")
        out["survivors_file"] = target
    else:
        out["survivors"] = survivors
    return out


def _common(job: dict[str, Any]) -> tuple[str, str]:
    from pipeline.prng.sieve import default_device

    device = job_field(job, "device", str, None) or default_device()
    return device, job_field(job, "path", str, "auto")


def run_sieve(job: dict[str, Any]) -> dict[str, Any]:
    from pipeline.prng.sieve import sieve_range

    spec = _spec(job)
    device, path = _common(job)
    result = sieve_range(spec, job_field(job, "start", int), job_field(job, "end", int), device=device, path=path)
    return {**_survivor_fields(result, job), **_timing(result)}


def run_verify(job: dict[str, Any]) -> dict[str, Any]:
    from pipeline.prng.sieve import verify_seeds

    spec = _spec(job)
    device, path = _common(job)
    if "seeds_file" in job:
        with open(job_field(job, "seeds_file", str)) as fh:
            seeds = json.load(fh)
    else:
        seeds = job_field(job, "seeds", list)
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


def run_score(job: dict[str, Any]) -> dict[str, Any]:
    from pipeline.prng.scoring import score_job

    try:
        return score_job(job)
    except KeyError as err:
        raise JobError(f"job.{err.args[0]} is missing") from None


def run_window_batch(job: dict[str, Any]) -> dict[str, Any]:
    from pipeline.prng.windows import window_batch_job

    try:
        return window_batch_job(job)
    except KeyError as err:
        raise JobError(f"job.tasks[].{err.args[0]} is missing") from None


# Dispatch stays an explicit table, no registration magic.
JOBS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "sieve": run_sieve,
    "verify": run_verify,
    "score": run_score,
    "window_batch": run_window_batch,
}


def prepare() -> None:
    """Called by a slot worker before its hello (pipeline.worker.prepare): on a GPU, compile the C kernels (or learn
    that they cannot run there, with the warning that says why) now, behind the node's staggered worker starts;
    the compile itself is once per node (pipeline.prng.kernels.gpu.launch)."""
    from pipeline.prng.sieve import default_device

    device = default_device()
    if not device.startswith("cpu"):
        from pipeline.prng.sieve.dispatch import gpu_kernels_available

        gpu_kernels_available(device)
