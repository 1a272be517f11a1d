"""The numba block kernel's arguments for one variable-skip spec (pipeline.prng.kernels.variable_kernel), and its
calls over a seed range or a list: what pipeline.prng.sieve.rows runs on cpu, and what sieve_range's one-offset
variable sieve reduces (pipeline.prng.sieve.dispatch). Its own module so both can use it without importing each other.
"""

from __future__ import annotations

import numpy as np

from pipeline.prng.sieve.spec import SieveSpec

ROWS_CHUNKS = 1 << 28  # seeds per kernel call (one parallel region per call: see sieve.fast.COMPACT_CHUNKS)
TASK_CAP = 64  # row slots per kernel task (np.empty: only pages that receive rows are touched)


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
