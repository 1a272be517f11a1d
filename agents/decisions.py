"""What the WATCHER does after a step attempt: PROCEED, RETRY (with new params) or ESCALATE.

A pure function of the attempt's metrics, the advisor's outcome and the limits, so every branch is
tested without I/O. The hard guardrails live here, where no advisor can argue with them: nothing
proceeds past an error or invalid outputs, and no retry happens without budget left for it.

Searches differ in what "nothing found" means. A sampled search (step 1) that finds nothing has looked
at part of the range: that is no evidence, so after its retries the run goes on to the exhaustive
search with the window chosen before seeing the data. An exhaustive search (step 2) that finds nothing
is the answer, and the run goes on to state it. Escalation is for what a person must fix.
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
    next_params: dict[str, Any] = field(default_factory=dict)  # RETRY: the next attempt's params
    what_to_do: str = ""
    next_run: dict[str, Any] | None = None  # the params the step's next run starts from (None: pipeline.yaml's)


def retry_budget_left(attempt: int, total_retries_used: int, elapsed_s: float, limits: Limits) -> str | None:
    """None when one more attempt is allowed, else which limit stops it."""
    if attempt > limits.retries_per_step:
        return f"retries for this step are used up ({limits.retries_per_step})"
    if total_retries_used >= limits.total_retries:
        return f"the run's retries are used up ({limits.total_retries})"
    if elapsed_s >= limits.wall_clock_s:
        return f"the wall-clock budget of {limits.wall_clock_s:g} s is spent"
    return None


def _coverage(metrics: StepMetrics) -> str:
    return f"{metrics.coverage:.1%}" if metrics.coverage is not None else "part"


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
    retry_now = outcome.scope == "attempt" and changed and not stop

    if failed:
        why = metrics.error or "its outputs are missing or invalid"
        if outcome.decision_hint == "ESCALATE" or stop:
            return Decision(
                "ESCALATE",
                f"{step} failed: {why}" + (f"; no retry: {stop}" if stop else "; the advisor escalated"),
                what_to_do="read the failure in `watcher history --decisions` and .watcher/logs/watcher.log, fix "
                "the cause (node, GPU, inputs), then `watcher run --resume`",
            )
        return Decision("RETRY", f"{step} failed ({why}); retrying{outcome.change_text}", dict(outcome.applied))

    if metrics.search == "sampled" and metrics.survivors == 0:
        if retry_now and outcome.decision_hint != "ESCALATE":
            return Decision("RETRY", f"{step}: {outcome.reasoning}{outcome.change_text}", dict(outcome.applied))
        why = stop or "the advisor has no different budget to try"
        return Decision(
            "PROCEED",
            f"{step} found 0 survivors in a sample covering {_coverage(metrics)} of the seed range, which is no "
            f"evidence either way ({why}); the next step searches the whole range with the window chosen before "
            "seeing the data",
        )
    if metrics.search == "exhaustive" and metrics.survivors == 0:
        return Decision(
            "PROCEED",
            f"{step} searched the whole range and nothing survived (chance expects "
            f"{metrics.expected_chance_survivors:.3g}); the verdict follows",
        )

    if outcome.decision_hint == "ESCALATE":
        return Decision(
            "ESCALATE",
            f"{step}: the {outcome.advisor} advisor escalated: {outcome.reasoning}",
            what_to_do="review the step's metrics (`watcher history --decisions`) before continuing",
        )
    if outcome.decision_hint == "RETRY" and retry_now:
        return Decision("RETRY", f"{step}: {outcome.reasoning}{outcome.change_text}", dict(outcome.applied))
    if outcome.scope == "run" and changed:
        return Decision(
            "PROCEED", f"{step} succeeded: {outcome.reasoning}{outcome.change_text}", dict(current_params),
            next_run=dict(outcome.applied),
        )  # fmt: skip
    return Decision(
        "PROCEED", f"{step} succeeded: {outcome.reasoning}", dict(current_params), next_run=dict(current_params)
    )
