"""Drives the numba kernels over a seed range: builds the per-spec tables once, then runs chunk by chunk.

Importing this module imports numba; pipeline.prng.sieve only does so when the fast path is chosen.
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads

from pipeline.prng.generators import families as fam
from pipeline.prng.generators import jump
from pipeline.prng.generators.mt_plan import mt_program
from pipeline.prng.kernels.common import divisibility_params, fastmod_params
from pipeline.prng.sieve.spec import SieveSpec

MT_N = 624
MT_LANE_LIMIT = 4 * MT_N  # filter positions beyond this use the scalar kernel (the word program grows)
CHUNK = 1 << 21  # seeds per kernel call: bounds the per-seed code array to 8 MiB
# A compact (survivors-only) kernel call takes COMPACT_CHUNKS * CHUNK seeds (2**28): one parallel region per call,
# because on a shared machine each region can wait a scheduler slice for a thread whose core is busy elsewhere.
COMPACT_CHUNKS = 128
# Output slots per compact kernel task (a few thousand seeds): 2**28 seeds take at most 37449 tasks, 19 MiB of
# np.empty buffers of which only pages with survivors are touched. Windows where more seeds pass rerun the task.
TASK_CAP = 64


def family_params(generator: str) -> tuple[int, np.ndarray]:
    """(family kind, uint64 params) for pipeline.prng.kernels.family_kernel."""
    from pipeline.prng.kernels import family_kernel as fk

    d = fam.preset(generator).definition
    p = [0] * fk.N_PARAMS
    if isinstance(d, fam.Lcg):
        kind = fk.FK_LCG
        p[:8] = [d.a, d.c, d.m & fam.MASK64, d.seed_xor, int(d.zero_to_one), d.out_shift, (1 << d.out_bits) - 1,
                 int(d.pow2)]  # fmt: skip
        if not d.pow2 and d.m >= 1 << 32:
            raise ValueError(f"{generator}: a non power-of-two modulus must be below 2**32")
    elif isinstance(d, fam.Pcg):
        kind = fk.FK_PCG
        p[:3] = [d.inc & fam.MASK64, int(d.seeding == "srandom"), int(d.draw_from == "new")]
    elif isinstance(d, fam.Xorshift32):
        kind, p[:3] = fk.FK_XS32, list(d.shifts)
    elif isinstance(d, fam.Xorshift64):
        kind, p[:5] = fk.FK_XS64, [*d.shifts, d.mult, int(d.out == "full64")]
    elif isinstance(d, fam.Xorshift128):
        kind, p[:3] = fk.FK_XS128, list(d.init)
    elif isinstance(d, fam.Mt19937):
        kind, p[0] = fk.FK_MT, d.out_shift
    elif isinstance(d, fam.Xoshiro256pp):
        kind, p[:3] = fk.FK_XOSHIRO, list(d.init)
    elif isinstance(d, fam.Philox4x32):
        kind, p[0] = fk.FK_PHILOX, d.rounds
    else:
        kind, p[:3] = fk.FK_SFC, list(d.init)
    return kind, np.array(p, dtype=np.uint64)


def _stream_gen(generator: str) -> int | None:
    """The specialised stream kernel's generator code, or None when the generic family kernel runs."""
    from pipeline.prng.kernels.stream_kernel import GEN_MT, GEN_PHP, GEN_XORSHIFT

    d = fam.preset(generator).definition
    if isinstance(d, fam.Mt19937) and d.out_shift in (0, 1):
        return GEN_PHP if d.out_shift else GEN_MT
    if isinstance(d, fam.Xorshift32) and d.shifts == (13, 17, 5):
        return GEN_XORSHIFT
    return None


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
        self.divisible = tuple(np.uint32(v) for v in divisibility_params(spec.modulus))
        g = spec.generator
        self.kind = "jump" if g in jump.JUMP_GENERATORS else "stream"
        if self.kind == "stream" and _stream_gen(g) is None:
            self.kind = "family"
            self.family_kind, self.params = family_params(g)
            return
        if self.kind == "jump":
            coefs = [[jump.coefficients(g, int(p)) for p in row] for row in self.positions]
            self.coef_a = np.array([[a for a, _ in row] for row in coefs], dtype=np.uint64)
            self.coef_c = np.array([[c for _, c in row] for row in coefs], dtype=np.uint64)
            self.jump_kind = jump.KIND[g]
            self.pow2 = tuple(np.uint64(v) for v in jump.kernel_params(g))
            return
        from pipeline.prng.kernels.stream_kernel import GEN_XORSHIFT

        self.gen = _stream_gen(g)
        fpos = self.positions[:, : self.n_filter]
        if self.gen == GEN_XORSHIFT:
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

    @property
    def compact(self) -> bool:
        """Whether run_compact applies: the jump kernel and the stream lane kernel write survivors only."""
        return self.kind == "jump" or (self.kind == "stream" and self.lanes)

    def _task_range(self, start: int, count: int, t: int) -> tuple[int, int]:
        if self.kind == "jump":
            from pipeline.prng.kernels.jump_kernel import task_range

            return task_range(start, count, t)
        from pipeline.prng.kernels.common import TASK_SEEDS

        return start + t * TASK_SEEDS, min(start + count, start + (t + 1) * TASK_SEEDS)

    def run_compact(self, start: int, count: int, cap: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(offsets from start, codes) of the survivors, from a kernel that writes nothing else (see `compact`).

        Each kernel task gets `cap` output slots (default TASK_CAP): np.empty, so only pages that receive
        survivors are touched. A task that finds more (dense windows: tiny moduli, low thresholds) is run again
        on its own with room for every seed."""
        from pipeline.prng.kernels.common import TASK_SEEDS
        from pipeline.prng.kernels.jump_kernel import JUMP_TASK_SEEDS, compact_tasks, jump_sieve_compact
        from pipeline.prng.kernels.stream_kernel import stream_sieve_compact

        cap = cap or TASK_CAP
        jump_kind = self.kind == "jump"
        n_tasks = compact_tasks(start, count) if jump_kind else -(-count // TASK_SEEDS)
        idx, code = np.empty(n_tasks * cap, np.int32), np.empty(n_tasks * cap, np.int32)
        counts = np.empty(n_tasks, np.int64)
        d, magic, shift = self.mod
        if jump_kind:
            jump_sieve_compact(self.jump_kind, start, count, self.coef_a, self.coef_c, self.targets, self.n_filter,
                               self.need, d, magic, shift, *self.divisible, *self.pow2, get_num_threads(), cap, idx,
                               code, counts)  # fmt: skip
        else:
            stream_sieve_compact(self.gen, start, count, self.positions, self.targets, self.n_filter, self.need, d,
                                 magic, shift, *self.divisible, self.needed, self.ops, self.out_slot,
                                 get_num_threads(), cap, idx, code, counts)  # fmt: skip
        idx_parts, code_parts = [], []
        for t in np.flatnonzero(counts).tolist():
            n = int(counts[t])
            if n <= cap:
                idx_parts.append(idx[t * cap : t * cap + n])
                code_parts.append(code[t * cap : t * cap + n])
                continue
            lo, hi = self._task_range(start, count, t)
            sub_idx, sub_code = self.run_compact(lo, hi - lo, max(cap, JUMP_TASK_SEEDS if jump_kind else TASK_SEEDS))
            idx_parts.append(sub_idx + np.int32(lo - start))
            code_parts.append(sub_code)
        if not idx_parts:
            return idx[:0], code[:0]
        return np.concatenate(idx_parts), np.concatenate(code_parts)

    def run_chunk(self, start: int, count: int, code: np.ndarray | None = None) -> np.ndarray:
        """int32 codes per seed (-1, or skip_index << 16 | matches) for the kinds without a compact kernel: the
        generic family kernel, and MT windows past the lane program. `code`: a reusable buffer of >= count."""
        code = np.empty(count, dtype=np.int32) if code is None else code[:count]
        d, magic, shift = self.mod
        if self.kind == "family":
            from pipeline.prng.kernels.family_kernel import family_sieve

            family_sieve(self.family_kind, self.params, start, count, self.positions, self.targets.astype(np.uint64),
                         self.n_filter, self.need, np.uint64(self.spec.modulus), code)  # fmt: skip
        elif self.kind == "stream" and not self.lanes:
            from pipeline.prng.kernels.stream_kernel import stream_sieve_scalar

            stream_sieve_scalar(self.gen, start, count, self.positions, self.targets, self.need, d, magic, shift, code)
        else:
            raise ValueError(f"{self.spec.generator}: use run_compact")
        return code


def fast_sieve(
    spec: SieveSpec, start: int, end: int, plan: FastPlan | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seeds, skips, matches) of the survivors in [start, end). `plan`: the spec's FastPlan, when the caller sieves
    many small ranges of one spec (building it is most of a tiny call's cost)."""
    plan = plan or FastPlan(spec)
    parts = []
    size = min(CHUNK, end - start)
    if plan.compact:  # survivors only: no per-seed code array to write and scan
        step = COMPACT_CHUNKS * CHUNK
        for lo in range(start, end, step):
            idx, code = plan.run_compact(lo, min(step, end - lo))
            if idx.size:
                c = code.astype(np.int64)
                parts.append((idx.astype(np.int64) + lo, spec.skip_min + (c >> 16), c & 0xFFFF))
        return _joined(parts)
    buffer = np.empty(size, dtype=np.int32)  # reused: fresh pages cost ~10% on the LCGs
    for lo in range(start, end, CHUNK):
        count = min(CHUNK, end - lo)
        code = plan.run_chunk(lo, count, buffer)
        idx = np.flatnonzero(code >= 0)
        if idx.size:
            c = code[idx].astype(np.int64)
            parts.append((idx.astype(np.int64) + lo, spec.skip_min + (c >> 16), c & 0xFFFF))
    return _joined(parts)


def _joined(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]
