"""Step 2.5: the scorer meta-optimizer. Optuna tunes how survivors are scored (skip tolerance, recency
weighting, partial credit) on the train history, evaluated by "score" jobs on the nodes against their
ramdisk copy of it. The objective is the best survivor's score above what chance gives any seed, less
half the runner-up's: a scorer must separate, not flatter. Variable-skip survivors are scored with their
strategy's skips (skip_tolerance then plays no part) against the chance a window of their tolerance gives; a survivor
that passed the window at several (offset, strategy) pairs is scored at the one its training draws choose
(pipeline.steps.common.chosen_rows)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from optuna.trial import Trial, TrialState
from pydantic import Field

from pipeline.outputs import read_output, write_output
from pipeline.prng.scoring import SCORER_DEFAULTS, chance_baseline, variable_chance_baseline
from pipeline.step import Step, StepContext, StepParams, StepResult
from pipeline.steps.common import (
    BIDIRECTIONAL,
    SCORER_CONFIG,
    TRAIN_FILE,
    chosen_rows,
    prng,
    score_payloads,
    score_rows,
    study_key,
)
from pipeline.studies import (
    best_completed,
    fail_abandoned,
    open_study,
    run_trials,
    study_name,
    trials_of,
    warm_start,
)

SPACE_VERSION = 1


class ScorerParams(StepParams):
    trials: Annotated[int, Field(ge=1, le=1000)] = 12


def separation(scores: Sequence[float], params: dict[str, Any], modulus: int, tolerance: int | None = None) -> float:
    """tolerance: variable-skip scores, whose chance is that of the widest strategy window."""
    ranked = sorted(scores, reverse=True)
    runner_up = ranked[1] if len(ranked) > 1 else 0.0
    chance = chance_baseline(params, modulus) if tolerance is None else variable_chance_baseline(params, tolerance,
                                                                                                  modulus)  # fmt: skip
    return ranked[0] - chance - 0.5 * runner_up


class ScorerMeta(Step[ScorerParams]):
    number = 2.5
    name = "scorer_meta"
    Params = ScorerParams
    inputs = (BIDIRECTIONAL,)
    outputs = (SCORER_CONFIG,)
    ramdisk_files = (TRAIN_FILE,)
    advisor_params = ("trials",)

    def run(self, ctx: StepContext[ScorerParams]) -> StepResult:
        p = ctx.params
        hashes = ctx.input_hashes()
        sieve = read_output(ctx.output_dir / BIDIRECTIONAL, "bidirectional_survivors", hashes)
        survivors = sieve["survivors"]
        work = prng(ctx, sieve.get("session"))
        data = work.data
        tolerance = max(t for _m, t in data.strategies) if data.variable else None
        if not survivors:
            write_output(
                ctx.output_dir / SCORER_CONFIG, "scorer_config", {"params": SCORER_DEFAULTS, "best_value": None}, hashes
            )
            return StepResult({"survivors": 0, "completed_trials": 0, "note": "no survivor to score"})
        triples = score_rows(work, chosen_rows(work, survivors))
        study = open_study(ctx.state_dir, study_name(2.5, study_key(work), SPACE_VERSION))
        abandoned = fail_abandoned(study)
        done = trials_of(study, ctx.run_id, ctx.attempt, (TrialState.COMPLETE,))
        todo = max(0, p.trials - len(done))
        if todo:
            warm_start(study)

        def suggest(trial: Trial) -> dict[str, Any]:
            trial.set_user_attr("run_id", ctx.run_id)
            trial.set_user_attr("attempt", ctx.attempt)
            return {
                "skip_tolerance": trial.suggest_int("skip_tolerance", 0, 2),
                "recency_weight": trial.suggest_float("recency_weight", 0.0, 1.0),
                "partial_weight": trial.suggest_float("partial_weight", 0.0, 0.5),
            }

        def evaluate(batch: Sequence[tuple[Trial, dict[str, Any]]]) -> list[float | str | None]:
            payloads, _ = score_payloads(ctx, triples, TRAIN_FILE, 0, [cfg for _, cfg in batch])
            results = ctx.run_jobs(payloads, label="scorer trials")
            values: list[float | str | None] = []
            for j, (_, cfg) in enumerate(batch):
                scores = [v for r in results for v in r["scores"][j]]
                values.append(separation(scores, cfg, data.modulus, tolerance))
            return values

        counts = run_trials(study, todo, max(1, todo), suggest, evaluate)
        best = best_completed(study)
        params = dict(best.params) if best else dict(SCORER_DEFAULTS)
        out = {"params": params, "best_value": best.value if best else None, "study": study.study_name}
        path = write_output(ctx.output_dir / SCORER_CONFIG, "scorer_config", out, hashes)
        metrics = {
            "survivors": len(survivors),
            "completed_trials": counts.completed,
            "pruned_trials": counts.pruned,
            "failed_trials": counts.failed,
            "first_trial": counts.first_number,
            "best_value": out["best_value"],
            "resumed_trials": len(done),
            "abandoned_trials": len(abandoned),
        }
        return StepResult(metrics, {SCORER_CONFIG: path})
