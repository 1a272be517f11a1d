"""What the WATCHER does after a step attempt: PROCEED, RETRY (with new params) or ESCALATE.

A pure function of the attempt's metrics, the advisor's outcome and the limits, so every branch is
tested without I/O. The hard guardrails live here, where no advisor can argue with them: nothing
proceeds past an error or invalid outputs, and no retry happens without budget left for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.advisors.base import AdvisorOutcome, DecisionKind, StepMetrics
from agents.settings import Limits


@dataclass(frozen=True)
class Decision:
    kind: DecisionKind
    reason: str
    next_params: dict[str, Any] = field(default_factory=dict)
    what_to_do: str = ""


def retry_budget_left(attempt: int, total_retries_used: int, elapsed_s: float, limits: Limits) -> str | None:
    """None when one more attempt is allowed, else which limit stops it."""
    if attempt > limits.retries_per_step:
        return f"retries for this step are used up ({limits.retries_per_step})"
    if total_retries_used >= limits.total_retries:
        return f"the run's retries are used up ({limits.total_retries})"
    if elapsed_s >= limits.wall_clock_s:
        return f"the wall-clock budget of {limits.wall_clock_s:g} s is spent"
    return None


def decide(
    metrics: StepMetrics,
    *,
    attempt: int,
    total_retries_used: int,
    elapsed_s: float,
    limits: Limits,
    outcome: AdvisorOutcome,
    current_params: Mapping[str, Any],
) -> Decision:
    step = f"step {metrics.step:g}"
    stop = retry_budget_left(attempt, total_retries_used, elapsed_s, limits)
    changed = dict(outcome.applied) != dict(current_params)
    failed = metrics.error is not None or not metrics.outputs_valid

    if failed:
        why = metrics.error or "its outputs are missing or invalid"
        if outcome.decision_hint == "ESCALATE" or stop:
            return Decision(
                "ESCALATE",
                f"{step} failed: {why}" + (f"; no retry: {stop}" if stop else "; the advisor escalated"),
                what_to_do="read the failure in `watcher history --decisions` and .watcher/logs/watcher.log, fix "
                "the cause (node, GPU, inputs), then `watcher run --resume`",
            )
        return Decision("RETRY", f"{step} failed ({why}); retrying", dict(outcome.applied))

    if metrics.survivors == 0:
        if stop or not changed:
            reason = stop or "the advisor has no different budget to try"
            return Decision(
                "ESCALATE",
                f"{step} found 0 survivors (expected by chance: {metrics.expected_chance_survivors:.3g}); "
                f"no retry: {reason}",
                what_to_do="the data may hold no recoverable seed: check the generator and history, or raise "
                "the bounds (agent.bounds in pipeline.yaml) and run again",
            )
        return Decision("RETRY", f"{step} found 0 survivors: {outcome.reasoning}", dict(outcome.applied))

    if outcome.decision_hint == "ESCALATE":
        return Decision(
            "ESCALATE",
            f"{step}: the {outcome.advisor} advisor escalated: {outcome.reasoning}",
            what_to_do="review the step's metrics (`watcher history --decisions`) before continuing",
        )
    if outcome.decision_hint == "RETRY" and changed and not stop:
        return Decision("RETRY", f"{step}: {outcome.reasoning}", dict(outcome.applied))
    return Decision("PROCEED", f"{step} succeeded: {outcome.reasoning}", dict(current_params))
