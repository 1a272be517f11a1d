"""Pure-torch sieve: the portable path for cuda/ROCm devices and for hosts without numba.

Same two stages as the compiled kernels: every seed of a chunk is evaluated on the first few draws of each
skip (enough draws that any passing seed must match one of them), then only the candidates are scored on
the whole window.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.prng.generators import torch_gen
from pipeline.prng.sieve.spec import SieveSpec

CHUNK = 1 << 20  # seeds per step on cpu: eager ops cost ~10 us each, so 2**18 was 30% slower, 2**22 left L3
CUDA_CHUNK = 1 << 22  # on a GPU larger chunks amortise kernel launches


def _positions(spec: SieveSpec) -> list[list[int]]:
    order = spec.check_order()
    return [[spec.position(j, s) for j in order] for s in spec.skips]


def score_torch(
    spec: SieveSpec, seeds: torch.Tensor, mt_words: torch_gen.MtWords | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full-window scoring of the given seeds: (seeds, skips, matches) of those that pass."""
    pos = _positions(spec)
    n_skips, k = len(pos), spec.k
    targets = torch.tensor([spec.residues[j] for j in spec.check_order()], dtype=torch.int64, device=seeds.device)
    flat = [p for row in pos for p in row]
    out = torch_gen.outputs(spec.generator, seeds, flat, mt_words=mt_words).view(n_skips, k, -1)
    matches = (out % spec.modulus == targets.view(1, k, 1)).sum(dim=1)  # [n_skips, n]
    best, best_idx = matches.max(dim=0)  # max returns the first (lowest skip) index on ties
    keep = best >= spec.need
    return seeds[keep], best_idx[keep] + spec.skip_min, best[keep]


def torch_sieve(
    spec: SieveSpec, start: int, end: int, device: str, *, use_triton: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """use_triton: run the MT init chain in the fused Triton kernel (GPUs; cpu only under TRITON_INTERPRET=1)."""
    mt_words = None
    if use_triton:
        from pipeline.prng.kernels.triton_mt import mt_words
    pos = _positions(spec)
    n_filter = spec.filter_length()
    order = spec.check_order()
    filter_pos = [p for row in pos for p in row[:n_filter]]
    ftargets = torch.tensor([spec.residues[j] for j in order[:n_filter]] * len(pos), dtype=torch.int64, device=device)
    chunk = CUDA_CHUNK if device.startswith("cuda") else CHUNK
    parts = []
    for lo in range(start, end, chunk):
        seeds = torch.arange(lo, min(end, lo + chunk), dtype=torch.int64, device=device)
        out = torch_gen.outputs(spec.generator, seeds, filter_pos, mt_words=mt_words)
        hit = (out % spec.modulus == ftargets.view(-1, 1)).any(dim=0)
        cand = seeds[hit]
        if cand.numel():
            parts.append([t.cpu().numpy() for t in score_torch(spec, cand, mt_words)])
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    return tuple(np.concatenate([p[i] for p in parts]).astype(np.int64) for i in range(3))  # type: ignore[return-value]
