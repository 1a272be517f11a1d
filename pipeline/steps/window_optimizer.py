"""Step 1: the window optimizer. Optuna searches window size and match threshold; each trial sieves a
fresh block of `max_seeds` seeds (the study's trial number picks the block, so later trials, retries
and later runs continue the sweep instead of re-testing seeds) at every offset and skip of the
envelope, forward window first, the reverse window only for forward survivors (else: pruned).
The objective is how far the bidirectional survivors exceed what chance predicts (log10 ratio), so a
loose window that lets random seeds through earns nothing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any

from loguru import logger
from optuna.trial import Trial
from pydantic import Field, model_validator

from pipeline.context import StepContext
from pipeline.outputs import write_json_atomic, write_output
from pipeline.step import Step, StepParams, StepResult
from pipeline.steps.common import (
    HOLDOUT_FILE,
    TRAIN_FILE,
    TRIAL_SURVIVORS,
    WINDOW_CONFIG,
    expected_bidirectional,
    offsets,
    window_specs,
)
from pipeline.studies import PRUNED, best_completed, open_study, run_trials, study_name, warm_start

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


class WindowOptimizer(Step):
    number = 1.0
    name = "window_optimizer"
    Params = WindowParams
    outputs = (WINDOW_CONFIG, TRIAL_SURVIVORS, TRAIN_FILE, HOLDOUT_FILE)

    def run(self, ctx: StepContext) -> StepResult:
        p: WindowParams = ctx.params  # type: ignore[assignment]
        data = ctx.spec.data
        hashes = ctx.input_hashes()
        out = ctx.output_dir
        split_rows = list(zip(ctx.history.dates, ctx.history.sessions, ctx.history.draws, strict=True))
        n_train = len(ctx.train)
        for name, rows in ((TRAIN_FILE, split_rows[:n_train]), (HOLDOUT_FILE, split_rows[n_train:])):
            write_json_atomic(out / name, [{"date": d, "session": s, "draw": x} for d, s, x in rows])

        study = open_study(ctx.state_dir, study_name(1, ctx.history.fingerprint(), data.generator, SPACE_VERSION))
        earlier = warm_start(study)
        if earlier is not None:
            logger.info("step 1: study {} continues; first trial re-tries best #{}", study.study_name, earlier.number)
        lo, hi = data.seed_range
        span = hi - lo
        found: dict[int, dict[str, Any]] = {}
        per_trial: list[dict[str, Any]] = []
        totals = {"seeds": 0, "expected": 0.0}

        def suggest(trial: Trial) -> dict[str, Any]:
            window = trial.suggest_int("window_size", p.window_min, p.window_max)
            threshold = trial.suggest_float("threshold", p.threshold_min, p.threshold_max, step=0.05)
            start = lo + (trial.number * p.max_seeds) % span
            end = min(start + p.max_seeds, hi)
            trial.set_user_attr("seed_block", [start, end])
            return {"window_size": window, "threshold": round(threshold, 4), "start": start, "end": end}

        def evaluate(batch: Sequence[tuple[Trial, dict[str, Any]]]) -> list[float | str | None]:
            tasks = []
            for trial, cfg in batch:
                for offset in offsets(data):
                    fwd, rev = window_specs(data, ctx.train, cfg["window_size"], cfg["threshold"], offset)
                    tasks.append(
                        {
                            "forward": fwd,
                            "reverse": rev,
                            "start": cfg["start"],
                            "end": cfg["end"],
                            "tag": [trial.number, offset],
                        }
                    )
            per_job = TRIALS_PER_JOB * len(offsets(data))
            payloads = [
                {"kind": "window_batch", "tasks": tasks[i : i + per_job]} for i in range(0, len(tasks), per_job)
            ]
            results = ctx.run_jobs(payloads, label="trials")
            by_trial: dict[int, dict[str, Any]] = {t.number: {"forward": 0, "survivors": []} for t, _ in batch}
            for result in results:
                for task in result["tasks"]:
                    number, offset = task["tag"]
                    by_trial[number]["forward"] += task["forward_count"]
                    by_trial[number]["survivors"] += [[s, k, offset, fm, rm] for s, k, fm, rm in task["survivors"]]
            values: list[float | str | None] = []
            for trial, cfg in batch:
                got = by_trial[trial.number]
                seeds = cfg["end"] - cfg["start"]
                expected = expected_bidirectional(data, seeds, cfg["window_size"], cfg["threshold"])
                totals["seeds"] += seeds * len(offsets(data))
                totals["expected"] += expected
                survivors = got["survivors"]
                trial.set_user_attr("survivors", len(survivors))
                trial.set_user_attr("expected_chance", expected)
                per_trial.append(
                    {
                        "trial": trial.number,
                        **cfg,
                        "forward": got["forward"],
                        "survivors": survivors,
                        "expected_chance": expected,
                    }
                )
                for seed, skip, offset, fm, rm in survivors:
                    found.setdefault(
                        seed,
                        {
                            "seed": seed,
                            "skip": skip,
                            "offset": offset,
                            "forward_matches": fm,
                            "reverse_matches": rm,
                            "trial": trial.number,
                            **cfg,
                        },
                    )
                if got["forward"] == 0:
                    values.append(PRUNED)
                else:
                    values.append(chance_score(len(survivors), expected))
            return values

        batch_size = max(1, TRIALS_PER_JOB * max(1, sum(n.slot_count for n in ctx.config.nodes)))
        counts = run_trials(study, p.trials, batch_size, suggest, evaluate)
        best = best_completed(study)
        if best is not None:
            config = {
                "window_size": best.params["window_size"],
                "threshold": best.params["threshold"],
                "best_value": best.value,
                "best_trial": best.number,
            }
        else:
            config = {"window_size": p.window_max, "threshold": p.threshold_max, "best_value": None, "best_trial": None}
        config.update(
            generator=data.generator,
            modulus=data.modulus,
            offset_range=list(data.offset_range),
            skip_range=list(data.skip_range),
            study=study.study_name,
            survivors=sorted(found.values(), key=lambda r: r["seed"]),
        )
        write_output(out / WINDOW_CONFIG, "window_config", config, hashes)
        write_output(ctx.step_dir / TRIAL_SURVIVORS, "trial_survivors", per_trial, hashes)
        write_output(out / TRIAL_SURVIVORS, "trial_survivors", per_trial, hashes)
        metrics = {
            "survivors": len(found),
            "expected_chance_survivors": totals["expected"],
            "completed_trials": counts.completed,
            "pruned_trials": counts.pruned,
            "failed_trials": counts.failed,
            "first_trial": counts.first_number,
            "seeds_tested": totals["seeds"],
            "best_value": config["best_value"],
            "window_size": config["window_size"],
            "threshold": config["threshold"],
        }
        return StepResult(metrics, {name: out / name for name in self.outputs})
