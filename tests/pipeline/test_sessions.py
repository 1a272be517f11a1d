"""Issue 16 below the steps: data.session, variable skip in the window tasks, scoring with the same skips, the
planted histories and the honest chance expectation of what variable mode tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from cluster.errors import ConfigError
from pipeline.prng.data import DataSpec, load_history, parse_history, select_session, split
from pipeline.prng.scoring import score_job, score_variable
from pipeline.prng.sieve.spec import SieveSpec
from pipeline.prng.sieve.variable import reference_variable_score, strategy_pass_probability
from pipeline.prng.synth import make_history, make_session_history, make_variable_history
from pipeline.prng.verdict import verify_seed
from pipeline.prng.windows import (
    block_tasks,
    expected_bidirectional,
    merge_survivors,
    tasks_per_block,
    window_batch_job,
    with_skip_sequences,
)


def test_default_data_section_dumps_as_before() -> None:
    """New fields at their defaults stay out of the dump, so outputs' input hashes and studies are unchanged."""
    dumped = json.loads(DataSpec().model_dump_json())
    assert set(dumped) == {"history", "generator", "modulus", "holdout_fraction", "seed_range", "offset_range",
                           "skip_range"}  # fmt: skip
    assert json.loads(DataSpec(session="midday", skip_mode="variable").model_dump_json())["skip_mode"] == "variable"


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [("skip_mode", "hybrid", "skip_mode"), ("strategies", [[0, 5]], "strategies"), ("strategies", [], "strategies"),
     ("strategies", [[3, 5], [3, 5]], "twice"), ("session", "", "session")],
)  # fmt: skip
def test_bad_variable_fields_name_the_field(field: str, value, says: str) -> None:
    with pytest.raises(ValidationError) as err:
        DataSpec(**{field: value})
    assert says in str(err.value)


def test_session_filters_and_names_the_field(tmp_path: Path) -> None:
    history = make_session_history("java_lcg", 77, 40, "evening")
    path = tmp_path / "h.json"
    path.write_text(json.dumps(history))
    whole = load_history(path)
    evening = load_history(path, session="evening")
    assert len(whole) == 40 and len(evening) == 20 and set(evening.sessions) == {"evening"}
    assert evening.session == "evening" and select_session(evening, "evening") is evening
    assert evening.draws == tuple(make_history("java_lcg", 77, 20)[i]["draw"] for i in range(20))
    assert select_session(whole, "both") is whole
    with pytest.raises(ConfigError, match=r"^data\.session: 'night' is not a session of .* \(it has midday, evening\)"):
        load_history(path, session="night")
    rows = [("2024-01-01", "am"), ("2024-01-01", "pm"), ("2024-01-02", "am")]
    custom = parse_history([{"date": d, "session": s, "draw": 1} for d, s in rows], "x.json")
    assert custom.session_names() == ("am", "pm") and len(select_session(custom, "am")) == 2


def test_a_variable_task_covers_every_offset_and_strategy_of_its_block() -> None:
    data = DataSpec(skip_mode="variable", offset_range=(0, 2), strategies=((3, 5), (10, 20)))
    tasks = block_tasks(data, list(range(30)), 8, 0.75, 0, 1024, tag=7)
    assert tasks_per_block(data) == len(tasks) == 1
    (task,) = tasks
    assert task["tag"] == [7, "variable"] and (task["start"], task["end"]) == (0, 1024)
    spec = SieveSpec.from_dict(task["variable"])
    assert spec.variable and spec.strategies == ((3, 5), (10, 20)) and spec.residues == tuple(range(8))
    assert spec.offsets == range(0, 3)
    one = block_tasks(DataSpec(skip_mode="variable", offset_range=(4, 4)), [1] * 9, 8, 1.0, 0, 64)[0]["variable"]
    assert one["offset"] == 4 and "offset_max" not in one  # a single offset: the spec as before
    assert tasks_per_block(DataSpec()) == 16  # fixed mode unchanged


def test_variable_window_batch_finds_the_planted_seed_with_its_skips() -> None:
    seed = 5_000
    history, skips = make_variable_history("java_lcg", seed, 40, strategy=(10, 20), rng_seed=1)
    draws = [h["draw"] for h in history]
    data = DataSpec(skip_mode="variable", offset_range=(0, 0), strategies=((3, 5), (10, 20)))
    tasks = block_tasks(data, draws, 12, 1.0, 4096, 8192, tag=None)
    merged = merge_survivors([window_batch_job({"tasks": tasks})])[None]
    rows = list(merged["survivors"].values())
    assert [r["seed"] for r in rows] == [seed] and rows[0]["strategy"] == 1 and rows[0]["forward_matches"] == 12
    assert rows[0]["passing"] == [[0, 1, 12]]
    with_skip_sequences(data, draws, 12, rows)
    assert rows[0]["skip_sequence"] == skips[:12] and rows[0]["strategy_params"] == [10, 20]


def test_merge_keeps_every_passing_pair_and_shows_the_first_offset_then_strategy_with_most_matches() -> None:
    result = {"tasks": [
        {"tag": [1, "variable"], "forward_count": 5,
         "survivors": [[9, 1, 0, 8], [9, 0, 2, 7], [4, 0, 1, 6], [9, 0, 0, 5], [9, 0, 1, 7]]},
    ]}  # fmt: skip
    merged = merge_survivors([result])[1]
    assert merged["forward"] == 5
    assert merged["survivors"][9] == {"seed": 9, "skip_mode": "variable", "strategy": 1, "offset": 0,
                                      "forward_matches": 7, "reverse_matches": 7,
                                      "passing": [[0, 0, 5], [0, 1, 7], [0, 2, 7], [1, 0, 8]]}  # fmt: skip
    assert merged["survivors"][4]["passing"] == [[0, 1, 6]]
    # one-(offset, strategy) tasks of an earlier version (stored before an upgrade) merge the same way
    old = {"tasks": [
        {"tag": [1, 0, 0], "forward_count": 1, "survivors": [[9, 0, 5, 5]]},
        {"tag": [1, 0, 1], "forward_count": 2, "survivors": [[9, 0, 7, 7], [4, 0, 6, 6]]},
        {"tag": [1, 0, 2], "forward_count": 1, "survivors": [[9, 0, 7, 7]]},
        {"tag": [1, 1, 0], "forward_count": 1, "survivors": [[9, 0, 8, 8]]},
    ]}  # fmt: skip
    assert merge_survivors([old])[1]["survivors"] == merged["survivors"]


def test_variable_expectation_is_honest_against_random_seeds() -> None:
    """What variable mode tests, measured: random seeds against a random window never pass more often than the
    expectation the steps use says (and not wildly less: it is a bound, not a guess)."""
    rng = random.Random(4)
    residues = [rng.randrange(1000) for _ in range(5)]
    data = DataSpec(skip_mode="variable", offset_range=(0, 0), strategies=((20, 50), (10, 20)))
    tasks = block_tasks(data, residues, 5, 0.6, 0, 1 << 15)
    merged = merge_survivors([window_batch_job({"tasks": tasks})])[None]
    observed = len(merged["survivors"])
    expected = expected_bidirectional(data, 1 << 15, 5, 0.6)
    assert observed <= expected * 1.2 + 5 and observed >= expected * 0.2, (observed, expected)
    need3 = strategy_pass_probability(5, 3, 1000, 20, 50, True)
    assert expected == pytest.approx((1 << 15) * (need3 + strategy_pass_probability(5, 3, 1000, 10, 20, True)))
    # versus the fixed-skip chance of the same window (1 chance per draw per skip), orders of magnitude more
    fixed = expected_bidirectional(DataSpec(offset_range=(0, 0), skip_range=(0, 0)), 1 << 15, 5, 0.6)
    assert expected > 1000 * fixed


def test_scoring_uses_the_same_skips_and_carries_them_into_the_holdout(tmp_path: Path) -> None:
    seed = 1_234
    history, skips = make_variable_history("prng_cluster.xorshift32", seed, 50, offset=2, strategy=(7, 10))
    draws = [h["draw"] for h in history]
    train, holdout = draws[:40], draws[40:]
    spec = SieveSpec("prng_cluster.xorshift32", tuple(train), 1.0, offset=2, skip_mode="variable",
                     strategies=((7, 10),))  # fmt: skip
    assert reference_variable_score(spec, seed) == (0, 40, skips[:40])
    assert score_variable("prng_cluster.xorshift32", seed, 2, (7, 10), train, holdout, {}) == (1.0, 1.0)
    # without the train draws before it the holdout's skips are unknown: a scan from the offset loses it
    assert score_variable("prng_cluster.xorshift32", seed, 2, (7, 10), [], holdout, {})[1] < 0.5
    (tmp_path / "train.json").write_text(json.dumps(history[:40]))
    (tmp_path / "holdout.json").write_text(json.dumps(history[40:]))
    job = {"kind": "score", "generator": "prng_cluster.xorshift32", "skip_mode": "variable",
           "history_file": str(tmp_path / "holdout.json"), "lead_file": str(tmp_path / "train.json"),
           "first_index": 40, "survivors": [[seed, 2, 7, 10], [seed + 1, 2, 7, 10]],
           "param_sets": [{"recency_weight": 0.5, "partial_weight": 0.1}]}  # fmt: skip
    out = score_job(job)
    assert out["exact"][0] == 1.0 and out["scores"][0][0] == 1.0 and out["exact"][1] < 0.5 and out["draws"] == 10


def test_split_of_a_session() -> None:
    history = parse_history(make_session_history("java_lcg", 3, 60, "midday"), "h.json")
    train, holdout = split(select_session(history, "midday"), 0.2)
    assert len(train) == 24 and len(holdout) == 6


def test_verify_seed_fixed_and_variable() -> None:
    draws = [h["draw"] for h in make_history("minstd", 99, 50, offset=1, skip=2)]
    got = verify_seed("minstd", 99, draws, 40, 1000, offsets=range(0, 3), skips=range(0, 4))
    assert (got["offset"], got["skip"], got["matches"], got["holdout_matches"]) == (1, 2, 50, 10)
    assert got["reproduces"] and got["choices"] == 12 and got["log10_chance_seeds"] < -100
    wrong = verify_seed("minstd", 98, draws, 40, 1000, offsets=range(0, 3), skips=range(0, 4))
    assert not wrong["reproduces"] and wrong["log10_chance_seeds"] > 0
    history, skips = make_variable_history("prng_cluster.pcg32_hybrid", 7, 30, strategy=(3, 5))
    draws = [h["draw"] for h in history]
    got = verify_seed("prng_cluster.pcg32_hybrid", 7, draws, 24, 1000, offsets=[0], strategies=[(3, 5), (20, 50)])
    assert got["reproduces"] and got["strategy"] == 0 and got["skip_sequence"] == skips
    # the chosen strategy's chance per draw; the significance sums every strategy's tail
    assert got["chance_per_draw"] == pytest.approx(1 - 0.999**11) and got["choices"] == 2
