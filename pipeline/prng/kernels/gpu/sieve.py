"""Fused Triton filter kernels, one per family: seed -> outputs at the filter draws -> residue compare -> hit,
in registers, writing only the candidate seeds (a block-wide prefix sum and one atomic per block).

The candidates then go through the torch path's full-window scoring (pipeline.prng.sieve.torch_path.score_torch),
so survivors are those of the other paths by construction of the filter (any passing seed matches one of the
first `filter_length` draws of some skip). Runs on GPUs through torch's `cuda` device (CUDA, and ROCm), and on
cpu under TRITON_INTERPRET=1 (the tests). Import only where triton is installed.

Families: lcg32 (u32 multiply-add), minstd (u32 with umulhi: the 62-bit product in two 32-bit halves),
java_lcg and pcg32 (48/64-bit states: u64 multiply-add, the output in u32), any other LCG with a power-of-two or
2**31-1 modulus (u64, the kinds of the numba jump kernel), xorshift32 (walked in a u32 register), mt19937 /
php_mt_rand (the init chain in a u32 register, the few words the window needs spilled to a per-seed scratch row,
twisted and tempered in u32). Every preset of these families runs here (prng_cluster.* included); the walked
64-bit and counter-based families (xorshift64/128, xoshiro256++, sfc64, Philox) are in stream.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl

from pipeline.prng.generators import families as fam
from pipeline.prng.generators import jump
from pipeline.prng.generators.mt_plan import mt_program
from pipeline.prng.kernels.common import fastmod_params

BLOCK = 256
# every preset of a family with a kernel here (the jump kinds are pipeline.prng.generators.jump's, as numba's)
TRITON_GENERATORS = tuple(
    n for n, p in fam.PRESETS.items() if isinstance(p.definition, fam.Lcg | fam.Pcg | fam.Xorshift32 | fam.Mt19937)
)
MT_N = 624


@triton.jit
def _mod(x, d, magic, qshift):
    """x mod d for uint32 x: magic from pipeline.prng.kernels.common.fastmod_params (q or q-1, one fix-up)."""
    d32 = d.to(tl.uint32)
    q = tl.umulhi(x, magic.to(tl.uint32)) >> qshift.to(tl.uint32)
    r = x - q * d32
    return tl.where(r >= d32, r - d32, r)


@triton.jit
def _emit(seeds, hit, mask, out_ptr, count_ptr, cap):
    """Append the seeds whose hit is set to out[]: one atomic per block, the order inside a block by prefix sum."""
    h = (hit & mask).to(tl.int32)
    n = tl.sum(h, axis=0)
    if n > 0:
        base = tl.atomic_add(count_ptr, n)
        slot = base + tl.cumsum(h, axis=0) - h
        tl.store(out_ptr + slot, seeds, mask=(h > 0) & (slot < cap))


@triton.jit
def _jump_kernel(start, n, coef_a_ptr, coef_c_ptr, tgt_ptr, n_entries, d, magic, qshift, pmask, pshift, pout, out_ptr,
                 count_ptr, cap, KIND: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """KIND: pipeline.prng.generators.jump's kinds (0 lcg32, 1 java, 2 minstd, 3 pcg32, 4 any power-of-two modulus
    with pmask / pshift / pout, 5 any modulus 2**31-1 with an increment)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    seed = (start + offs.to(tl.int64)).to(tl.uint64)
    seed32 = seed.to(tl.uint32)
    if KIND == 1:  # java_lcg: (seed ^ 0x5DEECE66D) mod 2**48
        s = (seed ^ 0x5DEECE66D) & 0xFFFFFFFFFFFF
    elif KIND == 2 or KIND == 5:  # seed mod (2**31-1) (seed < 2**32 = 2m + 2: one fold); minstd maps 0 to 1
        s32 = (seed32 & 0x7FFFFFFF) + (seed32 >> 31)
        s32 = tl.where(s32 >= 0x7FFFFFFF, s32 - 0x7FFFFFFF, s32)
        if KIND == 2:
            s32 = tl.where(s32 == 0, 1, s32)
        s32 = s32.to(tl.uint32)
    else:  # lcg32, pcg32, and power-of-two moduli: the mask after the multiply-add does the reduction
        s = seed
    hit = tl.zeros([BLOCK], dtype=tl.int1)
    for e in range(n_entries):
        a = tl.load(coef_a_ptr + e).to(tl.uint64)
        c = tl.load(coef_c_ptr + e).to(tl.uint64)
        tg = tl.load(tgt_ptr + e).to(tl.uint32)
        if KIND == 0:  # lcg32: all in u32, wrapping
            v = seed32 * a.to(tl.uint32) + c.to(tl.uint32)
        elif KIND == 1:
            v = (((a * s + c) & 0xFFFFFFFFFFFF) >> 16).to(tl.uint32)
        elif KIND == 2:  # a*s mod (2**31-1) from the 62-bit product's two u32 halves
            a32 = a.to(tl.uint32)
            lo = a32 * s32
            hi = tl.umulhi(a32, s32)
            v = (lo & 0x7FFFFFFF) + ((hi << 1) | (lo >> 31))
            v = tl.where(v >= 0x7FFFFFFF, v - 0x7FFFFFFF, v).to(tl.uint32)
        elif KIND == 4:  # m = 2**k: the state bits under pmask, shifted and masked to the output
            x = ((a * s + c) & tl.cast(pmask, tl.uint64)) >> tl.cast(pshift, tl.uint64)
            v = (x & tl.cast(pout, tl.uint64)).to(tl.uint32)
        elif KIND == 5:  # (a*s + c) mod (2**31-1): a, s, c < 2**31, the sum below 2**63; two folds, one subtract
            x = a * s32.to(tl.uint64) + c
            x = (x & 0x7FFFFFFF) + (x >> 31)
            x = (x & 0x7FFFFFFF) + (x >> 31)
            v = tl.where(x >= 0x7FFFFFFF, x - 0x7FFFFFFF, x).to(tl.uint32)
        else:  # pcg32 XSH-RR from the state before the draw
            old = a * s + c
            xs = (((old >> 18) ^ old) >> 27).to(tl.uint32)
            rot = (old >> 59).to(tl.uint32)
            v = (xs >> rot) | (xs << ((32 - rot) & 31))
        hit = hit | (_mod(v, d, magic, qshift) == tg)
    _emit(seed.to(tl.int64), hit, mask, out_ptr, count_ptr, cap)


@triton.jit
def _xorshift_kernel(start, n, first_ptr, tgt_ptr, last, s1, s2, s3, d, magic, qshift, out_ptr, count_ptr, cap,
                     BLOCK: tl.constexpr):  # fmt: skip
    """first[p]..first[p+1]: the filter entries (targets) at output p, for p in 0..last."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    seed = start + offs.to(tl.int64)
    x = seed.to(tl.uint32)
    hit = tl.zeros([BLOCK], dtype=tl.int1)
    for p in range(last + 1):
        x = x ^ (x << s1.to(tl.uint32))
        x = x ^ (x >> s2.to(tl.uint32))
        x = x ^ (x << s3.to(tl.uint32))
        r = _mod(x, d, magic, qshift)
        for e in range(tl.load(first_ptr + p), tl.load(first_ptr + p + 1)):
            hit = hit | (r == tl.load(tgt_ptr + e).to(tl.uint32))
    _emit(seed, hit, mask, out_ptr, count_ptr, cap)


@triton.jit
def _load_u32(ptr, mask):
    return tl.load(ptr, mask=mask, other=0).to(tl.uint32, bitcast=True)


@triton.jit
def _mt_next(cur, nxt, far):
    # literals above 2**31 are int64 to Triton: every such step is cast back to u32
    y = ((cur & 0x80000000) | (nxt & 0x7FFFFFFF)).to(tl.uint32)
    mag = tl.where((y & 1) != 0, 0x9908B0DF, 0).to(tl.uint32)
    return far ^ (y >> 1) ^ mag


@triton.jit
def _mt_kernel(start, n, need_ptr, n_need, ops_ptr, n_ops, slot_ptr, tgt_ptr, n_entries, scratch_ptr, d, magic, qshift,
               out_ptr, count_ptr, cap, OUT_SHIFT: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """need: sorted init-word indices (their slots 0..n_need-1); ops: rows (dst, a, b, c) of the twist program
    (pipeline.prng.generators.mt_plan); slot[e]: the word behind filter entry e. scratch: [slots, n] u32."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    seed = start + offs.to(tl.int64)
    x = seed.to(tl.uint32)
    mult = tl.full([BLOCK], 1812433253, tl.uint32)
    cur = 1  # x holds init word cur-1
    for k in range(n_need):
        w = tl.load(need_ptr + k)
        for i in range(cur, w + 1):
            x = mult * (x ^ (x >> 30)) + tl.cast(i, tl.uint32)
        cur = w + 1  # needed is sorted and unique: w >= cur - 1
        tl.store(scratch_ptr + k * n + offs, x.to(tl.int32, bitcast=True), mask=mask)
    for o in range(n_ops):
        dst = tl.load(ops_ptr + 4 * o)
        a = _load_u32(scratch_ptr + tl.load(ops_ptr + 4 * o + 1) * n + offs, mask)
        b = _load_u32(scratch_ptr + tl.load(ops_ptr + 4 * o + 2) * n + offs, mask)
        c = _load_u32(scratch_ptr + tl.load(ops_ptr + 4 * o + 3) * n + offs, mask)
        tl.store(scratch_ptr + dst * n + offs, _mt_next(a, b, c).to(tl.int32, bitcast=True), mask=mask)
    hit = tl.zeros([BLOCK], dtype=tl.int1)
    for e in range(n_entries):
        y = _load_u32(scratch_ptr + tl.load(slot_ptr + e) * n + offs, mask)
        y = y ^ (y >> 11)
        y = y ^ ((y << 7) & 0x9D2C5680).to(tl.uint32)
        y = y ^ ((y << 15) & 0xEFC60000).to(tl.uint32)
        y = y ^ (y >> 18)
        hit = hit | (_mod(y >> OUT_SHIFT, d, magic, qshift) == tl.load(tgt_ptr + e).to(tl.uint32))
    _emit(seed, hit, mask, out_ptr, count_ptr, cap)


def collect(
    launch: Callable[[torch.Tensor, torch.Tensor, int], None], n: int, device: str, cap: int | None = None
) -> torch.Tensor:
    """Run a filter kernel that appends candidates to `out` (room for `cap`) and counts them all in `count`;
    when more than `cap` hit (dense survivors: tiny modulus, low threshold) it is run again with room for all."""
    cap = cap or max(1024, n // 64)
    while True:
        out = torch.empty(cap, dtype=torch.int64, device=device)
        count = torch.zeros(1, dtype=torch.int32, device=device)
        launch(out, count, cap)
        got = int(count.item())
        if got <= cap:
            return out[:got]
        cap = got


def by_position(entries: list[tuple[int, int]]) -> tuple[int, list[int], list[int]]:
    """(last position, first, targets) of (position, target) filter entries for the kernels that walk draw by
    draw: the targets sorted by position, those of position p at first[p]..first[p+1]."""
    entries = sorted(entries)
    last = entries[-1][0]
    first = [0] * (last + 2)
    for p, _ in entries:
        first[p + 1] += 1
    for p in range(last + 1):
        first[p + 1] += first[p]
    return last, first, [t for _, t in entries]


def _u64_as_i64(values: list[int]) -> list[int]:
    return [v - (1 << 64) if v >= 1 << 63 else v for v in values]


class TritonFilter:
    """One spec's tables on a device; `candidates(lo, hi)` returns the int64 seeds that hit a filter draw."""

    def __init__(self, spec: Any, device: str) -> None:  # a sieve.spec.SieveSpec (kernels sit below sieve/)
        if spec.generator not in TRITON_GENERATORS:
            raise ValueError(f"no Triton kernel for {spec.generator!r}; it has {', '.join(TRITON_GENERATORS)}")
        self.spec, self.device = spec, device
        order = spec.check_order()
        nf = spec.filter_length()
        entries = [(spec.position(j, s), spec.residues[j]) for s in spec.skips for j in order[:nf]]
        d, magic, shift = fastmod_params(spec.modulus)
        self.mod = (d, magic, shift - 32)
        self.tgt = self._t([t for _, t in entries], torch.int32)
        g = spec.generator
        d_ = fam.preset(g).definition
        if g in jump.JUMP_GENERATORS:
            self.kind = jump.KIND[g]
            self.pow2 = jump.kernel_params(g)
            coefs = [jump.coefficients(g, p) for p, _ in entries]
            self.coef_a = self._t(_u64_as_i64([a for a, _ in coefs]), torch.int64)
            self.coef_c = self._t(_u64_as_i64([c for _, c in coefs]), torch.int64)
            self.n_entries = len(entries)
            self.family = "jump"
        elif isinstance(d_, fam.Xorshift32):
            self.last, first, targets = by_position(entries)
            self.tgt = self._t(targets, torch.int32)
            self.first = self._t(first, torch.int32)
            self.shifts = d_.shifts
            self.family = "xorshift32"
        else:
            needed, ops, slot = mt_program(sorted({p for p, _ in entries}))
            self.need = self._t(needed, torch.int32)
            self.n_need = len(needed)
            self.ops = self._t([v for row in ops for v in row] or [0], torch.int32)
            self.n_ops = len(ops)
            self.n_slots = len(needed) + len(ops)
            self.slot = self._t([slot[p] for p, _ in entries], torch.int32)
            self.n_entries = len(entries)
            self.out_shift = d_.out_shift
            self.family = "mt"

    def _t(self, values: list[int], dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype, device=self.device)

    def candidates(self, lo: int, hi: int, cap: int | None = None) -> torch.Tensor:
        return collect(lambda out, count, room: self._launch(lo, hi - lo, out, count, room), hi - lo, self.device, cap)

    def _launch(self, lo: int, n: int, out: torch.Tensor, count: torch.Tensor, cap: int) -> None:
        d, magic, qshift = self.mod
        grid = (triton.cdiv(n, BLOCK),)
        if self.family == "jump":
            _jump_kernel[grid](lo, n, self.coef_a, self.coef_c, self.tgt, self.n_entries, d, magic, qshift,
                               *self.pow2, out, count, cap, KIND=self.kind, BLOCK=BLOCK)  # fmt: skip
        elif self.family == "xorshift32":
            _xorshift_kernel[grid](lo, n, self.first, self.tgt, self.last, *self.shifts, d, magic, qshift, out, count,
                                   cap, BLOCK=BLOCK)  # fmt: skip
        else:
            scratch = torch.empty((self.n_slots, n), dtype=torch.int32, device=self.device)
            tables = (self.need, self.n_need, self.ops, self.n_ops, self.slot, self.tgt, self.n_entries)
            _mt_kernel[grid](lo, n, *tables, scratch, d, magic, qshift, out, count, cap, OUT_SHIFT=self.out_shift,
                             BLOCK=BLOCK)  # fmt: skip
