"""Step 1: the window optimizer. Optuna searches window size and match threshold; each trial sieves a
fresh block of `max_seeds` seeds (the study's trial number picks the block, so later trials, retries
and later runs continue the sweep instead of re-testing seeds) at every offset and skip of the
envelope, forward window first, the reverse window only for forward survivors (else: pruned).
The objective is how far the bidirectional survivors exceed what chance predicts (log10 ratio), so a
loose window that lets random seeds through earns nothing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from loguru import logger
from optuna.trial import FrozenTrial, Trial
from pydantic import Field, model_validator

from cluster.files import write_json_atomic
from pipeline.outputs import write_output
from pipeline.prng.data import History
from pipeline.prng.windows import block_tasks, expected_bidirectional, merge_survivors, offsets, sieve_payloads
from pipeline.prng.workload import PrngWorkload
from pipeline.step import Step, StepContext, StepParams, StepResult
from pipeline.steps.common import HOLDOUT_FILE, TRAIN_FILE, TRIAL_SURVIVORS, WINDOW_CONFIG, prng
from pipeline.studies import PRUNED, TrialCounts, best_completed, open_study, run_trials, study_name, warm_start

SPACE_VERSION = 1
TRIALS_PER_JOB = 4
MAX_SCORE = 12.0


class WindowParams(StepParams):
    trials: Annotated[int, Field(ge=1, le=10_000)] = 50
    max_seeds: Annotated[int, Field(ge=1, le=1 << 32)] = 100_000
    window_min: Annotated[int, Field(ge=2, le=64)] = 6
    window_max: Annotated[int, Field(ge=2, le=64)] = 12
    threshold_min: Annotated[float, Field(gt=0, le=1)] = 0.6
    threshold_max: Annotated[float, Field(gt=0, le=1)] = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> WindowParams:
        if self.window_min > self.window_max:
            raise ValueError(f"window_min {self.window_min} is above window_max {self.window_max}")
        if self.threshold_min > self.threshold_max:
            raise ValueError(f"threshold_min {self.threshold_min} is above threshold_max {self.threshold_max}")
        return self


def chance_score(observed: int, expected: float) -> float:
    """log10(observed / expected): 0 at chance level, large when survivors are unlikely by chance."""
    if observed <= 0:
        return 0.0
    return min(MAX_SCORE, max(0.0, math.log10(observed / max(expected, 10.0**-MAX_SCORE))))


def write_split(out: Path, history: History, n_train: int) -> None:
    """The train and holdout halves as plain history files: the ramdisk copies later steps' jobs read."""
    rows = list(zip(history.dates, history.sessions, history.draws, strict=True))
    for name, part in ((TRAIN_FILE, rows[:n_train]), (HOLDOUT_FILE, rows[n_train:])):
        write_json_atomic(out / name, [{"date": d, "session": s, "draw": x} for d, s, x in part])


class WindowSweep:
    """One run of the step's trials: what each trial sieves, how its result is scored, what was found.

    Optuna asks for trials in batches (one cluster round each); `suggest` gives a trial its window and
    its seed block, `evaluate` runs a batch and turns each trial's survivors into its objective value."""

    def __init__(self, ctx: StepContext[WindowParams], work: PrngWorkload) -> None:
        self.ctx = ctx
        self.p = ctx.params
        self.work = work
        self.found: dict[int, dict[str, Any]] = {}  # seed -> first row that found it
        self.per_trial: list[dict[str, Any]] = []
        self.seeds_tested = 0
        self.expected = 0.0

    def suggest(self, trial: Trial) -> dict[str, Any]:
        p = self.p
        lo, hi = self.work.data.seed_range
        window = trial.suggest_int("window_size", p.window_min, p.window_max)
        threshold = trial.suggest_float("threshold", p.threshold_min, p.threshold_max, step=0.05)
        start = lo + (trial.number * p.max_seeds) % (hi - lo)
        end = min(start + p.max_seeds, hi)
        trial.set_user_attr("seed_block", [start, end])
        return {"window_size": window, "threshold": round(threshold, 4), "start": start, "end": end}

    def evaluate(self, batch: Sequence[tuple[Trial, dict[str, Any]]]) -> list[float | str | None]:
        data, train = self.work.data, self.work.train
        tasks = [
            task
            for trial, cfg in batch
            for task in block_tasks(
                data, train, cfg["window_size"], cfg["threshold"], cfg["start"], cfg["end"], tag=trial.number
            )
        ]
        results = self.ctx.run_jobs(sieve_payloads(tasks, TRIALS_PER_JOB * len(offsets(data))), label="trials")
        merged = merge_survivors(results)
        return [self.record(trial, cfg, merged.get(trial.number)) for trial, cfg in batch]

    def record(self, trial: Trial, cfg: dict[str, Any], got: dict[str, Any] | None) -> float | str:
        """Keep what one trial found and return its objective (PRUNED when not one seed passed forward)."""
        data = self.work.data
        got = got or {"forward": 0, "survivors": {}}
        rows = list(got["survivors"].values())
        seeds = cfg["end"] - cfg["start"]
        expected = expected_bidirectional(data, seeds, cfg["window_size"], cfg["threshold"])
        self.seeds_tested += seeds * len(offsets(data))
        self.expected += expected
        trial.set_user_attr("survivors", len(rows))
        trial.set_user_attr("expected_chance", expected)
        survivors = [[r["seed"], r["skip"], r["offset"], r["forward_matches"], r["reverse_matches"]] for r in rows]
        self.per_trial.append(
            {
                "trial": trial.number,
                **cfg,
                "forward": got["forward"],
                "survivors": survivors,
                "expected_chance": expected,
            }
        )
        for row in rows:
            self.found.setdefault(row["seed"], {**row, "trial": trial.number, **cfg})
        if got["forward"] == 0:
            return PRUNED
        return chance_score(len(rows), expected)


def chosen_window(best: FrozenTrial | None, p: WindowParams) -> dict[str, Any]:
    """The study's best window so far; with no completed trial, the strictest window the params allow."""
    if best is None:
        return {"window_size": p.window_max, "threshold": p.threshold_max, "best_value": None, "best_trial": None}
    return {
        "window_size": best.params["window_size"],
        "threshold": best.params["threshold"],
        "best_value": best.value,
        "best_trial": best.number,
    }


class WindowOptimizer(Step[WindowParams]):
    number = 1.0
    name = "window_optimizer"
    Params = WindowParams
    outputs = (WINDOW_CONFIG, TRIAL_SURVIVORS)
    data_files = (TRAIN_FILE, HOLDOUT_FILE)

    def run(self, ctx: StepContext[WindowParams]) -> StepResult:
        p = ctx.params
        work = prng(ctx)
        out = ctx.output_dir
        write_split(out, work.history, len(work.train))
        study = open_study(ctx.state_dir, study_name(1, work.study_key(), SPACE_VERSION))
        earlier = warm_start(study)
        if earlier is not None:
            logger.info("step 1: study {} continues; first trial re-tries best #{}", study.study_name, earlier.number)
        sweep = WindowSweep(ctx, work)
        batch_size = max(1, TRIALS_PER_JOB * max(1, sum(n.slot_count for n in ctx.config.nodes)))
        counts = run_trials(study, p.trials, batch_size, sweep.suggest, sweep.evaluate)
        config = self._write_outputs(ctx, work, sweep, chosen_window(best_completed(study), p), study.study_name)
        return StepResult(
            self._metrics(sweep, counts, config), {name: out / name for name in (*self.outputs, *self.data_files)}
        )

    def _write_outputs(
        self, ctx: StepContext[WindowParams], work: PrngWorkload, sweep: WindowSweep, config: dict[str, Any], study: str
    ) -> dict[str, Any]:
        data = work.data
        hashes = ctx.input_hashes()
        config.update(
            generator=data.generator,
            modulus=data.modulus,
            offset_range=list(data.offset_range),
            skip_range=list(data.skip_range),
            study=study,
            survivors=sorted(sweep.found.values(), key=lambda r: r["seed"]),
        )
        write_output(ctx.output_dir / WINDOW_CONFIG, "window_config", config, hashes)
        write_output(ctx.step_dir / TRIAL_SURVIVORS, "trial_survivors", sweep.per_trial, hashes)
        write_output(ctx.output_dir / TRIAL_SURVIVORS, "trial_survivors", sweep.per_trial, hashes)
        return config

    @staticmethod
    def _metrics(sweep: WindowSweep, counts: TrialCounts, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "survivors": len(sweep.found),
            "expected_chance_survivors": sweep.expected,
            "completed_trials": counts.completed,
            "pruned_trials": counts.pruned,
            "failed_trials": counts.failed,
            "first_trial": counts.first_number,
            "seeds_tested": sweep.seeds_tested,
            "best_value": config["best_value"],
            "window_size": config["window_size"],
            "threshold": config["threshold"],
        }
