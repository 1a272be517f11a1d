"""Triton kernel for the MT19937 init chain on GPUs (CUDA, and ROCm through torch's `cuda` device).

Eager torch pays a kernel launch and a full memory round trip for each of the ~1600 element-wise ops
of the 397-step chain; here one fused kernel keeps each seed's word in a register and writes out only
the words the window needs. The rest (twist, temper, residues, scoring) stays in torch: a few ops per
draw position. Tested on cpu with TRITON_INTERPRET=1; import only where triton is installed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _mt_words_kernel(seeds_ptr, out_ptr, slot_of_ptr, n, wmax, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(seeds_ptr + offs, mask=mask, other=0).to(tl.uint32)
    mult = tl.full([BLOCK], 1812433253, tl.uint32)
    s0 = tl.load(slot_of_ptr)
    if s0 >= 0:
        tl.store(out_ptr + s0 * n + offs, x.to(tl.int32, bitcast=True), mask=mask)
    for i in range(1, wmax + 1):
        x = (x ^ (x >> 30)) * mult + tl.cast(i, tl.uint32)
        s = tl.load(slot_of_ptr + i)
        if s >= 0:
            tl.store(out_ptr + s * n + offs, x.to(tl.int32, bitcast=True), mask=mask)


def mt_words(seeds32: torch.Tensor, indices: Sequence[int]) -> dict[int, torch.Tensor]:
    """Same contract as pipeline.prng.generators.torch_gen._mt_words: int32 bit patterns of init words at `indices`."""
    wanted = sorted(set(indices))
    n = seeds32.numel()
    slot_of = torch.full((wanted[-1] + 1,), -1, dtype=torch.int32)
    slot_of[wanted] = torch.arange(len(wanted), dtype=torch.int32)
    slot_of = slot_of.to(seeds32.device)
    out = torch.empty((len(wanted), n), dtype=torch.int32, device=seeds32.device)
    grid = (triton.cdiv(n, BLOCK),)
    _mt_words_kernel[grid](seeds32.contiguous(), out, slot_of, n, wanted[-1], BLOCK=BLOCK)
    return {w: out[k] for k, w in enumerate(wanted)}
