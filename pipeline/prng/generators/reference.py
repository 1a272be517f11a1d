"""Plain-Python generators: the oracle every fast path is tested against.

Deliberately naive (one seed, one output at a time, Python ints masked by hand) so that a reader can check
each one against its published definition line by line; speed comes from pipeline.prng.fast / .torch_gen.
Every generator maps a 32-bit seed (0 <= seed < 2**32) to a stream of unsigned outputs (32-bit, or 64-bit for
the presets whose draws are 64-bit: see pipeline.prng.generators.families); position 0 is the first output the
seeded generator returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from pipeline.prng.generators import families as fam

MASK32 = 0xFFFFFFFF
MASK48 = (1 << 48) - 1
MASK64 = (1 << 64) - 1

JAVA_MULT = 0x5DEECE66D
JAVA_ADD = 0xB
LCG32_MULT = 1664525  # Numerical Recipes "ranqd1"
LCG32_ADD = 1013904223
MINSTD_MULT = 48271  # C++11 std::minstd_rand
MINSTD_MOD = 0x7FFFFFFF
PCG_MULT = 6364136223846793005
PCG_SEQ = 54  # the stream of the PCG reference demo, so its published outputs double as test vectors
PCG_INC = ((PCG_SEQ << 1) | 1) & MASK64
MT_N = 624
MT_M = 397
MT_MATRIX_A = 0x9908B0DF
MT_INIT_MULT = 1812433253


def java_lcg(seed: int) -> Iterator[int]:
    """java.util.Random(seed): output is the top 32 of the 48 state bits, read as unsigned (nextInt() & 0xFFFFFFFF)."""
    state = (seed ^ JAVA_MULT) & MASK48
    while True:
        state = (state * JAVA_MULT + JAVA_ADD) & MASK48
        yield state >> 16


def lcg32(seed: int) -> Iterator[int]:
    """state = 1664525*state + 1013904223 mod 2**32, seeded with the seed itself; output = the new state."""
    state = seed & MASK32
    while True:
        state = (state * LCG32_MULT + LCG32_ADD) & MASK32
        yield state


def minstd_state(seed: int) -> int:
    """std::minstd_rand's seeding: seed mod (2**31-1), with 0 replaced by 1 (0 is the generator's fixed point)."""
    state = seed % MINSTD_MOD
    return state if state else 1


def minstd(seed: int) -> Iterator[int]:
    state = minstd_state(seed)
    while True:
        state = (state * MINSTD_MULT) % MINSTD_MOD
        yield state


def xorshift32(seed: int) -> Iterator[int]:
    """Marsaglia's 13/17/5 xorshift; seed 0 is a fixed point and yields zeros (kept, not remapped)."""
    x = seed & MASK32
    while True:
        x ^= (x << 13) & MASK32
        x ^= x >> 17
        x ^= (x << 5) & MASK32
        yield x


def pcg32_initial_state(seed: int) -> int:
    """State after pcg32_srandom_r(seed, 54), i.e. the state whose output is position 0."""
    state = PCG_INC  # from state 0: one step gives inc
    state = (state + seed) & MASK64
    return (state * PCG_MULT + PCG_INC) & MASK64


def pcg32_output(old: int) -> int:
    xorshifted = (((old >> 18) ^ old) >> 27) & MASK32
    rot = old >> 59
    return ((xorshifted >> rot) | (xorshifted << ((-rot) & 31))) & MASK32


def pcg32(seed: int) -> Iterator[int]:
    state = pcg32_initial_state(seed)
    while True:
        yield pcg32_output(state)
        state = (state * PCG_MULT + PCG_INC) & MASK64


def mt_temper(y: int) -> int:
    y ^= y >> 11
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    y ^= y >> 18
    return y


def mt_init(seed: int) -> list[int]:
    mt = [seed & MASK32]
    for i in range(1, MT_N):
        prev = mt[-1]
        mt.append((MT_INIT_MULT * (prev ^ (prev >> 30)) + i) & MASK32)
    return mt


def mt_twist(mt: list[int]) -> None:
    for i in range(MT_N):
        y = (mt[i] & 0x80000000) | (mt[(i + 1) % MT_N] & 0x7FFFFFFF)
        mt[i] = mt[(i + MT_M) % MT_N] ^ (y >> 1) ^ (MT_MATRIX_A if y & 1 else 0)


def mt19937(seed: int) -> Iterator[int]:
    """MT19937 seeded with init_genrand(seed), the same as C++ std::mt19937(seed)."""
    mt = mt_init(seed)
    while True:
        mt_twist(mt)
        for y in mt:
            yield mt_temper(y)


def mt_init_by_array(key: list[int]) -> list[int]:
    """MT19937 init_by_array(key), line by line as CPython's _randommodule.c (and the 2002 reference) write it."""
    mt = mt_init(19650218)
    i, j = 1, 0
    for _ in range(max(MT_N, len(key))):
        mt[i] = ((mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1664525)) + key[j] + j) & MASK32
        i, j = i + 1, j + 1
        if i >= MT_N:
            mt[0], i = mt[MT_N - 1], 1
        if j >= len(key):
            j = 0
    for _ in range(MT_N - 1):
        mt[i] = ((mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1566083941)) - i) & MASK32
        i += 1
        if i >= MT_N:
            mt[0], i = mt[MT_N - 1], 1
    mt[0] = 0x80000000
    return mt


def python_mt19937(seed: int) -> Iterator[int]:
    """CPython `random.Random(seed)` for 0 <= seed < 2**32: MT19937 seeded with init_by_array([seed]) (the int's
    32-bit words, least significant first: one word here); output = `getrandbits(32)`, the tempered word."""
    mt = mt_init_by_array([seed & MASK32])
    while True:
        mt_twist(mt)
        for y in mt:
            yield mt_temper(y)


def php_mt_rand(seed: int) -> Iterator[int]:
    """PHP >= 7.1 mt_srand(seed); mt_rand(): the MT19937 output shifted right by one (31-bit results)."""
    for y in mt19937(seed):
        yield y >> 1


def _rotl64(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & MASK64


def lcg_stream(d: fam.Lcg, seed: int) -> Iterator[int]:
    state = (seed ^ d.seed_xor) % d.m
    if d.zero_to_one and state == 0:
        state = 1
    out_mask = (1 << d.out_bits) - 1
    while True:
        state = (d.a * state + d.c) % d.m
        yield (state >> d.out_shift) & out_mask


def pcg_stream(d: fam.Pcg, seed: int) -> Iterator[int]:
    inc = d.inc & MASK64
    if d.seeding == "srandom":
        state = (inc + seed) & MASK64  # from state 0 one step gives inc
        state = (state * PCG_MULT + inc) & MASK64
    else:
        state = seed & MASK64
    while True:
        old = state
        state = (state * PCG_MULT + inc) & MASK64
        yield pcg32_output(old if d.draw_from == "old" else state)


def xorshift32_stream(d: fam.Xorshift32, seed: int) -> Iterator[int]:
    a, b, c = d.shifts
    x = seed & MASK32
    while True:
        x ^= (x << a) & MASK32
        x ^= x >> b
        x ^= (x << c) & MASK32
        yield x


def xorshift64_stream(d: fam.Xorshift64, seed: int) -> Iterator[int]:
    a, b, c = d.shifts
    x = seed & MASK64
    while True:
        x ^= x >> a
        x ^= (x << b) & MASK64
        x ^= x >> c
        x = (x * d.mult) & MASK64
        yield x if d.out == "full64" else x & MASK32


def xorshift128_stream(d: fam.Xorshift128, seed: int) -> Iterator[int]:
    x, (y, z, w) = seed & MASK32, d.init
    while True:
        t = (x ^ (x << 11)) & MASK32
        x, y, z = y, z, w
        w = w ^ (w >> 19) ^ t ^ (t >> 8)
        yield w


def mt_stream(d: fam.Mt19937, seed: int) -> Iterator[int]:
    for y in mt19937(seed):
        yield y >> d.out_shift


def xoshiro256pp_stream(d: fam.Xoshiro256pp, seed: int) -> Iterator[int]:
    s0, (s1, s2, s3) = seed & MASK64, d.init
    while True:
        result = (_rotl64((s0 + s3) & MASK64, 23) + s0) & MASK64
        t = (s1 << 17) & MASK64
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = _rotl64(s3, 45)
        yield result


PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85


def philox4x32_block(counter: tuple[int, int, int, int], key: tuple[int, int], rounds: int = 10) -> list[int]:
    """Philox4x32-R (Random123): the four output words for one counter block."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + PHILOX_W0) & MASK32, (k1 + PHILOX_W1) & MASK32
        p0, p1 = PHILOX_M0 * c0, PHILOX_M1 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & MASK32
    return [c0, c1, c2, c3]


def philox_stream(d: fam.Philox4x32, seed: int) -> Iterator[int]:
    key = (seed & MASK32, (seed >> 32) & MASK32)
    i = 0
    while True:
        yield philox4x32_block((i & MASK32, 0, 0, 0), key, d.rounds)[0]
        i += 1


def sfc64_stream(d: fam.Sfc64, seed: int) -> Iterator[int]:
    a, (b, c, counter) = seed & MASK64, d.init
    while True:
        tmp = (a + b + counter) & MASK64
        counter = (counter + 1) & MASK64
        a = b ^ (b >> 11)
        b = (c + (c << 3)) & MASK64
        c = (_rotl64(c, 24) + tmp) & MASK64
        yield tmp


_STREAMS: dict[type, Callable[..., Iterator[int]]] = {
    fam.Lcg: lcg_stream,
    fam.Pcg: pcg_stream,
    fam.Xorshift32: xorshift32_stream,
    fam.Xorshift64: xorshift64_stream,
    fam.Xorshift128: xorshift128_stream,
    fam.Mt19937: mt_stream,
    fam.Xoshiro256pp: xoshiro256pp_stream,
    fam.Philox4x32: philox_stream,
    fam.Sfc64: sfc64_stream,
}


def family_stream(definition: fam.Definition) -> Callable[[int], Iterator[int]]:
    """The plain-Python stream of any family definition (seed -> outputs)."""
    return partial(_STREAMS[type(definition)], definition)


# The hand-written library generators above stay the oracle for their names (each checked against published
# vectors); every other preset runs its family's generic stream, itself checked against vectors.json and against
# the hand-written ones on the shared definitions (tests/pipeline/test_families.py).
REFERENCE: dict[str, Callable[[int], Iterator[int]]] = {
    "java_lcg": java_lcg,
    "lcg32": lcg32,
    "minstd": minstd,
    "xorshift32": xorshift32,
    "pcg32": pcg32,
    "mt19937": mt19937,
    "php_mt_rand": php_mt_rand,
}
for _name, _preset in fam.PRESETS.items():
    REFERENCE.setdefault(_name, family_stream(_preset.definition))
GENERATORS: tuple[str, ...] = tuple(REFERENCE)  # the family presets: every sieve path and kernel runs them
# Generators whose seeding no family definition has (so no family kernel implements it): they are sieved only by
# the call-stream paths of pipeline.prng.mappings, whatever data.mapping says (`mod` included); fixed skips only.
MAPPED_ONLY: dict[str, Callable[[int], Iterator[int]]] = {"python_mt19937": python_mt19937}
REFERENCE.update(MAPPED_ONLY)
ALL_GENERATORS: tuple[str, ...] = (*GENERATORS, *MAPPED_ONLY)


def check_seed(seed: int) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 1 << 32:
        raise ValueError(f"seed {seed!r} is not a 32-bit unsigned integer (0 <= seed < 2**32)")
    return seed


def generate(generator: str, seed: int, n: int) -> list[int]:
    """The first n outputs of `generator` seeded with `seed` (the oracle used by synth and scoring)."""
    try:
        stream = REFERENCE[generator]
    except KeyError:
        raise ValueError(f"generator {generator!r} is unknown; choose one of {', '.join(ALL_GENERATORS)}") from None
    check_seed(int(seed))
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    it = stream(int(seed))
    return [next(it) for _ in range(n)]


def outputs_at(generator: str, seed: int, positions: list[int]) -> list[int]:
    """Outputs at arbitrary 0-based positions of the seed's stream (one pass up to the largest position)."""
    if not positions:
        return []
    stream = generate(generator, seed, max(positions) + 1)
    return [stream[p] for p in positions]
