"""Variable-skip ("hybrid") sieving as the operators' kernels compute it, and its honest chance expectation.

For every strategy (max consecutive misses N, tolerance t) a seed's stream is re-read from `offset` with the
expected skip E = 5. For draw j the candidate skips s = max(0, E-t) .. E+t are tried in ascending order: the
output s places ahead of the current position is compared with the draw, and the first, smallest, s that matches
is taken (not the one closest to E). A match counts, resets the miss run and moves the position past the matched
output. What a miss does, and whether E follows the matches, is the family's `VariableRule`
(pipeline.prng.generators.families), as in their kernels:

- adaptive (their group A: LCGs, PCG, xorshift32/64/128, MT19937): E becomes the matched skip outright (their
  learning-rate field is ignored, as their kernels ignore it); a miss records E as that draw's skip and moves
  the stream by `hi` (the window's last skip; `hi+1` for MT19937, not at all for PCG); the scan stops on the miss
  that makes N in a row.
- fixed window (group B: xoshiro256++, philox4x32, sfc64): E stays 5; a miss records 0 and moves one output; the
  scan stops when the misses in a row exceed N.

Only the first MAX_VARIABLE_DRAWS draws are examined; the score is matches / k over the whole window. The best
strategy is the first with strictly more matches, and a seed survives when that reaches the spec's threshold
(`reference_variable_score`, one offset). The pipeline keeps more: `reference_variable_rows` is every passing
(offset, strategy) of a seed over offset..offset_max, the contract of the block kernels.
Their reseed, learning-rate and breakpoint fields never reach their kernels and have no counterpart here.
Unexamined draws (after an early stop) get skip -1 where their kernels copy out uninitialised memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from pipeline.prng.chance import required_matches
from pipeline.prng.generators import families as fam
from pipeline.prng.generators.reference import REFERENCE
from pipeline.prng.sieve.spec import MAX_VARIABLE_DRAWS, PRNG_CLUSTER_STRATEGIES, SieveSpec

EXPECTED_START = 5
STRATEGY_NAMES = ("strict_continuous", "lenient_continuous", "aggressive_reseed", "balanced_hybrid",
                  "extreme_tolerance")  # fmt: skip


def rule_for(generator: str) -> fam.VariableRule:
    return fam.preset(generator).definition.rule


def miss_advance(rule: fam.VariableRule) -> tuple[bool, int]:
    """(add the window's hi, extra outputs) a miss moves the stream by."""
    return {"hi": (True, 0), "hi+1": (True, 1), "none": (False, 0), "one": (False, 1)}[rule.miss_step]


class _Residues:
    """A seed's residue stream, extended on demand and shared by all strategies."""

    def __init__(self, generator: str, seed: int, modulus: int) -> None:
        self._it = REFERENCE[generator](seed)
        self._modulus = modulus
        self.values: list[int] = []

    def upto(self, n: int) -> list[int]:
        while len(self.values) < n:
            self.values.append(next(self._it) % self._modulus)
        return self.values


def scan_strategy(
    residues: _Residues,
    targets: Sequence[int],
    offset: int,
    misses: int,
    tolerance: int,
    rule: fam.VariableRule,
    need: int = 0,
) -> tuple[int, list[int]]:
    """(matches, skip per examined draw, -1 after an early stop) for one strategy.

    need > 0: the scan also stops on the miss after which it can no longer reach `need` matches (matches so far
    plus the draws left fall short; with need above the draws examined it does not start). Only a scan that cannot
    pass stops there, so a passing scan's matches and skips are exactly those of need=0; a stopped scan reports
    the matches it had, which are below `need`.
    """
    add_hi, extra = miss_advance(rule)
    scan = min(len(targets), MAX_VARIABLE_DRAWS)
    skips = [-1] * scan
    pos, e, matches, run = offset, EXPECTED_START, 0, 0
    for j in range(scan if need <= scan else 0):
        lo, hi = (e - tolerance if e > tolerance else 0), e + tolerance
        values = residues.upto(pos + hi + 1)
        found = next((s for s in range(lo, hi + 1) if values[pos + s] == targets[j]), None)
        if found is not None:
            matches, run, skips[j] = matches + 1, 0, found
            pos += found + 1
            if rule.adaptive:
                e = found
            continue
        run += 1
        skips[j] = e if rule.adaptive else 0
        pos += (hi if add_hi else 0) + extra
        if (run >= misses if rule.adaptive else run > misses) or matches + scan - j - 1 < need:
            break
    return matches, skips


def reference_variable_score(spec: SieveSpec, seed: int) -> tuple[int, int, list[int]] | None:
    """(strategy index, matches, skip sequence) of the seed's best strategy, or None if it does not pass."""
    residues = _Residues(spec.generator, seed, spec.modulus)
    rule = rule_for(spec.generator)
    best: tuple[int, int, list[int]] | None = None
    for index, (misses, tol) in enumerate(spec.strategies):
        matches, skips = scan_strategy(residues, spec.residues, spec.offset, misses, tol, rule)
        if matches > (best[1] if best else 0):
            best = (index, matches, skips)
    return best if best is not None and best[1] >= spec.need else None


def reference_variable_sieve(spec: SieveSpec, seeds: Iterable[int]) -> list[tuple[int, int, int, list[int]]]:
    """(seed, strategy, matches, skips) per passing seed, the oracle for the numba and torch paths."""
    found = []
    for seed in seeds:
        hit = reference_variable_score(spec, int(seed))
        if hit is not None:
            found.append((int(seed), *hit))
    return found


VariableRow = tuple[int, int, int, int]  # (seed, offset, strategy index into spec.strategies, matches)


def reference_variable_rows(spec: SieveSpec, seeds: Iterable[int]) -> list[VariableRow]:
    """Every passing (offset, strategy) of every seed: the block-level contract of the variable-skip sieve, which
    every kernel (numba, GPU) must reproduce row for row.

    For each seed ONE residue stream serves every offset of spec.offsets (offset..offset_max) and every strategy
    of spec.strategies; each (offset, strategy) is `scan_strategy` from that offset, stopped as soon as it can no
    longer reach spec.need matches (which changes no passing row). Every (offset, strategy) reaching spec.need is a
    row (seed, offset, strategy index, matches), not only a seed's best: the scoring steps choose among them on
    the training draws (pipeline.prng.verdict). Rows come in seed order (as given), then offset, then strategy.
    """
    rule = rule_for(spec.generator)
    rows: list[VariableRow] = []
    for seed in seeds:
        residues = _Residues(spec.generator, int(seed), spec.modulus)
        for offset in spec.offsets:
            for index, (misses, tol) in enumerate(spec.strategies):
                matches, _ = scan_strategy(residues, spec.residues, offset, misses, tol, rule, spec.need)
                if matches >= spec.need:
                    rows.append((int(seed), offset, index, matches))
    return rows


# --- chance -----------------------------------------------------------------------------------------------


def draw_hit_probability(tolerance: int, modulus: int) -> float:
    """Chance that a random stream matches one draw somewhere in its window: each draw gets 2*t+1 chances.

    The window is narrower while E <= t (it starts at skip 0), so this is the upper bound, which is what an
    honest significance wants: chance is never understated.
    """
    return -math.expm1((2 * tolerance + 1) * math.log1p(-1.0 / modulus))


def strategy_pass_probability(k: int, need: int, modulus: int, misses: int, tolerance: int, adaptive: bool) -> float:
    """P(a random seed reaches `need` matches under one strategy), with the give-up rule, draws independent.

    Dynamic programme over (matches so far, misses in a row); the scan stops on the miss that makes `misses`
    in a row (adaptive) or on the one exceeding it (fixed window), and only MAX_VARIABLE_DRAWS draws count.
    """
    if need <= 0:
        return 1.0
    q = draw_hit_probability(tolerance, modulus)
    limit = misses if adaptive else misses + 1  # the run length that stops the scan
    scan = min(k, MAX_VARIABLE_DRAWS)
    if need > scan:
        return 0.0
    # states[(m, r)]: probability of m matches (< need) and r misses in a row, scan still running
    states = {(0, 0): 1.0}
    passed = 0.0
    for _ in range(scan):
        nxt: dict[tuple[int, int], float] = {}
        for (m, r), pr in states.items():
            if m + 1 >= need:
                passed += pr * q
            else:
                nxt[(m + 1, 0)] = nxt.get((m + 1, 0), 0.0) + pr * q
            if r + 1 < limit:
                nxt[(m, r + 1)] = nxt.get((m, r + 1), 0.0) + pr * (1 - q)
        states = nxt
    return min(1.0, passed)


def variable_pass_probability(
    k: int,
    threshold: float,
    modulus: int,
    strategies: Sequence[tuple[int, int]] = PRNG_CLUSTER_STRATEGIES,
    *,
    adaptive: bool = True,
) -> float:
    """P(a random seed survives a variable-skip sieve): any strategy reaching ceil(threshold*k) matches.

    Strategies read the same stream, so they are not independent; the union bound (the sum, capped at 1) is
    used, which again errs on the side of more chance survivors.
    """
    if modulus < 2:
        raise ValueError(f"modulus={modulus} must be >= 2")
    need = required_matches(k, threshold)
    total = sum(strategy_pass_probability(k, need, modulus, n, t, adaptive) for n, t in strategies)
    return min(1.0, total)


def expected_variable_chance_survivors(
    seeds: int,
    k: int,
    threshold: float,
    modulus: int,
    strategies: Sequence[tuple[int, int]] = PRNG_CLUSTER_STRATEGIES,
    *,
    adaptive: bool = True,
) -> float:
    """Expected survivors among `seeds` random seeds that pass the variable-skip sieve by luck alone."""
    if seeds < 0:
        raise ValueError(f"seeds={seeds} must be >= 0")
    return seeds * variable_pass_probability(k, threshold, modulus, strategies, adaptive=adaptive)


def spec_chance_survivors(spec: SieveSpec, seeds: int) -> float:
    """The expectation above for a variable-skip spec (its strategies and its family's rule)."""
    rule = rule_for(spec.generator)
    return expected_variable_chance_survivors(
        seeds, spec.k, spec.threshold, spec.modulus, spec.strategies, adaptive=rule.adaptive
    )
