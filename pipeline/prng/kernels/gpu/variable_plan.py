"""The variable-skip kernel's contract (variable.cu): for a seed block, every (offset, strategy) pair whose scan
reaches `need` matches, as rows (seed, offset, strategy index, matches).

Inputs: the generator (its family parameters), the target residues of the draws a scan examines (the window cut to
pipeline.prng.sieve.spec.MAX_VARIABLE_DRAWS), the offsets, the strategies ((max misses, tolerance) pairs), the
family's VariableRule and `need`. The scan is pipeline.prng.sieve.variable.scan_strategy's, pair by pair; the tests
check the rows against it over every offset and strategy (tests/pipeline/test_gpu_kernels.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.prng.generators import families as fam
from pipeline.prng.generators import reference as ref
from pipeline.prng.kernels.gpu.plan import Backend, Plan, collect, table, u32, u64
from pipeline.prng.kernels.params import fastmod_params, mod64_params

ROW = ("seed", "offset", "strategy", "matches")
RINGS = (128, 512, 2048)  # residues a lane keeps: the smallest that holds 2*tolerance+1
G_LCG, G_PCG, G_XS32, G_XS64, G_XS128, G_XOSHIRO, G_SFC64, G_PHILOX = range(8)
M31 = (1 << 31) - 1
# (add the window's hi, extra outputs) a miss moves the stream by: pipeline.prng.sieve.variable.miss_advance's table
MISS = {"hi": (1, 0), "hi+1": (1, 1), "none": (0, 0), "one": (0, 1)}
GP_WORDS = 19
LAUNCH_SEEDS = 1 << 22  # a scan costs far more than a filter: shorter launches


def generator_params(generator: str) -> np.ndarray:
    """gp[0..18] of variable.cu's gen_seed / gen_next: family, a, c, mask, m31, seed_xor, zero_to_one, out_shift,
    out_mask, three shifts, three state words, wide, draw_new, srandom, rounds."""
    preset = fam.preset(generator)
    d = preset.definition
    gp = [0] * GP_WORDS
    gp[15] = int(preset.draw_bits == 64)
    if isinstance(d, fam.Lcg):
        if not d.pow2 and d.m != M31:
            raise ValueError(f"{generator}: the variable kernel steps LCGs modulo a power of two or 2**31-1")
        gp[:9] = [G_LCG, d.a, d.c, d.m - 1 if d.pow2 else 0, int(d.m == M31), d.seed_xor, int(d.zero_to_one),
                  d.out_shift, (1 << d.out_bits) - 1]  # fmt: skip
    elif isinstance(d, fam.Pcg):
        gp[:3] = [G_PCG, ref.PCG_MULT, d.inc & fam.MASK64]
        gp[16], gp[17] = int(d.draw_from == "new"), int(d.seeding == "srandom")
    elif isinstance(d, fam.Xorshift32):
        gp[0], gp[9:12] = G_XS32, list(d.shifts)
    elif isinstance(d, fam.Xorshift64):
        gp[0], gp[1], gp[9:12] = G_XS64, d.mult, list(d.shifts)
    elif isinstance(d, fam.Xorshift128 | fam.Xoshiro256pp | fam.Sfc64):
        kind = {fam.Xorshift128: G_XS128, fam.Xoshiro256pp: G_XOSHIRO, fam.Sfc64: G_SFC64}[type(d)]
        gp[0], gp[12:15] = kind, list(d.init)
    elif isinstance(d, fam.Philox4x32):
        gp[0], gp[18] = G_PHILOX, d.rounds
    elif isinstance(d, fam.Mt19937):
        gp[7] = d.out_shift
    return table(gp, "uint64")


def variable_plan(
    generator: str,
    modulus: int,
    targets: Sequence[int],
    offsets: Sequence[int],
    strategies: Sequence[tuple[int, int]],
    rule: fam.VariableRule,
    need: int,
) -> Plan:
    """The plan of one variable-skip search; `targets` are the draws a scan examines."""
    if not targets or not offsets or not strategies:
        raise ValueError("a variable-skip plan needs targets, offsets and strategies")
    widest = 2 * max(tol for _, tol in strategies) + 1
    ring = next((r for r in RINGS if r >= widest), None)
    if ring is None:
        raise ValueError(f"tolerance {max(t for _, t in strategies)} is wider than the kernel's ring ({RINGS[-1]})")
    mt = isinstance(fam.preset(generator).definition, fam.Mt19937)
    miss_hi, miss_extra = MISS[rule.miss_step]
    wide = fam.preset(generator).draw_bits == 64
    _d, magic, shift = fastmod_params(modulus)
    return Plan(
        f"variable_{'mt_' if mt else ''}{ring}",
        (
            generator_params(generator),
            table(targets),
            u32(len(targets)),
            table(offsets),
            u32(len(offsets)),
            table([v for pair in strategies for v in pair]),
            u32(len(strategies)),
            u32(rule.adaptive),
            u32(miss_hi),
            u32(miss_extra),
            u32(need),
            u32(modulus),
            u32(magic),
            u32(shift - 32),
            u64(mod64_params(modulus)),
            u32(wide),
        ),
        row_words=len(ROW),
        launch_seeds=LAUNCH_SEEDS,
    )


def variable_rows(backend: Backend, plan: Plan, start: int, end: int) -> np.ndarray:
    """Rows (seed, offset, strategy index, matches), [rows, 4] int64, of seeds [start, end), in no order."""
    return collect(backend, plan, start, end).astype(np.int64)
