"""Generic numba kernels for every family definition (pipeline.prng.generators.families).

One scalar generator (`gen_init` / `gen_next`, switching on a family kind) drives `family_sieve`, the fixed-skip
sieve for presets without a specialised kernel (the 64- and 128-bit families): each seed's residues are streamed up
to the last filter position; seeds that hit a filter draw are streamed to the end of the window and scored like the
other kernels (code = skip_index << 16 | matches, or -1). The variable-skip kernel (variable_kernel.py) drives the
same generator.

State layout (uint64 words): MT19937 keeps 624 words and its index at STATE_INDEX; the others use words 0..3.
Residues are `output % modulus` on the full output (64-bit outputs are not truncated).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from pipeline.prng.kernels.common import (
    NO_SURVIVOR,
    TASK_SEEDS,
    U32,
    U64,
    mt_init_step,
    mt_next,
    mt_temper,
    score_values,
)

FK_LCG, FK_PCG, FK_XS32, FK_XS64, FK_XS128, FK_MT, FK_XOSHIRO, FK_PHILOX, FK_SFC = range(9)
MT_N, MT_M = 624, 397
STATE_WORDS = MT_N + 1
STATE_INDEX = MT_N
N_PARAMS = 8
EXPECTED_START = 5  # their kernels' initial expected skip
M32 = U64(0xFFFFFFFF)
PCG_MULT = U64(6364136223846793005)


@njit(inline="always", cache=True)
def _rotl64(x, r):
    return (x << U64(r)) | (x >> U64(64 - r))


@njit(inline="always", cache=True)
def _pcg_out(old):
    xs = (((old >> U64(18)) ^ old) >> U64(27)) & M32
    rot = old >> U64(59)
    return ((xs >> rot) | (xs << ((U64(32) - rot) & U64(31)))) & M32


@njit(inline="always", cache=True)
def _lcg_step(p, s):
    """p: a, c, m, seed_xor, zero_to_one, out_shift, out_mask, pow2."""
    if p[7] != U64(0):
        return (p[0] * s + p[1]) & (p[2] - U64(1))
    return (p[0] * s + p[1]) % p[2]  # m < 2**32 and a, c, s < m: no overflow


@njit(cache=True)
def gen_init(kind, p, seed, st):
    """Seed the generator of `kind` (params p) with the 32-bit `seed` into st."""
    if kind == FK_LCG:
        s = (seed ^ p[3]) % p[2] if p[7] == U64(0) else (seed ^ p[3]) & (p[2] - U64(1))
        if p[4] != U64(0) and s == U64(0):
            s = U64(1)
        st[0] = s
    elif kind == FK_PCG:
        inc = p[0]
        if p[1] != U64(0):  # pcg32_srandom_r
            s = inc + seed
            st[0] = s * PCG_MULT + inc
        else:
            st[0] = seed
    elif kind in (FK_XS32, FK_XS64):
        st[0] = seed
    elif kind == FK_XS128:
        st[0] = seed & M32
        st[1] = p[0]
        st[2] = p[1]
        st[3] = p[2]
    elif kind == FK_MT:
        x = U32(seed)
        st[0] = U64(x)
        for i in range(1, MT_N):
            x = mt_init_step(x, i)
            st[i] = U64(x)
        st[STATE_INDEX] = U64(MT_N)
    elif kind == FK_XOSHIRO:
        st[0] = seed
        st[1] = p[0]
        st[2] = p[1]
        st[3] = p[2]
    elif kind == FK_PHILOX:
        st[0] = U64(0)  # counter
        st[1] = seed & M32
        st[2] = (seed >> U64(32)) & M32
    else:  # FK_SFC
        st[0] = seed
        st[1] = p[0]
        st[2] = p[1]
        st[3] = p[2]


@njit(cache=True)
def gen_next(kind, p, st):
    """The next output (uint64) of the generator in st."""
    if kind == FK_LCG:
        s = _lcg_step(p, st[0])
        st[0] = s
        return (s >> p[5]) & p[6]
    if kind == FK_PCG:
        old = st[0]
        new = old * PCG_MULT + p[0]
        st[0] = new
        return _pcg_out(new) if p[2] != U64(0) else _pcg_out(old)
    if kind == FK_XS32:
        x = U32(st[0])
        x = U32(x ^ U32(x << U32(p[0])))
        x = U32(x ^ U32(x >> U32(p[1])))
        x = U32(x ^ U32(x << U32(p[2])))
        st[0] = U64(x)
        return U64(x)
    if kind == FK_XS64:
        x = st[0]
        x ^= x >> p[0]
        x ^= x << p[1]
        x ^= x >> p[2]
        x = x * p[3]
        st[0] = x
        return x if p[4] != U64(0) else x & M32
    if kind == FK_XS128:
        x = st[0]
        t = (x ^ (x << U64(11))) & M32
        w = st[3]
        st[0] = st[1]
        st[1] = st[2]
        st[2] = w
        w = w ^ (w >> U64(19)) ^ t ^ (t >> U64(8))
        st[3] = w
        return w
    if kind == FK_MT:
        idx = st[STATE_INDEX]
        if idx >= U64(MT_N):
            for i in range(MT_N):
                st[i] = U64(mt_next(U32(st[i]), U32(st[(i + 1) % MT_N]), U32(st[(i + MT_M) % MT_N])))
            idx = U64(0)
        st[STATE_INDEX] = idx + U64(1)
        return U64(U32(mt_temper(U32(st[idx])) >> U32(p[0])))
    if kind == FK_XOSHIRO:
        s0, s1, s2, s3 = st[0], st[1], st[2], st[3]
        result = _rotl64(s0 + s3, 23) + s0
        t = s1 << U64(17)
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = _rotl64(s3, 45)
        st[0], st[1], st[2], st[3] = s0, s1, s2, s3
        return result
    if kind == FK_PHILOX:
        c0, c1, c2, c3 = st[0] & M32, U64(0), U64(0), U64(0)
        k0, k1 = st[1], st[2]
        for r in range(p[0]):
            if r:
                k0 = (k0 + U64(0x9E3779B9)) & M32
                k1 = (k1 + U64(0xBB67AE85)) & M32
            p0 = U64(0xD2511F53) * c0
            p1 = U64(0xCD9E8D57) * c2
            c0, c1, c2, c3 = (p1 >> U64(32)) ^ c1 ^ k0, p1 & M32, (p0 >> U64(32)) ^ c3 ^ k1, p0 & M32
        st[0] = (st[0] + U64(1)) & M32
        return c0
    # FK_SFC
    a, b, c, n = st[0], st[1], st[2], st[3]
    tmp = a + b + n
    st[3] = n + U64(1)
    st[0] = b ^ (b >> U64(11))
    st[1] = c + (c << U64(3))
    st[2] = _rotl64(c, 24) + tmp
    return tmp


@njit(parallel=True, cache=True)
def family_sieve(kind, p, start, count, positions, targets, n_filter, need, modulus, code):
    """Fixed-skip sieve over seeds [start, start+count): positions int64 [n_skips, k] in check order."""
    n_skips = positions.shape[0]
    flast = 0
    for si in range(n_skips):
        for j in range(n_filter):
            flast = max(flast, positions[si, j])
    last = positions.max()
    n_tasks = (count + TASK_SEEDS - 1) // TASK_SEEDS
    for t in prange(n_tasks):
        st = np.empty(STATE_WORDS, np.uint64)
        res = np.empty(last + 1, np.uint64)
        for i in range(t * TASK_SEEDS, min(count, (t + 1) * TASK_SEEDS)):
            gen_init(kind, p, U64(start + i), st)
            for q in range(flast + 1):
                res[q] = gen_next(kind, p, st) % modulus
            hit = False
            for si in range(n_skips):
                for j in range(n_filter):
                    if res[positions[si, j]] == targets[j]:
                        hit = True
            if not hit:
                code[i] = NO_SURVIVOR
                continue
            for q in range(flast + 1, last + 1):
                res[q] = gen_next(kind, p, st) % modulus
            code[i] = score_values(res, positions, targets, need)
