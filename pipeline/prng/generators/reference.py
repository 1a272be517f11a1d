"""Plain-Python generators: the oracle every fast path is tested against.

Deliberately naive (one seed, one output at a time, Python ints masked by hand) so that a reader can check
each one against its published definition line by line; speed comes from pipeline.prng.fast / .torch_gen.
Every generator maps a 32-bit seed (0 <= seed < 2**32) to a stream of unsigned outputs; position 0 is the
first output the seeded generator returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

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


def php_mt_rand(seed: int) -> Iterator[int]:
    """PHP >= 7.1 mt_srand(seed); mt_rand(): the MT19937 output shifted right by one (31-bit results)."""
    for y in mt19937(seed):
        yield y >> 1


REFERENCE: dict[str, Callable[[int], Iterator[int]]] = {
    "java_lcg": java_lcg,
    "lcg32": lcg32,
    "minstd": minstd,
    "xorshift32": xorshift32,
    "pcg32": pcg32,
    "mt19937": mt19937,
    "php_mt_rand": php_mt_rand,
}
GENERATORS: tuple[str, ...] = tuple(REFERENCE)


def check_seed(seed: int) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 1 << 32:
        raise ValueError(f"seed {seed!r} is not a 32-bit unsigned integer (0 <= seed < 2**32)")
    return seed


def generate(generator: str, seed: int, n: int) -> list[int]:
    """The first n outputs of `generator` seeded with `seed` (the oracle used by synth and scoring)."""
    try:
        stream = REFERENCE[generator]
    except KeyError:
        raise ValueError(f"generator {generator!r} is unknown; choose one of {', '.join(GENERATORS)}") from None
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
