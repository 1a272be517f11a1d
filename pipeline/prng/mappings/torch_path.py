"""The batched (torch, cpu or GPU) mapped sieve: a buffer of raw outputs per batch of seeds, the library's accept
rule applied to every output at once, and a cumulative count of accepted outputs to find which output answers
which call (call c is the (c+1)-th accepted attempt; java nextDouble takes outputs 2c and 2c+1).

The buffer holds the mean number of outputs the calls need plus SIGMAS standard deviations of the rejection
count. A seed that exhausts it (unusually many rejections) is finished exactly by the plain-Python walk of
pipeline.prng.mappings.library, so no seed is ever lost or misjudged, however unlucky its stream.

java.util.Random is stepped here (one int64 multiply-add a step, wrapping as Java's long does); MT19937 seeded
with init_genrand comes from pipeline.prng.generators.torch_gen (its lazy init words);
CPython's init_by_array seeding, which no shared generator has, is here: a 1250-step chain over [624, n] words,
then the twist in three slices (words 227.. read words the same twist already wrote).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from pipeline.prng.generators import reference as ref
from pipeline.prng.generators import torch_gen
from pipeline.prng.mappings import library as lib

SIGMAS = 6.0  # buffer margin in standard deviations of the rejections (tests set it low to exhaust seeds)
MASK32 = 0xFFFFFFFF
MT_N, MT_M = 624, 397
CPU_BUDGET = 128 << 20  # bytes of int64 words per cpu batch (init_by_array holds 624 words a seed)
CPU_BATCH = 1 << 16  # seeds per cpu batch at most: each eager op's row stays in L2, one thread per batch
GPU_BUDGET = 4 << 30
BY_ARRAY_BASE = ref.mt_init(19650218)


def buffer_length(mapping: str, modulus: int, calls: int) -> int:
    """Outputs to generate so that nearly every seed finishes `calls` calls."""
    if mapping == "java_next_double":
        return 2 * calls
    q = lib.reject_probability(mapping, modulus)
    if q == 0.0:
        return calls
    mean = calls / (1 - q)
    sd = math.sqrt(calls * q) / (1 - q)
    return max(calls, math.ceil(mean + SIGMAS * sd) + 1)


def _java_outputs(seeds: torch.Tensor, length: int) -> torch.Tensor:
    """java.util.Random: the 32-bit outputs (state bits 47..16) of `length` steps; int64 wraps like Java's long."""
    state = (seeds ^ ref.JAVA_MULT) & ref.MASK48
    out = torch.empty((length, seeds.numel()), dtype=torch.int64, device=seeds.device)
    for i in range(length):
        state = (state * ref.JAVA_MULT + ref.JAVA_ADD) & ref.MASK48
        out[i] = state >> 16
    return out


def _mt_step(cur: torch.Tensor, nxt: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
    y = (cur & 0x80000000) | (nxt & 0x7FFFFFFF)
    return far ^ (y >> 1) ^ ((y & 1) * ref.MT_MATRIX_A)


def _temper(y: torch.Tensor) -> torch.Tensor:
    y = y ^ (y >> 11)
    y = y ^ ((y << 7) & 0x9D2C5680)
    y = y ^ ((y << 15) & 0xEFC60000)
    return y ^ (y >> 18)


def by_array_state(seeds: torch.Tensor) -> torch.Tensor:
    """[624, n] int64: MT19937 init_by_array([seed]) per seed (pipeline.prng.generators.reference)."""
    n = seeds.numel()
    mt = torch.tensor(BY_ARRAY_BASE, dtype=torch.int64, device=seeds.device).view(MT_N, 1).repeat(1, n)
    t = torch.empty_like(seeds)

    def mix(i: int, prev: torch.Tensor, mult: int, add: torch.Tensor | int) -> None:
        """mt[i] = ((mt[i] ^ ((prev ^ (prev >> 30)) * mult)) + add) mod 2**32, in place (eager ops cost per op)."""
        torch.bitwise_right_shift(prev, 30, out=t)
        t.bitwise_xor_(prev).mul_(mult).bitwise_and_(MASK32)
        mt[i].bitwise_xor_(t).add_(add).bitwise_and_(MASK32)

    for i in range(1, MT_N):
        mix(i, mt[i - 1], 1664525, seeds)
    mt[0] = mt[MT_N - 1]
    mix(1, mt[0], 1664525, seeds)
    for i in range(2, MT_N):
        mix(i, mt[i - 1], 1566083941, -i)
    mt[0] = mt[MT_N - 1]
    mix(1, mt[0], 1566083941, -1)
    mt[0] = 0x80000000
    return mt


def _twist(mt: torch.Tensor) -> torch.Tensor:
    """The next 624 state words: words j >= 227 read the new words j-227 (the in-place twist's order)."""
    new = torch.empty_like(mt)
    lo = MT_N - MT_M  # 227
    new[:lo] = _mt_step(mt[:lo], mt[1 : lo + 1], mt[MT_M:])
    new[lo : 2 * lo] = _mt_step(mt[lo : 2 * lo], mt[lo + 1 : 2 * lo + 1], new[:lo])
    new[2 * lo : MT_N - 1] = _mt_step(mt[2 * lo : MT_N - 1], mt[2 * lo + 1 :], new[lo : MT_N - 1 - lo])
    new[MT_N - 1] = _mt_step(mt[MT_N - 1], new[0], new[MT_N - 1 - lo])
    return new


def _python_outputs(seeds: torch.Tensor, length: int) -> torch.Tensor:
    state = by_array_state(seeds)
    if length <= MT_N - MT_M:  # the first outputs need no full twist
        return _temper(_mt_step(state[:length], state[1 : length + 1], state[MT_M : MT_M + length]))
    parts, have = [], 0
    while have < length:
        state = _twist(state)
        parts.append(_temper(state[: length - have]))
        have += parts[-1].shape[0]
    return torch.cat(parts)


def raw_outputs(generator: str, seeds: torch.Tensor, length: int, mt_words: torch_gen.MtWords | None = None):
    """int64 [length, n]: the first `length` 32-bit outputs of each seed (int64 seeds in [0, 2**32))."""
    if length == 0:
        return torch.empty((0, seeds.numel()), dtype=torch.int64, device=seeds.device)
    if generator in lib.JAVA_GENERATORS:
        return _java_outputs(seeds, length)
    if generator in lib.PYTHON_GENERATORS:
        return _python_outputs(seeds, length)
    return torch_gen.outputs(generator, seeds, range(length), mt_words=mt_words)


def _attempts(mapping: str, out: torch.Tensor, n: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(accepted mask or None when every attempt is accepted, value per attempt) of a rejection mapping."""
    if mapping == "java_next_int":
        u = out >> 1
        if lib.is_pow2(n):
            return None, u >> (31 - (n.bit_length() - 1))
        r = u % n
        return u - r + (n - 1) < lib.INT31, r
    if mapping == "numpy_randint":
        v = out & lib.numpy_mask(n)
        return v <= n - 1, v
    if mapping == "python_randrange":
        v = out >> lib.python_shift(n)
        return v < n, v
    if mapping == "php_mt_rand":
        if lib.is_pow2(n):
            return None, out & (n - 1)
        return out <= lib.php_limit(n), out % n
    return None, out % n  # mod


def calls_from_outputs(mapping: str, out: torch.Tensor, n: int, calls: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values [calls, seeds], exhausted [seeds]) from an output buffer: call c is the (c+1)-th accepted attempt."""
    seeds = out.shape[1]
    if mapping == "java_next_double":
        a, b = out[0 : 2 * calls : 2] >> 6, out[1 : 2 * calls : 2] >> 5
        values = torch.floor(((a << 27) + b).to(torch.float64) * lib.DOUBLE_UNIT * float(n)).to(torch.int64)
        return values, torch.zeros(seeds, dtype=torch.bool, device=out.device)
    accepted, value = _attempts(mapping, out, n)
    if accepted is None:
        return value[:calls], torch.zeros(seeds, dtype=torch.bool, device=out.device)
    rank = accepted.to(torch.int32).cumsum(0)  # accepted attempts so far, this one included
    exhausted = rank[-1] < calls
    slot = torch.where(accepted & (rank <= calls), rank.to(torch.int64) - 1, calls)  # rejected: a spare row
    values = torch.zeros((calls + 1, seeds), dtype=torch.int64, device=out.device)
    values.scatter_(0, slot, value)
    return values[:calls], exhausted


def call_matrix(
    generator: str,
    mapping: str,
    seeds: torch.Tensor,
    calls: int,
    modulus: int,
    mt_words: torch_gen.MtWords | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(values [calls, n], exhausted [n]): exhausted seeds' columns are not yet right (see call_values)."""
    out = raw_outputs(generator, seeds, buffer_length(mapping, modulus, calls), mt_words)
    return calls_from_outputs(mapping, out, modulus, calls)


def call_values(
    generator: str,
    mapping: str,
    seeds: torch.Tensor,
    calls: int,
    modulus: int,
    mt_words: torch_gen.MtWords | None = None,
) -> torch.Tensor:
    """int64 [calls, n]: the call values of every seed, exhausted seeds finished by the plain-Python walk."""
    values, exhausted = call_matrix(generator, mapping, seeds, calls, modulus, mt_words)
    for i in torch.nonzero(exhausted).flatten().tolist():
        exact = lib.call_values(generator, mapping, int(seeds[i]), calls, modulus)
        values[:, i] = torch.tensor(exact, dtype=torch.int64, device=values.device)
    return values


def batch_size(spec: lib.CallWindow, device: str, length: int) -> int:
    rows = max(length, MT_N if spec.generator in lib.PYTHON_GENERATORS else 0) + 1
    if device.startswith("cpu"):
        return max(1024, min(CPU_BATCH, CPU_BUDGET // (8 * rows)))
    return max(1024, GPU_BUDGET // (8 * 4 * rows))


def _positions(spec: lib.CallWindow) -> list[list[int]]:
    order = spec.check_order()
    return [[spec.position(j, s) for j in order] for s in spec.skips]


def score(
    spec: lib.CallWindow, seeds: torch.Tensor, mt_words: torch_gen.MtWords | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Whole-window scoring of the given seeds: (seeds, skips, matches) of those that pass (lowest skip on ties)."""
    pos = torch.tensor(_positions(spec), dtype=torch.int64, device=seeds.device)  # [n_skips, k]
    n_skips, k = pos.shape
    targets = torch.tensor([spec.residues[j] for j in spec.check_order()], dtype=torch.int64, device=seeds.device)
    values = call_values(spec.generator, spec.mapping, seeds, int(pos.max()) + 1, spec.modulus, mt_words)
    got = values[pos.flatten()].view(n_skips, k, -1)
    matches = (got == targets.view(1, k, 1)).sum(dim=1)
    best, best_idx = matches.max(dim=0)  # the first (lowest) skip on ties
    keep = best >= spec.need
    return seeds[keep], best_idx[keep] + spec.skip_min, best[keep]


def torch_sieve(
    spec: lib.CallWindow, seeds: range | Sequence[int] | np.ndarray, device: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seeds, skips, matches) of the survivors among `seeds` (a range, or explicit seeds): every seed walked over
    the filter draws' calls, the hits (and any exhausted seed) scored on the whole window."""
    pos = _positions(spec)
    n_filter = spec.filter_length()
    fpos = torch.tensor([row[:n_filter] for row in pos], dtype=torch.int64, device=device).flatten()
    order = spec.check_order()
    ftargets = torch.tensor([spec.residues[j] for j in order[:n_filter]] * len(pos), dtype=torch.int64, device=device)
    fcalls = int(fpos.max()) + 1
    step = batch_size(spec, device, buffer_length(spec.mapping, spec.modulus, fcalls))

    def run(lo: int) -> list[np.ndarray] | None:
        if isinstance(seeds, range):
            part = seeds[lo : lo + step]
            batch = torch.arange(part.start, part.stop, dtype=torch.int64, device=device)
        else:
            batch = torch.as_tensor(np.asarray(seeds[lo : lo + step], dtype=np.int64), device=device)
        values, exhausted = call_matrix(spec.generator, spec.mapping, batch, fcalls, spec.modulus)
        hit = (values[fpos] == ftargets.view(-1, 1)).any(dim=0) | exhausted
        cand = batch[hit]
        if not cand.numel():
            return None
        return [t.cpu().numpy().astype(np.int64) for t in score(spec, cand)]

    if device.startswith("cpu"):  # a thread per core, torch's own threads off (as pipeline.prng.sieve.torch_path)
        with ThreadPoolExecutor(torch.get_num_threads(), initializer=torch.set_num_threads, initargs=(1,)) as pool:
            found = list(pool.map(run, range(0, len(seeds), step)))
    else:
        found = [run(lo) for lo in range(0, len(seeds), step)]
    parts = [p for p in found if p is not None]
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]
