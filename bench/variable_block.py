"""The variable-skip block row of bench/sieve.py: every passing (offset, strategy) of a seed range, the new block
kernel (one task per seed block, one residue stream per seed for every offset and strategy, early exit) beside the
old job shape (one sieve per (offset, strategy), each generating its own streams), in one run.

The window is 10 draws at threshold 1.0 (step 2's window chosen before seeing the data), 16 offsets and the
operators' 5 strategies, the draws planted by a program whose skips wander (pipeline.prng.synth.wandering_draws).
The old shape costs minutes per 2**24 seeds, so by default it runs on the first `old_seeds` seeds only and its time
for the whole range is extrapolated (said in the row); the new kernel's rows on those seeds must equal the old
shape's, and on the whole range every row's seed and a random sample of seeds are re-scored by the plain-Python
oracle (reference_variable_rows): a fast-but-wrong kernel cannot post a number.
"""

from __future__ import annotations

import random
import statistics
import time

from pipeline.prng.sieve import SieveSpec, sieve_range, variable_rows
from pipeline.prng.sieve.spec import PRNG_CLUSTER_STRATEGIES
from pipeline.prng.sieve.variable import reference_variable_rows
from pipeline.prng.synth import wandering_draws

BLOCK_WINDOW = 10
BLOCK_OFFSETS = 16
SAMPLE = 2000  # random seeds of the whole range re-scored by the oracle


def block_spec(generator: str, planted: int) -> SieveSpec:
    draws, _skips = wandering_draws(generator, planted, BLOCK_WINDOW, offset=3, rng_seed=planted)
    return SieveSpec(generator, tuple(draws), 1.0, skip_mode="variable", offset=0, offset_max=BLOCK_OFFSETS - 1,
                     strategies=PRNG_CLUSTER_STRATEGIES)  # fmt: skip


def old_rows(spec: SieveSpec, seeds: int) -> list[tuple[int, int, int, int]]:
    """The old job shape: one sieve per (offset, strategy) with a one-strategy spec; its survivors are exactly the
    rows of that pair. Since the per-offset numba kernel was folded into the block kernel, each of these sieves runs
    the block kernel on its one pair: this row now measures what the shape costs (80 streams per seed instead of
    one), no longer the old kernel as well."""
    rows = []
    for offset in spec.offsets:
        for index, strategy in enumerate(spec.strategies):
            one = SieveSpec(**{**spec.to_dict(), "offset": offset, "offset_max": None, "strategies": [strategy]})
            found = sieve_range(one, 0, seeds, device="cpu", path="fast")
            rows += [(s, offset, index, m) for s, _i, m in found.survivors()]
    return sorted(rows)


def timed(fn, repeat: int) -> tuple[list[float], float, object]:
    """(wall times, cores used by the fastest run, its result)."""
    times, cores, result = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - t0)
        cores.append((time.process_time() - c0) / times[-1])
    return times, cores[min(range(repeat), key=times.__getitem__)], result


def run_block_row(generator: str, seeds: int, old_seeds: int, repeat: int) -> dict:
    planted = old_seeds // 2 + 321  # inside the old shape's seeds too
    spec = block_spec(generator, planted)
    variable_rows(spec, 0, 4096, device="cpu")  # compile outside the timing
    old_rows(spec, 4096)
    new_times, new_cores, new = timed(lambda: variable_rows(spec, 0, seeds, device="cpu", path="fast"), repeat)
    old_times, old_cores, old = timed(lambda: old_rows(spec, old_seeds), repeat)
    rows = new.rows()
    head = [r for r in rows if r[0] < old_seeds]
    sample = sorted({*random.Random(7).sample(range(seeds), min(SAMPLE, seeds)), *(r[0] for r in rows)})
    by_oracle = reference_variable_rows(spec, sample)
    new_s, old_s = min(new_times), min(old_times)
    return {
        "generator": generator,
        "mode": "variable-block",
        "window": BLOCK_WINDOW,
        "threshold": 1.0,
        "offsets": BLOCK_OFFSETS,
        "strategies": len(spec.strategies),
        "seeds": seeds,
        "seconds": round(new_s, 3),
        "seconds_median": round(statistics.median(new_times), 3),
        "cores_used": round(new_cores, 2),
        "seeds_per_s": round(seeds / new_s),
        "old_seeds": old_seeds,
        "old_seconds": round(old_s, 3),
        "old_seconds_median": round(statistics.median(old_times), 3),
        "old_cores_used": round(old_cores, 2),
        "old_seeds_per_s": round(old_seeds / old_s),
        "old_seconds_for_all_seeds": round(old_s * seeds / old_seeds, 1),  # extrapolated unless old_seeds == seeds
        "speedup": round((old_s / old_seeds) / (new_s / seeds), 1),
        "rows": len(rows),
        "rows_equal_old_shape": head == old,
        "rows_equal_reference": by_oracle == [r for r in rows if r[0] in set(sample)],
        "reference_seeds": len(sample),
        "planted_found": any(r[0] == planted for r in rows),
    }


def describe(row: dict) -> str:
    return (
        f"{row['generator']:30s} variable-block {row['offsets']} offsets x {row['strategies']} strategies, window "
        f"{row['window']}: {row['seeds']:>11,d} seeds in {row['seconds']:7.2f}s ({row['cores_used']} cores, "
        f"{row['seeds_per_s'] / 1e6:.2f} M/s); old shape {row['old_seeds']:,d} seeds in {row['old_seconds']:.2f}s "
        f"({row['old_cores_used']} cores, {row['old_seeds_per_s'] / 1e6:.3f} M/s, {row['old_seconds_for_all_seeds']}s "
        f"for {row['seeds']:,d}); x{row['speedup']} rows={row['rows']} equal_old={row['rows_equal_old_shape']} "
        f"equal_reference={row['rows_equal_reference']} ({row['reference_seeds']} seeds) found={row['planted_found']}"
    )
