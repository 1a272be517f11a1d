"""Step 1's sweep bookkeeping, the chance tail and the prior window: pure functions on values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.prng.chance import poisson_tail, significant
from pipeline.prng.data import DataSpec
from pipeline.prng.sweep import Sweep, covered_length, gaps, merge
from pipeline.prng.windows import PRIOR_EXPECTATION, expected_bidirectional, prior_window


def test_merge_and_gaps() -> None:
    assert merge([(5, 9), (0, 3), (3, 4), (8, 12), (20, 20)]) == [(0, 4), (5, 12)]
    assert gaps([(0, 4), (5, 12)], 0, 15) == [(4, 5), (12, 15)]
    assert covered_length([(0, 4), (2, 6), (10, 30)], 0, 20) == 16


def test_blocks_go_lowest_first_and_a_failed_block_is_handed_out_again() -> None:
    sweep = Sweep.resume(0, 100, [(0, (0, 10)), (0, (30, 40))])  # (10, 30) was a killed trial's block
    assert [sweep.take(10)[1] for _ in range(3)] == [(10, 20), (20, 30), (40, 50)]
    assert sweep.coverage == pytest.approx(0.5)


def test_a_finished_pass_opens_the_next() -> None:
    sweep = Sweep.resume(0, 20, [(0, (0, 20))])
    assert sweep.pass_number == 1 and sweep.remaining == 20
    sweep = Sweep.resume(0, 20, [(0, (0, 15))])
    assert sweep.take(10) == (0, (15, 20)) and sweep.take(10) == (1, (0, 10))


def test_a_budget_larger_than_the_rest_of_the_pass_is_cut_to_cover_it_once() -> None:
    sweep = Sweep(0, 1 << 24, 0, [])
    assert sweep.cap(50, 100_000) == 100_000  # fits: untouched
    capped = sweep.cap(500, 10_000_000)  # the hostile budget of the issue
    assert capped == math.ceil((1 << 24) / 500) and 500 * capped >= 1 << 24 > 499 * capped
    blocks = [sweep.take(capped)[1] for _ in range(500)]
    assert sum(e - s for s, e in blocks) == 1 << 24 and covered_length(blocks, 0, 1 << 24) == 1 << 24


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 200)), max_size=20), st.integers(1, 50))
def test_takes_never_overlap_within_a_pass(raw: list[tuple[int, int]], size: int) -> None:
    done = [(0, (min(a, b), max(a, b))) for a, b in raw]
    sweep = Sweep.resume(0, 200, done)
    start_pass, before = sweep.pass_number, list(sweep.covered)
    taken = []
    while sweep.pass_number == start_pass and len(taken) < 400:
        number, block = sweep.take(size)
        if number == start_pass:
            taken.append(block)
    assert covered_length([*before, *taken], 0, 200) == covered_length(before, 0, 200) + sum(e - s for s, e in taken)


def test_poisson_tail_against_known_values() -> None:
    assert poisson_tail(0, 3.0) == 1.0 and poisson_tail(1, 0.0) == 0.0
    assert poisson_tail(1, 1e-6) == pytest.approx(1e-6, rel=1e-5)
    assert poisson_tail(5, 1.0) == pytest.approx(0.0036598468, rel=1e-6)
    assert poisson_tail(3, 3.0) == pytest.approx(0.5768099189, rel=1e-6)
    assert poisson_tail(120, 100.0) == pytest.approx(0.0282303940, rel=1e-6)
    assert 0 < poisson_tail(200, 1.0) < 1e-300 or poisson_tail(200, 1.0) == 0.0


def test_significance_is_relative_to_chance() -> None:
    assert significant(1, 1e-9) and not significant(0, 1e-9)
    assert not significant(110, 100.0) and significant(140, 100.0)


def test_prior_window_is_the_smallest_below_the_chance_bar() -> None:
    data = DataSpec(seed_range=(0, 1 << 29), offset_range=(0, 3), skip_range=(0, 1))
    window, expected = prior_window(data, 96)
    assert expected < PRIOR_EXPECTATION <= expected_bidirectional(data, 1 << 29, window - 1, 1.0)
    assert expected == expected_bidirectional(data, 1 << 29, window, 1.0)
