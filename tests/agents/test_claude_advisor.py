"""The Claude advisor with the real anthropic SDK against a loopback Messages API server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from fake_messages_api import FakeMessagesAPI, error_body, text_reply, tool_reply
from loguru import logger

from agents.advisors import StepMetrics, advise
from agents.settings import AgentSettings
from agents.watcher import validator_for
from pipeline.steps.window_optimizer import WindowOptimizer

KEY = "sk-ant-test-SECRET-0123456789abcdef"
# Step 1's real parameters, tunables and validation: what the advisor meets in `watcher run`.
CURRENT = {"trials": 10, "max_seeds": 10_000, "window_min": 6, "window_max": 12, "threshold_min": 0.6,
           "threshold_max": 1.0}  # fmt: skip
TUNABLES = WindowOptimizer.tunables()


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        yield server


@pytest.fixture
def logs() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{message} {extra}")
    yield lines
    logger.remove(sink)


def settings(timeout: float = 1.0, retries: int = 1) -> AgentSettings:
    return AgentSettings.from_mapping({"advisor": {"kind": "auto", "timeout_s": timeout, "max_retries": retries}})


def empty_step() -> StepMetrics:
    return StepMetrics(
        step=1, params=dict(CURRENT), survivors=0, completed_trials=10, seeds_tested=100_000, search="sampled",
        coverage=0.006,
    )  # fmt: skip


def ask(s: AgentSettings | None = None):
    return advise(
        1, empty_step(), [empty_step()], s or settings(), current_params=CURRENT, tunables=TUNABLES,
        validate=validator_for(WindowOptimizer),
    )  # fmt: skip


def assert_no_key(outcome: object, logs: list[str]) -> None:
    assert KEY not in json.dumps(outcome.to_dict(), default=str)  # type: ignore[attr-defined]
    assert KEY not in repr(outcome)
    assert not any(KEY in line for line in logs)


def test_valid_tool_call_is_applied(api: FakeMessagesAPI, logs: list[str]) -> None:
    answer = {"trials": 120, "max_seeds": 200_000, "decision": "RETRY", "confidence": 0.8, "reasoning": "search more"}
    api.script.replies.append((200, tool_reply(answer), 0))
    outcome = ask()
    assert outcome.advisor == "claude" and outcome.fallback_reason is None
    assert outcome.applied == {**CURRENT, "trials": 120, "max_seeds": 200_000}
    assert outcome.clamps == [] and outcome.raw == answer
    sent = api.script.requests[0]
    assert sent["path"] == "/v1/messages"
    assert sent["json"]["tool_choice"] == {"type": "tool", "name": "propose_step_budget"}
    context = json.loads(sent["json"]["messages"][0]["content"])
    assert "rule_advisor_proposal" in context and context["last_attempt"]["coverage"] == 0.006
    assert context["tunable_bounds"]["trials"] == {"min": 10, "max": 500, "integer": True}
    assert context["tunable_bounds"]["threshold_min"] == {"min": 0.0, "max": 1.0, "integer": False}
    schema = sent["json"]["tools"][0]["input_schema"]["properties"]
    assert set(schema) == {*CURRENT, "decision", "confidence", "reasoning"}  # the step's own names
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert KEY in (headers.get("x-api-key", "") + headers.get("authorization", ""))  # sent; never logged
    assert_no_key(outcome, logs)


def test_out_of_bound_values_are_clamped_and_recorded(api: FakeMessagesAPI, logs: list[str]) -> None:
    answer = {"trials": 5000, "max_seeds": 10, "threshold_min": 3.0, "decision": "RETRY", "confidence": 1,
              "reasoning": "x"}  # fmt: skip
    api.script.replies.append((200, tool_reply(answer), 0))
    outcome = ask()
    assert outcome.advisor == "claude"
    assert outcome.applied == {**CURRENT, "trials": 500, "max_seeds": 10_000, "threshold_min": 1.0}
    assert {(c.field, c.asked, c.applied) for c in outcome.clamps} == {
        ("trials", 5000, 500), ("max_seeds", 10, 10_000), ("threshold_min", 3.0, 1.0),
    }  # fmt: skip
    assert outcome.change_text == " -> next attempt: trials 500, threshold_min 1"  # max_seeds stays 10000
    assert_no_key(outcome, logs)


def test_window_changes_the_step_would_reject_are_undone(api: FakeMessagesAPI) -> None:
    answer = {"window_min": 20, "threshold": 0.9, "decision": "RETRY", "confidence": 1, "reasoning": "x"}
    api.script.replies.append((200, tool_reply(answer), 0))
    outcome = ask()
    assert outcome.advisor == "rules" and "threshold" in (outcome.fallback_reason or "")  # not a field of step 1
    answer = {"window_min": 20, "threshold_min": 0.9, "decision": "RETRY", "confidence": 1, "reasoning": "x"}
    api.script.replies.append((200, tool_reply(answer), 0))
    outcome = ask()
    assert outcome.applied == {**CURRENT, "threshold_min": 0.9}  # window_min 20 > window_max 12: undone
    (undone,) = [c for c in outcome.clamps if c.applied is None]
    assert undone.field == "window_min" and "window_min 20 is above window_max 12" in undone.reason


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ((200, text_reply("I think you should run more trials."), 0), "no tool call"),
        ((200, tool_reply({"trials": "many", "decision": "RETRY", "confidence": 1, "reasoning": "x"}), 0), "trials"),
        ((200, tool_reply({"trials": 20, "decision": "MAYBE", "confidence": 1, "reasoning": "x"}), 0), "decision"),
        ((200, "{not json", 0), "APIResponseValidationError|JSONDecodeError|Error"),
    ],
    ids=["text-only", "wrong-type", "bad-enum", "malformed-json"],
)
def test_bad_answers_fall_back_to_rules(api: FakeMessagesAPI, logs: list[str], reply: tuple, reason: str) -> None:
    api.script.replies.append(reply)
    outcome = ask()
    assert outcome.advisor == "rules"
    assert outcome.fallback_reason and __import__("re").search(reason, outcome.fallback_reason)
    assert outcome.applied["trials"] == 50  # the rules' answer for 0 survivors after 10 trials
    assert_no_key(outcome, logs)


def test_overloaded_then_success_uses_claude(api: FakeMessagesAPI) -> None:
    answer = {"trials": 40, "decision": "RETRY", "confidence": 0.6, "reasoning": "ok"}
    api.script.replies += [(529, error_body("overloaded_error", "Overloaded"), 0), (200, tool_reply(answer), 0)]
    outcome = ask(settings(retries=2))
    assert outcome.advisor == "claude" and outcome.applied["trials"] == 40
    assert len(api.script.requests) == 2


def test_server_error_every_time_falls_back_in_bounded_time(api: FakeMessagesAPI, logs: list[str]) -> None:
    api.script.default = (500, error_body("api_error", "boom"), 0)
    started = time.monotonic()
    outcome = ask(settings(retries=2))
    assert time.monotonic() - started < 10
    assert outcome.advisor == "rules" and "InternalServerError" in (outcome.fallback_reason or "")
    assert len(api.script.requests) == 3  # the first try and two SDK retries
    assert_no_key(outcome, logs)


def test_slow_reply_past_timeout_falls_back(api: FakeMessagesAPI) -> None:
    answer = {"trials": 40, "decision": "RETRY", "confidence": 0.6, "reasoning": "late"}
    api.script.default = (200, tool_reply(answer), 3.0)
    started = time.monotonic()
    outcome = ask(settings(timeout=0.5, retries=0))
    elapsed = time.monotonic() - started
    assert outcome.advisor == "rules" and "Timeout" in (outcome.fallback_reason or "")
    assert elapsed < 2.5, elapsed


def test_no_key_means_rules_with_one_log_line(monkeypatch: pytest.MonkeyPatch, logs: list[str]) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    import agents.advisors.select as advisors

    monkeypatch.setattr(advisors, "_warned_no_key", False)
    outcome = advise(1, empty_step(), [], settings(), current_params=CURRENT, tunables=TUNABLES)
    advise(1, empty_step(), [], settings(), current_params=CURRENT, tunables=TUNABLES)
    assert outcome.advisor == "rules" and outcome.fallback_reason is None
    assert sum("no ANTHROPIC_API_KEY" in line for line in logs) == 1
