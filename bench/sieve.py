"""Sieve throughput: seeds/s per generator and path, as ratios to php_mt_seed (not part of the test suite).

    python bench/sieve.py [--json] [--quick] [--generators mt19937,lcg32] [--paths fast,fallback] [--variable P,..]

Rows report the best of --repeat timed runs (and the median). php_mt_seed scans 2**32 MT19937 seeds
against 8 outputs mod 1000 in ~80 s on the 2-vCPU reference machine, about 54 M seeds/s; every row is
divided by that rate. Each row sieves a window copied from a planted seed's stream and checks that the seed
is found, so a fast-but-wrong kernel cannot post a number.

Variable-skip rows (skip_mode="variable", their five strategies) sieve a 20-draw history planted with their
semantics (skips drifting by at most 3 a draw) at threshold 0.75; all paths of a preset run in the same process
one after the other. Most random seeds give up after a few misses, so their cost is set by the widest strategy.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.prng.generators.reference import GENERATORS, generate
from pipeline.prng.sieve import SieveSpec, sieve_range
from pipeline.prng.sieve.spec import STREAM_GENERATORS

PHP_MT_SEED_RATE = 54e6
WINDOW = 8

# seeds per row: (quick, full); the fallback rows use fewer because they are ~10x slower
SIZES = {"mt": (1 << 24, 1 << 27), "lcg": (1 << 26, 1 << 29), "fallback": (1 << 20, 1 << 23)}
VARIABLE_SIZES = {"fast": (1 << 18, 1 << 22), "fallback": (1 << 12, 1 << 15)}
VARIABLE_DRAWS = 20
DEFAULT_VARIABLE = "prng_cluster.java_lcg,prng_cluster.lcg32_hybrid,prng_cluster.mt19937,prng_cluster.xoshiro256pp,"
DEFAULT_VARIABLE += "prng_cluster.philox4x32,prng_cluster.sfc64"


def case_spec(generator: str, seed: int, skips: int) -> SieveSpec:
    skip = skips - 1
    offset = 0
    stream = generate(generator, seed, offset + WINDOW * (skip + 1) + 1)
    residues = tuple(stream[offset + j * (skip + 1) + skip] % 1000 for j in range(WINDOW))
    return SieveSpec(generator, residues, 1.0, offset=offset, skip_min=0, skip_max=skip)


def run_row(generator: str, path: str, skips: int, seeds: int, repeat: int) -> dict:
    planted = seeds // 2 + 12345
    spec = case_spec(generator, planted, skips)
    sieve_range(spec, 0, 4096, device="cpu", path=path)  # compile / load caches outside the timing
    times, cores = [], []
    for _ in range(repeat):  # best of N: the 2 shared cores see other tenants' load come and go
        t0, c0 = time.perf_counter(), time.process_time()
        result = sieve_range(spec, 0, seeds, device="cpu", path=path)
        times.append(time.perf_counter() - t0)
        cores.append((time.process_time() - c0) / times[-1])
    best = min(range(repeat), key=times.__getitem__)
    seconds = times[best]
    rate = seeds / seconds
    return {
        "generator": generator,
        "device": "cpu",
        "path": result.path,
        "window": WINDOW,
        "skips": skips,
        "seeds": seeds,
        "seconds": round(seconds, 4),
        "seconds_median": round(sorted(times)[len(times) // 2], 4),
        "repeats": repeat,
        "cores_used": round(cores[best], 2),  # process cpu time / wall time: < 2 on 2 cores means we were crowded
        "seeds_per_s": round(rate),
        "seed_skips_per_s": round(rate * skips),
        "ratio_vs_php_mt_seed": round(rate / PHP_MT_SEED_RATE, 3),
        "planted_found": planted in set(result.seeds.tolist()),
    }


def variable_spec(generator: str, seed: int) -> SieveSpec:
    rng = random.Random(generator)
    skips, s = [], 5
    for _ in range(VARIABLE_DRAWS):
        s = max(0, min(10, s + rng.randint(-3, 3)))  # within [0, 10]: every strategy's window, fixed or moving
        skips.append(s)
    stream = generate(generator, seed, sum(skips) + len(skips))
    pos, residues = 0, []
    for s in skips:
        residues.append(stream[pos + s] % 1000)
        pos += s + 1
    return SieveSpec(generator, tuple(residues), 0.75, skip_mode="variable")


def run_variable_row(generator: str, path: str, seeds: int, repeat: int) -> dict:
    planted = seeds // 2 + 123  # inside even the smallest (fallback) row
    spec = variable_spec(generator, planted)
    sieve_range(spec, 0, 512, device="cpu", path=path)  # compile outside the timing
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = sieve_range(spec, 0, seeds, device="cpu", path=path)
        times.append(time.perf_counter() - t0)
    seconds = min(times)
    return {
        "generator": generator,
        "mode": "variable",
        "device": "cpu",
        "path": result.path,
        "window": VARIABLE_DRAWS,
        "strategies": len(spec.strategies),
        "seeds": seeds,
        "seconds": round(seconds, 4),
        "seconds_median": round(sorted(times)[len(times) // 2], 4),
        "seeds_per_s": round(seeds / seconds),
        "survivors": len(result),
        "planted_found": planted in set(result.seeds.tolist()),
    }


def rows(quick: bool, generators: list[str], paths: list[str]) -> list[tuple[str, str, int, int]]:
    pick = 0 if quick else 1
    out = []
    for g in generators:
        for path in paths:
            if path == "fallback":
                n = SIZES["fallback"][pick] * (1 if g in STREAM_GENERATORS else 8)
            else:
                n = SIZES["mt" if g in STREAM_GENERATORS else "lcg"][pick]
            out.append((g, path, 1, n))
            if g in ("mt19937", "lcg32") and path == "fast":
                out.append((g, path, 4, n // 4))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--quick", action="store_true", help="small sizes: whole run under a minute")
    ap.add_argument("--generators", default=",".join(GENERATORS))
    ap.add_argument("--paths", default="fast,fallback")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per row; the best is reported")
    ap.add_argument("--variable", default=DEFAULT_VARIABLE, help="presets for variable-skip rows ('' for none)")
    args = ap.parse_args(argv)
    pick = 0 if args.quick else 1
    generators = [g for g in args.generators.split(",") if g]  # --generators '' runs only the variable rows
    for g, path, skips, n in rows(args.quick, generators, args.paths.split(",")):
        row = run_row(g, path, skips, n, args.repeat)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(
                f"{g:30s} {row['path']:8s} skips={skips} seeds={n:>11,d} {row['seconds']:8.3f}s "
                f"{row['seeds_per_s'] / 1e6:9.2f} M seeds/s {row['seed_skips_per_s'] / 1e6:9.2f} M seed*skips/s "
                f"x{row['ratio_vs_php_mt_seed']:.3f} php_mt_seed (best of {args.repeat}, "
                f"{row['cores_used']} cores) found={row['planted_found']}",
                flush=True,
            )
    for g in filter(None, args.variable.split(",")):
        for path in args.paths.split(","):
            row = run_variable_row(g, path, VARIABLE_SIZES[path][pick], args.repeat)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(
                    f"{g:30s} variable {row['path']:8s} seeds={row['seeds']:>9,d} {row['seconds']:8.3f}s "
                    f"{row['seeds_per_s'] / 1e6:9.3f} M seeds/s survivors={row['survivors']} "
                    f"found={row['planted_found']}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
