"""numba sieve for the stream generators (mt19937, php_mt_rand, xorshift32).

Lane blocks run the recurrence for LANES seeds side by side and keep only the words the filter draws
need: for MT19937 output i < 227 needs init words i, i+1, i+397; later outputs need a few more twisted words,
evaluated from a small precomputed program instead of the full 624-word twist. Candidates that hit a filter
draw are scored from a full scalar stream.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from pipeline.prng.kernels.common import (
    LANES,
    NO_SURVIVOR,
    TASK_SEEDS,
    U8,
    U32,
    U64,
    divisible,
    fetch_add,
    mt_init_step,
    mt_next,
    mt_temper,
    score_outputs,
    xorshift_step,
)

MT_N, MT_M = 624, 397
GEN_MT, GEN_PHP, GEN_XORSHIFT = 0, 1, 2


@njit(cache=True)
def fill_stream(gen, seed, last, state, stream):
    """stream[0..last] = the seed's outputs (php shift applied); state: scratch of MT_N uint32."""
    if gen == GEN_XORSHIFT:
        x = U32(seed)
        for i in range(last + 1):
            x = xorshift_step(x)
            stream[i] = x
        return
    state[0] = U32(seed)
    top = last + MT_M if last + MT_M < MT_N else MT_N - 1
    for i in range(1, top + 1):
        state[i] = mt_init_step(state[i - 1], i)
    if last + MT_M < MT_N:
        for i in range(last + 1):
            stream[i] = mt_temper(mt_next(state[i], state[i + 1], state[i + MT_M]))
    else:
        n = 0
        while n <= last:
            for i in range(MT_N):
                state[i] = mt_next(state[i], state[(i + 1) % MT_N], state[(i + MT_M) % MT_N])
            for i in range(MT_N):
                if n + i <= last:
                    stream[n + i] = mt_temper(state[i])
            n += MT_N
    if gen == GEN_PHP:
        for i in range(last + 1):
            stream[i] = U32(stream[i] >> U32(1))


@njit(parallel=True, cache=True, nogil=True)
def stream_sieve_scalar(gen, start, count, positions, targets, need, d, magic, shift, code):
    """General path (any positions): one full stream per seed. Used when the lane path does not apply."""
    last = positions.max()
    n_tasks = (count + TASK_SEEDS - 1) // TASK_SEEDS
    for t in prange(n_tasks):
        state = np.empty(MT_N, np.uint32)
        stream = np.empty(last + 1, np.uint32)
        for i in range(t * TASK_SEEDS, min(count, (t + 1) * TASK_SEEDS)):
            fill_stream(gen, start + i, last, state, stream)
            code[i] = score_outputs(stream, positions, targets, need, d, magic, shift)


@njit(inline="always", cache=True)
def _mt_chain(x, first, stop):
    """init_genrand steps first..stop-1 for all lanes. Kept free of other memory traffic so LLVM holds the
    LANES words in ymm registers for the whole segment (with a store to another array inside the loop it
    could not, and the kernel ran ~35% slower)."""
    for i in range(first, stop):
        for lane in range(LANES):
            x[lane] = mt_init_step(x[lane], i)


@njit(inline="always", cache=True)
def _xorshift_chain(x, steps):
    for _ in range(steps):
        for lane in range(LANES):
            x[lane] = xorshift_step(x[lane])


@njit(inline="always", cache=True)
def _flag(hit, lane, h, first):
    """The first (skip, draw) pair stores the flag, the others OR into it: nothing is zeroed beforehand."""
    if first:
        hit[lane] = U8(h)
    else:
        hit[lane] = U8(hit[lane] | U8(h))


@njit(inline="always", cache=True)
def _lane_block(gen, base, n_filter, inv, rot, limit, needed, ops, out_slot, targets, x, words, hit, hit_words):
    """Filter the LANES seeds base.. : hit[lane] = 1 where a filter draw may match; returns the OR of hit's words.

    The residue test is common.divisible on (word - target), a superset of `word % d == target` that costs one
    multiply, a rotate and a compare per lane (fastmod needed a widening multiply, a shift, a multiply and a
    fix-up); flagged seeds are rescored exactly from their full stream."""
    n_skips = out_slot.shape[0]
    n_init = needed.shape[0]
    for lane in range(LANES):
        x[lane] = U32(base + lane)
    first = True
    if gen == GEN_XORSHIFT:
        done = 0  # steps taken; output p is the state after p+1 steps
        for s in range(n_init):
            _xorshift_chain(x, needed[s] + 1 - done)
            done = needed[s] + 1
            for lane in range(LANES):
                words[s, lane] = x[lane]
        for si in range(n_skips):
            for j in range(n_filter):
                sp = out_slot[si, j]
                tg = U32(targets[j])
                for lane in range(LANES):
                    _flag(hit, lane, divisible(U32(words[sp, lane] - tg), inv, rot, limit), first)
                first = False
    else:
        cur = 1  # next init index to compute; x holds word cur-1
        for s in range(n_init):
            w = needed[s]
            if w >= cur:
                _mt_chain(x, cur, w + 1)
                cur = w + 1
            for lane in range(LANES):
                words[s, lane] = x[lane]
        for o in range(ops.shape[0]):
            dst, a, b, c = ops[o, 0], ops[o, 1], ops[o, 2], ops[o, 3]
            for lane in range(LANES):
                words[dst, lane] = mt_next(words[a, lane], words[b, lane], words[c, lane])
        php_shift = U32(1) if gen == GEN_PHP else U32(0)
        for si in range(n_skips):
            for j in range(n_filter):
                sp = out_slot[si, j]
                tg = U32(targets[j])
                for lane in range(LANES):
                    v = U32(mt_temper(words[sp, lane]) >> php_shift)
                    _flag(hit, lane, divisible(U32(v - tg), inv, rot, limit), first)
                first = False
    acc = U64(0)
    for w in range(hit_words.shape[0]):
        acc |= hit_words[w]
    return acc


@njit(parallel=True, cache=True, nogil=True)
def stream_sieve_compact(gen, start, count, positions, targets, n_filter, need, d, magic, shift, inv, rot, limit,
                         needed, ops, out_slot, workers, cap, out_idx, out_code, counts):  # fmt: skip
    """Filter all lanes on the first n_filter draws of each skip, then score the hits one by one; only survivors
    are written: task t (seeds start + t*TASK_SEEDS ..) puts their offsets from `start` and codes at
    out_idx/out_code[t*cap : t*cap + min(counts[t], cap)]. counts[t] > cap: the task overflowed, and its seeds must
    be run again with cap >= TASK_SEEDS. Tasks are pulled from a shared counter by `workers` loops (see
    common.fetch_add). No per-seed array is written, so the caller scans nothing.

    needed: sorted recurrence indices kept in words[0..len(needed)) (MT: init words, all < 624; xorshift:
    output positions). ops: MT only, rows (dst, a, b, c): words[dst] = twist(words[a], words[b], words[c]),
    in dependency order (see pipeline.prng.generators.mt_plan). out_slot[skip, j]: the word behind filter draw j.
    """
    n_slots = needed.shape[0] + ops.shape[0]
    last = positions.max()
    n_tasks = (count + TASK_SEEDS - 1) // TASK_SEEDS
    next_task = np.zeros(1, np.int64)
    for _worker in prange(workers):
        x = np.empty(LANES, np.uint32)
        hit = np.empty(LANES, np.uint8)
        hit_words = hit.view(np.uint64)
        words = np.empty((n_slots, LANES), np.uint32)
        state = np.empty(MT_N, np.uint32)
        stream = np.empty(last + 1, np.uint32)
        while True:
            t = fetch_add(next_task, 1)
            if t >= n_tasks:
                break
            n = 0
            o = t * cap
            t1 = min(count, (t + 1) * TASK_SEEDS)
            for b0 in range(t * TASK_SEEDS, t1, LANES):
                if _lane_block(gen, start + b0, n_filter, inv, rot, limit, needed, ops, out_slot, targets, x, words,
                               hit, hit_words) == U64(0):  # fmt: skip
                    continue
                for w in range(hit_words.shape[0]):
                    if hit_words[w] == U64(0):
                        continue
                    for lane in range(w * 8, min(w * 8 + 8, t1 - b0)):
                        if hit[lane]:
                            fill_stream(gen, start + b0 + lane, last, state, stream)
                            code = score_outputs(stream, positions, targets, need, d, magic, shift)
                            if code != NO_SURVIVOR:
                                if n < cap:
                                    out_idx[o + n] = b0 + lane
                                    out_code[o + n] = code
                                n += 1
            counts[t] = n
