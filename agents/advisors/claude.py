"""The LLM advisor: Claude reads the step's metrics and the run history and proposes budgets.

It is an advisor, never an authority: its answer must be a tool call matching a pydantic schema, it
is clamped by the same guardrail as the rules, and any failure (timeout, API error, text instead of a
tool call, invalid input) falls back to the rule advisor with the reason recorded. The API key comes
only from the environment and is never logged, stored or echoed in an error.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from agents.advisors.base import Proposal, Scope, StepMetrics
from agents.advisors.guardrail import limit_for
from agents.settings import AgentSettings
from cluster.errors import AdvisorError
from pipeline.step import Tunable

TOOL_NAME = "propose_step_budget"
SYSTEM_PROMPT = (
    "You advise the WATCHER supervisor of a GPU seed-recovery pipeline. Given one step's metrics (with the "
    "fraction of the seed range its sampled sweep has covered and the survivors chance alone would give), the "
    "recent history of this data set and the hard bounds of each tunable parameter, choose the next budget. "
    "Experience: more Optuna trials beat more seeds (100 trials x 100K seeds found survivors where 50 x 10M "
    "found none); survivors far above the chance expectation mean the window is too loose; zero survivors in "
    "a small sample is not evidence of anything. RETRY applies your values to the next attempt now; PROCEED "
    "with values applies them to the step's next run. Answer only with the tool call; leave a field out to keep it."
)


class AnswerBase(BaseModel):
    """The fields every answer has; `answer_model` adds one optional field per parameter the step lets an
    advisor tune, under the step's own names. Types are checked here; bounds are the guardrail's job (so
    an out-of-range answer is clamped and recorded rather than thrown away)."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["PROCEED", "RETRY", "ESCALATE"]
    confidence: float = Field(ge=0, le=1)
    reasoning: str = Field(max_length=4000)

    def to_proposal(self) -> Proposal:
        fixed = set(AnswerBase.model_fields)
        changes = {k: v for k, v in self.model_dump(exclude=fixed).items() if v is not None}
        scope: Scope = "attempt" if self.decision == "RETRY" else "run"
        return Proposal(changes, self.decision, self.confidence, self.reasoning, scope)


def answer_model(tunables: Mapping[str, Tunable]) -> type[AnswerBase]:
    """The tool's input schema for one step: its tunable parameters, by their real names."""
    fields: dict[str, Any] = {}
    for name, tunable in tunables.items():
        kind: Any = int if tunable.integer else float
        fields[name] = (kind | None, Field(default=None, description=f"new value of the step parameter {name}"))
    return create_model("BudgetAnswer", __base__=AnswerBase, **fields)


def api_key() -> str | None:
    key = os.environ.get("ANTHROPIC_API_KEY", "").strip()
    return key or None


def redact(text: str) -> str:
    key = api_key()
    return text.replace(key, "[redacted]") if key else text


def effective_bounds(settings: AgentSettings, tunables: Mapping[str, Tunable]) -> dict[str, dict[str, Any]]:
    """Per tunable parameter: the range the guardrail will hold an answer to."""
    out = {}
    for name, tunable in tunables.items():
        low, high = limit_for(tunable, settings.bound(name))
        out[name] = {"min": low, "max": high, "integer": tunable.integer}
    return out


def build_request(
    step: float,
    metrics: StepMetrics | None,
    history: Sequence[StepMetrics],
    settings: AgentSettings,
    current: Mapping[str, Any],
    rules_answer: Proposal,
    tunables: Mapping[str, Tunable],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    context = {
        "step": step,
        "current_params": dict(current),
        "tunable_bounds": effective_bounds(settings, tunables),
        "last_attempt": metrics.compact() if metrics else None,
        "recent_history": [m.compact() for m in list(history)[-10:]],
        **dict(extra or {}),
        "rule_advisor_proposal": {
            "changes": rules_answer.changes,
            "decision": rules_answer.decision,
            "scope": rules_answer.scope,
            "reasoning": rules_answer.reasoning,
        },
    }
    return {
        "model": settings.advisor.model,
        "max_tokens": settings.advisor.max_tokens,
        "system": SYSTEM_PROMPT,
        "messages": [{"role": "user", "content": json.dumps(context, default=str)}],
        "tools": [
            {
                "name": TOOL_NAME,
                "description": "Propose the next attempt's budget and what the supervisor should do.",
                "input_schema": answer_model(tunables).model_json_schema(),
            }
        ],
        "tool_choice": {"type": "tool", "name": TOOL_NAME},
    }


class ClaudeAdvisor:
    def __init__(self, settings: AgentSettings, tunables: Mapping[str, Tunable]) -> None:
        import anthropic  # imported here: a rules-only run never pays for the SDK import

        key = api_key()
        if key is None:
            raise AdvisorError("ANTHROPIC_API_KEY is not set")
        self.settings = settings
        self.tunables = dict(tunables)
        self._client = anthropic.Anthropic(
            api_key=key, timeout=settings.advisor.timeout_s, max_retries=settings.advisor.max_retries
        )

    def __repr__(self) -> str:  # never show the client (it holds the key)
        return f"ClaudeAdvisor(model={self.settings.advisor.model!r})"

    def propose(
        self,
        step: float,
        metrics: StepMetrics | None,
        history: Sequence[StepMetrics],
        current: Mapping[str, Any],
        rules_answer: Proposal,
        context: Mapping[str, Any] | None = None,
    ) -> tuple[Proposal, dict[str, Any], float]:
        """(proposal, raw tool input, latency); raises AdvisorError with a safe one-line reason."""
        request = build_request(step, metrics, history, self.settings, current, rules_answer, self.tunables, context)
        started = time.monotonic()
        try:
            message = self._client.messages.create(**request)
        except Exception as err:  # any failure of the call (API, transport, undecodable body) -> rules
            raise AdvisorError(redact(f"{type(err).__name__}: {err}")[:300]) from None
        latency = time.monotonic() - started
        blocks = [b for b in message.content if getattr(b, "type", None) == "tool_use"]
        if not blocks:
            raise AdvisorError(f"no tool call in the reply (stop_reason={message.stop_reason})")
        raw = blocks[0].input
        if not isinstance(raw, dict):
            raise AdvisorError(f"tool input is not an object: {str(raw)[:120]}")
        try:
            answer = answer_model(self.tunables).model_validate(raw)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(input)"
            raise AdvisorError(f"invalid tool input: {where}: {first['msg']}") from None
        return answer.to_proposal(), dict(raw), latency
