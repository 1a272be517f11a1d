"""The deterministic advisor: budgets from experience, no network.

Experience behind the rules: 100 trials x 100K seeds found 98,172 survivors where 50 x 10M found 0;
more trials beat more seeds. The rules, exactly:
- default 50 trials, 100K seeds;
- a sampled search (step 1) with 0 survivors after >= 30 trials that ran (completed, pruned or failed)
  -> next attempt: 100 trials, seeds back to 100K;
- 0 survivors after fewer than 30 trials -> next attempt: trials raised to 50, seeds unchanged;
- 0 < survivors < 50K and none of them significant -> the next run's seeds = this run's x2, at most
  10M (a significant result keeps its budget);
- survivors flooding far above chance -> next attempt with a tighter window.
An exhaustive search (step 2) that finds nothing is an answer, not a budget problem. The reasons say
why; the guardrail then clamps the changes and `select.advise` appends what is actually applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agents.advisors.base import Proposal, StepMetrics
from agents.settings import AgentSettings

DEFAULT_TRIALS = 50
DEFAULT_SEEDS = 100_000
ENOUGH_TRIALS = 30  # below this many trials that ran, "0 survivors" says more about the search than the data
RETRY_TRIALS = 100
SHORT_SEARCH_TRIALS = 50
THIN_SURVIVORS = 50_000
MAX_SEEDS = 10_000_000
FLOOD_RATIO = 10.0  # survivors this many times the chance expectation ...
FLOOD_MIN = 1_000  # ... and at least this many: the window lets random seeds through
THRESHOLD_STEP = 0.1
WINDOW_STEP = 2


def defaults(current: Mapping[str, Any]) -> dict[str, int]:
    """The budget when nothing is known yet (only for params the step has and nobody set)."""
    out: dict[str, int] = {}
    if "trials" in current and current["trials"] is None:
        out["trials"] = DEFAULT_TRIALS
    if "max_seeds" in current and current["max_seeds"] is None:
        out["max_seeds"] = DEFAULT_SEEDS
    return out


def _coverage(metrics: StepMetrics) -> str:
    return f", {metrics.coverage:.1%} of the range sampled" if metrics.coverage is not None else ""


def propose(
    metrics: StepMetrics | None,
    history: Sequence[StepMetrics],
    settings: AgentSettings,
    current: Mapping[str, Any],
) -> Proposal:
    """Changes for the step's next attempt (scope "attempt") or next run (scope "run")."""
    del history  # the rules look at the last attempt only; the LLM advisor gets the history
    if metrics is None:
        return Proposal(defaults(current), "PROCEED", 1.0, "first attempt: pipeline defaults")
    if metrics.error or not metrics.outputs_valid:
        why = metrics.error or "outputs invalid"
        return Proposal({}, "RETRY", 0.5, f"attempt failed ({why[:200]}); same parameters once more")
    survivors = metrics.survivors
    if survivors is None or metrics.search is None:
        return Proposal({}, "PROCEED", 1.0, "step completed; nothing to tune")
    if metrics.search == "exhaustive":
        if survivors == 0:
            return Proposal({}, "PROCEED", 0.9, "the whole range was searched and nothing survived")
        return Proposal({}, "PROCEED", 0.9, f"{survivors} survivor(s) of the whole range")
    if survivors == 0:
        return _nothing_found(metrics, current)
    seeds = int(current.get("max_seeds") or 0)
    ratio = metrics.chance_ratio
    if ratio is not None and ratio > FLOOD_RATIO and survivors > FLOOD_MIN:
        tightened = tighten(current)
        if tightened:
            return Proposal(tightened, "RETRY", 0.7, f"{survivors} survivors = {ratio:.0f}x chance: window too loose")
    if metrics.significant:
        return Proposal({}, "PROCEED", 0.9, f"{survivors} survivor(s), significant: the budget is kept")
    if survivors < THIN_SURVIVORS and seeds:
        doubled = min(seeds * 2, MAX_SEEDS)
        if doubled > seeds:
            why = f"{survivors} survivor(s), none significant (chance expects {metrics.expected_chance_survivors:.3g})"
            return Proposal({"max_seeds": doubled}, "PROCEED", 0.7, why, scope="run")
    return Proposal({}, "PROCEED", 0.9, f"{survivors} survivors: budget is right")


def _nothing_found(metrics: StepMetrics, current: Mapping[str, Any]) -> Proposal:
    ran = metrics.trials_ran
    counts = f"{metrics.completed_trials} completed, {metrics.pruned_trials} pruned, {metrics.failed_trials} failed"
    if "trials" not in current:
        return Proposal({}, "ESCALATE", 0.8, "0 survivors and no budget parameter to raise")
    changes: dict[str, float | int] = {}
    if ran >= ENOUGH_TRIALS:
        if current.get("trials") != RETRY_TRIALS:
            changes["trials"] = RETRY_TRIALS
        if "max_seeds" in current and current.get("max_seeds") != DEFAULT_SEEDS:
            changes["max_seeds"] = DEFAULT_SEEDS
        why = f"0 survivors after {ran} trials ({counts}){_coverage(metrics)}: more trials beat more seeds"
    else:
        if int(current.get("trials") or 0) < SHORT_SEARCH_TRIALS:
            changes["trials"] = SHORT_SEARCH_TRIALS
        why = f"0 survivors after only {ran} trials ({counts}){_coverage(metrics)}: the search was too short"
    return Proposal(changes, "RETRY", 0.8, why)


def tighten(current: Mapping[str, Any]) -> dict[str, float | int]:
    """A stricter window: the threshold floor up a step (within its ceiling), else the window floor."""
    for low, high, step in (("threshold_min", "threshold_max", THRESHOLD_STEP), ("threshold", None, THRESHOLD_STEP)):
        value = current.get(low)
        if isinstance(value, int | float):
            ceiling = float(current[high]) if high and isinstance(current.get(high), int | float) else 1.0
            raised = round(min(float(value) + step, ceiling), 3)
            if raised > value:
                return {low: raised}
    for low, high, step in (("window_min", "window_max", WINDOW_STEP), ("window_size", None, WINDOW_STEP)):
        value = current.get(low)
        if isinstance(value, int | float):
            ceiling = int(current[high]) if high and isinstance(current.get(high), int | float) else 64
            raised = min(int(value) + step, ceiling)
            if raised > value:
                return {low: raised}
    return {}
