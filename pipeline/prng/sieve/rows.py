"""The variable-skip block sieve: every passing (offset, strategy) of every seed of a range or a list.

What the pipeline's variable-skip jobs run (pipeline.prng.windows): one spec covers offset..offset_max and every
strategy, and the answer is rows (seed, offset, strategy index, matches), every passing pair of a seed, not its
best; the scoring steps choose among them (pipeline.prng.verdict). The contract, and the oracle of every path, is
pipeline.prng.sieve.variable.reference_variable_rows.

Paths: "fast" is the numba block kernel (pipeline.prng.kernels.variable_kernel) on cpu and the C kernel
(pipeline.prng.kernels.gpu's variable.cu, through pipeline.prng.sieve.gpu_path) on a GPU; "fallback" runs the torch
variable scan once per (offset, strategy) (cpu or GPU); "reference" is the plain-Python oracle. "auto": fast where
its kernel runs (numba imports; CuPy and the C kernels on the GPU), fallback otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.prng.sieve.dispatch import choose_path, default_device, numba_available
from pipeline.prng.sieve.spec import MAX_SEED, SieveSpec, SieveSpecError, check_range

ROWS_CHUNKS = 1 << 28  # seeds per kernel call (one parallel region per call: see sieve.fast.COMPACT_CHUNKS)
TASK_CAP = 64  # row slots per kernel task (np.empty: only pages that receive rows are touched)


@dataclass
class VariableRows:
    """Rows as parallel int64 arrays in (seed, offset, strategy) order, and how they were obtained."""

    seeds: np.ndarray
    offsets: np.ndarray
    strategies: np.ndarray
    matches: np.ndarray
    seeds_tested: int
    seconds: float
    path: str
    device: str

    def __len__(self) -> int:
        return int(self.seeds.size)

    def rows(self) -> list[tuple[int, int, int, int]]:
        cols = (self.seeds, self.offsets, self.strategies, self.matches)
        return list(zip(*(c.tolist() for c in cols), strict=True))


def _check(spec: SieveSpec) -> None:
    if not spec.variable:
        raise SieveSpecError("spec.skip_mode must be 'variable' for the variable-skip block sieve")
    if spec.mapped:
        raise SieveSpecError(f"spec.mapping={spec.mapping!r}: variable skips read raw outputs only")


def variable_rows(
    spec: SieveSpec, start: int, end: int, *, device: str | None = None, path: str = "auto"
) -> VariableRows:
    """Every passing (offset, strategy) row of the seeds [start, end)."""
    _check(spec)
    start, end = check_range(start, end)
    device = device or default_device()
    chosen = choose_path(path, device)
    t0 = time.perf_counter()
    if chosen == "fast" and device.startswith("cpu"):
        arrays = RowsPlan(spec).range(start, end)
    elif chosen == "fast":  # a GPU: the C kernel's rows (pipeline.prng.sieve.gpu_path, kernels/gpu/variable.cu)
        from pipeline.prng.sieve.gpu_path import kernel_rows

        arrays = kernel_rows(spec, range(start, end), device)
    elif chosen == "reference":
        arrays = _from_tuples(_reference(spec, range(start, end)))
    else:
        arrays, chosen = _torch_rows(spec, range(start, end), device), "fallback"
    return VariableRows(*_ordered(arrays), end - start, time.perf_counter() - t0, chosen, device)


def variable_rows_of(spec: SieveSpec, seeds: Sequence[int] | np.ndarray, *, path: str = "auto") -> VariableRows:
    """Every passing row of explicit seeds (duplicates dropped), on this host's cpu: how the coordinator checks the
    rows a node claims. path "reference": the plain-Python oracle; otherwise numba when it imports."""
    _check(spec)
    arr = np.unique(np.asarray(seeds, dtype=np.int64).ravel())
    if arr.size and (arr[0] < 0 or arr[-1] >= MAX_SEED):
        raise SieveSpecError("seeds must all lie in [0, 2**32)")
    t0 = time.perf_counter()
    if path != "reference" and numba_available():
        arrays, used = RowsPlan(spec).explicit(arr), "fast"
    else:
        arrays, used = _from_tuples(_reference(spec, arr.tolist())), "reference"
    return VariableRows(*_ordered(arrays), int(arr.size), time.perf_counter() - t0, used, "cpu")


def _reference(spec: SieveSpec, seeds: Any) -> list[tuple[int, int, int, int]]:
    from pipeline.prng.sieve.variable import reference_variable_rows

    return reference_variable_rows(spec, seeds)


def _from_tuples(rows: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, ...]:
    return tuple(np.array([r[i] for r in rows], dtype=np.int64) for i in range(4))


def _ordered(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    seeds, offsets, strategies, matches = (np.asarray(a, dtype=np.int64) for a in arrays)
    order = np.lexsort((strategies, offsets, seeds))
    return tuple(np.ascontiguousarray(a[order]) for a in (seeds, offsets, strategies, matches))


def _torch_rows(spec: SieveSpec, seeds: range, device: str) -> tuple[np.ndarray, ...]:
    """The torch variable scan once per (offset, strategy): a one-strategy spec passes exactly the seeds whose
    scan under that strategy reaches spec.need."""
    from pipeline.prng.sieve.torch_path import torch_variable_sieve

    parts = []
    for offset in spec.offsets:
        for index, strategy in enumerate(spec.strategies):
            one = SieveSpec(**{**spec.to_dict(), "offset": offset, "offset_max": None, "strategies": [strategy]})
            found, _strategy, matches, _skips = torch_variable_sieve(one, seeds, device)
            parts.append((found, np.full(found.size, offset), np.full(found.size, index), matches))
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))


class RowsPlan:
    """The numba block kernel's arguments for one spec, built once and reused for every call."""

    def __init__(self, spec: SieveSpec) -> None:
        from pipeline.prng.kernels.common import fastmod_params
        from pipeline.prng.kernels.family_kernel import EXPECTED_START
        from pipeline.prng.sieve.fast import family_params
        from pipeline.prng.sieve.variable import miss_advance, rule_for

        kind, params = family_params(spec.generator)
        rule = rule_for(spec.generator)
        miss_hi, miss_add = miss_advance(rule)
        misses = np.array([m for m, _ in spec.strategies], dtype=np.int64)
        tols = np.array([t for _, t in spec.strategies], dtype=np.int64)
        d, magic, shift = fastmod_params(spec.modulus)
        self.spec = spec
        self.n_off = len(spec.offsets)
        self.n_strat = len(spec.strategies)
        first_len = spec.offsets[-1] + EXPECTED_START + int(tols.max()) + 1
        self.args = (spec.offset, self.n_off, np.array(spec.residues, dtype=np.uint32), spec.scan_length, misses, tols,
                     rule.adaptive, miss_hi, miss_add, spec.need, np.uint64(spec.modulus), np.uint64(d),
                     np.uint64(magic), np.uint64(shift), first_len)  # fmt: skip
        self.kind, self.params = kind, params

    def _rows(self, seeds: np.ndarray, pair: np.ndarray, matches: np.ndarray) -> tuple[np.ndarray, ...]:
        pair = pair.astype(np.int64)
        offsets = self.spec.offset + pair // self.n_strat
        return seeds.astype(np.int64), offsets, pair % self.n_strat, matches.astype(np.int64)

    def range(self, start: int, end: int) -> tuple[np.ndarray, ...]:
        parts = [self._chunk(lo, min(ROWS_CHUNKS, end - lo), TASK_CAP) for lo in range(start, end, ROWS_CHUNKS)]
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))

    def _chunk(self, start: int, count: int, cap: int) -> tuple[np.ndarray, ...]:
        """Rows of [start, start+count); a kernel task that found more rows than `cap` is run again on its own
        with room for every pair of every seed."""
        from numba import get_num_threads

        from pipeline.prng.kernels.common import TASK_SEEDS
        from pipeline.prng.kernels.variable_kernel import variable_rows_range

        n_tasks = -(-count // TASK_SEEDS)
        idx, pair, m = (np.empty(n_tasks * cap, np.int32) for _ in range(3))
        counts = np.empty(n_tasks, np.int64)
        variable_rows_range(self.kind, self.params, start, count, *self.args, get_num_threads(), cap, idx, pair, m,
                            counts)  # fmt: skip
        parts = []
        for t in np.flatnonzero(counts).tolist():
            n = int(counts[t])
            if n > cap:
                lo = start + t * TASK_SEEDS
                room = TASK_SEEDS * self.n_off * self.n_strat
                parts.append(self._chunk(lo, min(TASK_SEEDS, start + count - lo), room))
                continue
            sl = slice(t * cap, t * cap + n)
            parts.append(self._rows(idx[sl].astype(np.int64) + start, pair[sl], m[sl]))
        if not parts:
            return tuple(np.empty(0, np.int64) for _ in range(4))
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))

    def explicit(self, seeds: np.ndarray) -> tuple[np.ndarray, ...]:
        from pipeline.prng.kernels.variable_kernel import variable_rows_list

        size = seeds.size * self.n_off * self.n_strat
        idx, pair, m = (np.empty(size, np.int32) for _ in range(3))
        n = variable_rows_list(self.kind, self.params, seeds, *self.args, idx, pair, m)
        return self._rows(seeds[idx[:n]], pair[:n], m[:n])
