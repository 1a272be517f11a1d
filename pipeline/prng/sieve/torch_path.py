"""Pure-torch sieve: the portable path for cuda/ROCm devices and for hosts without numba.

Same two stages as the compiled kernels: every seed of a chunk is evaluated on the first few draws of each
skip (enough draws that any passing seed must match one of them), then only the candidates are scored on
the whole window.
"""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from pipeline.prng.generators import torch_gen
from pipeline.prng.sieve.spec import SieveSpec

CHUNK = 1 << 16  # seeds per step on cpu: int32 words stay in L2 (each eager op ~6 us there, single-threaded)
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
    out = torch_gen.residues(spec.generator, seeds, flat, spec.modulus, mt_words=mt_words).view(n_skips, k, -1)
    matches = (out == targets.view(1, k, 1)).sum(dim=1)  # [n_skips, n]
    best, best_idx = matches.max(dim=0)  # max returns the first (lowest skip) index on ties
    keep = best >= spec.need
    return seeds[keep], best_idx[keep] + spec.skip_min, best[keep]


def torch_sieve(
    spec: SieveSpec, start: int, end: int, device: str, *, use_triton: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """use_triton: run the MT init chain in the fused Triton kernel (GPUs; cpu only under TRITON_INTERPRET=1).

    On cpu the chunks are small (L2-resident) and run on a thread per core with torch's intra-op threads off:
    eager int32 ops release the GIL, and torch's OpenMP split of each 64K-element op cost ~30x more per op than a
    single thread on the shared 2-core machine (a barrier per op, and other tenants on the cores)."""
    mt_words = None
    if use_triton:
        from pipeline.prng.kernels.triton_mt import mt_words
    pos = _positions(spec)
    n_filter = spec.filter_length()
    order = spec.check_order()
    filter_pos = [p for row in pos for p in row[:n_filter]]
    ftargets = torch.tensor([spec.residues[j] for j in order[:n_filter]] * len(pos), dtype=torch.int64, device=device)
    int32_seeds = spec.generator in torch_gen.INT32_SEED_GENERATORS

    def run(lo: int, hi: int) -> list[np.ndarray] | None:
        if int32_seeds:  # the seed's bit pattern: int32 end to end, widened only for the few candidates
            seeds = torch.arange(hi - lo, dtype=torch.int32, device=device).add_(_i32(lo))
        else:
            seeds = torch.arange(lo, hi, dtype=torch.int64, device=device)
        out = torch_gen.residues(spec.generator, seeds, filter_pos, spec.modulus, mt_words=mt_words)
        hit = (out == ftargets.view(-1, 1)).any(dim=0)
        cand = seeds[hit]
        if not cand.numel():
            return None
        if int32_seeds:
            cand = cand.to(torch.int64) & 0xFFFFFFFF
        return [t.cpu().numpy() for t in score_torch(spec, cand, mt_words)]

    if device.startswith("cpu"):
        bounds = [(lo, min(end, lo + CHUNK)) for lo in range(start, end, CHUNK)]
        # torch's thread count is per OS thread (OpenMP): set in each worker, the caller's is left alone
        with ThreadPoolExecutor(torch.get_num_threads(), initializer=torch.set_num_threads, initargs=(1,)) as pool:
            found = list(pool.map(lambda b: run(*b), bounds))
    else:
        found = [run(lo, min(end, lo + CUDA_CHUNK)) for lo in range(start, end, CUDA_CHUNK)]
    parts = [p for p in found if p is not None]
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    return tuple(np.concatenate([p[i] for p in parts]).astype(np.int64) for i in range(3))  # type: ignore[return-value]


def _i32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


VARIABLE_CHUNK = 1 << 12  # seeds per variable-skip step: the residue stream is [positions, seeds]


def score_variable_torch(
    spec: SieveSpec, seeds: torch.Tensor, mt_words: torch_gen.MtWords | None = None
) -> tuple[torch.Tensor, ...]:
    """Variable-skip scan of the given seeds, all lanes in step: (seeds, strategies, matches, skips [n, scan]) of
    those that pass. The residue stream is recomputed longer whenever an active seed's window runs past it."""
    from pipeline.prng.sieve.variable import EXPECTED_START, miss_advance, rule_for

    rule = rule_for(spec.generator)
    miss_hi, miss_add = miss_advance(rule)
    dev, n, scan = seeds.device, seeds.numel(), spec.scan_length
    targets = torch.tensor(spec.residues[:scan], dtype=torch.int64, device=dev)
    length = spec.offset + 64

    def stream(length: int) -> torch.Tensor:
        return torch_gen.residues(spec.generator, seeds, range(length), spec.modulus, mt_words=mt_words)

    res = stream(length)
    best_m = torch.zeros(n, dtype=torch.int64, device=dev)
    best_id = torch.full((n,), -1, dtype=torch.int64, device=dev)
    best_sk = torch.full((scan, n), -1, dtype=torch.int64, device=dev)
    for si, (misses, tol) in enumerate(spec.strategies):
        pos = torch.full((n,), spec.offset, dtype=torch.int64, device=dev)
        e = torch.full((n,), EXPECTED_START, dtype=torch.int64, device=dev)
        m = torch.zeros(n, dtype=torch.int64, device=dev)
        run = torch.zeros(n, dtype=torch.int64, device=dev)
        active = torch.ones(n, dtype=torch.bool, device=dev)
        sk = torch.full((scan, n), -1, dtype=torch.int64, device=dev)
        steps = torch.arange(2 * tol + 1, dtype=torch.int64, device=dev).view(-1, 1)
        for j in range(scan):
            if not bool(active.any()):
                break
            lo = torch.where(e > tol, e - tol, torch.zeros_like(e))
            hi = e + tol
            need_len = int((pos + hi + 1)[active].max())
            if need_len > length:
                length = max(need_len, 2 * length)
                res = stream(length)
            cand = lo.view(1, -1) + steps  # [2*tol+1, n]
            valid = (cand <= hi.view(1, -1)) & active.view(1, -1)
            idx = (pos.view(1, -1) + cand).clamp(max=length - 1)
            hit = (res.gather(0, idx) == targets[j]) & valid
            matched = hit.any(dim=0)
            found = lo + hit.to(torch.int8).argmax(dim=0)  # the first (smallest) matching skip
            missed = active & ~matched
            sk[j] = torch.where(matched, found, torch.where(missed, e if rule.adaptive else torch.zeros_like(e), sk[j]))
            m += matched.to(torch.int64)
            run = torch.where(matched, torch.zeros_like(run), run + missed.to(torch.int64))
            advance = (hi if miss_hi else torch.zeros_like(hi)) + miss_add
            pos = torch.where(matched, pos + found + 1, torch.where(missed, pos + advance, pos))
            if rule.adaptive:
                e = torch.where(matched, found, e)
            stop = missed & ((run >= misses) if rule.adaptive else (run > misses))
            active &= ~stop
        better = m > best_m
        best_m = torch.where(better, m, best_m)
        best_id = torch.where(better, torch.full_like(best_id, si), best_id)
        best_sk = torch.where(better.view(1, -1), sk, best_sk)
    keep = (best_id >= 0) & (best_m >= spec.need)
    return seeds[keep], best_id[keep], best_m[keep], best_sk[:, keep].T.contiguous()


def torch_variable_sieve(spec: SieveSpec, seeds: np.ndarray | range, device: str) -> tuple[np.ndarray, ...]:
    """(seeds, strategies, matches, skip sequences) of the variable-skip survivors among `seeds`."""
    mt_words = None
    if not device.startswith("cpu") and importlib.util.find_spec("triton") is not None:
        from pipeline.prng.kernels.triton_mt import mt_words
    parts = []
    total = len(seeds)
    for lo in range(0, total, VARIABLE_CHUNK):
        if isinstance(seeds, range):
            part = seeds[lo : lo + VARIABLE_CHUNK]
            chunk = torch.arange(part.start, part.stop, dtype=torch.int64, device=device)
        else:
            chunk = torch.from_numpy(np.asarray(seeds[lo : lo + VARIABLE_CHUNK], dtype=np.int64)).to(device)
        found = score_variable_torch(spec, chunk, mt_words)
        if found[0].numel():
            parts.append([t.cpu().numpy().astype(np.int64) for t in found])
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy(), np.empty((0, spec.scan_length), dtype=np.int64)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))


TRITON_CHUNK = 1 << 26  # seeds per fused-kernel launch on a GPU (candidates are ~1/modulus of them per draw)


def triton_sieve(spec: SieveSpec, start: int, end: int, device: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fused Triton filter (pipeline.prng.kernels.triton_sieve) for its families, then score_torch on the
    candidates; other generators take torch_sieve with the Triton MT init chain."""
    from pipeline.prng.kernels.triton_sieve import TRITON_GENERATORS, TritonFilter

    if spec.generator not in TRITON_GENERATORS:
        return torch_sieve(spec, start, end, device, use_triton=True)
    filt = TritonFilter(spec, device)
    parts = []
    for lo in range(start, end, TRITON_CHUNK):
        cand = filt.candidates(lo, min(end, lo + TRITON_CHUNK))
        if cand.numel():
            parts.append([t.cpu().numpy() for t in score_torch(spec, cand)])
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    return tuple(np.concatenate([p[i] for p in parts]).astype(np.int64) for i in range(3))  # type: ignore[return-value]
