"""Fused Triton filter for draws made by `java.util.Random` calls (data.mapping java_next_int, java_next_double):
each lane walks its seed's 48-bit LCG step by step in registers, applies the library's call (nextInt's rejection,
nextDouble's two steps) and compares every call the filter checks, writing only the candidate seeds.

Why a walk and not a jump: with a rejecting call the output that answers call c depends on the seed (a rejected
output moves every later call one step on), so the position of a draw is only known by walking. The walk is one
64-bit multiply-add a step, and the lanes stay in step except for rare rejections.

Exactness: a seed is a candidate when any filter call of any skip matches, or when the walk's step budget ran out
before the last filter call (a seed with unusually many rejections); the candidates then get the torch path's
whole-window scoring (pipeline.prng.mappings.torch_path.score), which finishes any exhausted seed exactly. So the
survivors are those of the other paths. MT19937-based mappings run on the torch path (the Triton init chain
feeding it). Runs on GPUs through torch's `cuda` device, and on cpu under TRITON_INTERPRET=1 (the tests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl

from pipeline.prng.kernels.common import fastmod_params
from pipeline.prng.kernels.triton_sieve import BLOCK, _emit, _mod, collect

TRITON_MAPPINGS = ("java_next_int", "java_next_double")
JAVA_MULT, JAVA_ADD, MASK48 = 0x5DEECE66D, 0xB, (1 << 48) - 1
K_NEXT_INT, K_NEXT_INT_POW2, K_NEXT_DOUBLE = 0, 1, 2


@triton.jit
def _java_walk_kernel(start, n, tbl_ptr, n_skips, n_calls, steps, bound, magic, qshift, pow2_shift, out_ptr,
                      count_ptr, cap, KIND: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """tbl[s * n_calls + c]: the draw call c must give under skip s, -1 where the filter does not check it.
    `steps`: LCG steps to walk at most (a next_double call takes two)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    seed = start + offs.to(tl.int64)
    state = (seed.to(tl.uint64) ^ JAVA_MULT) & MASK48
    calls = tl.zeros([BLOCK], dtype=tl.int32)
    hit = tl.zeros([BLOCK], dtype=tl.int1)
    half = tl.zeros([BLOCK], dtype=tl.uint64)  # next_double: next(26) of the call's first step
    for t in range(steps):
        state = (state * JAVA_MULT + JAVA_ADD) & MASK48
        if KIND == 2:
            first = (t % 2) == 0
            if first:
                half = state >> 22  # next(26)
                ok = tl.zeros([BLOCK], dtype=tl.int1)
                value = tl.zeros([BLOCK], dtype=tl.int64)
            else:
                word = (half << 27) + (state >> 21)  # 53 bits, exact in a double
                value = tl.floor(word.to(tl.float64) * 1.1102230246251565e-16 * bound.to(tl.float64)).to(tl.int64)
                ok = tl.full([BLOCK], 1, tl.int1)
        else:
            u = (state >> 17).to(tl.uint32)  # next(31)
            if KIND == 1:  # power-of-two bound: (bound * next(31)) >> 31, no rejection
                value = (u >> pow2_shift.to(tl.uint32)).to(tl.int64)
                ok = tl.full([BLOCK], 1, tl.int1)
            else:  # accept unless u - r + (bound - 1) overflows an int
                r = _mod(u, bound, magic, qshift)
                ok = (u.to(tl.int64) - r.to(tl.int64) + bound - 1) < 2147483648
                value = r.to(tl.int64)
        live = ok & (calls < n_calls)
        for s in range(n_skips):
            tg = tl.load(tbl_ptr + s * n_calls + calls, mask=live & mask, other=-1)
            hit = hit | (live & (tg >= 0) & (tg.to(tl.int64) == value))
        calls = calls + ok.to(tl.int32)
    hit = hit | (calls < n_calls)  # ran out of steps: undecided here, decided by the exact scoring
    _emit(seed, hit, mask, out_ptr, count_ptr, cap)


class MappedJavaFilter:
    """One mapped spec's call table on a device; `candidates(lo, hi)` returns the int64 seeds the walk flags.

    `steps(n_calls)` says how many LCG steps a lane walks for that many calls (the caller's buffer rule, e.g.
    pipeline.prng.mappings.torch_path.buffer_length: nextDouble two a call, nextInt the calls plus six standard
    deviations of rejections); kernels sit below mappings/ and sieve/, so the rule is passed in."""

    def __init__(self, spec: Any, device: str, steps: Callable[[int], int]) -> None:
        if spec.mapping not in TRITON_MAPPINGS:
            raise ValueError(f"no Triton walk for mapping {spec.mapping!r}; it has {', '.join(TRITON_MAPPINGS)}")
        self.spec, self.device = spec, device
        order = spec.check_order()[: spec.filter_length()]
        rows = [{spec.position(j, s): spec.residues[j] for j in order} for s in spec.skips]
        self.n_calls = max(max(r) for r in rows) + 1
        table = [[row.get(c, -1) for c in range(self.n_calls)] for row in rows]
        self.tbl = torch.tensor(table, dtype=torch.int32, device=device).flatten()
        self.n_skips = len(rows)
        n = spec.modulus
        self.steps = steps(self.n_calls)
        _d, magic, shift = fastmod_params(n) if n < 1 << 31 else (n, 0, 32)
        self.magic, self.qshift = magic, shift - 32
        self.pow2_shift = 31 - (n.bit_length() - 1) if n & (n - 1) == 0 else 0
        if spec.mapping == "java_next_double":
            self.kind = K_NEXT_DOUBLE
        else:
            self.kind = K_NEXT_INT_POW2 if n & (n - 1) == 0 else K_NEXT_INT

    def candidates(self, lo: int, hi: int, cap: int | None = None) -> torch.Tensor:
        def launch(out: torch.Tensor, count: torch.Tensor, room: int) -> None:
            _java_walk_kernel[(triton.cdiv(hi - lo, BLOCK),)](
                lo, hi - lo, self.tbl, self.n_skips, self.n_calls, self.steps, self.spec.modulus, self.magic,
                self.qshift, self.pow2_shift, out, count, room, KIND=self.kind, BLOCK=BLOCK,
            )  # fmt: skip

        return collect(launch, hi - lo, self.device, cap)
