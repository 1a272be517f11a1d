"""Rule advisor, guardrail and decisions: pure functions, no I/O. Params, tunables and validation are
step 1's real ones (the integration tests then drive the same rules through `watcher run`)."""

from __future__ import annotations

import pytest

from agents.advisors import advise, rules
from agents.advisors.base import AdvisorOutcome, Proposal, StepMetrics
from agents.advisors.guardrail import clamp
from agents.decisions import decide
from agents.settings import AgentSettings, Limits, check_bounds
from agents.watcher import validator_for
from cluster.errors import ConfigError
from pipeline.steps.scorer_meta import ScorerMeta
from pipeline.steps.window_optimizer import WindowOptimizer

SETTINGS = AgentSettings.from_mapping({"advisor": {"kind": "rules"}})
LIMITS = Limits(retries_per_step=2, total_retries=3, wall_clock_s=1000)
STEP1 = {"trials": 50, "max_seeds": 100_000, "window_min": 6, "window_max": 12, "threshold_min": 0.6,
         "threshold_max": 1.0}  # fmt: skip
TUNABLES = WindowOptimizer.tunables()


def metrics(**kw: object) -> StepMetrics:
    base: dict[str, object] = {
        "step": 1.0, "survivors": 0, "completed_trials": 50, "seeds_tested": 5_000_000, "search": "sampled",
        "coverage": 0.3,
    }  # fmt: skip
    base.update(kw)
    return StepMetrics(**base)  # type: ignore[arg-type]


def params(**kw: object) -> dict:
    return {**STEP1, **kw}


def test_first_attempt_fills_unset_budgets_only() -> None:
    p = rules.propose(None, [], SETTINGS, {"trials": None, "max_seeds": None})
    assert p.changes == {"trials": 50, "max_seeds": 100_000}
    assert rules.propose(None, [], SETTINGS, {"trials": 10, "max_seeds": 10_000}).changes == {}


@pytest.mark.parametrize(
    "ran", [{"completed_trials": 50}, {"completed_trials": 0, "pruned_trials": 50}, {"completed_trials": 10,
            "pruned_trials": 15, "failed_trials": 5}],
    ids=["completed", "all-pruned (the incident)", "mixed"],
)  # fmt: skip
def test_zero_survivors_after_30_trials_that_ran_means_100_trials_and_100k_seeds(ran: dict) -> None:
    p = rules.propose(metrics(**ran), [], SETTINGS, params(trials=50, max_seeds=10_000_000))
    assert p.changes == {"trials": 100, "max_seeds": 100_000} and p.decision == "RETRY" and p.scope == "attempt"
    assert "after 30 trials" in p.reasoning or "after 50 trials" in p.reasoning
    assert "only" not in p.reasoning


def test_zero_survivors_after_fewer_than_30_trials_raises_trials_to_50_and_keeps_seeds() -> None:
    p = rules.propose(metrics(completed_trials=10), [], SETTINGS, params(trials=10, max_seeds=10_000))
    assert p.changes == {"trials": 50} and p.decision == "RETRY"
    assert "after only 10 trials" in p.reasoning


def test_thin_survivors_not_significant_double_the_next_runs_seeds_up_to_10m() -> None:
    thin = metrics(survivors=120, expected_chance_survivors=110.0, significant=False)
    p = rules.propose(thin, [], SETTINGS, params(max_seeds=100_000))
    assert p.changes == {"max_seeds": 200_000} and p.decision == "PROCEED" and p.scope == "run"
    assert rules.propose(thin, [], SETTINGS, params(max_seeds=6_000_000)).changes == {"max_seeds": 10_000_000}
    assert rules.propose(thin, [], SETTINGS, params(max_seeds=10_000_000)).changes == {}


def test_a_significant_result_keeps_its_budget() -> None:
    p = rules.propose(metrics(survivors=3, expected_chance_survivors=1e-9, significant=True), [], SETTINGS, params())
    assert p.changes == {} and p.decision == "PROCEED" and "kept" in p.reasoning


def test_exhaustive_search_with_nothing_is_an_answer_not_a_budget_problem() -> None:
    p = rules.propose(metrics(step=2.0, search="exhaustive", coverage=1.0), [], SETTINGS, {"chunk_seeds": 1 << 22})
    assert p.changes == {} and p.decision == "PROCEED"


def test_flood_far_above_chance_tightens_the_threshold_floor_then_the_window() -> None:
    flood = metrics(survivors=80_000, expected_chance_survivors=100.0)
    assert rules.propose(flood, [], SETTINGS, params(threshold_min=0.6)).changes == {"threshold_min": 0.7}
    at_ceiling = params(threshold_min=1.0, threshold_max=1.0, window_min=6, window_max=12)
    assert rules.propose(flood, [], SETTINGS, at_ceiling).changes == {"window_min": 8}


def test_guardrail_keeps_only_the_steps_tunables_within_bounds() -> None:
    proposal = Proposal({"trials": 9999, "max_seeds": 5, "threshold_min": float("nan"), "rm_rf": 1, "threshold": 0.9},
                        "RETRY", 7.0)  # fmt: skip
    checked, clamps = clamp(proposal, SETTINGS.bounds, params(), TUNABLES, validator_for(WindowOptimizer))
    assert checked.changes == {"trials": 500, "max_seeds": 10_000}
    assert checked.confidence == 1.0
    assert {c.field for c in clamps} == {"trials", "max_seeds", "threshold_min", "rm_rf", "threshold"}
    dropped = {c.field: c.reason for c in clamps if c.applied is None}
    assert "not a parameter this step lets an advisor tune" in dropped["threshold"]


def test_guardrail_undoes_a_combination_the_step_rejects() -> None:
    proposal = Proposal({"window_min": 20, "trials": 60}, "RETRY")
    checked, clamps = clamp(proposal, SETTINGS.bounds, params(), TUNABLES, validator_for(WindowOptimizer))
    assert checked.changes == {"trials": 60}
    assert [(c.field, c.applied) for c in clamps] == [("window_min", None)]


def test_rule_outcome_says_what_is_applied_and_when() -> None:
    out = advise(1, metrics(completed_trials=10), [], SETTINGS, current_params=params(trials=10, max_seeds=10_000),
                 tunables=TUNABLES)  # fmt: skip
    assert out.advisor == "rules" and out.applied == params(trials=50, max_seeds=10_000)
    assert out.change_text == " -> next attempt: trials 50"
    tight = AgentSettings.from_mapping({"bounds": {"trials": {"min": 10, "max": 40}}})
    out = advise(1, metrics(completed_trials=10), [], tight, current_params=params(trials=10), tunables=TUNABLES)
    assert out.applied["trials"] == 40 and out.change_text == " -> next attempt: trials 40"  # says the clamped value


def outcome(applied: dict, hint: str = "RETRY", advisor: str = "rules", scope: str = "attempt") -> AdvisorOutcome:
    return AdvisorOutcome(advisor, {}, [], applied, hint, "because", None, 0.0, scope)  # type: ignore[arg-type]


def run_decide(m: StepMetrics, out: AdvisorOutcome, current: dict, attempt: int = 1, used: int = 0, elapsed=0.0):
    return decide(
        m, attempt=attempt, total_retries_used=used, elapsed_s=elapsed, limits=LIMITS, outcome=out,
        current_params=current,
    )  # fmt: skip


def test_zero_survivors_retries_with_the_new_params() -> None:
    d = run_decide(metrics(), outcome({"trials": 100}), {"trials": 50})
    assert d.kind == "RETRY" and d.next_params == {"trials": 100}


def test_a_fruitless_sample_goes_on_to_the_exhaustive_step_not_to_escalation() -> None:
    for d in (
        run_decide(metrics(), outcome({"trials": 50}), {"trials": 50}),
        run_decide(metrics(), outcome({"trials": 100}), {"trials": 50}, attempt=3),
        run_decide(metrics(), outcome({"trials": 100}), {"trials": 50}, used=3),
    ):
        assert d.kind == "PROCEED" and "30.0% of the seed range" in d.reason and "no evidence" in d.reason
        assert d.next_run is None


def test_exhaustive_zero_proceeds_to_the_verdict() -> None:
    d = run_decide(metrics(step=2.0, search="exhaustive"), outcome({}, hint="PROCEED"), {})
    assert d.kind == "PROCEED" and "whole range" in d.reason


def test_run_scope_changes_are_for_the_next_run_and_say_so() -> None:
    out = AdvisorOutcome("rules", {}, [], {"max_seeds": 200_000}, "PROCEED", "thin", None, 0.0, "run",
                         " -> next run: max_seeds 200000")  # fmt: skip
    d = run_decide(metrics(survivors=5), out, {"max_seeds": 100_000})
    assert d.kind == "PROCEED" and d.next_params == {"max_seeds": 100_000} and d.next_run == {"max_seeds": 200_000}
    assert d.reason.endswith("-> next run: max_seeds 200000")


def test_exhausted_budget_on_an_unsearched_step_escalates() -> None:
    m = metrics(error="node died")
    d = run_decide(m, outcome({"trials": 100}), {"trials": 50}, elapsed=1000)
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
    assert run_decide(metrics(survivors=None, search=None), outcome({}, hint="PROCEED"), {}).kind == "PROCEED"


def test_settings_reject_unknown_keys_with_one_line() -> None:
    with pytest.raises(ConfigError, match=r"pipeline.yaml: agent: bounds.trials.maxx: unknown key"):
        AgentSettings.from_mapping({"bounds": {"trials": {"min": 1, "max": 2, "maxx": 3}}})
    with pytest.raises(ConfigError, match="min 9 is above max 2"):
        AgentSettings.from_mapping({"bounds": {"trials": {"min": 9, "max": 2}}})


def test_bounds_are_held_against_each_steps_own_limits() -> None:
    steps = {1.0: WindowOptimizer.tunables(), 2.5: ScorerMeta.tunables()}
    check_bounds(AgentSettings.from_mapping({"bounds": {"threshold_min": {"min": 0.5, "max": 0.9}}}), steps)
    with pytest.raises(ConfigError, match=r"bounds.trials.max: 20000 is outside step 1's limits \[1, 10000\]"):
        check_bounds(AgentSettings.from_mapping({"bounds": {"trials": {"min": 10, "max": 20_000}}}), steps)
    with pytest.raises(ConfigError, match=r"bounds.threshold: no step lets an advisor tune 'threshold'"):
        check_bounds(AgentSettings.from_mapping({"bounds": {"threshold": {"min": 0.1, "max": 0.9}}}), steps)
