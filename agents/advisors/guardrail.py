"""The one guardrail every advisor answer goes through, rules and LLM alike.

Bounds are hard: an answer outside them is clamped, never trusted, and every clamp is recorded so the
audit trail shows what was asked and what was applied. What may be changed at all is what the step
declares (`Step.advisor_params`, with the step's own limits): a name the step does not have is dropped,
recorded, and never reaches it. A combination the step would reject (say window_min above window_max)
is undone change by change until the step accepts it, so an advisor cannot turn a retry into a crash.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from agents.advisors.base import Clamp, Proposal
from agents.settings import Range
from pipeline.step import Tunable

Validate = Callable[[Mapping[str, Any]], str | None]  # the step's verdict on a params set: None or the error


def limit_for(tunable: Tunable, bound: Range | None) -> tuple[float | None, float | None]:
    """The tighter of the agent's bound and the step's own limits."""
    low, high = tunable.low, tunable.high
    if bound is not None:
        low = bound.min if low is None else max(low, bound.min)
        high = bound.max if high is None else min(high, bound.max)
    return low, high


def clamp_value(value: Any, tunable: Tunable, bound: Range | None) -> tuple[float | int | None, bool]:
    """(applied value, whether it differs from what was asked); None when the value is unusable."""
    if isinstance(value, bool):
        return None, True
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, True
    if math.isnan(number) or math.isinf(number):
        return None, True
    low, high = limit_for(tunable, bound)
    applied = number if low is None else max(low, number)
    applied = applied if high is None else min(high, applied)
    if tunable.integer:
        applied_int = round(applied)
        if low is not None and applied_int < low:
            applied_int = math.ceil(low)
        return applied_int, applied_int != number
    return applied, applied != number


def clamp(
    proposal: Proposal,
    bounds: Mapping[str, Range],
    current: Mapping[str, Any],
    tunables: Mapping[str, Tunable],
    validate: Validate | None = None,
) -> tuple[Proposal, list[Clamp]]:
    """Keep only what the step lets an advisor tune, within bounds and its own limits; record each change."""
    kept: dict[str, float | int] = {}
    clamps: list[Clamp] = []
    for name, asked in proposal.changes.items():
        tunable = tunables.get(name)
        if tunable is None or name not in current:
            clamps.append(
                Clamp(field=name, asked=asked, applied=None, reason="not a parameter this step lets an advisor tune")
            )
            continue
        applied, changed = clamp_value(asked, tunable, bounds.get(name))
        if applied is None:
            clamps.append(Clamp(field=name, asked=asked, applied=None, reason="not a finite number"))
            continue
        if changed:
            clamps.append(Clamp(field=name, asked=asked, applied=applied, reason="outside the bounds"))
        kept[name] = applied
    if validate is not None:
        while kept and (error := validate({**current, **kept})) is not None:
            name = _culprit(kept, current, validate)
            clamps.append(Clamp(field=name, asked=kept.pop(name), applied=None, reason=f"step rejects it: {error}"))
    confidence = min(max(float(proposal.confidence), 0.0), 1.0)
    return Proposal(kept, proposal.decision, confidence, proposal.reasoning, proposal.scope), clamps


def _culprit(kept: Mapping[str, Any], current: Mapping[str, Any], validate: Validate) -> str:
    """The change whose removal alone makes the params acceptable (the newest such), else the newest."""
    for name in reversed(list(kept)):
        rest = {k: v for k, v in kept.items() if k != name}
        if validate({**current, **rest}) is None:
            return name
    return next(reversed(list(kept)))


def apply(current: Mapping[str, Any], proposal: Proposal) -> dict[str, Any]:
    return {**current, **proposal.changes}
