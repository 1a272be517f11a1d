"""The deterministic advisor: budgets from experience, no network.

Experience behind the rules: 100 trials x 100K seeds found 98,172 survivors where 50 x 10M found 0;
more trials beat more seeds. So an empty result after a real search raises trials (not seeds), a thin
result doubles seeds, and a flood of survivors far above chance tightens the window instead of paying
for a bigger downstream step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agents.advisors.base import Proposal, StepMetrics
from agents.settings import AgentSettings

DEFAULT_TRIALS = 50
DEFAULT_SEEDS = 100_000
ENOUGH_TRIALS = 30  # below this many completed trials, "0 survivors" says more about the search than the data
RETRY_TRIALS = 100
THIN_SURVIVORS = 50_000
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


def propose(
    metrics: StepMetrics | None,
    history: Sequence[StepMetrics],
    settings: AgentSettings,
    current: Mapping[str, Any],
) -> Proposal:
    """Changes for the next attempt of a step, given how its last attempt went."""
    del history  # the rules look at the last attempt only; the LLM advisor gets the history
    if metrics is None:
        return Proposal(defaults(current), "PROCEED", 1.0, "first attempt: pipeline defaults")
    if metrics.error or not metrics.outputs_valid:
        why = metrics.error or "outputs invalid"
        return Proposal({}, "RETRY", 0.5, f"attempt failed ({why[:200]}); same parameters once more")
    survivors = metrics.survivors
    if survivors is None:
        return Proposal({}, "PROCEED", 1.0, "step completed; nothing to tune")
    trials = int(current.get("trials") or 0)
    seeds = int(current.get("max_seeds") or 0)
    changes: dict[str, float | int] = {}
    if survivors == 0:
        if "trials" in current and metrics.completed_trials >= ENOUGH_TRIALS:
            changes["trials"] = max(RETRY_TRIALS, trials)
            if seeds and seeds != DEFAULT_SEEDS:
                changes["max_seeds"] = DEFAULT_SEEDS
            reason = (
                f"0 survivors after {metrics.completed_trials} completed trials: more trials beat more seeds "
                f"-> trials {changes['trials']}, seeds {changes.get('max_seeds', seeds)}"
            )
        elif "trials" in current:
            changes["trials"] = max(ENOUGH_TRIALS, 2 * trials, RETRY_TRIALS if trials >= ENOUGH_TRIALS else 0)
            if seeds and seeds < DEFAULT_SEEDS:
                changes["max_seeds"] = DEFAULT_SEEDS
            reason = (
                f"0 survivors after only {metrics.completed_trials} completed trials: the search was too short "
                f"-> trials {changes['trials']}" + (f", seeds {DEFAULT_SEEDS}" if "max_seeds" in changes else "")
            )
        elif seeds:
            changes["max_seeds"] = seeds * 2
            reason = f"0 survivors with {seeds} seeds -> seeds x2"
        else:
            return Proposal({}, "ESCALATE", 0.8, "0 survivors and no budget parameter to raise")
        return Proposal(changes, "RETRY", 0.8, reason)
    ratio = metrics.chance_ratio
    if ratio is not None and ratio > FLOOD_RATIO and survivors > FLOOD_MIN:
        tightened = _tighten(current)
        if tightened:
            return Proposal(
                tightened, "RETRY", 0.7,
                f"{survivors} survivors = {ratio:.0f}x the chance expectation: window too loose -> tighten",
            )  # fmt: skip
    if survivors < THIN_SURVIVORS and seeds:
        doubled = min(seeds * 2, int(settings.bounds.max_seeds.max))
        if doubled > seeds:
            return Proposal(
                {"max_seeds": doubled}, "PROCEED", 0.7,
                f"{survivors} survivors (< {THIN_SURVIVORS}): next attempt with seeds x2 = {doubled}",
            )  # fmt: skip
    return Proposal({}, "PROCEED", 0.9, f"{survivors} survivors: budget is right")


def _tighten(current: Mapping[str, Any]) -> dict[str, float | int]:
    for key in ("threshold", "threshold_min"):
        if isinstance(current.get(key), int | float):
            return {key: round(float(current[key]) + THRESHOLD_STEP, 3)}
    for key in ("window_size", "window_min"):
        if isinstance(current.get(key), int | float):
            return {key: int(current[key]) + WINDOW_STEP}
    return {}
