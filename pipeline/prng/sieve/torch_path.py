"""Pure-torch sieve: the portable path for cuda/ROCm devices and for hosts without numba.

Same two stages as the compiled kernels: every seed of a chunk is evaluated on the first few draws of each
skip (enough draws that any passing seed must match one of them), then only the candidates are scored on
the whole window.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import torch

from pipeline.prng.generators import families as fam
from pipeline.prng.generators import torch_gen
from pipeline.prng.generators.mt_plan import mt_program
from pipeline.prng.sieve.spec import SieveSpec

CHUNK = 1 << 17  # seeds per step on cpu: the int32 words a chain step touches (3 x 512 KiB) stay in L2
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


def divisibility_params(modulus: int) -> tuple[int, int, int]:
    """(inv, k, limit) of pipeline.prng.kernels.common.divisibility_params, which this path cannot import (that
    module imports numba, and this path must run without it): n % modulus == 0 iff rotr32(n*inv, k) <= limit."""
    k = (modulus & -modulus).bit_length() - 1
    return pow(modulus >> k, -1, 1 << 32), k, ((1 << 32) - 1) // modulus


class MtFilter:
    """The MT19937 filter stage in lean int32 torch: which seeds of a chunk match some filter draw.

    Only the words the filter draws need are computed (pipeline.prng.generators.mt_plan: output p < 227 needs init
    words p, p+1, p+397), the chain in four preallocated-out ops a step (torch_gen._mt_words), the few twists and
    tempers in place, each distinct (position, target) tested once. The residue test stays in int32:
    `(y - target) % d == 0` as rotr((y - target) * inv, k) <= limit (divisibility_params), the unsigned compare
    done signed on values biased by 2**31. It passes the seeds with
    y % d == target plus the rare y < target with (y - target + 2**32) % d == 0; score_torch rescoring drops those.
    Per seed the chain's ~1600 element-wise ops are nearly all of the cost.
    """

    def __init__(self, spec: SieveSpec, device: str, mt_words: torch_gen.MtWords | None = None) -> None:
        pos = _positions(spec)
        n_filter = spec.filter_length()
        order = spec.check_order()
        pairs = sorted({(p, spec.residues[order[j]]) for row in pos for j, p in enumerate(row[:n_filter])})
        self.needed, self.ops, slot = mt_program(sorted({p for p, _ in pairs}))
        by_slot: dict[int, list[int]] = {}
        for p, r in pairs:
            by_slot.setdefault(slot[p], []).append(r)
        d = fam.PRESETS[spec.generator].definition
        assert isinstance(d, fam.Mt19937)
        self.out_shift = d.out_shift
        inv, self.k, limit = divisibility_params(spec.modulus)

        def c(v: int) -> torch.Tensor:
            return torch.tensor(_i32(v), dtype=torch.int32, device=device)

        self.tests = [(s, [c(r) for r in sorted(set(rs))]) for s, rs in sorted(by_slot.items())]
        self.inv, self.k_right, self.k_left = c(inv), c(self.k), c(32 - self.k)
        self.k_mask = c((1 << (32 - self.k)) - 1)
        self.bias, self.limit = c(1 << 31), c(limit ^ (1 << 31))
        self.one, self.low31 = c(1), c(0x7FFFFFFF)
        self.mt_words = mt_words or torch_gen._mt_words

    def hits(self, seeds32: torch.Tensor) -> torch.Tensor:
        """bool [n]: seeds (int32 bit patterns) that may pass; a superset of those matching a filter draw."""
        init = self.mt_words(seeds32, self.needed)
        words = [init[j] for j in self.needed]
        t = torch.empty_like(seeds32)
        for _dst, a, b, c in self.ops:  # dst is always the next slot: ops come in slot order
            out = torch.empty_like(seeds32)
            torch_gen.mt_next_into(words[a], words[b], words[c], out, t)
            words.append(out)
        y, u = torch.empty_like(seeds32), torch.empty_like(seeds32)
        hit: torch.Tensor | None = None
        for slot, targets in self.tests:
            torch_gen.mt_temper_into(words[slot], y, t)
            if self.out_shift:
                y.bitwise_right_shift_(self.one).bitwise_and_(self.low31)
            for tg in targets:
                torch.sub(y, tg, out=t)
                t.mul_(self.inv)  # wraps in int32: the bits of the uint32 product
                if self.k:
                    torch.bitwise_right_shift(t, self.k_right, out=u)
                    u.bitwise_and_(self.k_mask)
                    t.bitwise_left_shift_(self.k_left).bitwise_or_(u)
                h = torch.le(t.bitwise_xor_(self.bias), self.limit)
                hit = h if hit is None else hit.logical_or_(h)
        assert hit is not None
        return hit


def torch_sieve(spec: SieveSpec, start: int, end: int, device: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The portable sieve: every seed of a chunk on the filter draws, the candidates scored on the whole window.

    On cpu the chunks are small (L2-resident) and run on a thread per core with torch's intra-op threads off:
    torch's OpenMP split of each 64K-element op cost ~30x more per op than a single thread on the shared 2-core
    machine (a barrier per op, and other tenants on the cores). The threads overlap only where the GIL is not
    taken per op: the MT chain runs as TorchScript (torch_gen._scripted_chain); the few other ops of a chunk stay
    eager. Each thread pulls chunks as it goes (a busy core just takes fewer) and scores its candidates in batches
    of SCORE_BATCH: scoring re-runs the generator over the window, and as eager ops its cost hardly depends on how
    many seeds it scores (MT: the same ~1600-op chain; measured 2.3 ms for 128 candidates, about a tenth of
    filtering the 131072-seed chunk they came from)."""
    pos = _positions(spec)
    n_filter = spec.filter_length()
    order = spec.check_order()
    filter_pos = [p for row in pos for p in row[:n_filter]]
    ftargets = torch.tensor([spec.residues[j] for j in order[:n_filter]] * len(pos), dtype=torch.int64, device=device)
    int32_seeds = spec.generator in torch_gen.INT32_SEED_GENERATORS
    mt_filter = MtFilter(spec, device) if int32_seeds else None

    def candidates(lo: int, hi: int) -> torch.Tensor:
        """int64 seeds of [lo, hi) that match a filter draw (MT: a superset, see MtFilter)."""
        if int32_seeds:  # the seed's bit pattern: int32 end to end, widened only for the few candidates
            seeds = torch.arange(hi - lo, dtype=torch.int32, device=device).add_(_i32(lo))
        else:
            seeds = torch.arange(lo, hi, dtype=torch.int64, device=device)
        if mt_filter is not None:
            hit = mt_filter.hits(seeds)
        else:
            out = torch_gen.residues(spec.generator, seeds, filter_pos, spec.modulus)
            hit = (out == ftargets.view(-1, 1)).any(dim=0)
        cand = seeds[hit]
        return cand.to(torch.int64) & 0xFFFFFFFF if int32_seeds else cand

    def score(cands: list[torch.Tensor]) -> list[np.ndarray]:
        return [t.cpu().numpy() for t in score_torch(spec, torch.cat(cands))]

    if device.startswith("cpu"):
        parts = _cpu_pool([(lo, min(end, lo + CHUNK)) for lo in range(start, end, CHUNK)], candidates, score)
    else:
        parts = []
        for lo in range(start, end, CUDA_CHUNK):
            cand = candidates(lo, min(end, lo + CUDA_CHUNK))
            if cand.numel():
                parts.append(score([cand]))
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    return tuple(np.concatenate([p[i] for p in parts]).astype(np.int64) for i in range(3))  # type: ignore[return-value]


SCORE_BATCH = 1 << 14  # candidates a cpu worker collects before scoring them in one call


def _cpu_pool(
    bounds: list[tuple[int, int]],
    candidates: Callable[[int, int], torch.Tensor],
    score: Callable[[list[torch.Tensor]], list[np.ndarray]],
) -> list[list[np.ndarray]]:
    """torch.get_num_threads() threads, each pulling the next chunk, filtering it, and scoring its candidates
    SCORE_BATCH at a time (and the rest when the chunks run out). torch's thread count is per OS thread (OpenMP):
    each worker sets its own to 1, the caller's is left alone."""
    todo = iter(bounds)
    lock = threading.Lock()
    results: list[list[np.ndarray]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        torch.set_num_threads(1)
        pending: list[torch.Tensor] = []
        n = 0
        try:
            while not errors:
                with lock:
                    b = next(todo, None)
                if b is None:
                    break
                cand = candidates(*b)
                if cand.numel():
                    pending.append(cand)
                    n += cand.numel()
                if n >= SCORE_BATCH:
                    results.append(score(pending))
                    pending, n = [], 0
            if pending and not errors:
                results.append(score(pending))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, torch.get_num_threads()))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


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
    parts = []
    total = len(seeds)
    for lo in range(0, total, VARIABLE_CHUNK):
        if isinstance(seeds, range):
            part = seeds[lo : lo + VARIABLE_CHUNK]
            chunk = torch.arange(part.start, part.stop, dtype=torch.int64, device=device)
        else:
            chunk = torch.from_numpy(np.asarray(seeds[lo : lo + VARIABLE_CHUNK], dtype=np.int64)).to(device)
        found = score_variable_torch(spec, chunk)
        if found[0].numel():
            parts.append([t.cpu().numpy().astype(np.int64) for t in found])
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy(), np.empty((0, spec.scan_length), dtype=np.int64)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))
