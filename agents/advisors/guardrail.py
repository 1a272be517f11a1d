"""The one guardrail every advisor answer goes through, rules and LLM alike.

Bounds are hard: an answer outside them is clamped, never trusted, and every clamp is recorded so the
audit trail shows what was asked and what was applied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from agents.advisors.base import TUNABLE, Clamp, Proposal
from agents.settings import Bounds

INTEGER_FIELDS = frozenset({"trials", "max_seeds", "window_size"})


def clamp_value(name: str, value: Any, bounds: Bounds) -> tuple[float | int | None, bool]:
    """(applied value, whether it differs from what was asked); None when the value is unusable."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, True
    if math.isnan(number) or math.isinf(number):
        return None, True
    limit = bounds.for_field(name)
    applied = limit.clamp(number) if limit is not None else number
    if name in INTEGER_FIELDS:
        applied_int = round(applied)
        return applied_int, applied_int != number
    return applied, applied != number


def clamp(proposal: Proposal, bounds: Bounds, current: Mapping[str, Any]) -> tuple[Proposal, list[Clamp]]:
    """Keep only tunable keys the step really has, within bounds; record each change made."""
    kept: dict[str, float | int] = {}
    clamps: list[Clamp] = []
    for name, asked in proposal.changes.items():
        if name not in TUNABLE or name not in current:
            clamps.append(Clamp(field=name, asked=asked, applied=None))
            continue
        applied, changed = clamp_value(name, asked, bounds)
        if applied is None:
            clamps.append(Clamp(field=name, asked=asked, applied=None))
            continue
        if changed:
            clamps.append(Clamp(field=name, asked=asked, applied=applied))
        kept[name] = applied
    confidence = min(max(float(proposal.confidence), 0.0), 1.0)
    return Proposal(kept, proposal.decision, confidence, proposal.reasoning), clamps


def apply(current: Mapping[str, Any], proposal: Proposal) -> dict[str, Any]:
    return {**current, **proposal.changes}
