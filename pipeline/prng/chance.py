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
