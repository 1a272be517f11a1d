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
from pipeline.prng.sieve.rows_plan import RowsPlan
from pipeline.prng.sieve.spec import MAX_SEED, SieveSpec, SieveSpecError, check_range


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
