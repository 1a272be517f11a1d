"""Fused Triton filters for the families whose state is walked draw by draw (no jump, no lazy words): xorshift64,
xorshift128, xoshiro256++, sfc64, and Philox4x32 (counter-based: each draw is computed from its own counter, so
nothing is walked). Same contract as pipeline.prng.kernels.gpu.sieve's kernels: seed -> the outputs at the
filter draws -> residue compare -> hit, in registers, writing only candidates (one atomic per block).

Why each family is written out here rather than shared with numba: Triton has no closures, so the step of each
family is a branch on a constexpr; the branch taken is the only code compiled. The 64-bit states stay in u64
registers (emulated on consumer GPUs: two 32-bit halves); 64-bit outputs take a u64 remainder per filter draw.
Runs on GPUs through torch's `cuda` device and on cpu under TRITON_INTERPRET=1 (the tests).
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from pipeline.prng.generators import families as fam
from pipeline.prng.kernels.common import fastmod_params
from pipeline.prng.kernels.gpu.sieve import BLOCK, _emit, _mod, by_position, collect

F_XS64, F_XS128, F_XOSHIRO, F_SFC, F_PHILOX = 0, 1, 2, 3, 4
FAMILIES = {
    fam.Xorshift64: F_XS64,
    fam.Xorshift128: F_XS128,
    fam.Xoshiro256pp: F_XOSHIRO,
    fam.Sfc64: F_SFC,
    fam.Philox4x32: F_PHILOX,
}
STREAM_GENERATORS = tuple(n for n, p in fam.PRESETS.items() if type(p.definition) in FAMILIES)
# compiled Triton reads a module global only when it is a constexpr
PHILOX_M0, PHILOX_M1 = tl.constexpr(0xD2511F53), tl.constexpr(0xCD9E8D57)
PHILOX_W0, PHILOX_W1 = tl.constexpr(0x9E3779B9), tl.constexpr(0xBB67AE85)


@triton.jit
def _rotl64(x, k: tl.constexpr):
    return (x << k) | (x >> (64 - k))


@triton.jit
def _u64(v):
    """A kernel argument holding a u64 constant as its int64 bit pattern."""
    return tl.cast(tl.cast(v, tl.int64), tl.uint64, bitcast=True)


@triton.jit
def _stream_kernel(start, n, first_ptr, tgt_ptr, last, c0, c1, c2, c3, d, magic, qshift, out_ptr, count_ptr, cap,
                   FAMILY: tl.constexpr, S1: tl.constexpr, S2: tl.constexpr, S3: tl.constexpr,
                   WIDE: tl.constexpr, ROUNDS: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """first[p]..first[p+1]: the filter entries (targets) at draw p, for p in 0..last. c0..c3: the family's
    constants (xorshift64: mult; xorshift128 / xoshiro / sfc64: the initial state words after the seed's).
    S1..S3: xorshift64's shifts. WIDE: the output is 64 bits (remainder in u64)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    seed = start + offs.to(tl.int64)
    s64 = seed.to(tl.uint64)
    zero64 = tl.zeros([BLOCK], dtype=tl.uint64)
    if FAMILY == 1:  # xorshift128: x = seed, then the three fixed words
        x = seed.to(tl.uint32)
        y = tl.zeros([BLOCK], dtype=tl.uint32) + tl.cast(c0, tl.uint32)
        z = tl.zeros([BLOCK], dtype=tl.uint32) + tl.cast(c1, tl.uint32)
        w = tl.zeros([BLOCK], dtype=tl.uint32) + tl.cast(c2, tl.uint32)
    else:
        x = s64
        y = zero64 + _u64(c0)
        z = zero64 + _u64(c1)
        w = zero64 + _u64(c2)
    hit = tl.zeros([BLOCK], dtype=tl.int1)
    for p in range(last + 1):
        if FAMILY == 0:  # xorshift64, the multiply kept as the state (pipeline.prng.generators.families)
            x = x ^ (x >> S1)
            x = x ^ (x << S2)
            x = x ^ (x >> S3)
            x = x * _u64(c0)
            v = x
        elif FAMILY == 1:
            t = x ^ (x << 11)
            x, y, z = y, z, w
            w = w ^ (w >> 19) ^ t ^ (t >> 8)
            v = w
        elif FAMILY == 2:  # xoshiro256++: s0 = x, s1 = y, s2 = z, s3 = w
            v = _rotl64(x + w, 23) + x
            t = y << 17
            z = z ^ x
            w = w ^ y
            y = y ^ z
            x = x ^ w
            z = z ^ t
            w = _rotl64(w, 45)
        elif FAMILY == 3:  # sfc64: a = x, b = y, c = z, counter = w
            v = x + y + w
            w = w + 1
            x = y ^ (y >> 11)
            y = z + (z << 3)
            z = _rotl64(z, 24) + v
        else:  # Philox4x32: word 0 of block (p, 0, 0, 0) under key (seed, 0)
            a0 = tl.zeros([BLOCK], dtype=tl.uint32) + tl.cast(p, tl.uint32)
            a1 = tl.zeros([BLOCK], dtype=tl.uint32)
            a2 = tl.zeros([BLOCK], dtype=tl.uint32)
            a3 = tl.zeros([BLOCK], dtype=tl.uint32)
            k0 = seed.to(tl.uint32)
            k1 = tl.zeros([BLOCK], dtype=tl.uint32)
            m0 = tl.full([BLOCK], PHILOX_M0, tl.uint32)  # literals above 2**31 would be int64 to Triton
            m1 = tl.full([BLOCK], PHILOX_M1, tl.uint32)
            w0 = tl.full([BLOCK], PHILOX_W0, tl.uint32)
            w1 = tl.full([BLOCK], PHILOX_W1, tl.uint32)
            for r in tl.static_range(ROUNDS):
                if r > 0:
                    k0 = k0 + w0
                    k1 = k1 + w1
                hi0, lo0 = tl.umulhi(a0, m0), a0 * m0
                hi1, lo1 = tl.umulhi(a2, m1), a2 * m1
                a0, a1, a2, a3 = hi1 ^ a1 ^ k0, lo1, hi0 ^ a3 ^ k1, lo0
            v = a0
        if WIDE:
            r64 = v % tl.cast(d, tl.uint64)
            res = r64.to(tl.uint32)
        else:
            res = _mod(v.to(tl.uint32), d, magic, qshift)
        for e in range(tl.load(first_ptr + p), tl.load(first_ptr + p + 1)):
            hit = hit | (res == tl.load(tgt_ptr + e).to(tl.uint32))
    _emit(seed, hit, mask, out_ptr, count_ptr, cap)


def _i64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


class StreamFilter:
    """One spec's filter table on a device for a walked family; `candidates(lo, hi)` as TritonFilter's."""

    def __init__(self, spec: Any, device: str) -> None:  # a sieve.spec.SieveSpec (kernels sit below sieve/)
        d = fam.preset(spec.generator).definition
        if type(d) not in FAMILIES:
            raise ValueError(f"no Triton stream kernel for {spec.generator!r}; it has {', '.join(STREAM_GENERATORS)}")
        self.spec, self.device = spec, device
        self.family = FAMILIES[type(d)]
        order = spec.check_order()[: spec.filter_length()]
        self.last, first, targets = by_position(
            [(spec.position(j, s), spec.residues[j]) for s in spec.skips for j in order]
        )
        self.first = torch.tensor(first, dtype=torch.int32, device=device)
        self.tgt = torch.tensor(targets, dtype=torch.int32, device=device)
        self.shifts = (0, 0, 0)
        self.wide, self.rounds = False, 0
        consts: tuple[int, ...] = (0, 0, 0)
        if isinstance(d, fam.Xorshift64):
            self.shifts, consts, self.wide = d.shifts, (d.mult, 0, 0), d.out == "full64"
        elif isinstance(d, fam.Xorshift128):
            consts = d.init
        elif isinstance(d, fam.Xoshiro256pp | fam.Sfc64):
            consts, self.wide = d.init, True
        elif isinstance(d, fam.Philox4x32):
            self.rounds = d.rounds
        self.consts = (*(_i64(c) for c in consts), 0)
        _d, magic, shift = fastmod_params(spec.modulus) if spec.modulus < 1 << 31 else (spec.modulus, 0, 32)
        self.magic, self.qshift = magic, shift - 32

    def candidates(self, lo: int, hi: int, cap: int | None = None) -> torch.Tensor:
        def launch(out: torch.Tensor, count: torch.Tensor, room: int) -> None:
            s1, s2, s3 = self.shifts
            _stream_kernel[(triton.cdiv(hi - lo, BLOCK),)](
                lo, hi - lo, self.first, self.tgt, self.last, *self.consts, self.spec.modulus, self.magic,
                self.qshift, out, count, room, FAMILY=self.family, S1=s1, S2=s2, S3=s3, WIDE=self.wide,
                ROUNDS=self.rounds, BLOCK=BLOCK,
            )  # fmt: skip

        return collect(launch, hi - lo, self.device, cap)
