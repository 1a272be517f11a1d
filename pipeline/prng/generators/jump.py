"""Affine jump-ahead for the LCG-family generators.

For java_lcg, lcg32, minstd and pcg32 the internal value behind output p is `A_p * s0 + C_p (mod M)` for a
per-seed start value s0. Precomputing (A_p, C_p) once per window lets every kernel evaluate any draw position
with one multiply-add, so sieve cost does not grow with offset or skip.
"""

from __future__ import annotations

from pipeline.prng.generators import reference as ref

JUMP_GENERATORS = ("lcg32", "java_lcg", "minstd", "pcg32")
KIND = {"lcg32": 0, "java_lcg": 1, "minstd": 2, "pcg32": 3}


def affine_power(a: int, c: int, mod: int, n: int) -> tuple[int, int]:
    """(A, C) with x_n = A*x_0 + C for x_{i+1} = a*x_i + c (mod mod), by binary composition."""
    big_a, big_c = 1, 0  # accumulated map
    pa, pc = a % mod, c % mod  # the map applied 2**bit times
    while n:
        if n & 1:
            big_a, big_c = (pa * big_a) % mod, (pa * big_c + pc) % mod
        pa, pc = (pa * pa) % mod, (pa * pc + pc) % mod
        n >>= 1
    return big_a, big_c


def coefficients(generator: str, position: int) -> tuple[int, int]:
    """(A, C) such that the internal value behind output `position` is A*start_value(seed) + C (mod modulus)."""
    if generator == "lcg32":
        return affine_power(ref.LCG32_MULT, ref.LCG32_ADD, 1 << 32, position + 1)
    if generator == "java_lcg":
        return affine_power(ref.JAVA_MULT, ref.JAVA_ADD, 1 << 48, position + 1)
    if generator == "minstd":
        return affine_power(ref.MINSTD_MULT, 0, ref.MINSTD_MOD, position + 1)
    if generator == "pcg32":
        big_a, big_c = affine_power(ref.PCG_MULT, ref.PCG_INC, 1 << 64, position)
        # pcg32_srandom_r leaves state = MULT*seed + (INC*MULT + INC); fold that map in.
        a1, c1 = ref.PCG_MULT, (ref.PCG_INC * ref.PCG_MULT + ref.PCG_INC) & ref.MASK64
        return (big_a * a1) & ref.MASK64, (big_a * c1 + big_c) & ref.MASK64
    raise ValueError(f"generator {generator!r} has no affine jump")


def start_value(generator: str, seed: int) -> int:
    """The per-seed value the (A, C) maps act on."""
    if generator == "java_lcg":
        return (seed ^ ref.JAVA_MULT) & ref.MASK48
    if generator == "minstd":
        return ref.minstd_state(seed)
    return seed


def output(generator: str, internal: int) -> int:
    """Output function applied to the internal value (the oracle for the vectorised versions)."""
    if generator == "java_lcg":
        return internal >> 16
    if generator == "pcg32":
        return ref.pcg32_output(internal)
    return internal
