"""One verdict for `watcher verify` and the pipeline (pipeline.prng.verdict), and the variable-skip job shape around
it: a seed keeps every (offset, strategy) that passed its window, the training draws choose among them, the
holdout judges that choice, and the chance counts every choice searched; the coordinator believes no row a node
did not earn (answers), and a variable block task carries a canary."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from cluster.scheduler.types import AnswerRejected
from pipeline.prng import answers, canary
from pipeline.prng.data import DataSpec, parse_history
from pipeline.prng.sieve.spec import PRNG_CLUSTER_STRATEGIES
from pipeline.prng.synth import wandering_draws
from pipeline.prng.verdict import Envelope, choose, judge, read, verify_seed
from pipeline.prng.windows import block_tasks, merge_survivors, sieve_payloads, window_batch_job

XS = "prng_cluster.xorshift32"
SEED = 3_333_340  # its wandering history: every strategy passes a 10-draw window, strategy 0 then loses the stream
ENV = Envelope(tuple(range(4)), strategies=PRNG_CLUSTER_STRATEGIES)


@pytest.fixture(scope="module")
def wandering() -> list[int]:
    draws, walk = wandering_draws(XS, SEED, 100, rng_seed=SEED)
    assert walk[0] == 5 and min(walk) >= 5 and max(walk) <= 20
    assert max(abs(a - b) for a, b in itertools.pairwise(walk)) <= 2
    return draws


def test_the_training_draws_choose_the_strategy_and_the_holdout_judges_it(wandering: list[int]) -> None:
    data = DataSpec(generator=XS, seed_range=(SEED - 64, SEED + 64), offset_range=(0, 3), skip_mode="variable")
    tasks = block_tasks(data, wandering[:80], 10, 1.0, SEED - 64, SEED + 64)
    row = merge_survivors([window_batch_job({"tasks": tasks})])[None]["survivors"][SEED]
    # every offset and strategy passes the window; the operators' rule would keep strategy 0 (3 misses / tol 5)
    assert len(row["passing"]) == 20 and (row["offset"], row["strategy"]) == (0, 0)
    (strict,) = read(XS, SEED, wandering[:80], 1000, ENV, [(0, 0)])
    assert sum(strict.hits) < 20  # ... which takes a false match and loses the stream: the old false negative
    assert not judge(XS, SEED, wandering, 80, 1000, ENV, [(0, 0)])["reproduces"]
    cands = [(o, i) for o, i, _m in row["passing"]]
    chosen = choose(XS, SEED, wandering[:80], 1000, ENV, cands)
    got = judge(XS, SEED, wandering, 80, 1000, ENV, cands)
    assert chosen.choice == (got["offset"], got["strategy"]) == (0, 1) and got["matches"] == 100
    assert got["reproduces"] and got["holdout_matches"] == 20 and got["skip_sequence"][:80] == chosen.skips
    # `watcher verify` (every choice of the envelope) says the same, with the same reading
    verified = verify_seed(XS, SEED, wandering, 80, 1000, offsets=range(4), strategies=PRNG_CLUSTER_STRATEGIES)
    assert {k: verified[k] for k in got if k != "candidates"} == {k: got[k] for k in got if k != "candidates"}


def test_the_chance_counts_every_choice_searched(wandering: list[int]) -> None:
    """More offsets and strategies searched mean more ways to match by luck: the expectation grows with them."""
    one = judge(XS, SEED, wandering, 80, 1000, Envelope((0,), strategies=((10, 20),)))
    wide = judge(XS, SEED, wandering, 80, 1000, ENV, [(0, 1)])
    assert one["choices"] == 1 and wide["choices"] == 20
    expected = math.log10(
        4 * sum((1 - 0.999 ** (2 * t + 1)) ** 100 for _m, t in PRNG_CLUSTER_STRATEGIES)
    ) + 32 * math.log10(2)
    assert wide["log10_chance_seeds"] == pytest.approx(expected, abs=1e-6)
    assert wide["log10_chance_seeds"] > one["log10_chance_seeds"] + math.log10(4)


def test_os_randomness_reproduces_under_no_choice() -> None:
    noise = [random.SystemRandom().randrange(1000) for _ in range(100)]
    for seed in (1, SEED, 2**32 - 1):
        got = judge(XS, seed, noise, 80, 1000, ENV)
        assert not got["reproduces"] and got["log10_chance_seeds"] > math.log10(0.01)


def test_a_fixed_skip_seed_is_judged_by_the_same_rule() -> None:
    from pipeline.prng.synth import planted_values

    draws = planted_values("minstd", 99, 50, 1, 2, 1000)
    env = Envelope((0, 1, 2), (0, 1, 2, 3))
    got = judge("minstd", 99, draws, 40, 1000, env, [(1, 2)])
    assert got["reproduces"] and (got["offset"], got["skip"], got["holdout_match"]) == (1, 2, 1.0)
    assert got["choices"] == 12 and got == {**verify_seed("minstd", 99, draws, 40, 1000, offsets=range(3),
                                                          skips=range(4)), "candidates": 1}  # fmt: skip


def _worker(payload: dict) -> dict:
    return {"ok": True, "kind": "window_batch", **window_batch_job(payload)}


def test_a_variable_block_answer_is_believed_only_where_the_coordinator_agrees(wandering: list[int]) -> None:
    data = DataSpec(generator=XS, seed_range=(0, 1 << 32), offset_range=(0, 3), skip_mode="variable")
    payload = sieve_payloads(block_tasks(data, wandering[:80], 10, 1.0, SEED - 500, SEED + 500), 1)[0]
    sealed, planted = canary.plant(payload)
    assert planted is not None and len(sealed["tasks"]) == 2
    task = next(t for t in sealed["tasks"] if t["tag"] == planted["tag"])
    assert task["variable"]["offset"] == 0 and task["variable"]["strategies"] == [
        list(s) for s in PRNG_CLUSTER_STRATEGIES
    ]
    history = parse_history([{"date": f"2024-01-01T{i // 60:02d}:{i % 60:02d}", "session": "s", "draw": d}
                             for i, d in enumerate(wandering)], "h")  # fmt: skip
    answer = answers.check(sealed, _worker(sealed), history, planted)
    (kept,) = answer["tasks"]
    assert kept["tag"] == [None, "variable"] and {r[0] for r in kept["survivors"]} == {SEED}
    assert len(kept["survivors"]) == kept["forward_count"] == 20

    def forged(change) -> dict:
        got = _worker(sealed)
        for t in got["tasks"]:
            if t["tag"] != planted["tag"]:
                change(t)
        return got

    def rejected(change) -> str:
        with pytest.raises(AnswerRejected) as err:
            answers.check(sealed, forged(change), history, planted)
        return err.value.kind

    # a row dropped from a claimed seed, a row invented for a seed that passes nowhere, a wrong match count
    assert rejected(lambda t: (t["survivors"].pop(), t.update(forward_count=19))) == "unverified"
    assert rejected(lambda t: (t["survivors"].append([SEED + 1, 0, 0, 10]), t.update(forward_count=21))) == "unverified"
    assert rejected(lambda t: t["survivors"].__setitem__(0, [SEED, 0, 0, 9])) == "invalid"  # below the window's need
    assert rejected(lambda t: t["survivors"].__setitem__(0, [SEED, 7, 0, 10])) == "invalid"  # offset outside 0..3
    assert rejected(lambda t: t["survivors"].append(t["survivors"][0]) or t.update(forward_count=21)) == "invalid"
    # a worker that finds nothing misses the canary
    silent = _worker(sealed)
    for t in silent["tasks"]:
        t["survivors"], t["forward_count"] = [], 0
    with pytest.raises(AnswerRejected) as err:
        answers.check(sealed, silent, history, planted)
    assert err.value.kind == "canary"
