"""Which advisor answers: Claude when configured and reachable, else the rules; the guardrail clamps both.
`advise` is the one entry point the WATCHER loop calls."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from loguru import logger

from agents.advisors import rules
from agents.advisors.base import AdvisorOutcome, Proposal, Scope, StepMetrics
from agents.advisors.guardrail import Validate, apply, clamp
from agents.settings import AgentSettings
from cluster.errors import AdvisorError
from pipeline.step import Tunable

_warned_no_key = False


def llm_enabled(settings: AgentSettings) -> bool:
    from agents.advisors.claude import api_key

    kind = settings.advisor.kind
    return kind == "claude" or (kind == "auto" and api_key() is not None)


def describe(changes: Mapping[str, Any], scope: Scope) -> str:
    """What is applied, and when: the tail of every advisor's reason once the guardrail has spoken."""
    if not changes:
        return ""
    target = "next attempt" if scope == "attempt" else "next run"
    return f" -> {target}: " + ", ".join(
        f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in changes.items()
    )


def advise(
    step: float,
    metrics: StepMetrics | None,
    history: Sequence[StepMetrics],
    settings: AgentSettings,
    *,
    current_params: Mapping[str, Any],
    tunables: Mapping[str, Tunable],
    validate: Validate | None = None,
    context: Mapping[str, Any] | None = None,
) -> AdvisorOutcome:
    """Ask the configured advisor; whatever answers, the guardrail clamps it to the bounds and to what the
    step lets an advisor tune, and the outcome records who answered, what was asked, what was clamped,
    the params to use and whether they are for the next attempt or the next run.
    context: what else the LLM should see (data set, coverage, the last runs' budgets and outcomes)."""
    global _warned_no_key
    started = time.monotonic()
    rules_answer = rules.propose(metrics, history, settings, current_params)
    fallback: str | None = None
    if llm_enabled(settings):
        from agents.advisors.claude import ClaudeAdvisor

        try:
            advisor = ClaudeAdvisor(settings, tunables)
            proposal, raw, latency = advisor.propose(step, metrics, history, current_params, rules_answer, context)
            return _outcome("claude", proposal, raw, settings, current_params, tunables, validate, None, latency)
        except AdvisorError as err:
            fallback = str(err)
            logger.warning("step {}: Claude advisor unavailable ({}); using the rule advisor", step, fallback)
    elif settings.advisor.kind == "auto" and not _warned_no_key:
        _warned_no_key = True
        logger.info("no ANTHROPIC_API_KEY in the environment: budgets come from the rule advisor")
    raw = {"changes": dict(rules_answer.changes), "decision": rules_answer.decision, "scope": rules_answer.scope}
    elapsed = time.monotonic() - started
    return _outcome("rules", rules_answer, raw, settings, current_params, tunables, validate, fallback, elapsed)


def _outcome(
    advisor: Literal["rules", "claude"],
    proposal: Proposal,
    raw: dict[str, Any],
    settings: AgentSettings,
    current: Mapping[str, Any],
    tunables: Mapping[str, Tunable],
    validate: Validate | None,
    fallback: str | None,
    latency: float,
) -> AdvisorOutcome:
    checked, clamps = clamp(proposal, settings.bounds, current, tunables, validate)
    changes = {k: v for k, v in checked.changes.items() if current.get(k) != v}
    return AdvisorOutcome(
        advisor=advisor,
        raw=raw,
        clamps=clamps,
        applied=apply(current, checked),
        decision_hint=checked.decision,
        reasoning=checked.reasoning,
        fallback_reason=fallback,
        latency_s=latency,
        scope=checked.scope,
        change_text=describe(changes, checked.scope),
    )
