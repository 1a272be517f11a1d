"""Rule advisor, guardrail and decisions: pure functions, no I/O."""

from __future__ import annotations

import pytest

from agents.advisors import advise, rules
from agents.advisors.base import AdvisorOutcome, Proposal, StepMetrics
from agents.advisors.guardrail import clamp
from agents.decisions import decide
from agents.settings import AgentSettings, Limits
from cluster.errors import ConfigError

SETTINGS = AgentSettings.from_mapping({"advisor": {"kind": "rules"}})
LIMITS = Limits(retries_per_step=2, total_retries=3, wall_clock_s=1000)


def metrics(**kw: object) -> StepMetrics:
    base: dict[str, object] = {"step": 1.0, "survivors": 0, "completed_trials": 50, "seeds_tested": 5_000_000}
    base.update(kw)
    return StepMetrics(**base)  # type: ignore[arg-type]


def test_first_attempt_fills_unset_budgets_only() -> None:
    p = rules.propose(None, [], SETTINGS, {"trials": None, "max_seeds": None})
    assert p.changes == {"trials": 50, "max_seeds": 100_000}
    assert rules.propose(None, [], SETTINGS, {"trials": 10, "max_seeds": 10_000}).changes == {}


def test_zero_survivors_after_enough_trials_means_more_trials_not_seeds() -> None:
    p = rules.propose(metrics(completed_trials=30), [], SETTINGS, {"trials": 50, "max_seeds": 100_000})
    assert p.changes == {"trials": 100} and p.decision == "RETRY"
    p = rules.propose(metrics(completed_trials=50), [], SETTINGS, {"trials": 50, "max_seeds": 10_000_000})
    assert p.changes == {"trials": 100, "max_seeds": 100_000}


def test_zero_survivors_after_a_short_search_lengthens_it() -> None:
    p = rules.propose(metrics(completed_trials=10), [], SETTINGS, {"trials": 10, "max_seeds": 10_000})
    assert p.changes == {"trials": 30, "max_seeds": 100_000} and p.decision == "RETRY"


def test_thin_survivors_double_the_seeds_up_to_the_bound() -> None:
    p = rules.propose(metrics(survivors=120), [], SETTINGS, {"trials": 50, "max_seeds": 100_000})
    assert p.changes == {"max_seeds": 200_000} and p.decision == "PROCEED"
    p = rules.propose(metrics(survivors=120), [], SETTINGS, {"trials": 50, "max_seeds": 10_000_000})
    assert p.changes == {}


def test_flood_far_above_chance_tightens_the_window() -> None:
    m = metrics(survivors=80_000, expected_chance_survivors=100.0)
    p = rules.propose(m, [], SETTINGS, {"trials": 50, "max_seeds": 100_000, "threshold": 0.4})
    assert p.changes == {"threshold": 0.5} and p.decision == "RETRY"
    p = rules.propose(m, [], SETTINGS, {"window_size": 8})
    assert p.changes == {"window_size": 10}


def test_guardrail_clamps_records_and_drops_unknown_keys() -> None:
    proposal = Proposal({"trials": 9999, "max_seeds": 5, "threshold": float("nan"), "rm_rf": 1}, "RETRY", 7.0)
    checked, clamps = clamp(proposal, SETTINGS.bounds, {"trials": 50, "max_seeds": 100_000, "threshold": 0.5})
    assert checked.changes == {"trials": 500, "max_seeds": 10_000}
    assert checked.confidence == 1.0
    assert {c.field for c in clamps} == {"trials", "max_seeds", "threshold", "rm_rf"}


def test_rule_outcome_is_within_bounds_and_complete() -> None:
    out = advise(1, metrics(completed_trials=10), [], SETTINGS, current_params={"trials": 10, "max_seeds": 10_000})
    assert out.advisor == "rules" and out.applied == {"trials": 30, "max_seeds": 100_000}


def outcome(applied: dict, hint: str = "RETRY", advisor: str = "rules") -> AdvisorOutcome:
    return AdvisorOutcome(advisor, {}, [], applied, hint, "because", None, 0.0)  # type: ignore[arg-type]


def run_decide(m: StepMetrics, out: AdvisorOutcome, current: dict, attempt: int = 1, used: int = 0, elapsed=0.0):
    return decide(
        m, attempt=attempt, total_retries_used=used, elapsed_s=elapsed, limits=LIMITS, outcome=out,
        current_params=current,
    )  # fmt: skip


def test_zero_survivors_retries_with_the_new_params() -> None:
    d = run_decide(metrics(), outcome({"trials": 100}), {"trials": 50})
    assert d.kind == "RETRY" and d.next_params == {"trials": 100}


def test_identical_params_or_exhausted_budget_escalate() -> None:
    assert run_decide(metrics(), outcome({"trials": 50}), {"trials": 50}).kind == "ESCALATE"
    assert run_decide(metrics(), outcome({"trials": 100}), {"trials": 50}, attempt=3).kind == "ESCALATE"
    assert run_decide(metrics(), outcome({"trials": 100}), {"trials": 50}, used=3).kind == "ESCALATE"
    d = run_decide(metrics(), outcome({"trials": 100}), {"trials": 50}, elapsed=1000)
    assert d.kind == "ESCALATE" and "wall-clock" in d.reason and d.what_to_do


@pytest.mark.parametrize("bad", [{"error": "node died"}, {"outputs_valid": False}])
def test_nobody_proceeds_past_a_failed_step(bad: dict) -> None:
    m = metrics(survivors=5, **bad)
    assert run_decide(m, outcome({"trials": 50}, hint="PROCEED", advisor="claude"), {"trials": 50}).kind == "RETRY"
    last = run_decide(m, outcome({"trials": 50}, hint="PROCEED", advisor="claude"), {"trials": 50}, attempt=3)
    assert last.kind == "ESCALATE"


def test_success_proceeds_and_llm_may_escalate() -> None:
    assert run_decide(metrics(survivors=5), outcome({"trials": 50}, hint="PROCEED"), {"trials": 50}).kind == "PROCEED"
    assert run_decide(metrics(survivors=5), outcome({}, hint="ESCALATE"), {}).kind == "ESCALATE"
    assert run_decide(metrics(survivors=None), outcome({}, hint="PROCEED"), {}).kind == "PROCEED"


def test_settings_reject_unknown_keys_with_one_line() -> None:
    with pytest.raises(ConfigError, match=r"pipeline.yaml: agent: bounds.trials.maxx: unknown key"):
        AgentSettings.from_mapping({"bounds": {"trials": {"min": 1, "max": 2, "maxx": 3}}})
    with pytest.raises(ConfigError, match="min 9 is above max 2"):
        AgentSettings.from_mapping({"bounds": {"trials": {"min": 9, "max": 2}}})
