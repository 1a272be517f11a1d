"""Advisors: who proposes a step's budget. base (values), rules (deterministic), claude (LLM), guardrail
(the bounds every answer is clamped to), select (`advise`: which advisor answers)."""

from agents.advisors.base import AdvisorOutcome, Clamp, Proposal, StepMetrics
from agents.advisors.select import advise, llm_enabled

__all__ = ["AdvisorOutcome", "Clamp", "Proposal", "StepMetrics", "advise", "llm_enabled"]
