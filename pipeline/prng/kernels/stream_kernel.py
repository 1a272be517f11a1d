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
    fastmod,
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


@njit(parallel=True, cache=True, nogil=True)
def stream_sieve_lanes(gen, start, count, positions, targets, n_filter, need, d, magic, shift, needed, ops, out_slot,
                       code):  # fmt: skip
    """Filter all lanes on the first n_filter draws of each skip, then score the hits one by one.

    needed: sorted recurrence indices kept in words[0..len(needed)) (MT: init words, all < 624; xorshift:
    output positions). ops: MT only, rows (dst, a, b, c): words[dst] = twist(words[a], words[b], words[c]),
    in dependency order (see pipeline.prng.sieve.fast.mt_program). out_slot[skip, j]: the word behind filter draw j.
    """
    n_skips = positions.shape[0]
    n_init = needed.shape[0]
    n_slots = n_init + ops.shape[0]
    last = positions.max()
    n_tasks = (count + TASK_SEEDS - 1) // TASK_SEEDS
    for t in prange(n_tasks):
        x = np.empty(LANES, np.uint32)
        hit = np.empty(LANES, np.uint8)
        words = np.empty((n_slots, LANES), np.uint32)
        state = np.empty(MT_N, np.uint32)
        stream = np.empty(last + 1, np.uint32)
        t1 = min(count, (t + 1) * TASK_SEEDS)
        for b0 in range(t * TASK_SEEDS, t1, LANES):
            base = start + b0
            for lane in range(LANES):
                x[lane] = U32(base + lane)
                hit[lane] = 0
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
                        tg = targets[j]
                        for lane in range(LANES):
                            hit[lane] |= U8(fastmod(U64(words[sp, lane]), d, magic, shift) == tg)
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
                        tg = targets[j]
                        for lane in range(LANES):
                            v = mt_temper(words[sp, lane])
                            hit[lane] |= U8(fastmod(U64(U32(v >> php_shift)), d, magic, shift) == tg)
            for lane in range(min(LANES, t1 - b0)):
                if hit[lane]:
                    fill_stream(gen, base + lane, last, state, stream)
                    code[b0 + lane] = score_outputs(stream, positions, targets, need, d, magic, shift)
                else:
                    code[b0 + lane] = NO_SURVIVOR
