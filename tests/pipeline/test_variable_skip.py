"""Variable-skip ("hybrid") sieving: their strategy semantics, identical on every path, and its chance rate."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seed_lists import scattered

from pipeline.prng.generators.reference import GENERATORS, generate
from pipeline.prng.sieve import SieveSpec, SieveSpecError, sieve_range, verify_seeds
from pipeline.prng.sieve.spec import PRNG_CLUSTER_STRATEGIES
from pipeline.prng.sieve.variable import (
    draw_hit_probability,
    expected_variable_chance_survivors,
    reference_variable_sieve,
    spec_chance_survivors,
    strategy_pass_probability,
)

TOP = 1 << 32


def plant(generator: str, seed: int, skips: list[int], modulus: int = 1000) -> tuple[int, ...]:
    """A history drawn with their semantics: before draw j, skip_j outputs are discarded; the next is the draw."""
    stream = generate(generator, seed, sum(skips) + len(skips))
    pos, out = 0, []
    for s in skips:
        pos += s
        out.append(stream[pos] % modulus)
        pos += 1
    return tuple(out)


def walk(rng: random.Random, n: int, start: int = 5, step: int = 3) -> list[int]:
    """Skips that drift by at most `step` per draw, as a strategy with tolerance >= step can follow."""
    skips, s = [], start
    for _ in range(n):
        s = max(0, s + rng.randint(-step, step))
        skips.append(s)
    return skips


@pytest.mark.parametrize(
    "generator",
    ["prng_cluster.java_lcg", "prng_cluster.lcg32_hybrid", "prng_cluster.pcg32_hybrid", "prng_cluster.mt19937",
     "prng_cluster.xoshiro256pp", "prng_cluster.philox4x32", "mt19937"],
)  # fmt: skip
def test_planted_variable_history_recovered_random_seeds_rejected(generator: str) -> None:
    rng = random.Random(generator)
    seed = 2**32 - 700
    fixed_window = generator.split(".")[-1] in ("xoshiro256pp", "philox4x32", "sfc64")
    # group B never moves its window: keep the skips within 5 +/- 5 (strategy 0's window [0, 10])
    skips = [rng.randint(0, 10) for _ in range(20)] if fixed_window else walk(rng, 20)
    spec = SieveSpec(generator, plant(generator, seed, skips), 0.75, skip_mode="variable")
    lo, hi = TOP - 2000, TOP
    fast = sieve_range(spec, lo, hi, device="cpu", path="fast")
    found = {s: (strategy, m, seq) for s, strategy, m, seq in fast.variable_survivors()}
    assert seed in found
    strategy, matches, sequence = found[seed]
    assert matches >= 18
    # the first (smallest) matching skip is taken, so a chance match earlier in the window can stand in for the
    # planted one (their kernels do the same); at least half the draws still report the planted skip
    assert sum(a == b for a, b in zip(sequence, skips, strict=True)) >= 10
    assert strategy in range(len(PRNG_CLUSTER_STRATEGIES))
    # random seeds: 0.75 of 20 draws is far beyond chance, so the planted seed is the only survivor
    assert list(found) == [seed]
    near = (seed - 200, seed + 200)  # the torch path re-reads MT streams in Python-driven steps: a narrower range
    torch_found = sieve_range(spec, *near, device="cpu", path="fallback").variable_survivors()
    assert torch_found == [s for s in fast.variable_survivors() if near[0] <= s[0] < near[1]]
    assert spec_chance_survivors(spec, hi - lo) < 1e-6


def test_skip_sequence_and_strategy_follow_their_rules() -> None:
    # a jump of 15 in the skip is beyond tolerance 5 and 10 but inside 20: lenient_continuous (id 1) wins
    skips = [5, 5, 20, 20, 20, 20]
    spec = SieveSpec("prng_cluster.lcg32", plant("prng_cluster.lcg32", 99, skips), 1.0, skip_mode="variable")
    got = reference_variable_sieve(spec, [99])
    assert got == [(99, 1, 6, skips)]
    assert sieve_range(spec, 90, 110, device="cpu", path="fast").variable_survivors() == got
    assert verify_seeds(spec, [99, 100], device="cpu").variable_survivors() == got
    # a custom strategy list: only (3, 5) given, the jump is lost and the scan gives up after 3 misses
    strict = SieveSpec(**{**spec.to_dict(), "strategies": [[3, 5]], "threshold": 0.3})
    ((_, strategy, matches, sequence),) = reference_variable_sieve(strict, [99])
    assert (strategy, matches) == (0, 2)
    assert sequence == [5, 5, 5, 5, 5, -1]  # misses record the expected skip; -1 after giving up


@st.composite
def variable_cases(draw: st.DrawFn) -> tuple[SieveSpec, int, int]:
    generator = draw(st.sampled_from(GENERATORS))
    n = draw(st.sampled_from([1, 30, 100]))
    where = draw(st.sampled_from(["zero", "top", "any"]))
    start = 0 if where == "zero" else TOP - n if where == "top" else draw(st.integers(0, TOP - n))
    seed = start + draw(st.integers(0, n - 1))
    modulus = draw(st.sampled_from([10, 100, 1000]))
    skips = draw(st.lists(st.integers(0, 12), min_size=1, max_size=8))
    residues = list(plant(generator, seed, skips, modulus))
    if draw(st.booleans()):
        residues[-1] = (residues[-1] + 1) % modulus
    strategies = draw(st.lists(st.sampled_from((*PRNG_CLUSTER_STRATEGIES, (1, 0), (2, 3))), max_size=3))
    spec = SieveSpec(
        generator,
        tuple(residues),
        draw(st.sampled_from([0.3, 0.6, 1.0])),
        modulus=modulus,
        offset=draw(st.sampled_from([0, 4])),
        skip_mode="variable",
        strategies=tuple(strategies),
    )
    return spec, start, start + n


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variable_cases())
def test_variable_paths_identical(case: tuple[SieveSpec, int, int]) -> None:
    spec, start, end = case
    expected = reference_variable_sieve(spec, range(start, end))
    assert sieve_range(spec, start, end, device="cpu", path="fast").variable_survivors() == expected
    assert sieve_range(spec, start, end, device="cpu", path="fallback").variable_survivors() == expected
    picked = scattered(start, end)
    wanted = [s for s in expected if s[0] in set(picked.tolist())]
    assert verify_seeds(spec, picked, device="cpu").variable_survivors() == wanted  # numba, run by run
    assert verify_seeds(spec, picked, device="cpu", path="fallback").variable_survivors() == wanted


def test_chance_counts_every_candidate_in_the_window() -> None:
    assert draw_hit_probability(0, 1000) == pytest.approx(0.001)
    assert draw_hit_probability(5, 1000) == pytest.approx(1 - 0.999**11)
    assert draw_hit_probability(50, 1000) == pytest.approx(1 - 0.999**101)
    # the give-up rule: with one miss allowed in a row (adaptive), 2 draws need both to hit
    q = draw_hit_probability(5, 1000)
    assert strategy_pass_probability(2, 2, 1000, 1, 5, True) == pytest.approx(q * q)
    # wide strategies dominate: a fixed-skip reading of "10/20 matches" would claim ~1e-25
    wide = expected_variable_chance_survivors(2**32, 20, 0.25, 1000)
    strict = expected_variable_chance_survivors(2**32, 20, 0.25, 1000, [(3, 5)])
    assert wide > 1000 * strict > 0


def test_chance_expectation_matches_what_random_seeds_do() -> None:
    """Random seeds on a random history: the observed survivor count sits at or below the expectation
    (the bound errs high) and within a small factor of it."""
    rng = random.Random(4)
    history = tuple(rng.randrange(100) for _ in range(12))
    spec = SieveSpec("prng_cluster.xorshift128", history, 0.25, modulus=100, skip_mode="variable")
    n = 20000
    observed = len(sieve_range(spec, 10**6, 10**6 + n, device="cpu", path="fast"))
    expected = spec_chance_survivors(spec, n)
    assert 50 < observed <= 1.3 * expected
    assert observed > expected / 4


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"skip_mode": "hybrid"}, "spec.skip_mode"),
        ({"skip_mode": "variable", "skip_max": 2}, "skip_max"),
        ({"skip_mode": "variable", "direction": "reverse"}, "spec.direction"),
        ({"skip_mode": "variable", "strategies": [[0, 5]]}, "spec.strategies[0]"),
        ({"skip_mode": "variable", "strategies": [[3]]}, "spec.strategies[0]"),
        ({"strategies": [[3, 5]]}, "spec.strategies"),
    ],
)
def test_variable_spec_fields_are_named(change: dict, field: str) -> None:
    with pytest.raises(SieveSpecError, match=re.escape(field)):
        SieveSpec.from_dict({"generator": "prng_cluster.pcg32", "residues": [1, 2], "threshold": 1.0, **change})


def test_variable_spec_defaults_and_round_trip() -> None:
    spec = SieveSpec("prng_cluster.sfc64", (1, 2, 3), 0.5, skip_mode="variable")
    assert spec.strategies == ((3, 5), (10, 20), (5, 5), (7, 10), (20, 50))
    assert SieveSpec.from_dict(spec.to_dict()) == spec
    fixed = SieveSpec("lcg32", (1, 2), 1.0)
    assert "skip_mode" not in fixed.to_dict() and "strategies" not in fixed.to_dict()
