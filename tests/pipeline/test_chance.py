from __future__ import annotations

import math

import pytest

from pipeline.prng.chance import binomial_tail, expected_chance_survivors, pass_probability, required_matches


def test_required_matches_survives_float_noise() -> None:
    assert 0.07 * 100 > 7  # the trap: a naive ceil would ask for 8
    assert required_matches(100, 0.07) == 7
    assert required_matches(100, 0.28) == 28
    assert required_matches(8, 1.0) == 8
    assert required_matches(8, 0.01) == 1
    assert required_matches(3, 0.5) == 2


def test_full_window_probability_is_one_over_modulus_to_the_k() -> None:
    assert pass_probability(3, 1.0, 10, 1) == pytest.approx(1e-3)
    assert pass_probability(8, 1.0, 1000, 1) == pytest.approx(1e-24)


def test_skips_combine_as_independent_trials() -> None:
    p = pass_probability(4, 0.5, 7, 1)
    assert pass_probability(4, 0.5, 7, 5) == pytest.approx(1 - (1 - p) ** 5)


def test_tail_sums_binomial_terms() -> None:
    direct = sum(math.comb(5, i) * 0.3**i * 0.7 ** (5 - i) for i in (3, 4, 5))
    assert binomial_tail(5, 3, 0.3) == pytest.approx(direct)
    assert binomial_tail(5, 0, 0.3) == 1.0
    assert binomial_tail(5, 6, 0.3) == 0.0


def test_tiny_probabilities_keep_precision_over_many_skips() -> None:
    p = pass_probability(8, 1.0, 1000, 1000)
    assert p == pytest.approx(1e-21, rel=1e-9)


def test_expected_survivors_scales_with_seeds() -> None:
    assert expected_chance_survivors(2**32, 3, 1.0, 1000, 1) == pytest.approx(2**32 / 1e9)
    assert expected_chance_survivors(0, 3, 1.0, 1000, 1) == 0.0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((0, 0.5, 10, 1), "k="),
        ((3, 0.0, 10, 1), "threshold"),
        ((3, 0.5, 1, 1), "modulus"),
        ((3, 0.5, 10, 0), "n_skips"),
    ],
)
def test_invalid_arguments(args: tuple, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        pass_probability(*args)
