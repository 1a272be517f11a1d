"""The worker as the coordinator runs it: a real subprocess, JSON in, one JSON line out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipeline import worker
from pipeline.prng import jobs
from pipeline.prng.generators.reference import generate

REPO = Path(__file__).resolve().parents[2]


WORKER = [sys.executable, "-m", "pipeline.worker", "pipeline.prng.jobs"]


def run_worker(job: Any) -> tuple[int, dict[str, Any]]:
    text = job if isinstance(job, str) else json.dumps(job)
    proc = subprocess.run(WORKER, input=text, capture_output=True, text=True, cwd=REPO, timeout=120)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout + proc.stderr
    return proc.returncode, json.loads(lines[0])


def spec_for(seed: int, generator: str = "mt19937") -> dict[str, Any]:
    stream = generate(generator, seed, 12)
    return {"generator": generator, "residues": [v % 1000 for v in stream[2:10]], "threshold": 1.0, "offset": 2}


def test_sieve_job_finds_seed() -> None:
    code, reply = run_worker({"kind": "sieve", "spec": spec_for(5000), "start": 0, "end": 20000})
    assert code == 0
    assert reply["ok"] is True
    assert reply["survivors"] == [[5000, 0, 8]]
    assert reply["survivor_count"] == 1
    assert reply["seeds_tested"] == 20000
    assert reply["device"] == "cpu"
    assert reply["path"] == "fast"
    assert reply["worker_version"] == worker.worker_version() != ""
    assert reply["torch_version"]
    assert reply["seeds_per_s"] > 0


def test_verify_job_scores_candidates() -> None:
    job = {"kind": "verify", "spec": spec_for(77, "java_lcg"), "seeds": [5, 77, 77, 2**32 - 1]}
    code, reply = run_worker(job)
    assert code == 0
    assert reply["survivors"] == [[77, 0, 8]]
    assert reply["seeds_tested"] == 3


def test_large_survivor_lists_go_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "surv.json"
    spec = {"generator": "lcg32", "residues": [0], "threshold": 1.0, "modulus": 2}
    n = 2 * (jobs.SURVIVOR_LIMIT + 1000)
    code, reply = run_worker({"kind": "sieve", "spec": spec, "start": 0, "end": n, "result_file": str(target)})
    assert code == 0
    assert "survivors" not in reply
    assert reply["survivors_file"] == str(target)
    stored = json.loads(target.read_text())["survivors"]
    assert len(stored) == reply["survivor_count"] > jobs.SURVIVOR_LIMIT
    assert all(s[2] == 1 for s in stored)


def test_bad_spec_names_the_field_and_exits_2() -> None:
    bad = {**spec_for(1), "modulus": 1}
    code, reply = run_worker({"kind": "sieve", "spec": bad, "start": 0, "end": 10})
    assert code == 2
    assert reply["ok"] is False
    assert "spec.modulus" in reply["error"]
    assert "\n" not in reply["error"]


def test_bad_job_shapes_exit_2() -> None:
    for job, field in [
        ("{not json", "JSON"),
        ({"kind": "nope"}, "job.kind"),
        ({"kind": "sieve", "spec": spec_for(1), "start": 5, "end": 5}, "seed range"),
        ({"kind": "sieve", "spec": {**spec_for(1), "colour": 1}, "start": 0, "end": 5}, "spec.colour"),
        ({"kind": "sieve", "spec": spec_for(1), "end": 5}, "job.start"),
    ]:
        code, reply = run_worker(job)
        assert (code, reply["ok"]) == (2, False), job
        assert field in reply["error"], (field, reply)


def test_unexpected_failure_gives_traceback_and_exit_1(tmp_path: Path) -> None:
    job = {"kind": "verify", "spec": spec_for(1), "seeds_file": str(tmp_path / "missing.json")}
    code, reply = run_worker(job)
    assert code == 1
    assert reply["ok"] is False
    assert "FileNotFoundError" in reply["error"]
    assert "Traceback" in reply["traceback"]


def test_dispatch_table_is_explicit() -> None:
    assert set(jobs.JOBS) == {"sieve", "verify", "score", "window_batch"}
