"""Persistent Optuna studies: one sqlite storage, studies named by what they search, warm starts.

A study's name comes from the step, the workload's study key (what data set is searched, and how) and
the search-space version, so a new run of the same search continues the same study (trial numbers go
on, optuna-dashboard shows the whole history) while a different data set or search space starts a
fresh one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, Trial, TrialState

optuna.logging.set_verbosity(optuna.logging.WARNING)

PRUNED = "pruned"


def storage_url(state_dir: Path) -> str:
    return f"sqlite:///{(Path(state_dir) / 'optuna.db').resolve()}"


def study_name(step: float, key: str, space_version: int) -> str:
    return f"watcher-step{step:g}-{key}-v{space_version}"


def _fast_commits(dbapi_connection: Any, _record: Any) -> None:
    """WAL with synchronous=NORMAL: a commit no longer waits for an fsync (Optuna commits every suggest and user
    attribute: about 3000 commits, 30 s of a 100 s default run on a busy disk). A crash may lose the last
    trials' bookkeeping, never the file; a resumed run marks such trials FAIL and re-sieves their blocks, and
    the chunk results themselves are in the run store."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_study(state_dir: Path, name: str, sampler_seed: int = 0) -> optuna.Study:
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(storage_url(state_dir), engine_kwargs={"connect_args": {"timeout": 30}})
    sqlalchemy.event.listen(storage.engine, "connect", _fast_commits)
    storage.engine.dispose()  # connections made while the storage set itself up get the pragmas too
    existing = len(optuna.load_study(study_name=name, storage=storage).trials) if _exists(storage, name) else 0
    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=sampler_seed + existing, n_startup_trials=8),
    )


def _exists(storage: optuna.storages.BaseStorage, name: str) -> bool:
    return any(s.study_name == name for s in storage.get_all_studies())


def fail_abandoned(study: optuna.Study) -> list[int]:
    """Trials left RUNNING by a process that died (the caller holds the state directory's lock, so no live
    process owns them) are told FAIL; returns their numbers. Without this they would stay RUNNING forever."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    return [t.number for t in stale]


def trials_of(study: optuna.Study, run_id: int, attempt: int, states: tuple[TrialState, ...]) -> list[FrozenTrial]:
    """Trials that a given run's step attempt finished (tagged with `run_id` and `attempt` user attrs)."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=states)
        if t.user_attrs.get("run_id") == run_id and t.user_attrs.get("attempt") == attempt
    ]


def best_completed(study: optuna.Study) -> FrozenTrial | None:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def warm_start(study: optuna.Study) -> FrozenTrial | None:
    """Queue the best earlier trial's parameters as this run's first trial (only a trial that scored above
    zero: re-trying a window that found nothing teaches nothing)."""
    best = best_completed(study)
    if best is not None and best.value is not None and best.value > 0:
        study.enqueue_trial(best.params, user_attrs={"warm_start_from": best.number})
        return best
    return None


@dataclass
class TrialCounts:
    completed: int = 0
    pruned: int = 0
    failed: int = 0
    first_number: int | None = None


def run_trials(
    study: optuna.Study,
    n_trials: int,
    batch_size: int,
    suggest: Callable[[Trial], dict[str, Any]],
    evaluate: Callable[[Sequence[tuple[Trial, dict[str, Any]]]], Sequence[float | str | None]],
) -> TrialCounts:
    """Ask exactly `n_trials` trials, in batches evaluated together (one cluster round per batch);
    each is told COMPLETE (a value), PRUNED ("pruned") or FAIL (None). Never more than n_trials."""
    counts = TrialCounts()
    asked = 0
    while asked < n_trials:
        batch = []
        for _ in range(min(batch_size, n_trials - asked)):
            trial = study.ask()
            if counts.first_number is None:
                counts.first_number = trial.number
            batch.append((trial, suggest(trial)))
        asked += len(batch)
        try:
            values = evaluate(batch)
        except BaseException:
            for trial, _ in batch:
                study.tell(trial, state=TrialState.FAIL)
            raise
        for (trial, _), value in zip(batch, values, strict=True):
            if value == PRUNED:
                study.tell(trial, state=TrialState.PRUNED)
                counts.pruned += 1
            elif value is None or (isinstance(value, float) and math.isnan(value)):
                study.tell(trial, state=TrialState.FAIL)
                counts.failed += 1
            else:
                study.tell(trial, float(value))
                counts.completed += 1
    return counts
