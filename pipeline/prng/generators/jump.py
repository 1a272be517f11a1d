"""Affine jump-ahead for the LCG-family presets (every `Lcg` and `Pcg` definition in families).

For these the internal value behind output p is `A_p * s0 + C_p (mod M)` for a per-seed start value s0.
Precomputing (A_p, C_p) once per window lets every kernel evaluate any draw position with one multiply-add, so
sieve cost does not grow with offset or skip.
"""

from __future__ import annotations

from pipeline.prng.generators import families as fam
from pipeline.prng.generators import reference as ref

JUMP_GENERATORS = tuple(n for n, p in fam.PRESETS.items() if isinstance(p.definition, fam.Lcg | fam.Pcg))
# numba kernel kinds (pipeline.prng.kernels.jump_kernel)
KIND_LCG32, KIND_JAVA, KIND_MINSTD, KIND_PCG, KIND_POW2, KIND_MOD31 = 0, 1, 2, 3, 4, 5
M31 = 2**31 - 1


def _kind(name: str) -> int:
    d = fam.PRESETS[name].definition
    if isinstance(d, fam.Pcg):
        return KIND_PCG
    if d.m == 1 << 32 and d.seed_xor == 0 and d.out_shift == 0 and not d.zero_to_one:
        return KIND_LCG32
    if d.m == 1 << 48 and d.seed_xor == ref.JAVA_MULT and d.out_shift == 16 and d.out_bits == 32:
        return KIND_JAVA
    if d.m == M31 and d.c == 0 and d.zero_to_one and d.seed_xor == 0:
        return KIND_MINSTD
    if d.pow2 and d.seed_xor == 0 and not d.zero_to_one:
        return KIND_POW2
    if d.m == M31 and d.seed_xor == 0 and not d.zero_to_one:
        return KIND_MOD31
    raise ValueError(f"generator {name!r} has no jump kernel")


KIND = {n: _kind(n) for n in JUMP_GENERATORS}


def _definition(generator: str) -> fam.Lcg | fam.Pcg:
    d = fam.preset(generator).definition
    if not isinstance(d, fam.Lcg | fam.Pcg):
        raise ValueError(f"generator {generator!r} has no affine jump")
    return d


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


def modulus(generator: str) -> int:
    d = _definition(generator)
    return d.m if isinstance(d, fam.Lcg) else 1 << 64


def coefficients(generator: str, position: int) -> tuple[int, int]:
    """(A, C) such that the internal value behind output `position` is A*start_value(seed) + C (mod modulus)."""
    d = _definition(generator)
    if isinstance(d, fam.Lcg):
        return affine_power(d.a, d.c, d.m, position + 1)
    inc = d.inc & ref.MASK64
    steps = position + (1 if d.draw_from == "new" else 0)
    big_a, big_c = affine_power(ref.PCG_MULT, inc, 1 << 64, steps)
    if d.seeding == "state":
        return big_a, big_c
    # pcg32_srandom_r leaves state = MULT*seed + (INC*MULT + INC); fold that map in.
    a1, c1 = ref.PCG_MULT, (inc * ref.PCG_MULT + inc) & ref.MASK64
    return (big_a * a1) & ref.MASK64, (big_a * c1 + big_c) & ref.MASK64


def start_value(generator: str, seed: int) -> int:
    """The per-seed value the (A, C) maps act on."""
    d = _definition(generator)
    if isinstance(d, fam.Pcg):
        return seed
    s = (seed ^ d.seed_xor) % d.m
    return 1 if d.zero_to_one and s == 0 else s


def output(generator: str, internal: int) -> int:
    """Output function applied to the internal value (the oracle for the vectorised versions)."""
    d = _definition(generator)
    if isinstance(d, fam.Pcg):
        return ref.pcg32_output(internal)
    return (internal >> d.out_shift) & ((1 << d.out_bits) - 1)


def kernel_params(generator: str) -> tuple[int, int, int]:
    """(state mask, output shift, output mask) for the generic power-of-two kind (KIND_POW2)."""
    d = _definition(generator)
    if isinstance(d, fam.Pcg) or not d.pow2:
        return 0, 0, 0
    return d.m - 1, d.out_shift, (1 << d.out_bits) - 1
