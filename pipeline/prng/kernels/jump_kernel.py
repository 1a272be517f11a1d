"""numba sieve for the LCG family (every Lcg and Pcg preset) via affine jump-ahead.

Every draw position costs one 64-bit multiply-add whatever the offset or skip, so the filter touches only
the first few draws of each skip for all lanes, and the rare candidates are scored draw by draw.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from pipeline.prng.kernels.common import CODE_SHIFT, LANES, NO_SURVIVOR, TASK_SEEDS, U8, U32, U64, fastmod

KIND_LCG32, KIND_JAVA, KIND_MINSTD, KIND_PCG, KIND_POW2, KIND_MOD31 = 0, 1, 2, 3, 4, 5
MASK48 = U64((1 << 48) - 1)
MASK32 = U64(0xFFFFFFFF)
MINSTD_M = U64(0x7FFFFFFF)


@njit(inline="always", cache=True)
def start_value(kind, seed):
    if kind == KIND_JAVA:
        return (seed ^ U64(0x5DEECE66D)) & MASK48
    if kind == KIND_MINSTD:
        # seed < 2**32 = 2*M + 2: one Mersenne fold instead of a 64-bit modulo (which does not vectorise)
        s = (seed & MINSTD_M) + ((seed >> U64(31)) & U64(1))
        s = s - MINSTD_M if s >= MINSTD_M else s
        return s if s != U64(0) else U64(1)
    if kind == KIND_MOD31:
        s = (seed & MINSTD_M) + ((seed >> U64(31)) & U64(1))
        return s - MINSTD_M if s >= MINSTD_M else s
    return seed


@njit(inline="always", cache=True)
def jump_output(kind, a, c, s, pmask, pshift, pout):
    """pmask/pshift/pout: state mask, output shift and output mask of KIND_POW2 (unused by the other kinds)."""
    if kind == KIND_LCG32:
        # 32-bit lanes: twice the lanes per register of the 64-bit form
        return U64(U32(U32(U32(a) * U32(s)) + U32(c)))
    if kind == KIND_JAVA:
        return ((a * s + c) & MASK48) >> U64(16)
    if kind == KIND_MINSTD:
        x = U64(U32(a)) * U64(U32(s))  # both < 2**31; the zero-extension lets LLVM use vpmuludq
        x = (x & MINSTD_M) + (x >> U64(31))  # 2**31 = 1 (mod 2**31-1)
        return x - MINSTD_M if x >= MINSTD_M else x
    if kind == KIND_POW2:
        return (((a * s + c) & pmask) >> pshift) & pout
    if kind == KIND_MOD31:
        x = U64(U32(a)) * U64(U32(s)) + c  # a, s, c < 2**31: below 2**63
        x = (x & MINSTD_M) + (x >> U64(31))
        x = (x & MINSTD_M) + (x >> U64(31))
        return x - MINSTD_M if x >= MINSTD_M else x
    old = a * s + c
    xs = (((old >> U64(18)) ^ old) >> U64(27)) & MASK32
    rot = old >> U64(59)
    return ((xs >> rot) | (xs << ((U64(32) - rot) & U64(31)))) & MASK32


@njit(cache=True)
def _verify(kind, s, coef_a, coef_c, targets, need, d, magic, shift, pmask, pshift, pout):
    n_skips, k = coef_a.shape
    best = NO_SURVIVOR
    best_m = -1
    for si in range(n_skips):
        m = 0
        for j in range(k):
            v = jump_output(kind, coef_a[si, j], coef_c[si, j], s, pmask, pshift, pout)
            if fastmod(v, d, magic, shift) == targets[j]:
                m += 1
        if m >= need and m > best_m:
            best_m = m
            best = (si << CODE_SHIFT) | m
    return best


@njit(parallel=True, cache=True, nogil=True)
def jump_sieve(kind, start, count, coef_a, coef_c, targets, n_filter, need, d, magic, shift, code, pmask, pshift, pout):
    """code[i] = skip_index << 16 | matches for seed start+i, or -1. coef_*: uint64 [n_skips, k], check order."""
    n_skips = coef_a.shape[0]
    n_tasks = (count + TASK_SEEDS - 1) // TASK_SEEDS
    for t in prange(n_tasks):
        sv = np.empty(LANES, np.uint64)
        hit = np.empty(LANES, np.uint8)
        t1 = min(count, (t + 1) * TASK_SEEDS)
        for b0 in range(t * TASK_SEEDS, t1, LANES):
            base = U64(start + b0)
            for lane in range(LANES):
                sv[lane] = start_value(kind, base + U64(lane))
                hit[lane] = 0
            for si in range(n_skips):
                for j in range(n_filter):
                    a = coef_a[si, j]
                    c = coef_c[si, j]
                    tg = targets[j]
                    for lane in range(LANES):
                        v = jump_output(kind, a, c, sv[lane], pmask, pshift, pout)
                        if fastmod(v, d, magic, shift) == tg:
                            hit[lane] = 1
            for lane in range(min(LANES, t1 - b0)):
                if hit[lane]:
                    code[b0 + lane] = _verify(
                        kind, sv[lane], coef_a, coef_c, targets, need, d, magic, shift, pmask, pshift, pout
                    )
                else:
                    code[b0 + lane] = NO_SURVIVOR


@njit(inline="always", cache=True)
def fastmod32(x, d32, magic32, qshift):
    """x mod d for uint32 x, all in 32-bit lanes: q = (x*magic) >> 32 >> qshift (one vpmuludq per lane pair)."""
    q = U32(U32((U64(x) * U64(magic32)) >> U64(32)) >> U32(qshift))
    r = U32(x - U32(q * d32))
    return U32(r - d32) if r >= d32 else r


@njit(inline="always", cache=True)
def _filter_block(kind, base, coef_a, coef_c, targets, n_filter, d32, magic32, qshift, pmask, pshift, pout, hit):
    """hit[lane] = 1 where seed base+lane matches any filter draw. One branch-free lane loop per (skip, draw) and
    per kind, so LLVM vectorises each: 32-bit lanes for lcg32 (the jump is a u32 multiply-add), 64-bit for the
    48/64-bit states. The residue test writes a byte per lane; nothing else is stored."""
    for lane in range(LANES):
        hit[lane] = 0
    n_skips = coef_a.shape[0]
    for si in range(n_skips):
        for j in range(n_filter):
            a = coef_a[si, j]
            c = coef_c[si, j]
            tg = U32(targets[j])
            if kind == KIND_LCG32:
                # Measured (bench/ceiling, one core): this 64-bit-lane form 2.4 G/s; the same in u32 lanes with a
                # u32 induction 0.9 G/s (LLVM then splits the 32x32->64 magic multiply into even/odd halves).
                for lane in range(LANES):
                    x = U32(a * U64(base + lane) + c)
                    hit[lane] |= U8(fastmod32(x, d32, magic32, qshift) == tg)
            elif kind == KIND_JAVA:
                for lane in range(LANES):
                    s = (U64(base + lane) ^ U64(0x5DEECE66D)) & MASK48
                    x = U32(((a * s + c) & MASK48) >> U64(16))
                    hit[lane] |= U8(fastmod32(x, d32, magic32, qshift) == tg)
            else:
                for lane in range(LANES):
                    s = start_value(kind, U64(base + lane))
                    x = U32(jump_output(kind, a, c, s, pmask, pshift, pout))
                    hit[lane] |= U8(fastmod32(x, d32, magic32, qshift) == tg)


@njit(parallel=True, cache=True, nogil=True)
def jump_sieve_compact(kind, start, count, coef_a, coef_c, targets, n_filter, need, d, magic, shift, pmask, pshift,
                       pout, out_idx, out_code, counts):  # fmt: skip
    """Like jump_sieve, but writes only survivors: task t (seeds t*TASK_SEEDS ..) puts its survivors' offsets
    (from `start`) and codes at out_idx/out_code[t*TASK_SEEDS : t*TASK_SEEDS + counts[t]].

    Only 32-bit residues are filtered here (every jump kind's output fits in 32 bits)."""
    d32 = U32(d)
    magic32 = U32(magic)
    qshift = U32(shift - U64(32))
    n_tasks = (count + TASK_SEEDS - 1) // TASK_SEEDS
    for t in prange(n_tasks):
        hit = np.empty(LANES, np.uint8)
        words = hit.view(np.uint64)
        n = 0
        t0 = t * TASK_SEEDS
        t1 = min(count, t0 + TASK_SEEDS)
        for b0 in range(t0, t1, LANES):
            _filter_block(kind, start + b0, coef_a, coef_c, targets, n_filter, d32, magic32, qshift, pmask, pshift,
                          pout, hit)  # fmt: skip
            for w in range(words.shape[0]):
                if words[w] == U64(0):
                    continue
                for lane in range(w * 8, min(w * 8 + 8, t1 - b0)):
                    if hit[lane]:
                        s = start_value(kind, U64(start + b0 + lane))
                        code = _verify(kind, s, coef_a, coef_c, targets, need, d, magic, shift, pmask, pshift, pout)
                        if code != NO_SURVIVOR:
                            out_idx[t0 + n] = b0 + lane
                            out_code[t0 + n] = code
                            n += 1
        counts[t] = n
