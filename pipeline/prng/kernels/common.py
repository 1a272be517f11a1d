"""Shared numba helpers for the sieve kernels.

Every uint32 intermediate is wrapped in np.uint32(...): numba otherwise widens integer arithmetic to 64 bits,
which halves the lanes per AVX2 register and made the MT19937 kernel about 4x slower in the prototype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from pipeline.prng.kernels.cache import use_project_cache
from pipeline.prng.kernels.params import divisibility_params, fastmod_params

use_project_cache()  # before any @njit(cache=True) below or in the kernel modules that import this one

__all__ = ["divisibility_params", "fastmod_params"]  # re-exported for the numba paths

U8 = np.uint8
U32 = np.uint32
U64 = np.uint64

# Seeds in flight per lane block (compile-time constant so LLVM unrolls/vectorises the lane loops).
# ~112 keeps the MT chain latency hidden on AVX2; 128+ spills registers.
LANES = 112
# Lane blocks per parallel task: amortises scratch allocation and keeps prange scheduling coarse.
BLOCKS_PER_TASK = 64
TASK_SEEDS = LANES * BLOCKS_PER_TASK
NO_SURVIVOR = -1
CODE_SHIFT = 16  # code = skip_index << 16 | matches


@intrinsic
def fetch_add(typingctx: Any, counter: Any, value: Any) -> Any:
    """counter[0] += value atomically; returns the old value. counter: a 1-d int64 array.

    The compact kernels hand out tasks through this instead of prange's static split: numba's OpenMP layer gives
    each thread an equal share up front, so on a shared machine a thread whose core another process holds makes
    the whole call wait for it. Pulling tasks from a counter lets the threads that run do the work (the other half
    of the fix is few, large calls: each parallel region still ends in a barrier; see sieve.fast.COMPACT_CHUNKS)."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64 and isinstance(value, types.Integer)):
        return None
    sig = types.int64(counter, value)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        arr_t = signature.args[0]
        arr = context.make_array(arr_t)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, arr_t, arr, [ir.Constant(ir.IntType(64), 0)])
        val = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.atomic_rmw("add", ptr, val, "monotonic")

    return sig, codegen


@njit(inline="always", cache=True)
def rotr32(y, k):
    """y rotated right by k. The `& 31` tells LLVM the amount is below 32: numba does integer ops in 64 bits, and
    only with that bound does LLVM narrow the shifts back to 32 bits and match a rotate (vprorvd on AVX-512);
    without it the shift stays a 64-bit vpsrlvq and the whole lane loop drops to 4 lanes per vector."""
    k = U32(k) & U32(31)
    return U32(U32(y >> k) | U32(y << (U32(U32(32) - k) & U32(31))))


@njit(inline="always", cache=True)
def divisible(n, inv, k, limit):
    """n % modulus == 0 for uint32 n; inv, k, limit from divisibility_params(modulus)."""
    return rotr32(U32(U32(n) * U32(inv)), k) <= U32(limit)


@njit(inline="always", cache=True)
def fastmod(v, d, magic, shift):
    """v mod d for a 32-bit v; d, magic, shift from fastmod_params. Returns uint32."""
    v32 = U32(v)
    d32 = U32(d)
    q = U32((U64(v32) * U64(U32(magic))) >> U64(shift))
    r = U32(v32 - U32(q * d32))
    return U32(r - d32) if r >= d32 else r


@njit(inline="always", cache=True)
def mt_temper(y):
    y = U32(y ^ U32(y >> U32(11)))
    y = U32(y ^ U32(U32(y << U32(7)) & U32(0x9D2C5680)))
    y = U32(y ^ U32(U32(y << U32(15)) & U32(0xEFC60000)))
    return U32(y ^ U32(y >> U32(18)))


@njit(inline="always", cache=True)
def mt_next(cur, nxt, far):
    y = U32(U32(cur & U32(0x80000000)) | U32(nxt & U32(0x7FFFFFFF)))
    mag = U32(U32(U32(0) - U32(y & U32(1))) & U32(0x9908B0DF))
    return U32(U32(far ^ U32(y >> U32(1))) ^ mag)


@njit(inline="always", cache=True)
def mt_init_step(prev, i):
    return U32(U32(U32(1812433253) * U32(prev ^ U32(prev >> U32(30)))) + U32(i))


@njit(inline="always", cache=True)
def xorshift_step(x):
    x = U32(x ^ U32(x << U32(13)))
    x = U32(x ^ U32(x >> U32(17)))
    return U32(x ^ U32(x << U32(5)))


@njit(cache=True)
def score_values(values, positions, targets, need):
    """Best (lowest on ties) skip code for one seed given the values it drew (already reduced, or a mapping's
    calls); NO_SURVIVOR if no skip reaches `need` matches. Code: skip index << CODE_SHIFT | matches."""
    n_skips, k = positions.shape
    best = NO_SURVIVOR
    best_m = -1
    for si in range(n_skips):
        m = 0
        for j in range(k):
            if values[positions[si, j]] == targets[j]:
                m += 1
        if m >= need and m > best_m:
            best_m = m
            best = (si << CODE_SHIFT) | m
    return best


@njit(cache=True)
def score_outputs(stream, positions, targets, need, d, magic, shift):
    """Best (lowest on ties) skip code for one seed given its output stream; NO_SURVIVOR if none passes."""
    n_skips, k = positions.shape
    best = NO_SURVIVOR
    best_m = -1
    for si in range(n_skips):
        m = 0
        for j in range(k):
            if fastmod(U64(stream[positions[si, j]]), d, magic, shift) == targets[j]:
                m += 1
        if m >= need and m > best_m:
            best_m = m
            best = (si << CODE_SHIFT) | m
    return best
