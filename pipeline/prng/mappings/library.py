"""Output mappings (`data.mapping`): how a library turns its generator's raw outputs into one bounded draw, and
the plain-Python oracle of a mapped sieve.

A history is a list of library CALLS: `new Random(seed).nextInt(1000)` called again and again, not raw outputs
reduced mod 1000. Most calls take one output, but a rejection sampler redraws while the output falls in a biased
zone, so call c sits at a seed-dependent output position. The sieve therefore follows the library's own loop for
every seed: positions (offset, skip, first_draw) count calls, and draw j of a window is call
`offset + (first_draw + j)*(skip+1) + skip`. With `mod` a call is one output, so it is the sieve as it always was.

Each mapping below reproduces tests/fixtures/mappings/vectors.json (made by the real libraries; the README there
documents every branch, and src/check_claims.py checks its models against live java and php). n is data.modulus,
`out` one 32-bit output (java: the 48-bit LCG's bits 47..16, i.e. `nextInt()` read unsigned):

- `mod`: `out % n`, 1 output, any generator (today's behaviour and the default).
- `java_next_int`: `Random.nextInt(n)`: u = next(31) = out >> 1; n a power of two: `(n*u) >> 31`; otherwise
  r = u % n, redrawn while `u - r + (n-1)` overflows int (u in the top 2**31 mod n values). java_lcg only.
- `java_next_double`: `(int) floor(nextDouble() * n)`, nextDouble = ((next(26) << 27) + next(27)) * 2**-53:
  2 outputs, IEEE double arithmetic exactly as Java does it. java_lcg only.
- `numpy_randint`: legacy `RandomState.randint(low, low+n)`: v = out & mask (mask = the smallest 2**k-1 >= n-1),
  redrawn while v > n-1. mt19937 (numpy seeds with init_genrand).
- `python_randrange`: `random.Random(seed).randrange(n)`: k = n.bit_length(), v = out >> (32-k) (getrandbits(k)),
  redrawn while v >= n. python_mt19937 (CPython seeds with init_by_array).
- `php_mt_rand`: PHP >= 7.1 `mt_rand(low, low+n-1)`: n a power of two: out & (n-1); otherwise out % n, the full
  32-bit output redrawn while above 0xFFFFFFFF - (0xFFFFFFFF % n) - 1. mt19937 (mt_srand is init_genrand; the
  `php_mt_rand` generator preset is the argument-less mt_rand(), output >> 1, and cannot feed it).

The rejection samplers draw exactly uniformly on [0, n) and nextDouble's bias is below n/2**53 (relative), so
the chance a random seed matches one draw is 1/n for all of them; `mod` keeps the 1/n the pipeline has always
used for it (its modulo bias is below n/2**32 relative, 2e-7 for n = 1000).

The history holds `data.draw_low + value`; pipeline.prng.data subtracts draw_low when it loads the file, so
everything here works on values in [0, n).

Nothing in this package imports pipeline.prng.sieve (the dispatcher imports it): the sieve spec is taken as any
object with the `CallWindow` attributes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from pipeline.prng.generators import families as fam
from pipeline.prng.generators.reference import ALL_GENERATORS, MAPPED_ONLY, REFERENCE, check_seed

MOD = "mod"
INT31 = 1 << 31
MASK32 = 0xFFFFFFFF
DOUBLE_UNIT = 2.0**-53  # java.util.Random.DOUBLE_UNIT


def _same_definition(name: str) -> tuple[str, ...]:
    """Every preset whose definition is that of `name` (aliases such as prng_cluster.mt19937 = mt19937)."""
    d = fam.PRESETS[name].definition
    return tuple(n for n, p in fam.PRESETS.items() if p.definition == d)


JAVA_GENERATORS = _same_definition("java_lcg")
MT_GENERATORS = _same_definition("mt19937")
PYTHON_GENERATORS = tuple(MAPPED_ONLY)


@dataclass(frozen=True)
class MappingDef:
    """One library call: which generators' streams it draws from (empty: any) and what it costs."""

    name: str
    library_call: str
    generators: tuple[str, ...]
    rejects: bool  # a call may take more than one attempt
    outputs_per_attempt: int = 1

    def applies_to(self, generator: str) -> bool:
        return not self.generators or generator in self.generators


MAPPINGS: dict[str, MappingDef] = {
    m.name: m
    for m in (
        MappingDef(MOD, "raw output % n (the caller's own modulo)", (), False),
        MappingDef("java_next_int", "java.util.Random(seed).nextInt(n)", JAVA_GENERATORS, True),
        MappingDef(
            "java_next_double", "(int) Math.floor(new Random(seed).nextDouble() * n)", JAVA_GENERATORS, False, 2
        ),
        MappingDef("numpy_randint", "numpy.random.RandomState(seed).randint(low, low + n)", MT_GENERATORS, True),
        MappingDef("python_randrange", "random.Random(seed).randrange(n)", PYTHON_GENERATORS, True),
        MappingDef("php_mt_rand", "mt_srand(seed); mt_rand(low, low + n - 1) (PHP >= 7.1)", MT_GENERATORS, True),
    )
}
MAPPING_NAMES: tuple[str, ...] = tuple(MAPPINGS)
MAX_JAVA_BOUND = INT31 - 1  # nextInt takes an int


def mapping_error(mapping: str, generator: str | None, modulus: int | None, skip_mode: str = "fixed") -> str | None:
    """Why `mapping` cannot run with this generator / modulus / skip mode (a one-line reason with its fix), or
    None. The callers prefix the field (data.mapping or spec.mapping)."""
    if mapping not in MAPPINGS:
        return f"unknown mapping {mapping!r}; use one of {', '.join(MAPPING_NAMES)}"
    m = MAPPINGS[mapping]
    if generator is not None and not m.applies_to(generator):
        return (
            f"{mapping} ({m.library_call}) draws from the stream of {' or '.join(m.generators)}, not {generator}; "
            f"fix: set the generator to {m.generators[0]}, or the mapping to one that applies to {generator} "
            f"({', '.join(usable_mappings(generator))})"
        )
    if mapping == "java_next_int" and modulus is not None and modulus > MAX_JAVA_BOUND:
        return f"java_next_int takes an int bound: the modulus must be at most {MAX_JAVA_BOUND}; got {modulus}"
    if skip_mode != "fixed" and mapping != MOD:
        return f"{mapping} runs with fixed skips only (skip_mode variable searches raw outputs); fix: use mapping mod"
    return None


def usable_mappings(generator: str) -> list[str]:
    return [name for name, m in MAPPINGS.items() if m.applies_to(generator)]


def generator_error(generator: str, skip_mode: str) -> str | None:
    """Generators only the mapped paths implement run with fixed skips only (no variable-skip kernel has them)."""
    if generator in MAPPED_ONLY and skip_mode != "fixed":
        return f"{generator} runs with fixed skips only; fix: skip_mode fixed"
    return None


def uses_mapped_path(generator: str, mapping: str) -> bool:
    """Whether a sieve of (generator, mapping) runs here rather than on the raw-output kernels."""
    return mapping != MOD or generator in MAPPED_ONLY


# --- the parameters every path derives from (mapping, n) ------------------------------------------------------


def is_pow2(n: int) -> bool:
    return n & (n - 1) == 0


def numpy_mask(n: int) -> int:
    """numpy's gen_mask(rng = n-1): the smallest 2**k - 1 >= n - 1."""
    return (1 << (n - 1).bit_length()) - 1


def python_shift(n: int) -> int:
    """getrandbits(k) with k = n.bit_length() is the output's top k bits: out >> (32 - k)."""
    return 32 - n.bit_length()


def php_limit(n: int) -> int:
    """PHP's rand_range32 ceiling: outputs above it are redrawn (n not a power of two)."""
    return MASK32 - (MASK32 % n) - 1


def walk_param(mapping: str, n: int) -> int:
    """The one number a compiled walk needs besides n: numpy's mask, Python's shift, PHP's limit (0 for a power of
    two or a mapping without one)."""
    if mapping == "numpy_randint":
        return numpy_mask(n)
    if mapping == "python_randrange":
        return python_shift(n)
    if mapping == "php_mt_rand" and not is_pow2(n):
        return php_limit(n)
    return 0


def reject_probability(mapping: str, n: int) -> float:
    """P(one attempt is rejected) for a uniform 32-bit output: sizes the torch path's output buffers."""
    if mapping == "java_next_int":
        return 0.0 if is_pow2(n) else (INT31 % n) / INT31
    if mapping == "numpy_randint":
        return (numpy_mask(n) + 1 - n) / (numpy_mask(n) + 1)
    if mapping == "python_randrange":
        return ((1 << n.bit_length()) - n) / (1 << n.bit_length())
    if mapping == "php_mt_rand":
        return 0.0 if is_pow2(n) else (MASK32 - php_limit(n)) / (1 << 32)
    return 0.0


def chance_per_draw(mapping: str, n: int) -> float:
    """P(a random seed's call equals a given draw): 1/n for every mapping (module docstring)."""
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping {mapping!r} is unknown")
    return 1.0 / n


# --- the reference: one call at a time, as the library source reads ---------------------------------------------


def java_next_int(out: Iterator[int], n: int) -> int:
    """java.util.Random.nextInt(int bound) (JDK 8-21): `next(31)` is the top 31 bits of the step, out >> 1."""
    r = next(out) >> 1
    m = n - 1
    if n & m == 0:
        return (n * r) >> 31
    u = r
    while True:
        r = u % n
        if u - r + m < INT31:  # Java: `u - r + m < 0` after int overflow
            return r
        u = next(out) >> 1


def java_next_double(out: Iterator[int], n: int) -> int:
    """floor(nextDouble() * n): next(26) = out >> 6 then next(27) = out >> 5 of the following step."""
    a = next(out) >> 6
    b = next(out) >> 5
    return math.floor(((a << 27) + b) * DOUBLE_UNIT * float(n))


def numpy_randint(out: Iterator[int], n: int) -> int:
    """numpy buffered_bounded_masked_uint32 (legacy, size=None): low bits under the mask, redraw above n-1."""
    mask = numpy_mask(n)
    while True:
        v = next(out) & mask
        if v <= n - 1:
            return v


def python_randrange(out: Iterator[int], n: int) -> int:
    """CPython Random._randbelow_with_getrandbits(n): getrandbits(n.bit_length()), redraw while >= n."""
    shift = python_shift(n)
    while True:
        v = next(out) >> shift
        if v < n:
            return v


def php_mt_rand(out: Iterator[int], n: int) -> int:
    """PHP rand_range32(umax = n-1): powers of two mask the low bits, others redraw above the limit, then % n."""
    result = next(out)
    if is_pow2(n):
        return result & (n - 1)
    limit = php_limit(n)
    while result > limit:
        result = next(out)
    return result % n


def mod(out: Iterator[int], n: int) -> int:
    return next(out) % n


CALLS: dict[str, Callable[[Iterator[int], int], int]] = {
    MOD: mod,
    "java_next_int": java_next_int,
    "java_next_double": java_next_double,
    "numpy_randint": numpy_randint,
    "python_randrange": python_randrange,
    "php_mt_rand": php_mt_rand,
}


class Counted:
    """An output iterator that counts what it hands out (tests and the exhaustion check read `used`)."""

    def __init__(self, it: Iterator[int]) -> None:
        self._it = it
        self.used = 0

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        self.used += 1
        return next(self._it)


def call_values(generator: str, mapping: str, seed: int, count: int, modulus: int) -> list[int]:
    """Values in [0, modulus) of calls 0..count-1 of `seed` (the oracle of every mapped path)."""
    if generator not in ALL_GENERATORS:
        raise ValueError(f"generator {generator!r} is unknown; choose one of {', '.join(ALL_GENERATORS)}")
    problem = mapping_error(mapping, generator, modulus)
    if problem:
        raise ValueError(problem)
    call = CALLS[mapping]
    out = REFERENCE[generator](check_seed(int(seed)))
    return [call(out, modulus) for _ in range(count)]


def call_stream(generator: str, mapping: str, seed: int, count: int, modulus: int) -> list[int]:
    """What scoring compares `% modulus` with a draw: the raw outputs for `mod` (so scores stay exactly what they
    were, partial credit included), the call values otherwise."""
    if mapping == MOD:
        from pipeline.prng.generators.reference import generate

        return generate(generator, seed, count)
    return call_values(generator, mapping, seed, count, modulus)


# --- the oracle sieve ---------------------------------------------------------------------------------------


class CallWindow(Protocol):
    """What a mapped sieve reads of a sieve spec (pipeline.prng.sieve.spec.SieveSpec has all of it)."""

    generator: str
    mapping: str
    modulus: int
    residues: tuple[int, ...]
    skip_min: int
    skip_max: int

    @property
    def k(self) -> int: ...

    @property
    def need(self) -> int: ...

    @property
    def skips(self) -> range: ...

    def position(self, j: int, skip: int) -> int: ...

    def check_order(self) -> list[int]: ...

    def filter_length(self) -> int: ...


def last_call(spec: CallWindow) -> int:
    return spec.position(spec.k - 1, spec.skip_max)


def score_calls(spec: CallWindow, calls: Sequence[int]) -> tuple[int, int] | None:
    """(best skip, matches) from a seed's call values, or None: most matches, the lowest skip on ties."""
    best: tuple[int, int] | None = None
    for skip in spec.skips:
        matches = sum(calls[spec.position(j, skip)] == r for j, r in enumerate(spec.residues))
        if matches >= spec.need and (best is None or matches > best[1]):
            best = (skip, matches)
    return best


def reference_score(spec: CallWindow, seed: int) -> tuple[int, int] | None:
    calls = call_values(spec.generator, spec.mapping, seed, last_call(spec) + 1, spec.modulus)
    return score_calls(spec, calls)


def reference_sieve(spec: CallWindow, seeds: Iterable[int]) -> list[tuple[int, int, int]]:
    """(seed, skip, matches) of every passing seed, one seed at a time."""
    found = []
    for seed in seeds:
        hit = reference_score(spec, int(seed))
        if hit is not None:
            found.append((int(seed), hit[0], hit[1]))
    return found
