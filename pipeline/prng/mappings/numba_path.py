"""The compiled (numba, cpu) mapped sieve: a sequential per-seed walk through the outputs applying the library's
call loop (pipeline.prng.mappings.library), as the raw-output kernels do: every seed is walked over the calls up
to the last filter draw (the first k-need+1 draws of each skip in check order, one of which any passing seed
matches); seeds that hit one are walked again from their seed up to the window's last draw and scored.

A rejection mapping makes the output position of a call seed-dependent, so nothing can jump ahead: the walk is
the work. What it costs is mostly seeding: MT19937 spends 397+ chain steps before its first output and CPython's
init_by_array ~1250. Those chains run for LANES seeds side by side (one vectorised chain, as in the stream
kernel), and the filter walk reads its outputs straight from the lane words: output i < 227 of a fresh state
needs only words i, i+1 and i+397. A seed whose filter walk needs more outputs than the lanes hold (unusually
many rejections, or a far window) is redone by the scalar walker, which extends its state as far as needed.

Importing this module imports numba; the dispatcher only does so when this path is chosen.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from pipeline.prng.generators import reference as ref
from pipeline.prng.kernels.common import (
    LANES,
    NO_SURVIVOR,
    TASK_SEEDS,
    U32,
    U64,
    mt_init_step,
    mt_next,
    mt_temper,
    score_values,
)
from pipeline.prng.mappings import library as lib

GEN_JAVA, GEN_MT, GEN_MT_ARRAY = 0, 1, 2
MAP_MOD, MAP_JAVA_INT, MAP_JAVA_DOUBLE, MAP_NUMPY, MAP_PYTHON, MAP_PHP = range(6)
MAP_KINDS = {"mod": MAP_MOD, "java_next_int": MAP_JAVA_INT, "java_next_double": MAP_JAVA_DOUBLE,
             "numpy_randint": MAP_NUMPY, "python_randrange": MAP_PYTHON, "php_mt_rand": MAP_PHP}  # fmt: skip
MT_N, MT_M = 624, 397
LAZY_OUTPUTS = MT_N - MT_M  # outputs 0..226 of a fresh state read init words only (i, i+1, i+397)
JAVA_MULT, JAVA_ADD, MASK48 = U64(ref.JAVA_MULT), U64(ref.JAVA_ADD), U64(ref.MASK48)
INT31 = 1 << 31
DOUBLE_UNIT = 2.0**-53
# walker state ix: next output, init words filled, twists done, lane mode, lane output limit, lane overflowed
IX_POS, IX_FILLED, IX_BLOCK, IX_LANE, IX_LIMIT, IX_OVER = range(6)
CHUNK = 1 << 20  # seeds per kernel call: bounds the code array and keeps progress granular
BY_ARRAY_BASE = np.array(ref.mt_init(19650218), dtype=np.uint32)  # init_by_array starts from this state


def generator_kind(generator: str) -> int:
    if generator in lib.JAVA_GENERATORS:
        return GEN_JAVA
    if generator in lib.MT_GENERATORS:
        return GEN_MT
    if generator in lib.PYTHON_GENERATORS:
        return GEN_MT_ARRAY
    raise ValueError(f"no mapped walker for generator {generator!r}")


def mapping_params(mapping: str, n: int) -> np.ndarray:
    """int64 [kind, n, a, b] for the kernel: java_next_int (1 if a power of two, 31 - log2 n), numpy (mask, -),
    python (shift, -), php (-, limit or -1 for a power of two)."""
    a = b = 0
    if mapping == "java_next_int":
        a, b = int(lib.is_pow2(n)), 31 - (n.bit_length() - 1)
    elif mapping == "numpy_randint":
        a = lib.numpy_mask(n)
    elif mapping == "python_randrange":
        a = lib.python_shift(n)
    elif mapping == "php_mt_rand":
        b = -1 if lib.is_pow2(n) else lib.php_limit(n)
    return np.array([MAP_KINDS[mapping], n, a, b], dtype=np.int64)


@njit(cache=True)
def _twist(mt):
    for i in range(MT_N - MT_M):
        mt[i] = mt_next(mt[i], mt[i + 1], mt[i + MT_M])
    for i in range(MT_N - MT_M, MT_N - 1):
        mt[i] = mt_next(mt[i], mt[i + 1], mt[i - (MT_N - MT_M)])
    mt[MT_N - 1] = mt_next(mt[MT_N - 1], mt[0], mt[MT_M - 1])


@njit(cache=True)
def _by_array(seed, base, mt):
    """mt = init_by_array([seed]) (CPython's random.seed of a 32-bit int), scalar."""
    s = U32(seed)
    for i in range(MT_N):
        mt[i] = base[i]
    i = 1
    for _ in range(MT_N):
        p = mt[i - 1]
        mt[i] = U32(U32(mt[i] ^ U32(U32(p ^ U32(p >> U32(30))) * U32(1664525))) + s)
        i += 1
        if i >= MT_N:
            mt[0] = mt[MT_N - 1]
            i = 1
    for _ in range(MT_N - 1):
        p = mt[i - 1]
        mt[i] = U32(U32(mt[i] ^ U32(U32(p ^ U32(p >> U32(30))) * U32(1566083941))) - U32(i))
        i += 1
        if i >= MT_N:
            mt[0] = mt[MT_N - 1]
            i = 1
    mt[0] = U32(0x80000000)


@njit(inline="always", cache=True)
def _seed_scalar(gen, seed, base, js, mt, ix):
    """Seed the scalar walker: java state, or an MT state whose init words are filled lazily (genrand)."""
    for q in range(6):
        ix[q] = 0
    if gen == GEN_JAVA:
        js[0] = (U64(seed) ^ JAVA_MULT) & MASK48
    elif gen == GEN_MT:
        mt[0] = U32(seed)
        ix[IX_FILLED] = 1
    else:
        _by_array(seed, base, mt)
        ix[IX_FILLED] = MT_N


@njit(inline="always", cache=True)
def _next(gen, js, mt, ix, words, lane):
    """The next 32-bit output (java: bits 47..16 of the new state). Lane mode reads the lane's init words and
    sets IX_OVER (returning 0, which every mapping accepts) when it would need more than they hold."""
    if gen == GEN_JAVA:
        s = (js[0] * JAVA_MULT + JAVA_ADD) & MASK48
        js[0] = s
        return U32(s >> U64(16))
    pos = ix[IX_POS]
    if ix[IX_LANE] != 0:
        if pos >= ix[IX_LIMIT]:
            ix[IX_OVER] = 1
            return U32(0)
        ix[IX_POS] = pos + 1
        return mt_temper(mt_next(words[pos, lane], words[pos + 1, lane], words[pos + MT_M, lane]))
    ix[IX_POS] = pos + 1
    if ix[IX_BLOCK] == 0:
        if pos < LAZY_OUTPUTS:
            need = pos + MT_M + 1
            if ix[IX_FILLED] < need:
                for i in range(ix[IX_FILLED], need):
                    mt[i] = mt_init_step(mt[i - 1], i)
                ix[IX_FILLED] = need
            return mt_temper(mt_next(mt[pos], mt[pos + 1], mt[pos + MT_M]))
        for i in range(ix[IX_FILLED], MT_N):
            mt[i] = mt_init_step(mt[i - 1], i)
        ix[IX_FILLED] = MT_N
        _twist(mt)
        ix[IX_BLOCK] = 1
    elif pos == ix[IX_BLOCK] * MT_N:
        _twist(mt)
        ix[IX_BLOCK] += 1
    return mt_temper(mt[pos - (ix[IX_BLOCK] - 1) * MT_N])


@njit(inline="always", cache=True)
def _call(gen, kind, n, a, b, js, mt, ix, words, lane):
    """One library call's value in [0, n): the loops of pipeline.prng.mappings.library, output for output.

    One loop with one call site of _next (each iteration is one attempt), so the inlined walker stays small:
    numba compiles this kernel once for every mapping. a, b: mapping_params."""
    held = np.int64(-1)
    while True:
        out = np.int64(_next(gen, js, mt, ix, words, lane))
        if kind == MAP_MOD:
            return out % n
        if kind == MAP_JAVA_INT:
            u = out >> 1  # next(31)
            if a != 0:  # a power of two: (n * u) >> 31
                return u >> b
            r = u % n
            if u - r + (n - 1) < INT31:  # Java: no int overflow
                return r
        elif kind == MAP_JAVA_DOUBLE:
            if held < 0:
                held = out >> 6  # next(26)
                continue
            return np.int64(math.floor(np.float64((held << 27) + (out >> 5)) * DOUBLE_UNIT * np.float64(n)))
        elif kind == MAP_NUMPY:
            v = out & a
            if v < n:
                return v
        elif kind == MAP_PYTHON:
            v = out >> a
            if v < n:
                return v
        else:  # MAP_PHP
            if b < 0:  # a power of two: the low bits
                return out & (n - 1)
            if out <= b:
                return out % n


@njit(cache=True)
def _walk_scalar(gen, kind, n, a, b, seed, base, count, js, mt, ix, words, calls):
    """calls[:count] = the values of calls 0..count-1 of `seed`, from a fresh scalar state."""
    _seed_scalar(gen, seed, base, js, mt, ix)
    for c in range(count):
        calls[c] = _call(gen, kind, n, a, b, js, mt, ix, words, 0)


@njit(inline="always", cache=True)
def _lanes_genrand(first, words, upto, keep, x):
    """init_genrand words 0..upto-1 for LANES seeds; only those the lazy outputs read are stored (0..keep and
    397..): the chain between runs in registers (stores inside it cost ~35%, see the stream kernel)."""
    for lane in range(LANES):
        x[lane] = U32(first + lane)
        words[0, lane] = x[lane]
    for i in range(1, keep + 1):
        for lane in range(LANES):
            x[lane] = mt_init_step(x[lane], i)
            words[i, lane] = x[lane]
    for i in range(keep + 1, MT_M):
        for lane in range(LANES):
            x[lane] = mt_init_step(x[lane], i)
    for i in range(MT_M, upto):
        for lane in range(LANES):
            x[lane] = mt_init_step(x[lane], i)
            words[i, lane] = x[lane]


@njit(inline="always", cache=True)
def _lanes_by_array(first, words, base, seeds):
    """init_by_array([seed]) for LANES seeds side by side (the scalar _by_array, unrolled over its wraps)."""
    for lane in range(LANES):
        seeds[lane] = U32(first + lane)
        words[0, lane] = base[0]
    for i in range(1, MT_N):
        b = base[i]
        for lane in range(LANES):
            p = words[i - 1, lane]
            words[i, lane] = U32(U32(b ^ U32(U32(p ^ U32(p >> U32(30))) * U32(1664525))) + seeds[lane])
    for lane in range(LANES):
        p = words[MT_N - 1, lane]
        words[0, lane] = p
        words[1, lane] = U32(U32(words[1, lane] ^ U32(U32(p ^ U32(p >> U32(30))) * U32(1664525))) + seeds[lane])
    for i in range(2, MT_N):
        for lane in range(LANES):
            p = words[i - 1, lane]
            words[i, lane] = U32(U32(words[i, lane] ^ U32(U32(p ^ U32(p >> U32(30))) * U32(1566083941))) - U32(i))
    for lane in range(LANES):
        p = words[MT_N - 1, lane]
        words[1, lane] = U32(U32(words[1, lane] ^ U32(U32(p ^ U32(p >> U32(30))) * U32(1566083941))) - U32(1))
        words[0, lane] = U32(0x80000000)


@njit(parallel=True, cache=True, nogil=True)
def mapped_sieve(gen, mp, base, start, count, positions, targets, n_filter, need, lane_words, code):
    """code[i] = skip_index << 16 | matches for seed start+i when it passes, else NO_SURVIVOR.

    positions int64 [n_skips, k] are CALL positions in check order; lane_words: MT init words the lane stage
    computes per seed (0: no lane stage; by_array always computes all 624)."""
    kind, n, a, b = mp[0], mp[1], mp[2], mp[3]
    n_skips = positions.shape[0]
    flast = 0
    for si in range(n_skips):
        for j in range(n_filter):
            flast = max(flast, positions[si, j])
    last = positions.max()
    use_lanes = gen != GEN_JAVA and lane_words > MT_M
    limit = min(LAZY_OUTPUTS, lane_words - MT_M) if use_lanes else 0
    n_tasks = (count + TASK_SEEDS - 1) // TASK_SEEDS
    for t in prange(n_tasks):
        js = np.empty(1, np.uint64)
        mt = np.empty(MT_N, np.uint32)
        ix = np.zeros(6, np.int64)
        calls = np.empty(last + 1, np.int64)
        words = np.empty((MT_N if use_lanes else 1, LANES), np.uint32)
        seeds = np.empty(LANES, np.uint32)
        t1 = min(count, (t + 1) * TASK_SEEDS)
        for b0 in range(t * TASK_SEEDS, t1, LANES):
            if use_lanes:
                if gen == GEN_MT:
                    _lanes_genrand(start + b0, words, lane_words, limit, seeds)
                else:
                    _lanes_by_array(start + b0, words, base, seeds)
            for lane in range(min(LANES, t1 - b0)):
                i = b0 + lane
                seed = start + i
                if use_lanes:
                    for q in range(6):
                        ix[q] = 0
                    ix[IX_LANE] = 1
                    ix[IX_LIMIT] = limit
                else:
                    _seed_scalar(gen, seed, base, js, mt, ix)
                for c in range(flast + 1):
                    calls[c] = _call(gen, kind, n, a, b, js, mt, ix, words, lane)
                    if ix[IX_OVER] != 0:
                        break
                if ix[IX_OVER] != 0:  # the lane words ran out: the scalar walk, as far as it takes
                    _walk_scalar(gen, kind, n, a, b, seed, base, flast + 1, js, mt, ix, words, calls)
                hit = False
                for si in range(n_skips):
                    for j in range(n_filter):
                        if calls[positions[si, j]] == targets[j]:
                            hit = True
                if not hit:
                    code[i] = NO_SURVIVOR
                    continue
                _walk_scalar(gen, kind, n, a, b, seed, base, last + 1, js, mt, ix, words, calls)
                code[i] = score_values(calls, positions, targets, need)


@njit(cache=True)
def walk_calls(gen, mp, base, seed, count, out):
    """out[:count] = the call values of one seed (the scalar walker; tests compare it with the vectors)."""
    js = np.empty(1, np.uint64)
    mt = np.empty(MT_N, np.uint32)
    ix = np.zeros(6, np.int64)
    words = np.empty((1, LANES), np.uint32)
    _walk_scalar(gen, mp[0], mp[1], mp[2], mp[3], seed, base, count, js, mt, ix, words, out)


def call_values(generator: str, mapping: str, seed: int, count: int, modulus: int) -> list[int]:
    out = np.empty(count, dtype=np.int64)
    if count:
        walk_calls(generator_kind(generator), mapping_params(mapping, modulus), BY_ARRAY_BASE, seed, count, out)
    return out.tolist()


def lane_words(spec: lib.CallWindow, flast: int) -> int:
    """MT init words the lane stage computes: enough for the filter walk of nearly every seed (mean outputs plus
    six standard deviations), 624 for init_by_array (its chain must run in full anyway), 0 when the walk leaves
    the lazy region (outputs >= 227) for most seeds, where lanes would only add a redo."""
    gen = generator_kind(spec.generator)
    if gen == GEN_JAVA:
        return 0
    if gen == GEN_MT_ARRAY:
        return MT_N
    q = lib.reject_probability(spec.mapping, spec.modulus)
    calls = flast + 1
    outputs = calls / (1 - q) + 6 * math.sqrt(calls * q) / (1 - q) + 2
    if outputs >= LAZY_OUTPUTS:
        return 0
    return min(MT_N, MT_M + 1 + math.ceil(outputs))


class MappedPlan:
    """The kernel's tables for one spec, built once per sieve."""

    def __init__(self, spec: lib.CallWindow) -> None:
        order = spec.check_order()
        self.gen = generator_kind(spec.generator)
        self.mp = mapping_params(spec.mapping, spec.modulus)
        self.positions = np.array([[spec.position(j, s) for j in order] for s in spec.skips], dtype=np.int64)
        self.targets = np.array([spec.residues[j] for j in order], dtype=np.int64)
        self.n_filter = spec.filter_length()
        self.need = spec.need
        self.lane_words = lane_words(spec, int(self.positions[:, : self.n_filter].max()))

    def run_chunk(self, start: int, count: int, code: np.ndarray) -> np.ndarray:
        code = code[:count]
        mapped_sieve(self.gen, self.mp, BY_ARRAY_BASE, start, count, self.positions, self.targets, self.n_filter,
                     self.need, self.lane_words, code)  # fmt: skip
        return code


def numba_sieve(spec: lib.CallWindow, start: int, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seeds, skips, matches) of the survivors in [start, end)."""
    plan = MappedPlan(spec)
    buffer = np.empty(min(CHUNK, end - start), dtype=np.int32)
    parts = []
    for lo in range(start, end, CHUNK):
        code = plan.run_chunk(lo, min(CHUNK, end - lo), buffer)
        idx = np.flatnonzero(code >= 0)
        if idx.size:
            c = code[idx].astype(np.int64)
            parts.append((idx.astype(np.int64) + lo, spec.skip_min + (c >> 16), c & 0xFFFF))
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]
