"""The budget loop as an operator meets it: `watcher run` on real step outputs (real sieves, real Optuna
studies, the real store), asserting what each attempt actually received and what the run concluded.

- The incident: 50 trials x 10M seeds finding nothing is retried as 100 x 100K (not 100 x 10M); when the
  sample still finds nothing the run goes on to the exhaustive step with the window chosen before seeing
  the data, and a history no seed explains ends with a verdict and exit 0.
- Thin, insignificant survivors compound the seed budget run over run: 100K, 200K, 400K.
- A rules "tighten" and an LLM window change each reach step 1's params; a hostile LLM budget is
  clamped to the bounds and cut to the search space, so the range is sieved once.
- A seed beyond step 1's reach is still recovered by step 2.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from pipeline.prng.data import DataSpec
from pipeline.prng.sweep import covered_length, merge
from pipeline.prng.synth import make_history
from pipeline.prng.windows import prior_window
from pipeline.store import RunStore

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "agents"))
from fake_messages_api import FakeMessagesAPI, tool_reply  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NO_KEY = {k: v for k, v in os.environ.items() if k not in {"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"}}


def random_history(n: int, modulus: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    day0 = dt.date(2024, 1, 1)  # two draws a day, every (date, session) once: the loader refuses repeats
    return [{"date": (day0 + dt.timedelta(days=i // 2)).isoformat(), "session": ("midday", "evening")[i % 2],
             "draw": rng.randrange(modulus)} for i in range(n)]  # fmt: skip


def case(
    tmp: Path,
    history: list[dict[str, Any]],
    data: dict[str, Any],
    step1: dict[str, Any] | None = None,
    agent: dict[str, Any] | None = None,
) -> Path:
    """A pipeline.yaml over this history: the shipped steps, with the given data section and step-1 params."""
    hist = tmp / "history.json"
    hist.write_text(json.dumps(history))
    spec = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    spec["data"].update(history=str(hist), **data)
    spec["steps"][0]["params"].update(step1 or {})
    spec["steps"][1]["params"]["chunk_seeds"] = 1 << 26
    spec["steps"][2]["params"]["trials"] = 2
    spec["agent"].update(agent or {})
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    config = json.loads((REPO / "distributed_config.json").read_text())
    config["nodes"][0]["ramdisk_path"] = str(tmp / "ramdisk")  # private: other runs on this machine use theirs
    (tmp / "cluster.json").write_text(json.dumps(config))
    return path


def watcher(
    tmp: Path, pipeline: Path | None, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "agents.cli", "--state-dir", str(tmp / "state"), *args]
    cmd += ["--pipeline", str(pipeline), "--config", str(tmp / "cluster.json")] if pipeline else []
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                          env=env or NO_KEY)  # fmt: skip


def attempts(tmp: Path, step: float = 1) -> list[Any]:
    with RunStore(tmp / "state" / "watcher.db", readonly=True) as store:
        return [r for r in store.step_history(number=step)]


def decisions(tmp: Path, run: int = 1) -> list[dict[str, Any]]:
    with RunStore(tmp / "state" / "watcher.db", readonly=True) as store:
        return store.decisions(run)


def step1_trials(tmp: Path, run: int, attempt: int) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{tmp / 'state' / 'optuna.db'}"
    (summary,) = [s for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith("watcher-step1-")]
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    return [t for t in study.trials if t.user_attrs.get("run_id") == run and t.user_attrs.get("attempt") == attempt]


def output(tmp: Path, name: str) -> dict[str, Any]:
    return json.loads((tmp / "state" / "outputs" / name).read_text())["data"]


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """50 x 10M on a 2^29 range (so the coverage cap does not apply) over a history no seed explains."""
    tmp = tmp_path_factory.mktemp("incident")
    data = {"generator": "java_lcg", "seed_range": [0, 1 << 29], "offset_range": [0, 0], "skip_range": [0, 0]}
    pipeline = case(tmp, random_history(60, 1000, seed=5), data, {"trials": 50, "max_seeds": 10_000_000},
                    {"limits": {"retries_per_step": 1, "total_retries": 3}})  # fmt: skip
    return tmp, watcher(tmp, pipeline, "run", "--from-step", "1")


def test_the_incident_is_retried_as_more_trials_fewer_seeds(incident) -> None:
    tmp, res = incident
    assert res.returncode == 0, res.stdout + res.stderr
    first, second = attempts(tmp)
    assert first.params["trials"] == 50 and first.params["max_seeds"] == 10_000_000
    assert first.metrics["survivors"] == 0 and first.metrics["completed_trials"] == 50  # ran to the end: COMPLETE
    assert second.params == {**first.params, "trials": 100, "max_seeds": 100_000}
    # what the step really sieved: 100 trials of 100K-seed blocks, none overlapping the first attempt's
    trials = step1_trials(tmp, 1, second.attempt)
    assert len(trials) == 100 and {b - a for a, b in (t.user_attrs["seed_block"] for t in trials)} == {100_000}
    blocks = [tuple(t.user_attrs["seed_block"]) for t in [*step1_trials(tmp, 1, first.attempt), *trials]]
    assert covered_length(blocks, 0, 1 << 29) == 50 * 10_000_000 + 100 * 100_000
    retry = decisions(tmp)[0]
    assert retry["decision"] == "RETRY" and "0 survivors after 50 trials" in retry["reason"]
    assert retry["reason"].endswith("-> next attempt: trials 100, max_seeds 100000") and "only" not in retry["reason"]


def test_a_fruitless_sample_hands_step_2_the_prior_window(incident) -> None:
    tmp, _ = incident
    proceed = decisions(tmp)[1]
    assert proceed["step"] == 1 and proceed["decision"] == "PROCEED" and "no evidence" in proceed["reason"]
    assert "of the seed range" in proceed["reason"]
    config = output(tmp, "optimal_window_config.json")
    n_train = len(json.loads((tmp / "state" / "outputs" / "train_history.json").read_text()))
    data = DataSpec(seed_range=(0, 1 << 29), offset_range=(0, 0), skip_range=(0, 0))
    assert config["window_source"].startswith("prior") and config["threshold"] == 1.0
    assert config["window_size"] == prior_window(data, n_train)[0]
    sieve = output(tmp, "bidirectional_survivors.json")  # what step 2 actually received and used
    assert (sieve["window_size"], sieve["threshold"], sieve["seed_range"]) == (config["window_size"], 1.0, [0, 1 << 29])


def test_no_seed_ends_with_a_verdict_and_exit_0_everywhere(incident) -> None:
    tmp, res = incident
    verdict = output(tmp, "ranked_survivors.json")["verdict"]
    assert verdict.startswith("no seed reproduces this history: java_lcg seeds [0, 536870912)")
    assert "offsets 0-0, skips 0-0" in verdict and "chance expects" in verdict
    assert verdict in res.stdout and "ESCALATED" not in res.stdout
    status = json.loads(watcher(tmp, None, "status", "--json").stdout)
    assert status["run"]["status"] == "succeeded" and status["run"]["verdict"] == verdict
    report = watcher(tmp, None, "report", "1", "--out", str(tmp / "report.html"))
    assert report.returncode == 0, report.stderr
    assert json.loads((tmp / "stats.json").read_text())["verdict"] == verdict
    assert verdict in (tmp / "report.html").read_text()


def test_thin_insignificant_survivors_compound_the_seed_budget_run_over_run(tmp_path: Path) -> None:
    data = {"generator": "java_lcg", "modulus": 10, "seed_range": [0, 1 << 26], "offset_range": [0, 0],
            "skip_range": [0, 0]}  # fmt: skip
    window = {"window_min": 6, "window_max": 6, "threshold_min": 0.6, "threshold_max": 0.6}
    pipeline = case(tmp_path, random_history(60, 10, seed=7), data, window)
    seen = []
    for run in (1, 2, 3):
        res = watcher(tmp_path, pipeline, "run", "--from-step", "1", "--to-step", "1")
        assert res.returncode == 0, res.stdout + res.stderr
        (last,) = [a for a in attempts(tmp_path) if a.run_id == run]
        assert 0 < last.metrics["survivors"] < 50_000 and last.metrics["significant"] is False
        seen.append(last.params["max_seeds"])
        (d,) = decisions(tmp_path, run)
        assert d["decision"] == "PROCEED" and d["next_run"] == {**d["next_run"], "max_seeds": 2 * seen[-1]}
        assert d["reason"].endswith(f"-> next run: max_seeds {2 * seen[-1]}")
    assert seen == [100_000, 200_000, 400_000]


def test_rules_tighten_reaches_step_1(tmp_path: Path) -> None:
    """lcg32's low bit alternates, so mod 2 every seed matches at some offset: a flood far above chance."""
    data = {"generator": "lcg32", "modulus": 2, "seed_range": [0, 1 << 20], "offset_range": [0, 1],
            "skip_range": [0, 0]}  # fmt: skip
    step1 = {"trials": 5, "max_seeds": 5000, "window_min": 12, "window_max": 12, "threshold_min": 0.8}
    history = make_history("lcg32", 4242, 60, modulus=2)
    pipeline = case(tmp_path, history, data, step1, {"limits": {"retries_per_step": 1}})
    res = watcher(tmp_path, pipeline, "run", "--from-step", "1", "--to-step", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    first, second = attempts(tmp_path)
    assert first.metrics["survivors"] > 1000
    assert second.params == {**first.params, "threshold_min": 0.9}
    assert all(t.params["threshold"] >= 0.9 for t in step1_trials(tmp_path, 1, second.attempt))
    assert "window too loose" in decisions(tmp_path)[0]["reason"]


def test_llm_window_change_reaches_step_1_and_a_hostile_budget_sieves_the_range_once(tmp_path: Path) -> None:
    data = {"generator": "java_lcg", "seed_range": [0, 1 << 22], "offset_range": [0, 1], "skip_range": [0, 0]}
    pipeline = case(tmp_path, random_history(60, 1000, seed=9), data, {"trials": 4, "max_seeds": 10_000},
                    {"advisor": {"kind": "claude", "timeout_s": 5, "max_retries": 0},
                     "bounds": {"trials": {"min": 4, "max": 60}}, "limits": {"retries_per_step": 1}})  # fmt: skip
    hostile = {"threshold_min": 0.9, "trials": 500, "max_seeds": 10_000_000, "decision": "RETRY",
               "confidence": 0.9, "reasoning": "search everything"}  # fmt: skip
    done = {"decision": "PROCEED", "confidence": 0.5, "reasoning": "enough"}
    with FakeMessagesAPI() as api:
        api.script.replies += [(200, tool_reply(hostile), 0), (200, tool_reply(done), 0)]
        env = {**NO_KEY, "ANTHROPIC_API_KEY": "sk-ant-test-key", "ANTHROPIC_BASE_URL": api.url}
        res = watcher(tmp_path, pipeline, "run", "--from-step", "1", "--to-step", "1", env=env)
        requests = list(api.script.requests)
    assert res.returncode == 0, res.stdout + res.stderr
    first, second = attempts(tmp_path)
    assert second.params == {**first.params, "threshold_min": 0.9, "trials": 60, "max_seeds": 10_000_000}
    trials = step1_trials(tmp_path, 1, second.attempt)
    assert len(trials) == 60 and all(t.params["threshold"] >= 0.9 for t in trials)  # the LLM's window, applied
    blocks = [tuple(t.user_attrs["seed_block"]) for t in [*step1_trials(tmp_path, 1, first.attempt), *trials]]
    sieved = sum(b - a for a, b in blocks)
    assert sieved == 1 << 22 == covered_length(merge(blocks), 0, 1 << 22)  # the whole range, exactly once
    assert second.metrics["coverage"] == 1.0
    clamps = decisions(tmp_path)[0]["clamped"]
    assert {"field": "trials", "asked": 500, "applied": 60, "reason": "outside the bounds"} in clamps
    cap = [c for c in decisions(tmp_path)[1]["clamped"] if c["field"] == "max_seeds"]
    assert cap and cap[0]["asked"] == 10_000_000 and "cover the rest of the range once" in cap[0]["reason"]
    first_ask, second_ask = (json.loads(r["json"]["messages"][0]["content"]) for r in requests)
    assert first_ask["last_attempt"]["coverage"] == pytest.approx(4 * 10_000 / (1 << 22), rel=1e-3)
    assert first_ask["tunable_bounds"]["trials"] == {"min": 4, "max": 60, "integer": True}
    assert second_ask["last_attempt"]["coverage"] == 1.0 and second_ask["dataset"].startswith("java_lcg-")
    assert [h["attempt"] for h in second_ask["recent_history"]] == [1]  # earlier attempts; the last is apart


def test_a_seed_beyond_step_1s_reach_is_recovered_by_step_2(tmp_path: Path) -> None:
    data = {"generator": "java_lcg", "seed_range": [0, 1 << 26], "offset_range": [0, 3], "skip_range": [0, 1]}
    history = make_history("java_lcg", 60_000_000, 60, offset=2, skip=1)
    pipeline = case(tmp_path, history, data, None, {"limits": {"retries_per_step": 1}})
    res = watcher(tmp_path, pipeline, "run", "--from-step", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "seed 60000000 recovered" in res.stdout
    step1 = [a for a in attempts(tmp_path)]
    assert [a.metrics["survivors"] for a in step1] == [0, 0] and step1[-1].metrics["coverage"] < 0.3
    assert output(tmp_path, "optimal_window_config.json")["window_source"].startswith("prior")
