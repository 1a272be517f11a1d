"""numba sieve for the LCG family (every Lcg and Pcg preset) via affine jump-ahead.

Every draw position costs one multiply-add whatever the offset or skip, so the filter touches only the first few
draws of each skip for all lanes, and the rare candidates are scored draw by draw. The filter runs over aligned
blocks of JUMP_LANES seeds in 32-bit lanes: for lcg32 and java_lcg the jump becomes a per-block scalar plus a
vector induction and the residue test a multiply-rotate-compare (common.divisibility_params), so a seed costs a
handful of vector instructions shared by 16 lanes. Only survivors are written.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from pipeline.prng.kernels.common import (
    CODE_SHIFT,
    NO_SURVIVOR,
    U8,
    U32,
    U64,
    divisible,
    fastmod,
    fetch_add,
    rotr32,
)

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


# Seeds per filter block: a power of two (blocks are aligned, so java's seed scramble is a lane permutation) and a
# multiple of 64 (LLVM's vector body is 16 u32 lanes x 4 interleaved: no scalar remainder loop).
JUMP_LANES = 512
JUMP_TASK_SEEDS = JUMP_LANES * 64  # seeds per task handed out by the shared counter (a few us of work)
JAVA_XOR_LO = U32(0x5DEECE66D & 0xFFFFFFFF)
JAVA_XOR_HI = U64(0x5DEECE66D & ~0xFFFFFFFF)


def compact_tasks(start: int, count: int) -> int:
    """Tasks (and output segments) jump_sieve_compact uses for seeds [start, start+count)."""
    first = start - start % JUMP_LANES
    return -(-(start + count - first) // JUMP_TASK_SEEDS)


def task_range(start: int, count: int, t: int) -> tuple[int, int]:
    """Seeds [lo, hi) of task t of a jump_sieve_compact call on [start, start+count)."""
    first = start - start % JUMP_LANES + t * JUMP_TASK_SEEDS
    return max(start, first), min(start + count, first + JUMP_TASK_SEEDS)


@njit(inline="always", cache=True)
def _flag(hit, v, h, first):
    """The first (skip, draw) pair stores the flag, the others OR into it: nothing is zeroed beforehand."""
    if first:
        hit[v] = U8(h)
    else:
        hit[v] = U8(hit[v] | U8(h))


@njit(inline="always", cache=True)
def _filter_block(kind, b, coef_a, coef_c, targets, n_filter, inv, rot, limit, pmask, pshift, pout, hit, words):
    """hit[v] = 1 where the seed behind lane v of aligned block b may match a filter draw; returns the OR of
    hit's words (0: no candidate in the block). Lane v is seed b + v, except for java, where it is seed
    b + (v ^ (JAVA_XOR_LO % JUMP_LANES)).

    Each (skip, draw) pair is one branch-free u32 lane loop whose per-lane work is the residue test (see
    common.divisibility_params): the affine jump a*s + c is a per-block scalar plus a*v, carried as a running
    sum so LLVM makes it a vector induction (one add per vector, no multiply). Nothing but hit[] is stored, and
    the any-hit reduction is one pass over its words afterwards (a per-lane OR inside the loop cost 3 extra
    vector ops per 8 lanes)."""
    n_skips = coef_a.shape[0]
    first = True
    for si in range(n_skips):
        for j in range(n_filter):
            a = coef_a[si, j]
            c = coef_c[si, j]
            tg = U32(targets[j])
            if kind == KIND_LCG32:
                # y = (a*s + c - tg) * inv = (a*inv)*s + (c-tg)*inv (mod 2**32), s = b + v
                step = U32(U32(a) * U32(inv))
                y = U32(U32(step * U32(b)) + U32(U32(U32(c) - tg) * U32(inv)))
                for v in range(JUMP_LANES):
                    _flag(hit, v, rotr32(y, rot) <= limit, first)
                    y = U32(y + step)
            elif kind == KIND_JAVA:
                # s = (seed ^ 0x5DEECE66D) & MASK48 = sb + v over an aligned block; state = S + a*v (mod 2**48) and
                # output = state bits 16..47 = S_hi + a_hi*v + ((S_lo + a_lo*v) >> 16) (mod 2**32), all in u32
                # (S_lo + a_lo*v < 2**26 for v < 512)
                sb = U64(U32(U32(b) ^ JAVA_XOR_LO) & U32(~(JUMP_LANES - 1))) | JAVA_XOR_HI
                big = (a * sb + c) & MASK48
                lo = U32(big & U64(0xFFFF))
                hi = U32(U32(big >> U64(16)) - tg)
                a_lo = U32(a & U64(0xFFFF))
                a_hi = U32(a >> U64(16))
                # np.add/np.right_shift keep u32 in the IR: with U32(lo + a_lo), numba's 64-bit add and LLVM's range
                # knowledge of lo widened both inductions to 64-bit lanes (inspect_asm: vpaddq, vpsrlq, vpmovqd and
                # vinserti64x4 were 14 of the loop's 29 vector instructions per 32 seeds; now 2 vpaddd, 1 vpsrld per 16)
                for v in range(JUMP_LANES):
                    x = np.add(hi, np.right_shift(lo, U32(16)))
                    _flag(hit, v, divisible(x, inv, rot, limit), first)
                    lo = np.add(lo, a_lo)
                    hi = np.add(hi, a_hi)
            else:
                for v in range(JUMP_LANES):
                    s = start_value(kind, U64(b + v))
                    x = U32(jump_output(kind, a, c, s, pmask, pshift, pout))
                    _flag(hit, v, divisible(U32(x - tg), inv, rot, limit), first)
            first = False
    acc = U64(0)
    for w in range(JUMP_LANES // 8):
        acc |= words[w]
    return acc


@njit(parallel=True, cache=True, nogil=True)
def jump_sieve_compact(kind, start, count, coef_a, coef_c, targets, n_filter, need, d, magic, shift, inv, rot, limit,
                       pmask, pshift, pout, workers, cap, out_idx, out_code, counts):  # fmt: skip
    """Survivors among seeds [start, start+count), written compactly: one segment of `cap` entries per task, task
    t putting its survivors' offsets from `start` and codes (skip_index << 16 | matches) at
    out_idx/out_code[t*cap : t*cap + min(counts[t], cap)]. counts[t] > cap: the task overflowed, and its range
    (task_range) must be run again with cap >= JUMP_TASK_SEEDS. coef_*: uint64 [n_skips, k], check order.

    Blocks of JUMP_LANES seeds are aligned (the first may start before `start`, the last end after start+count:
    those lanes are dropped when hits are collected). Tasks of JUMP_TASK_SEEDS seeds are pulled from a shared
    counter by `workers` loops (numba.get_num_threads(), one per thread; see common.fetch_add). The filter passes
    a superset (see _filter_block); every flagged seed is rescored exactly by _verify."""
    first = start - start % JUMP_LANES
    stop = start + count
    n_tasks = (stop - first + JUMP_TASK_SEEDS - 1) // JUMP_TASK_SEEDS
    perm = (JAVA_XOR_LO & U32(JUMP_LANES - 1)) if kind == KIND_JAVA else U32(0)
    next_task = np.zeros(1, np.int64)
    for _worker in prange(workers):
        hit = np.empty(JUMP_LANES, np.uint8)
        words = hit.view(np.uint64)
        while True:
            t = fetch_add(next_task, 1)
            if t >= n_tasks:
                break
            n = 0
            o = t * cap
            t0 = first + t * JUMP_TASK_SEEDS
            t1 = min(stop, t0 + JUMP_TASK_SEEDS)
            for b in range(t0, t1, JUMP_LANES):
                if _filter_block(kind, b, coef_a, coef_c, targets, n_filter, inv, rot, limit, pmask, pshift, pout,
                                 hit, words) == U64(0):  # fmt: skip
                    continue
                for w in range(JUMP_LANES // 8):
                    if words[w] == U64(0):
                        continue
                    for v in range(w * 8, w * 8 + 8):
                        if hit[v]:
                            seed = b + (v ^ perm)
                            if seed < start or seed >= stop:
                                continue
                            s = start_value(kind, U64(seed))
                            code = _verify(kind, s, coef_a, coef_c, targets, need, d, magic, shift, pmask, pshift,
                                           pout)  # fmt: skip
                            if code != NO_SURVIVOR:
                                if n < cap:
                                    out_idx[o + n] = seed - start
                                    out_code[o + n] = code
                                n += 1
            counts[t] = n
