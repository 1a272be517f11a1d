"""The scheduler with the real `python -m pipeline.worker` on local CPU slots: the embedded default's path."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.config import parse_config
from cluster.errors import SchedulingError
from cluster.scheduler import run_chunks
from cluster.scheduler.types import ChunkSpec
from cluster.transport.local import LocalExecutor
from pipeline.prng.generators.reference import generate
from pipeline.store import RunStore

REPO = Path(__file__).resolve().parents[2]


WORKER = ("-m", "pipeline.worker", "pipeline.prng.jobs")


def _spec(seed: int) -> dict:
    stream = generate("mt19937", seed, 12)
    return {"generator": "mt19937", "residues": [v % 1000 for v in stream[2:10]], "threshold": 1.0, "offset": 2}


@pytest.mark.slow
def test_sieve_chunks_on_local_cpu_slots_find_the_planted_seed(tmp_path: Path) -> None:
    config = parse_config(
        {"nodes": [{"name": "local", "transport": "local", "gpu_kind": "cpu", "gpu_count": 2, "workdir": str(REPO)}]}
    )
    executors = {"local": LocalExecutor(config.nodes[0])}
    chunks = [
        ChunkSpec.of({"kind": "sieve", "spec": _spec(5000), "start": lo, "end": lo + 5000})
        for lo in range(0, 20000, 5000)
    ]

    def validate(result: dict) -> None:
        if result["seeds_tested"] != 5000:
            raise ValueError(f"seeds_tested {result['seeds_tested']} != 5000")

    with RunStore(tmp_path / "w.db") as store:
        run = store.create_run(1)
        report = run_chunks(
            config, chunks, sink=store.chunk_sink(run, 1), executors=executors, validate=validate, progress=False,
            worker_argv=WORKER, probe=None, cleanup=None,
        )  # fmt: skip
        found = sorted(tuple(s) for r in report.results.values() for s in r["survivors"])
        assert found == [(5000, 0, 8)]
        assert store.chunk_counts(run, 1)["done"] == 4
        bad = [ChunkSpec.of({"kind": "sieve", "spec": {"generator": "nope"}, "start": 0, "end": 10})]
        with pytest.raises(SchedulingError, match="bad job spec"):
            run_chunks(config, bad, sink=store.chunk_sink(run, 2), executors=executors, progress=False, probe=None,
                       worker_argv=WORKER, cleanup=None)  # fmt: skip
        (failure,) = store.chunk_failures(run, 2)
        assert failure["kind"] == "bad_spec" and failure["exit_code"] == 2
