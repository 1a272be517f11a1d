"""Drives the numba kernels over a seed range: builds the per-spec tables once, then runs chunk by chunk.

Importing this module imports numba; pipeline.prng.sieve only does so when the fast path is chosen.
"""

from __future__ import annotations

import numpy as np

from pipeline.prng.generators import jump
from pipeline.prng.generators.mt_plan import mt_program
from pipeline.prng.kernels.common import fastmod_params
from pipeline.prng.sieve.spec import SieveSpec

MT_N = 624
MT_LANE_LIMIT = 4 * MT_N  # filter positions beyond this use the scalar kernel (the word program grows)
CHUNK = 1 << 21  # seeds per kernel call: bounds the per-seed code array to 8 MiB


class FastPlan:
    """Everything a kernel call needs for one spec; built once per sieve, reused for every chunk."""

    def __init__(self, spec: SieveSpec) -> None:
        order = spec.check_order()
        self.spec = spec
        self.positions = np.array([[spec.position(j, s) for j in order] for s in spec.skips], dtype=np.int64)
        self.targets = np.array([spec.residues[j] for j in order], dtype=np.uint32)
        self.n_filter = spec.filter_length()
        self.need = spec.need
        d, magic, shift = fastmod_params(spec.modulus)
        self.mod = (np.uint64(d), np.uint64(magic), np.uint64(shift))
        g = spec.generator
        self.kind = "jump" if g in jump.JUMP_GENERATORS else "stream"
        if self.kind == "jump":
            coefs = [[jump.coefficients(g, int(p)) for p in row] for row in self.positions]
            self.coef_a = np.array([[a for a, _ in row] for row in coefs], dtype=np.uint64)
            self.coef_c = np.array([[c for _, c in row] for row in coefs], dtype=np.uint64)
            self.jump_kind = jump.KIND[g]
            return
        from pipeline.prng.kernels.stream_kernel import GEN_MT, GEN_PHP, GEN_XORSHIFT

        self.gen = {"mt19937": GEN_MT, "php_mt_rand": GEN_PHP, "xorshift32": GEN_XORSHIFT}[g]
        fpos = self.positions[:, : self.n_filter]
        if g == "xorshift32":
            needed = sorted(set(fpos.ravel().tolist()))
            slot = {p: k for k, p in enumerate(needed)}
            ops: list[tuple[int, int, int, int]] = []
            self.lanes = True
        else:
            self.lanes = int(fpos.max()) < MT_LANE_LIMIT
            needed, ops, slot = mt_program(sorted(set(fpos.ravel().tolist())))
        self.needed = np.array(needed, dtype=np.int64)
        self.ops = np.array(ops, dtype=np.int64).reshape(-1, 4)
        self.out_slot = np.array([[slot[int(p)] for p in row] for row in fpos], dtype=np.int64)

    def run_chunk(self, start: int, count: int, code: np.ndarray | None = None) -> np.ndarray:
        """int32 codes per seed: -1, or skip_index << 16 | matches. `code`: a reusable buffer of >= count."""
        code = np.empty(count, dtype=np.int32) if code is None else code[:count]
        d, magic, shift = self.mod
        if self.kind == "jump":
            from pipeline.prng.kernels.jump_kernel import jump_sieve

            jump_sieve(
                self.jump_kind,
                start,
                count,
                self.coef_a,
                self.coef_c,
                self.targets,
                self.n_filter,
                self.need,
                d,
                magic,
                shift,
                code,
            )
        elif self.lanes:
            from pipeline.prng.kernels.stream_kernel import stream_sieve_lanes

            stream_sieve_lanes(
                self.gen,
                start,
                count,
                self.positions,
                self.targets,
                self.n_filter,
                self.need,
                d,
                magic,
                shift,
                self.needed,
                self.ops,
                self.out_slot,
                code,
            )
        else:
            from pipeline.prng.kernels.stream_kernel import stream_sieve_scalar

            stream_sieve_scalar(self.gen, start, count, self.positions, self.targets, self.need, d, magic, shift, code)
        return code


def fast_sieve(spec: SieveSpec, start: int, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seeds, skips, matches) of the survivors in [start, end)."""
    plan = FastPlan(spec)
    parts = []
    buffer = np.empty(min(CHUNK, end - start), dtype=np.int32)  # reused: fresh pages cost ~10% on the LCGs
    for lo in range(start, end, CHUNK):
        count = min(CHUNK, end - lo)
        code = plan.run_chunk(lo, count, buffer)
        idx = np.flatnonzero(code >= 0)
        if idx.size:
            c = code[idx].astype(np.int64)
            parts.append((idx.astype(np.int64) + lo, spec.skip_min + (c >> 16), c & 0xFFFF))
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]
