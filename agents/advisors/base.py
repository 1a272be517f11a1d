"""Values the advisors work on: what a step did, what an advisor proposes, what was finally applied.

Plain frozen dataclasses so the rules, the guardrail and the decisions are pure functions that tests
call directly, and so every outcome can be stored verbatim for the audit trail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

DecisionKind = Literal["PROCEED", "RETRY", "ESCALATE"]
# Where a proposal's changes take effect: the step's next attempt in this run, or its next run.
Scope = Literal["attempt", "run"]


def _num(data: Mapping[str, Any], key: str, default: float = 0) -> float:
    value = data.get(key, default)
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True)
class StepMetrics:
    """One attempt of one step, as the advisor and the decision rules see it."""

    step: float
    name: str = ""
    attempt: int = 1
    params: dict[str, Any] = field(default_factory=dict)
    survivors: int | None = None  # None: the step has no notion of survivors
    expected_chance_survivors: float = 0.0
    completed_trials: int = 0
    pruned_trials: int = 0
    failed_trials: int = 0
    seeds_tested: int = 0
    duration_s: float = 0.0
    chunk_failures: int = 0
    outputs_valid: bool = True
    error: str | None = None
    search: str | None = None  # "sampled", "exhaustive" or None (see pipeline.step.Step.search)
    coverage: float | None = None  # fraction of the search space the step's sweep has covered
    significant: bool | None = None  # survivors unlikely by chance (None: the step does not say)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def trials_ran(self) -> int:
        """Trials that ran: completed, pruned or failed alike."""
        return self.completed_trials + self.pruned_trials + self.failed_trials

    @classmethod
    def from_dict(
        cls,
        step: float,
        metrics: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None = None,
        *,
        name: str = "",
        attempt: int = 1,
        outputs_valid: bool = True,
        error: str | None = None,
    ) -> StepMetrics:
        m = dict(metrics or {})
        known = {
            "survivors", "expected_chance_survivors", "completed_trials", "pruned_trials", "failed_trials",
            "seeds_tested", "duration_s", "chunk_failures", "search", "coverage", "significant",
        }  # fmt: skip
        survivors = m.get("survivors")
        coverage = m.get("coverage")
        search = m.get("search")
        return cls(
            step=float(step),
            name=name,
            attempt=attempt,
            params=dict(params or {}),
            survivors=int(survivors) if isinstance(survivors, int | float) else None,
            expected_chance_survivors=_num(m, "expected_chance_survivors"),
            completed_trials=int(_num(m, "completed_trials")),
            pruned_trials=int(_num(m, "pruned_trials")),
            failed_trials=int(_num(m, "failed_trials")),
            seeds_tested=int(_num(m, "seeds_tested")),
            duration_s=_num(m, "duration_s"),
            chunk_failures=int(_num(m, "chunk_failures")),
            outputs_valid=outputs_valid,
            error=error,
            search=search if search in ("sampled", "exhaustive") else None,
            coverage=float(coverage) if isinstance(coverage, int | float) else None,
            significant=m["significant"] if isinstance(m.get("significant"), bool) else None,
            extra={k: v for k, v in m.items() if k not in known},
        )

    @property
    def chance_ratio(self) -> float | None:
        """Observed survivors over the number expected by pure chance (None when undefined)."""
        if self.survivors is None or self.expected_chance_survivors <= 0:
            return None
        return self.survivors / self.expected_chance_survivors

    def compact(self) -> dict[str, Any]:
        """The history line sent to the LLM: counts plus the rates that make runs comparable."""
        trials = self.trials_ran
        row: dict[str, Any] = {
            "step": self.step,
            "attempt": self.attempt,
            "params": dict(self.params),
            "search": self.search,
            "coverage": self.coverage,
            "survivors": self.survivors,
            "significant": self.significant,
            "expected_chance_survivors": round(self.expected_chance_survivors, 6),
            "survivors_per_million_seeds": (
                round(self.survivors / self.seeds_tested * 1e6, 3) if self.survivors and self.seeds_tested else 0
            ),
            "completed_trials": self.completed_trials,
            "trials_ran": trials,
            "seeds_tested": self.seeds_tested,
            "prune_rate": round(self.pruned_trials / trials, 3) if trials else 0,
            "failure_rate": round(self.failed_trials / trials, 3) if trials else 0,
            "chunk_failures": self.chunk_failures,
            "duration_s": round(self.duration_s, 1),
            "outputs_valid": self.outputs_valid,
        }
        if self.error:
            row["error"] = self.error[:300]
        return row


@dataclass(frozen=True)
class Proposal:
    """Parameter changes for the next attempt plus the advisor's view of what should happen."""

    changes: dict[str, float | int] = field(default_factory=dict)
    decision: DecisionKind = "PROCEED"
    confidence: float = 1.0
    reasoning: str = ""
    scope: Scope = "attempt"  # "run": the changes are for the step's next run, not a retry now


@dataclass(frozen=True)
class Clamp:
    field: str
    asked: Any
    applied: Any  # None: dropped
    reason: str = ""


@dataclass(frozen=True)
class AdvisorOutcome:
    """What the advisor layer answered, for the loop and for the audit trail in the store."""

    advisor: Literal["rules", "claude"]
    raw: dict[str, Any]
    clamps: list[Clamp]
    applied: dict[str, Any]  # the complete params the next attempt (or, scope "run", the next run) must use
    decision_hint: DecisionKind
    reasoning: str
    fallback_reason: str | None = None
    latency_s: float = 0.0
    scope: Scope = "attempt"
    change_text: str = ""  # " -> next attempt: trials 100": what `applied` changes, and when (empty: nothing)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
