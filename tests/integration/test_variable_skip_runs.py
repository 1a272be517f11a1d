"""Issue 16 through `watcher run`: a variable-skip history planted with the operators' strategy semantics is
recovered with `data.skip_mode: variable` (survivors carry their strategy and skip sequence, step 3 scores with
the same skips, the chance expectation is the variable window's), and a history whose seed drives only one
session is recovered with `data.session`, and by step 1 searching the session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.prng.data import DataSpec
from pipeline.prng.scoring import variable_chance_baseline
from pipeline.prng.synth import make_session_history, make_variable_history
from pipeline.prng.windows import expected_bidirectional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_budget_loop import attempts, case, output, random_history, step1_trials, watcher

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 41_234
RANGE = [0, 1 << 16]
STEP1 = {"trials": 4, "max_seeds": 1 << 14, "window_min": 10, "window_max": 12, "threshold_min": 0.9}


@pytest.fixture(scope="module")
def variable_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("variable")
    history, skips = make_variable_history("java_lcg", SEED, 80, offset=1, strategy=(10, 20), rng_seed=3)
    data = {"generator": "java_lcg", "seed_range": RANGE, "offset_range": [0, 1], "skip_mode": "variable",
            "strategies": [[3, 5], [10, 20]]}  # fmt: skip
    pipeline = case(tmp, history, data, STEP1)
    return tmp, skips, watcher(tmp, pipeline, "run", "--from-step", "1")


def test_variable_skip_history_is_recovered_with_its_strategy_and_skips(variable_run) -> None:
    tmp, skips, res = variable_run
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"seed {SEED} recovered" in res.stdout, res.stdout
    sieve = output(tmp, "bidirectional_survivors.json")
    assert sieve["skip_mode"] == "variable" and sieve["strategies"] == [[3, 5], [10, 20]]
    (row,) = [r for r in sieve["survivors"] if r["seed"] == SEED]
    assert row["strategy"] == 1 and row["strategy_params"] == [10, 20]
    config = output(tmp, "optimal_window_config.json")
    window = config["window_size"]
    assert row["offset"] <= 1 and row["skip_sequence"][1:] == skips[1:window]  # offset 0 absorbs one output
    # the expectation a step reports is the variable window's, over every offset and strategy
    spec = DataSpec(seed_range=tuple(RANGE), offset_range=(0, 1), skip_mode="variable", strategies=((3, 5), (10, 20)))
    assert sieve["expected_chance"] == pytest.approx(
        expected_bidirectional(spec, RANGE[1], window, config["threshold"])
    )
    ranked = output(tmp, "ranked_survivors.json")
    top = ranked["ranked"][0]
    assert top["seed"] == SEED and top["train_match"] == 1.0 and top["holdout_match"] == 1.0
    assert top["confirmed"] is True
    # a random seed's score under the widest window (tolerance 20: 41 chances per draw), not the fixed 1/1000
    assert ranked["chance_baseline"] == pytest.approx(variable_chance_baseline(ranked["scorer"], 20))
    assert ranked["chance_baseline"] > 0.04


def test_session_filtered_history_is_recovered(tmp_path: Path) -> None:
    history = make_session_history("java_lcg", SEED, 120, "evening", skip=1)
    data = {"generator": "java_lcg", "seed_range": RANGE, "offset_range": [0, 1], "skip_range": [0, 1],
            "session": "evening"}  # fmt: skip
    res = watcher(tmp_path, case(tmp_path, history, data, STEP1), "run", "--from-step", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"seed {SEED} recovered" in res.stdout, res.stdout
    assert output(tmp_path, "bidirectional_survivors.json")["session"] == "evening"
    split = (tmp_path / "state" / "outputs" / "train_history.json").read_text()
    assert "midday" not in split


def test_step1_searches_the_session(tmp_path: Path) -> None:
    history = make_session_history("java_lcg", SEED, 120, "evening", skip=0)
    data = {"generator": "java_lcg", "seed_range": [SEED - 4096, SEED + 4096], "offset_range": [0, 0],
            "skip_range": [0, 0]}  # fmt: skip
    step1 = {"trials": 6, "max_seeds": 1 << 13, "window_min": 10, "window_max": 12, "threshold_min": 0.9,
             "search_session": True}  # fmt: skip
    res = watcher(tmp_path, case(tmp_path, history, data, step1), "run", "--from-step", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    (first, *_) = attempts(tmp_path)
    trials = step1_trials(tmp_path, 1, first.attempt)
    assert {t.params["session"] for t in trials} <= {"both", "midday", "evening"}
    assert all(t.user_attrs["session"] == t.params["session"] for t in trials)
    config = output(tmp_path, "optimal_window_config.json")
    assert config["session"] == "evening", [(t.params, t.value) for t in trials]
    assert f"seed {SEED} recovered" in res.stdout, res.stdout


def test_an_unknown_session_is_one_line_naming_the_field(tmp_path: Path) -> None:
    data = {"generator": "java_lcg", "seed_range": RANGE, "session": "night"}
    res = watcher(tmp_path, case(tmp_path, random_history(60, 1000, 1), data, STEP1), "run", "--from-step", "1")
    assert res.returncode == 78, res.stdout + res.stderr
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if "data.session: 'night' is not a session" in ln]
    assert lines and all("(it has midday, evening)" in ln for ln in lines)
