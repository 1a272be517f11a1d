"""How many seeds pass a sieve by luck alone.

The window optimizer rewards survivors that are unlikely by chance, so it needs the chance rate for a
(window, threshold, modulus, skip range) without running anything. Pure functions, no I/O.
"""

from __future__ import annotations

import math


def required_matches(k: int, threshold: float) -> int:
    """ceil(threshold*k), rounded first so that e.g. 0.7*10 = 7.000000000000001 still needs 7 matches, not 8."""
    if k < 1:
        raise ValueError(f"window size k={k} must be >= 1")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold={threshold} must satisfy 0 < threshold <= 1")
    return max(1, math.ceil(round(threshold * k, 9)))


def binomial_tail(k: int, need: int, p: float) -> float:
    """P(Binomial(k, p) >= need)."""
    if need <= 0:
        return 1.0
    if need > k:
        return 0.0
    q = 1.0 - p
    return min(1.0, sum(math.comb(k, i) * p**i * q ** (k - i) for i in range(need, k + 1)))


def pass_probability(k: int, threshold: float, modulus: int, n_skips: int) -> float:
    """Probability that a random seed passes: at least one of n_skips independent skips reaches the threshold."""
    if modulus < 2:
        raise ValueError(f"modulus={modulus} must be >= 2")
    if n_skips < 1:
        raise ValueError(f"n_skips={n_skips} must be >= 1")
    per_skip = binomial_tail(k, required_matches(k, threshold), 1.0 / modulus)
    if per_skip >= 1.0:
        return 1.0
    # 1 - (1 - p)^n without cancellation when p is tiny
    return -math.expm1(n_skips * math.log1p(-per_skip))


def expected_chance_survivors(seeds: int, k: int, threshold: float, modulus: int, n_skips: int) -> float:
    """Expected number of survivors among `seeds` random seeds that match only by chance."""
    if seeds < 0:
        raise ValueError(f"seeds={seeds} must be >= 0")
    return seeds * pass_probability(k, threshold, modulus, n_skips)


def poisson_tail(observed: int, expected: float) -> float:
    """P(X >= observed) for X ~ Poisson(expected): how likely this many chance survivors are.

    Above the mean the tail's terms shrink, so it is summed directly (no 1 - cdf cancellation when it is
    tiny); at or below the mean 1 - cdf is well conditioned. Terms are built from the log of the first."""
    if observed <= 0:
        return 1.0
    if expected <= 0:
        return 0.0
    if observed > expected:
        term = math.exp(-expected + observed * math.log(expected) - math.lgamma(observed + 1))
        total, k = 0.0, observed
        while term > total * 1e-17 and k < observed + 100_000:
            total += term
            k += 1
            term *= expected / k
        return min(1.0, total)
    term = cdf = math.exp(-expected)
    for k in range(1, observed):
        term *= expected / k
        cdf += term
    return max(0.0, 1.0 - cdf)


SIGNIFICANCE = 0.01  # survivors this unlikely by chance are a finding, not noise


def significant(observed: int, expected: float) -> bool:
    """Whether `observed` survivors are more than chance would give (Poisson tail below SIGNIFICANCE)."""
    return observed > 0 and poisson_tail(observed, expected) < SIGNIFICANCE
