"""Step 1: the window optimizer, a sampled sweep. Optuna searches window size and match threshold; each
trial sieves the next uncovered block of `max_seeds` seeds of the range (pipeline/prng/sweep.py: the
study remembers what its trials covered, so later trials, retries and later runs continue the sweep)
at every offset and skip of the envelope, forward window first, the reverse window for the forward
survivors. The objective is how far the bidirectional survivors exceed what chance predicts (log10
ratio, 0 for a trial that found nothing), so a loose window that lets random seeds through earns nothing.

A sample proves nothing by finding nothing: the coverage (fraction of the range this study has sieved
in its current pass) is recorded with every trial and attempt, and when no significant survivor was
found the window handed to step 2 is the one chosen before seeing the data (prng.windows.prior_window).

Sessions: the history's draws are those of data.session. With `search_session: true` the session is searched
as the operators' step 1 does: an Optuna categorical over "both" and every session the history uses, recorded
with each trial (its param `session`); the best significant trial's session is what steps 2-3 then use
(data.session when nothing significant was found). With data.skip_mode: variable every trial sieves its one
variable-skip window under every strategy (prng.windows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import optuna
from loguru import logger
from optuna.trial import FrozenTrial, Trial, TrialState
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from cluster.files import write_json_atomic
from pipeline.outputs import write_output
from pipeline.prng.chance import significant
from pipeline.prng.data import History, split
from pipeline.prng.sweep import Sweep, merge
from pipeline.prng.windows import (
    block_tasks,
    expected_bidirectional,
    merge_survivors,
    offsets,
    prior_window,
    sieve_payloads,
    tasks_per_block,
)
from pipeline.prng.workload import PrngWorkload
from pipeline.step import Step, StepContext, StepParams, StepResult
from pipeline.steps.common import (
    HOLDOUT_FILE,
    TRAIN_FILE,
    TRIAL_SURVIVORS,
    WINDOW_CONFIG,
    prng,
    session_history,
    study_key,
)
from pipeline.studies import (
    TrialCounts,
    best_completed,
    fail_abandoned,
    open_study,
    run_trials,
    study_name,
    trials_of,
    warm_start,
)

SPACE_VERSION = 1
# Trials per job, and per slot in one Optuna batch. Measured with slot workers kept across batches (`watcher
# run --from-step 1` on the default pipeline, 2 local CPU slots, a shared 2-core machine, 10 runs each):
# 4 -> median 46.9 s, 2 -> 56.5 s, 1 -> 85.8 s (4 reps). A batch holds one job per slot whatever this is, so
# finer jobs only add batches (Optuna ask/tell, one scheduler call each) without balancing the slots better.
TRIALS_PER_JOB = 4
MAX_SCORE = 12.0


class WindowParams(StepParams):
    trials: Annotated[int, Field(ge=1, le=10_000)] = 50
    max_seeds: Annotated[int, Field(ge=1, le=1 << 32)] = 100_000
    window_min: Annotated[int, Field(ge=2, le=64)] = 6
    window_max: Annotated[int, Field(ge=2, le=64)] = 12
    threshold_min: Annotated[float, Field(gt=0, le=1)] = 0.6
    threshold_max: Annotated[float, Field(gt=0, le=1)] = 1.0
    search_session: bool = False  # an Optuna categorical over "both" and the history's sessions

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """search_session is left out while off, so the params an attempt records are what they were before it."""
        out = handler(self)
        if not self.search_session:
            out.pop("search_session", None)
        return out

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
    """One attempt's trials: what each trial sieves, how its result is scored, what was found.

    Optuna asks for trials in batches (one cluster round each); `suggest` gives a trial its window and
    its seed block, `evaluate` runs a batch and turns each trial's survivors into its objective value."""

    def __init__(
        self, ctx: StepContext[WindowParams], work: PrngWorkload, sweep: Sweep, max_seeds: int, finished: Sweep
    ) -> None:
        self.ctx = ctx
        self.p = ctx.params
        self.work = work
        self.sweep = sweep  # hands out blocks (a block counts as taken at once)
        self.finished = finished  # what trials that ran to the end covered: the coverage shown
        self.max_seeds = max_seeds
        self.found: dict[int, dict[str, Any]] = {}  # seed -> first row that found it
        self.per_trial: list[dict[str, Any]] = []
        self.seeds_tested = 0
        self.expected = 0.0
        self.told, self.todo = 0, 0  # trials of this attempt evaluated so far, and to run
        # the train draws per searchable session: the configured one, or "both" and every session present
        self.trains: dict[str, list[int]] = {work.history.session: work.train}
        if self.p.search_session:
            whole = session_history(work, "both")
            for name in ("both", *whole.session_names()):
                self.trains[name] = split(session_history(work, name), work.data.holdout_fraction)[0]
        self.sessions = list(self.trains)

    def train(self, cfg: Mapping[str, Any]) -> list[int]:
        return self.trains[cfg.get("session", self.work.history.session)]

    def suggest(self, trial: Trial) -> dict[str, Any]:
        p = self.p
        window = trial.suggest_int("window_size", p.window_min, p.window_max)
        threshold = trial.suggest_float("threshold", p.threshold_min, p.threshold_max, step=0.05)
        chosen = {"session": trial.suggest_categorical("session", self.sessions)} if self.p.search_session else {}
        sweep_pass, (start, end) = self.sweep.take(self.max_seeds)
        trial.set_user_attr("seed_block", [start, end])
        trial.set_user_attr("sweep_pass", sweep_pass)
        trial.set_user_attr("run_id", self.ctx.run_id)
        trial.set_user_attr("attempt", self.ctx.attempt)
        if chosen:
            trial.set_user_attr("session", chosen["session"])
        return {"window_size": window, "threshold": round(threshold, 4), **chosen, "start": start, "end": end}

    def evaluate(self, batch: Sequence[tuple[Trial, dict[str, Any]]]) -> list[float | str | None]:
        data = self.work.data
        tasks = [
            task
            for trial, cfg in batch
            for task in block_tasks(
                data, self.train(cfg), cfg["window_size"], cfg["threshold"], cfg["start"], cfg["end"], tag=trial.number
            )
        ]
        results = self.ctx.run_jobs(sieve_payloads(tasks, TRIALS_PER_JOB * tasks_per_block(data)), label="trials")
        merged = merge_survivors(results)
        values = [self.record(trial, cfg, merged.get(trial.number)) for trial, cfg in batch]
        self.told += len(batch)
        self.ctx.progress_note(f"trials {self.told}/{self.todo}")
        return values

    def record(self, trial: Trial, cfg: dict[str, Any], got: dict[str, Any] | None) -> float:
        """Keep what one trial found and return its objective (0.0 for a trial that found nothing)."""
        got = got or {"forward": 0, "survivors": {}}
        count, expected = self._account(trial.number, cfg, got)
        trial.set_user_attr("survivors", count)
        trial.set_user_attr("forward_survivors", got["forward"])
        trial.set_user_attr("expected_chance", expected)
        sweep_pass = int(trial.user_attrs.get("sweep_pass", self.finished.pass_number))
        if sweep_pass > self.finished.pass_number:
            self.finished = Sweep(self.finished.lo, self.finished.hi, sweep_pass, [])
        self.finished.covered = merge([*self.finished.covered, (cfg["start"], cfg["end"])])
        trial.set_user_attr("coverage", round(self.finished.coverage, 6))
        return chance_score(count, expected)

    def restore(self, done: Sequence[FrozenTrial], stored: Mapping[str, dict[str, Any]]) -> None:
        """Account for the trials a killed run of this attempt finished, from their stored chunk results."""
        merged = merge_survivors(stored.values())
        for trial in sorted(done, key=lambda t: t.number):
            start, end = trial.user_attrs["seed_block"]
            cfg = {"window_size": trial.params["window_size"], "threshold": round(trial.params["threshold"], 4),
                   "start": start, "end": end}  # fmt: skip
            if "session" in trial.params:
                cfg["session"] = trial.params["session"]
            self._account(trial.number, cfg, merged.get(trial.number) or {"forward": 0, "survivors": {}})

    def _account(self, number: int, cfg: dict[str, Any], got: dict[str, Any]) -> tuple[int, float]:
        data = self.work.data
        rows = list(got["survivors"].values())
        seeds = cfg["end"] - cfg["start"]
        expected = expected_bidirectional(data, seeds, cfg["window_size"], cfg["threshold"])
        self.seeds_tested += seeds * len(offsets(data))
        self.expected += expected
        # [seed, skip (variable mode: strategy index), offset, forward matches, reverse matches]
        survivors = [[r["seed"], r.get("skip", r.get("strategy")), r["offset"], r["forward_matches"],
                      r["reverse_matches"]] for r in rows]  # fmt: skip
        self.per_trial.append(
            {"trial": number, **cfg, "forward": got["forward"], "survivors": survivors, "expected_chance": expected}
        )
        for row in rows:
            self.found.setdefault(row["seed"], {**row, "trial": number, **cfg})
        return len(rows), expected


def study_sweep(study: optuna.Study, lo: int, hi: int, *, advance: bool = True) -> Sweep:
    """The study's sweep as its finished trials left it (failed and abandoned trials cover nothing);
    advance=False keeps a pass just completed (coverage 1.0) instead of opening the next."""
    blocks = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        block, sweep_pass = trial.user_attrs.get("seed_block"), trial.user_attrs.get("sweep_pass", 0)
        if isinstance(block, list) and len(block) == 2:
            blocks.append((int(sweep_pass), (int(block[0]), int(block[1]))))
    return Sweep.resume(lo, hi, blocks, advance=advance)


def chosen_window(
    best: FrozenTrial | None, significant_found: bool, prior: tuple[int, float], p: WindowParams
) -> dict[str, Any]:
    """The window step 2 sieves the whole range with: the best trial's when step 1 found significant
    survivors, else the window chosen before any data was seen. A searched session comes with the window."""
    if significant_found and best is not None:
        session = {"session": best.params["session"]} if "session" in best.params else {}
        return {
            "window_size": best.params["window_size"],
            "threshold": best.params["threshold"],
            **session,
            "best_value": best.value,
            "best_trial": best.number,
            "window_source": f"best trial #{best.number}",
        }
    window, expected = prior
    return {
        "window_size": window,
        "threshold": 1.0,
        "best_value": best.value if best else None,
        "best_trial": None,
        "window_source": f"prior: smallest window at threshold 1.0 with chance expectation {expected:.2g} over the "
        "whole range (no significant survivor in the sample)",
    }


class WindowOptimizer(Step[WindowParams]):
    number = 1.0
    name = "window_optimizer"
    Params = WindowParams
    outputs = (WINDOW_CONFIG, TRIAL_SURVIVORS)
    data_files = (TRAIN_FILE, HOLDOUT_FILE)
    advisor_params = ("trials", "max_seeds", "window_min", "window_max", "threshold_min", "threshold_max")
    search = "sampled"

    def run(self, ctx: StepContext[WindowParams]) -> StepResult:
        p = ctx.params
        work = prng(ctx)
        out = ctx.output_dir
        write_split(out, work.history, len(work.train))
        key = study_key(work, "sessions") if p.search_session else study_key(work)
        if p.search_session:  # the study belongs to the whole history, whatever data.session says
            key = key.replace(work.history.fingerprint(), session_history(work, "both").fingerprint())
        study = open_study(ctx.state_dir, study_name(1, key, SPACE_VERSION))
        abandoned = fail_abandoned(study)
        if abandoned:
            logger.warning("step 1: trials {} left running by a killed run: marked FAIL, blocks re-queued", abandoned)
        lo, hi = work.data.seed_range
        sweep = study_sweep(study, lo, hi)
        done = trials_of(study, ctx.run_id, ctx.attempt, (TrialState.COMPLETE,))
        todo = max(0, p.trials - len(done))
        max_seeds = sweep.cap(todo, p.max_seeds) if todo else p.max_seeds
        caps = []
        if max_seeds != p.max_seeds:
            caps.append(
                {
                    "field": "max_seeds",
                    "asked": p.max_seeds,
                    "applied": max_seeds,
                    "reason": f"{todo} trials x {p.max_seeds} seeds exceed the {sweep.remaining} seeds left in sweep "
                    f"pass {sweep.pass_number}: cut so the trials cover the rest of the range once",
                }
            )
            logger.warning("step 1: {}", caps[-1]["reason"])
        earlier = warm_start(study) if todo else None
        if earlier is not None:
            logger.info("step 1: study {} continues; first trial re-tries best #{}", study.study_name, earlier.number)
        trials = WindowSweep(ctx, work, sweep, max_seeds, study_sweep(study, lo, hi))
        if done:
            trials.restore(done, ctx.store.chunk_results(ctx.run_id, ctx.number))
            logger.info("step 1: resuming attempt {}: {} trial(s) already done, {} to go", ctx.attempt, len(done), todo)
        batch_size = max(1, TRIALS_PER_JOB * max(1, sum(n.slot_count for n in ctx.config.nodes)))
        trials.todo = todo
        per_seed = tasks_per_block(work.data)  # the progress field counts every (seed, offset[, strategy])
        ctx.expect_work(todo * max_seeds * per_seed, per_shown_unit=per_seed)
        ctx.progress_note(f"trials 0/{todo}")
        counts = run_trials(study, todo, batch_size, trials.suggest, trials.evaluate)
        finished = study_sweep(study, lo, hi, advance=False)
        study.set_user_attr("coverage", {"pass": finished.pass_number, "fraction": round(finished.coverage, 6)})
        significant_found = significant(len(trials.found), trials.expected)
        prior = prior_window(work.data, len(work.train))
        config = chosen_window(best_completed(study), significant_found, prior, p)
        if config.get("session", work.history.session) != work.history.session:
            work = prng(ctx, config["session"])  # steps 2-3 use the chosen session's draws and split
            write_split(out, work.history, len(work.train))
        config["session"] = work.history.session
        config = self._write_outputs(ctx, work, trials, config, study.study_name)
        metrics = self._metrics(trials, counts, config)
        metrics.update(
            coverage=round(finished.coverage, 6),
            sweep_pass=finished.pass_number,
            significant=significant_found,
            resumed_trials=len(done),
            abandoned_trials=len(abandoned),
            seeds_per_trial=max_seeds,
        )
        applied = {**p.model_dump(), "max_seeds": max_seeds} if caps else None
        outputs = {name: out / name for name in (*self.outputs, *self.data_files)}
        return StepResult(metrics, outputs, applied=applied, caps=caps)

    def _write_outputs(
        self, ctx: StepContext[WindowParams], work: PrngWorkload, sweep: WindowSweep, config: dict[str, Any], study: str
    ) -> dict[str, Any]:
        data = work.data
        hashes = ctx.input_hashes()
        mode = {"skip_mode": "variable", "strategies": [list(s) for s in data.strategies]} if data.variable else {}
        config.update(
            **mode,
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
