"""numba block kernel of the variable-skip sieve: every passing (offset, strategy) of every seed, one row each.

The contract is pipeline.prng.sieve.variable.reference_variable_rows. Per seed one residue stream serves every
offset and strategy, and what is already known is not recomputed:

- The first draw is searched from the same expected skip (5) by every (offset, strategy), so one backward pass over
  the outputs that any first window can reach gives, per position, the next output equal to the first draw
  (`nxt`): each (offset, strategy) then finds its first-draw skip with one lookup. A seed none of whose reachable
  outputs equals the first draw is done after generating them when a miss there already costs the pass (threshold
  1.0: most seeds, most of the time).
- A scan stops on the miss after which it can no longer reach `need` matches (as well as by the give-up rule).
- The stream is extended only when a scan that is still alive reads past it.

Residues are output % modulus through common.fastmod for outputs below 2**32 (a 64-bit output is reduced in
full). Everything here takes plain arrays and scalars (no closures), so numba can cache it on disk.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from pipeline.prng.kernels.common import TASK_SEEDS, U32, U64, fastmod, fetch_add
from pipeline.prng.kernels.family_kernel import EXPECTED_START, STATE_WORDS, gen_init, gen_next

NONE = 1 << 62  # "no such position" in nxt
M32 = U64(0xFFFFFFFF)


@njit(inline="always", cache=True)
def _residue(kind, p, st, modulus, d, magic, shift):
    v = gen_next(kind, p, st)
    return fastmod(v, d, magic, shift) if v <= M32 else U32(v % modulus)


@njit(cache=True)
def _extend(kind, p, st, res, filled, upto, modulus, d, magic, shift):
    """res[filled:upto] generated (res regrown when too short). Returns the buffer."""
    if upto > res.shape[0]:
        grown = np.empty(max(2 * res.shape[0], upto), np.uint32)
        grown[:filled] = res[:filled]
        res = grown
    for q in range(filled, upto):
        res[q] = _residue(kind, p, st, modulus, d, magic, shift)
    return res


@njit(cache=True)
def seed_rows(kind, p, seed, offset_lo, n_off, targets, scan, misses, tols, adaptive, miss_hi, miss_add, need,
              modulus, d, magic, shift, first_len, st, res, nxt, row_pair, row_m):  # fmt: skip
    """The passing (offset, strategy) pairs of one seed: returns (rows, res). Row r is pair row_pair[r] (offset
    index * len(tols) + strategy index) with row_m[r] matches. first_len: outputs every first window can reach
    (offset_lo + n_off - 1 + EXPECTED_START + max(tols) + 1); nxt holds first_len + 1 entries."""
    if need > scan:
        return 0, res
    gen_init(kind, p, U64(seed), st)
    t0 = U32(targets[0])
    if first_len > res.shape[0]:
        res = np.empty(2 * first_len, np.uint32)
    seen = False
    for q in range(first_len):
        r = _residue(kind, p, st, modulus, d, magic, shift)
        res[q] = r
        if r == t0:
            seen = True
    if not seen and need > scan - 1:
        return 0, res  # every first draw misses, and one miss costs the pass
    filled = first_len
    if seen:
        nxt[first_len] = NONE
        for q in range(first_len - 1, -1, -1):
            nxt[q] = q if res[q] == t0 else nxt[q + 1]
    n_strat = tols.shape[0]
    rows = 0
    for oi in range(n_off):
        o = offset_lo + oi
        for si in range(n_strat):
            tol = tols[si]
            mm = misses[si]
            e = EXPECTED_START
            lo = e - tol if e > tol else 0
            hi = e + tol
            found = nxt[o + lo] - o if seen else NONE
            pos = o
            m = 0
            run = 0
            alive = True
            if found <= hi:
                m = 1
                pos += found + 1
                if adaptive:
                    e = found
            else:
                run = 1
                pos += (hi if miss_hi else 0) + miss_add
                if (adaptive and run >= mm) or (not adaptive and run > mm) or scan - 1 < need:
                    alive = False
            j = 1
            while alive and j < scan:
                lo = e - tol if e > tol else 0
                hi = e + tol
                if pos + hi + 1 > filled:
                    res = _extend(kind, p, st, res, filled, pos + hi + 1, modulus, d, magic, shift)
                    filled = pos + hi + 1
                tg = U32(targets[j])
                found = -1
                for s in range(lo, hi + 1):
                    if res[pos + s] == tg:
                        found = s
                        break
                if found >= 0:
                    m += 1
                    run = 0
                    pos += found + 1
                    if adaptive:
                        e = found
                else:
                    run += 1
                    pos += (hi if miss_hi else 0) + miss_add
                    if (adaptive and run >= mm) or (not adaptive and run > mm) or m + scan - j - 1 < need:
                        alive = False
                j += 1
            if m >= need:
                row_pair[rows] = oi * n_strat + si
                row_m[rows] = m
                rows += 1
    return rows, res


@njit(parallel=True, cache=True, nogil=True)
def variable_rows_range(kind, p, start, count, offset_lo, n_off, targets, scan, misses, tols, adaptive, miss_hi,
                        miss_add, need, modulus, d, magic, shift, first_len, workers, cap, out_idx, out_pair, out_m,
                        counts):  # fmt: skip
    """Rows of the seeds start..start+count-1. Task t (seeds start + t*TASK_SEEDS ..) writes its rows (seed as an
    index from start, pair, matches) at out_*[t*cap : t*cap + min(counts[t], cap)]; counts[t] > cap means it
    overflowed and must be run again with more room. Tasks are pulled from a shared counter by `workers` loops
    (common.fetch_add), so a thread whose core is busy elsewhere does not hold the others up."""
    n_tasks = (count + TASK_SEEDS - 1) // TASK_SEEDS
    n_pairs = n_off * tols.shape[0]
    next_task = np.zeros(1, np.int64)
    for _worker in prange(workers):
        st = np.empty(STATE_WORDS, np.uint64)
        res = np.empty(max(1024, 2 * first_len), np.uint32)
        nxt = np.empty(first_len + 1, np.int64)
        row_pair = np.empty(n_pairs, np.int32)
        row_m = np.empty(n_pairs, np.int32)
        while True:
            t = fetch_add(next_task, 1)
            if t >= n_tasks:
                break
            n = 0
            base = t * cap
            for i in range(t * TASK_SEEDS, min(count, (t + 1) * TASK_SEEDS)):
                rows, res = seed_rows(kind, p, start + i, offset_lo, n_off, targets, scan, misses, tols, adaptive,
                                      miss_hi, miss_add, need, modulus, d, magic, shift, first_len, st, res, nxt,
                                      row_pair, row_m)  # fmt: skip
                for r in range(rows):
                    if n < cap:
                        out_idx[base + n] = i
                        out_pair[base + n] = row_pair[r]
                        out_m[base + n] = row_m[r]
                    n += 1
            counts[t] = n


@njit(cache=True)
def variable_rows_list(kind, p, seeds, offset_lo, n_off, targets, scan, misses, tols, adaptive, miss_hi, miss_add,
                       need, modulus, d, magic, shift, first_len, out_idx, out_pair, out_m):  # fmt: skip
    """Rows of explicit seeds (a coordinator recomputing a node's claim): out_* hold up to len(seeds) * pairs rows
    (out_idx: the seed's index in `seeds`). Returns the row count."""
    n_pairs = n_off * tols.shape[0]
    st = np.empty(STATE_WORDS, np.uint64)
    res = np.empty(max(1024, 2 * first_len), np.uint32)
    nxt = np.empty(first_len + 1, np.int64)
    row_pair = np.empty(n_pairs, np.int32)
    row_m = np.empty(n_pairs, np.int32)
    n = 0
    for i in range(seeds.shape[0]):
        rows, res = seed_rows(kind, p, seeds[i], offset_lo, n_off, targets, scan, misses, tols, adaptive, miss_hi,
                              miss_add, need, modulus, d, magic, shift, first_len, st, res, nxt, row_pair,
                              row_m)  # fmt: skip
        for r in range(rows):
            out_idx[n] = i
            out_pair[n] = row_pair[r]
            out_m[n] = row_m[r]
            n += 1
    return n
