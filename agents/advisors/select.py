"""Which advisor answers: Claude when configured and reachable, else the rules; the guardrail clamps both.
`advise` is the one entry point the WATCHER loop calls."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from loguru import logger

from agents.advisors import rules
from agents.advisors.base import AdvisorOutcome, StepMetrics
from agents.advisors.guardrail import apply, clamp
from agents.settings import AgentSettings
from cluster.errors import AdvisorError

_warned_no_key = False


def llm_enabled(settings: AgentSettings) -> bool:
    from agents.advisors.claude import api_key

    kind = settings.advisor.kind
    return kind == "claude" or (kind == "auto" and api_key() is not None)


def advise(
    step: float,
    metrics: StepMetrics | None,
    history: Sequence[StepMetrics],
    settings: AgentSettings,
    *,
    current_params: Mapping[str, Any],
) -> AdvisorOutcome:
    """Ask the configured advisor; whatever answers, the guardrail clamps it and the outcome records
    who answered, what was asked, what was clamped and the params to use."""
    global _warned_no_key
    started = time.monotonic()
    rules_answer = rules.propose(metrics, history, settings, current_params)
    fallback: str | None = None
    if llm_enabled(settings):
        from agents.advisors.claude import ClaudeAdvisor

        try:
            advisor = ClaudeAdvisor(settings)
            proposal, raw, latency = advisor.propose(step, metrics, history, current_params, rules_answer)
            checked, clamps = clamp(proposal, settings.bounds, current_params)
            return AdvisorOutcome(
                advisor="claude",
                raw=raw,
                clamps=clamps,
                applied=apply(current_params, checked),
                decision_hint=checked.decision,
                reasoning=checked.reasoning,
                latency_s=latency,
            )
        except AdvisorError as err:
            fallback = str(err)
            logger.warning("step {}: Claude advisor unavailable ({}); using the rule advisor", step, fallback)
    elif settings.advisor.kind == "auto" and not _warned_no_key:
        _warned_no_key = True
        logger.info("no ANTHROPIC_API_KEY in the environment: budgets come from the rule advisor")
    checked, clamps = clamp(rules_answer, settings.bounds, current_params)
    return AdvisorOutcome(
        advisor="rules",
        raw={"changes": dict(rules_answer.changes), "decision": rules_answer.decision},
        clamps=clamps,
        applied=apply(current_params, checked),
        decision_hint=checked.decision,
        reasoning=checked.reasoning,
        fallback_reason=fallback,
        latency_s=time.monotonic() - started,
    )
