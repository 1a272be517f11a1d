"""A step's rounds of jobs share slot workers (pipeline/step.py): every `Step.run` runs inside
`ctx.slot_workers()`, so a second `ctx.run_jobs` is answered by the workers the first one started, and none is
left once the step returns or raises."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import pytest
from sched_helpers import WORKER_ARGV, local_config, local_executors

from cluster.config import ClusterConfig
from pipeline.step import Step, StepContext, StepParams, StepResult
from pipeline.store import RunStore
from pipeline.workload import Workload


class StandIn(Workload):
    """The scheduler tests' stand-in worker as a workload (no data, no checks beyond ok)."""

    jobs_module = "unused"

    @classmethod
    def parse_data(cls, data: Mapping[str, Any], source: str) -> Any:
        return data

    @classmethod
    def load(cls, data: Mapping[str, Any], *, source: str) -> Self:
        return cls()

    def input_hashes(self) -> dict[str, str]:
        return {}

    def study_key(self) -> str:
        return "stand-in"

    def worker_argv(self) -> tuple[str, ...]:
        return WORKER_ARGV


class Rounds(Step[StepParams]):
    """Runs jobs in rounds, like step 1's Optuna batches; `crash` raises after them."""

    number = 9.0
    name = "rounds"
    crash = False
    seen: ClassVar[list[Any]] = []  # the pool each round ran in

    def run(self, ctx: StepContext[StepParams]) -> StepResult:
        answered = []
        for round_ in range(3):
            results = ctx.run_jobs([{"value": i, "round": round_} for i in range(4)], label=f"round {round_}")
            answered.append({r["pid"] for r in results})
            self.seen.append(ctx._pool)
        if self.crash:
            raise RuntimeError("the step crashed after its rounds")
        return StepResult({"pids": answered})


class Inherits(Rounds):
    """A subclass calling super().run: one pool for the whole step, not one per level."""

    def run(self, ctx: StepContext[StepParams]) -> StepResult:
        outer = ctx._pool
        result = super().run(ctx)
        assert ctx._pool is outer is not None
        return result


def _context(tmp_path: Path, store: RunStore, config: ClusterConfig, attempt: int = 1) -> StepContext[StepParams]:
    return StepContext(
        run_id=store.create_run(1), number=9.0, attempt=attempt, params=StepParams(), spec=None,  # type: ignore[arg-type]
        config=config, store=store, executors=local_executors(config), state_dir=tmp_path, workload=StandIn(),
        progress=False,
    )  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _none_alive(pids: set[int], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not any(_alive(p) for p in pids)


@pytest.mark.parametrize("step", [Rounds, Inherits])
def test_rounds_of_one_step_share_workers_and_none_outlives_it(
    tmp_path: Path, step: type[Rounds], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = local_config(tmp_path, {"a": 2}, run_cleanup=False)
    monkeypatch.setattr(Rounds, "seen", [])
    with RunStore(tmp_path / "w.db") as store:
        ctx = _context(tmp_path, store, config)
        rounds = step().run(ctx).metrics["pids"]
    assert len(set(map(id, Rounds.seen))) == 1 and Rounds.seen[0] is not None, "not one pool for the step"
    assert ctx._pool is None and Rounds.seen[0].closed
    pids = set().union(*rounds)
    assert len(pids) == 2, f"rounds were answered by {len(pids)} processes over 2 slots"
    assert _none_alive(pids)


def test_a_crashing_step_leaves_no_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = local_config(tmp_path, {"a": 2}, run_cleanup=False)
    monkeypatch.setattr(Rounds, "seen", [])
    monkeypatch.setattr(Rounds, "crash", True)
    with RunStore(tmp_path / "w.db") as store:
        ctx = _context(tmp_path, store, config, attempt=2)
        with pytest.raises(RuntimeError, match="crashed"):
            Rounds().run(ctx)
        pids = {r["pid"] for r in store.chunk_results(ctx.run_id, 9.0).values()}
        assert {r["step_attempt"] for r in store.chunk_rows(ctx.run_id, 9.0)} == {2}, "the step's attempt is kept"
    pool = Rounds.seen[0]
    assert pool.closed and pool.runners == {} and ctx._pool is None
    assert pool.starts == 2 and len(pids) == 2 and _none_alive(pids)
