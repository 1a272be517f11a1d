"""What the C kernels must write, from the plain-Python references, and the checks the CPU-shim tests run.

The models are exact, not supersets: a filter kernel writes precisely the seeds one of whose filter draws passes
the residue test (a 32-bit draw x passes target t when (x - t) mod 2**32 is divisible by the modulus, which is
what the divisibility test computes; a 64-bit draw when x mod modulus == t); a walk writes the seeds whose filter
calls match or that run out of steps; the variable kernel writes a row for every (offset, strategy) pair of
scan_strategy that reaches `need`. A superset would still give the right survivors after scoring, so only these
catch a kernel that tests the wrong draw and lets scoring hide it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from pipeline.prng.generators import families as fam
from pipeline.prng.generators.reference import REFERENCE, generate
from pipeline.prng.kernels.gpu import filters, walks
from pipeline.prng.kernels.gpu.plan import Backend, collect
from pipeline.prng.kernels.gpu.variable_plan import variable_plan, variable_rows
from pipeline.prng.mappings import library as lib
from pipeline.prng.mappings import torch_path as mtp
from pipeline.prng.sieve import SieveSpec, gpu_path
from pipeline.prng.sieve.reference import reference_sieve
from pipeline.prng.sieve.variable import _Residues, scan_strategy

MASK32 = 0xFFFFFFFF
TOP = 1 << 32


def filter_candidates(spec: Any, seeds: Iterable[int]) -> list[int]:
    pairs = filters.entries(spec)
    wide = fam.preset(spec.generator).draw_bits == 64
    last = pairs[-1][0]
    out = []
    for seed in seeds:
        stream = generate(spec.generator, seed, last + 1)
        if wide:
            hit = any(stream[p] % spec.modulus == t for p, t in pairs)
        else:
            hit = any(((stream[p] - t) & MASK32) % spec.modulus == 0 for p, t in pairs)
        if hit:
            out.append(seed)
    return out


def _calls_within(spec: Any, seed: int, n_calls: int, steps: int) -> tuple[list[int], bool]:
    """The call values a walk of `steps` outputs completes, and whether it stopped short of n_calls."""
    out = lib.Counted(REFERENCE[spec.generator](seed))
    call = lib.CALLS[spec.mapping]
    values: list[int] = []
    while len(values) < n_calls:
        value = call(out, spec.modulus)
        if out.used > steps:
            return values, True
        values.append(value)
    return values, False


def walk_candidates(spec: Any, seeds: Iterable[int], steps: Callable[[int], int]) -> list[int]:
    n_calls, flat, n_skips = walks.call_table(spec)
    budget = steps(n_calls)
    out = []
    for seed in seeds:
        values, short = _calls_within(spec, seed, n_calls, budget)
        hit = any(flat[s * n_calls + c] == v for s in range(n_skips) for c, v in enumerate(values))
        if hit or short:
            out.append(seed)
    return out


def variable_model(
    generator: str,
    modulus: int,
    targets: Sequence[int],
    offsets: Sequence[int],
    strategies: Sequence[tuple[int, int]],
    need: int,
    seeds: Iterable[int],
) -> list[tuple[int, int, int, int]]:
    rule = fam.preset(generator).definition.rule
    rows = []
    for seed in seeds:
        residues = _Residues(generator, seed, modulus)
        for offset in offsets:
            for index, (misses, tol) in enumerate(strategies):
                matches, _ = scan_strategy(residues, targets, offset, misses, tol, rule)
                if matches >= need:
                    rows.append((seed, offset, index, matches))
    return sorted(rows)


def kernel_filter(backend: Backend, spec: Any, seeds: range) -> list[int]:
    rows = collect(backend, filters.filter_plan(spec), seeds.start, seeds.stop)
    return sorted(rows[:, 0].astype(np.int64).tolist())


def kernel_variable(
    backend: Backend,
    generator: str,
    modulus: int,
    targets: Sequence[int],
    offsets: Sequence[int],
    strategies: Sequence[tuple[int, int]],
    need: int,
    seeds: range,
) -> list[tuple[int, int, int, int]]:
    rule = fam.preset(generator).definition.rule
    plan = variable_plan(generator, modulus, targets, offsets, strategies, rule, need)
    rows = variable_rows(backend, plan, seeds.start, seeds.stop)
    return sorted(tuple(int(v) for v in row) for row in rows.tolist())  # type: ignore[misc]


def rows(arrays: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in zip(*(a.tolist() for a in arrays), strict=True)]


def check_family(be: Backend, spec: SieveSpec, seeds: range) -> tuple[bool, bool, int]:
    """(candidates exact, survivors after the GPU path's scoring right, how many survivors)."""
    want = reference_sieve(spec, seeds)
    got = rows(gpu_path.kernel_sieve(spec, seeds.start, seeds.stop, "cpu", be))
    return kernel_filter(be, spec, seeds) == filter_candidates(spec, seeds), got == want, len(want)


def steps_of(spec: SieveSpec) -> Callable[[int], int]:
    return lambda calls: mtp.buffer_length(spec.mapping, spec.modulus, calls)


def check_walk(be: Backend, spec: SieveSpec, seeds: range) -> tuple[bool, bool, int] | None:
    """As check_family for a mapped spec; None when its calls run past the walk's reach (the torch path's)."""
    plan = gpu_path.walk_plan(spec)
    if plan is None:
        return None
    cand = sorted(collect(be, plan, seeds.start, seeds.stop)[:, 0].tolist())
    want = lib.reference_sieve(spec, seeds)
    got = rows(gpu_path.kernel_mapped(spec, plan, seeds, "cpu", be))
    return cand == walk_candidates(spec, seeds, steps_of(spec)), got == want, len(want)


def check_variable(be: Backend, gen: str, modulus: int, targets: list[int], offsets: list[int],
                   strategies: tuple[tuple[int, int], ...], need: int, seeds: range) -> bool:  # fmt: skip
    got = kernel_variable(be, gen, modulus, targets, offsets, strategies, need, seeds)
    return got == variable_model(gen, modulus, targets, offsets, strategies, need, seeds)


def planted_variable(gen: str, seed: int, offset: int, k: int, modulus: int, drift: random.Random) -> list[int]:
    """k draws of `seed`'s stream from `offset` on, the skip drifting by at most 3 a draw (their semantics)."""
    skips, s = [], 5
    for _ in range(k):
        s = max(0, min(10, s + drift.randint(-3, 3)))
        skips.append(s)
    stream = generate(gen, seed, offset + sum(skips) + len(skips))
    pos, out = offset, []
    for s in skips:
        out.append(stream[pos + s] % modulus)
        pos += s + 1
    return out
