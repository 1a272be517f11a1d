"""Shared numba helpers for the sieve kernels.

Every uint32 intermediate is wrapped in np.uint32(...): numba otherwise widens integer arithmetic to 64 bits,
which halves the lanes per AVX2 register and made the MT19937 kernel about 4x slower in the prototype.
"""

from __future__ import annotations

import numpy as np
from numba import njit

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


def fastmod_params(modulus: int) -> tuple[int, int, int]:
    """(d, magic, shift) so that v mod d = v - ((v*magic) >> shift)*d, corrected by one subtraction.

    With s = floor(log2 d) and magic = min(floor(2**(32+s)/d), 2**32-1) the quotient estimate for a 32-bit
    v is q or q-1. Keeping magic below 2**32 lets LLVM use one 32x32->64 vpmuludq per 4 lanes instead of an
    emulated 64-bit multiply; a hardware divide would not vectorise at all.
    """
    s = modulus.bit_length() - 1
    return modulus, min((1 << (32 + s)) // modulus, (1 << 32) - 1), 32 + s


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
